"""The ``[network]`` and ``[meta]`` config tables, checked against the classes they build.

A table's valid keys are the fields of the real classes — the network class and its
neuron model, the :class:`~metaplastic.meta.Objective` and the outer loop — read from the
registry, so a custom neuron or outer loop (``"module:Class"``) brings its own options.

A key that belongs to another registered neuron model or outer loop is accepted and
ignored (it is inert for this run): run directories written before the tables were
checked this way list every key of every class, and switching ``meta.outer`` or
``network.neuron`` with one ``--set`` keeps working. Any other key is an error that lists
the valid ones.
"""

from __future__ import annotations

import dataclasses

from metaplastic import capabilities as cap
from metaplastic import registry
from metaplastic._fields import coerce_kwargs
from metaplastic.errors import ConfigError

#: network-table keys that are not fields of the network class
_NETWORK_KEYS = ("hidden", "neuron")
#: Objective fields that the task, network and rule fill in (not config keys)
_OBJECTIVE_PIECES = ("task", "network", "rule")


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _inert(key: str, others: list[tuple[str, type]]) -> bool:
    """Whether ``key`` is a field of one of ``others`` ((name, class) pairs): switching
    ``meta.outer`` or ``network.neuron`` with one key keeps the other loop's or model's
    settings inert instead of failing."""
    return any(key in _fields(cls) for _, cls in others)


def _coerce(entry: registry.Entry, kw: dict, where: str) -> dict:
    """``kw`` converted to the types of ``entry``'s class fields (as given otherwise)."""
    if dataclasses.is_dataclass(entry.cls):
        return coerce_kwargs(entry.cls, kw, where)
    return dict(kw)


def _split(table: dict, where: str, groups: list[tuple[str, list[str]]],
           others: list[tuple[str, type]], special: tuple[str, ...]) -> dict[str, dict]:
    """Assign each key of ``table`` to the first group naming it; keys of other classes
    with their defaults are dropped; anything else is a ConfigError."""
    out: dict[str, dict] = {g: {} for g, _ in groups}
    valid = sorted({*special, *(k for _, keys in groups for k in keys)})
    for key, value in table.items():
        if key in special:
            continue
        group = next((g for g, keys in groups if key in keys), None)
        if group is not None:
            out[group][key] = value
            continue
        if _inert(key, others):
            continue
        raise ConfigError(f"{where}: unknown option(s) {key!r}; valid options: "
                          f"{', '.join(valid)}")
    return out


# ------------------------------------------------------------------------------ network
def _rate_neuron() -> type:
    from metaplastic.neurons.rate import RateNeuron

    return RateNeuron


def _network_groups(neuron: str):
    """([("network", keys), ("neuron", keys)], other classes, network class, entry)."""
    from metaplastic.network import Network
    from metaplastic.spiking import SpikingNetwork

    entry = registry.entry("neuron", neuron)
    net_cls = SpikingNetwork if cap.spiking(entry.cls) else Network
    net_keys = [k for k in _fields(net_cls) if k not in ("sizes", "neuron_model")]
    # rate neurons are set by the network's own fields (activation, tau)
    neuron_keys = ([] if entry.cls is _rate_neuron() else
                   [k for k in entry.options() if k not in net_keys])
    others = [(f"neuron {n!r}", e.cls) for n, e in registry.entries("neuron").items()
              if e.cls is not entry.cls] + [("spiking networks", SpikingNetwork)]
    return [("network", net_keys), ("neuron", neuron_keys)], others, net_cls, entry


@dataclasses.dataclass(frozen=True)
class _Hidden:
    hidden: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class NetworkSection:
    """The ``[network]`` table parsed once: the network class and its options, the neuron
    model and its options, the hidden sizes; ``table`` is the checked table itself."""

    table: dict
    neuron: str
    hidden: tuple[int, ...]
    network_cls: type
    network: dict
    neuron_options: dict | None  # None: rate neurons, set by the network's own fields

    def build(self, n_in: int, n_out: int):
        """The network between a task's ``n_in`` inputs and ``n_out`` outputs."""
        kw = dict(self.network)
        if self.neuron_options is not None:
            kw["neuron_model"] = registry.make("neuron", self.neuron, **self.neuron_options)
        return self.network_cls(sizes=(n_in, *self.hidden, n_out), **kw)


def parse_network(table: dict) -> NetworkSection:
    """The ``[network]`` table checked (types converted; legacy defaults dropped) and
    split into its parts, once."""
    table = dict(table)
    neuron = table.get("neuron", "rate")
    if neuron == "alif" and table.get("beta") == 0.0:  # written as "alif's default" before
        table.pop("beta")
    groups, others, net_cls, entry = _network_groups(neuron)
    parts = _split(table, "network", groups, others, _NETWORK_KEYS)
    out = {k: table[k] for k in _NETWORK_KEYS if k in table}
    if "hidden" in out:
        hidden = coerce_kwargs(_Hidden, {"hidden": out["hidden"]}, "network")["hidden"]
        if any(h < 1 for h in hidden):
            raise ConfigError(f"network.hidden sizes must be >= 1, got {list(hidden)}")
        out["hidden"] = hidden
    network = coerce_kwargs(net_cls, parts["network"], "network")
    neuron_options = _coerce(entry, parts["neuron"], "network")
    return NetworkSection(out | network | neuron_options, neuron, out.get("hidden", ()),
                          net_cls, network,
                          None if entry.cls is _rate_neuron() else neuron_options)


def network_options(table: dict) -> dict:
    """The ``[network]`` table checked (types converted); legacy defaults dropped."""
    return parse_network(table).table


def build_network(table: dict, n_in: int, n_out: int):
    """The network of a ``[network]`` table between ``n_in`` inputs and ``n_out`` outputs."""
    return parse_network(table).build(n_in, n_out)


# --------------------------------------------------------------------------------- meta
#: ``[meta]`` keys of a mixture objective (``[[mixture]]`` runs only)
MIXTURE_KEYS = ("part_clip",)


def _meta_groups(outer: str):
    from metaplastic.meta.guard import guard_fields
    from metaplastic.meta.objective import Objective

    entry = registry.entry("outer", outer)
    objective_keys = [k for k in _fields(Objective) if k not in _OBJECTIVE_PIECES]
    guard_keys = guard_fields()
    groups = [("objective", objective_keys), ("guard", guard_keys),
              ("mixture", list(MIXTURE_KEYS)),
              ("outer", [k for k in entry.options()
                         if k not in objective_keys and k not in guard_keys])]
    others = [(f"outer loop {n!r}", e.cls) for n, e in registry.entries("outer").items()
              if e.cls is not entry.cls]
    return groups, others, entry


@dataclasses.dataclass(frozen=True)
class MetaSection:
    """The ``[meta]`` table parsed once: the outer loop's name and options, the
    :class:`~metaplastic.meta.Objective`'s options, the safeguards'
    (:class:`~metaplastic.meta.guard.Guard`) and a mixture's (``part_clip``); ``table`` is
    the checked table."""

    table: dict
    outer: str
    objective: dict
    outer_options: dict
    guard_options: dict = dataclasses.field(default_factory=dict)
    mixture: dict = dataclasses.field(default_factory=dict)
    #: ``meta.checkpoint = "auto"`` (the default): the objective is built without
    #: checkpointing, and a run switches it on when its meta-step program would need more
    #: than its memory budget (:meth:`metaplastic.experiments.lifecycle.Start.bound_memory`)
    auto_checkpoint: bool = True

    def build_outer(self):
        return registry.make("outer", self.outer, **self.outer_options)

    def build_guard(self):
        from metaplastic.meta.guard import Guard

        return Guard(**self.guard_options)


def parse_meta(table: dict) -> MetaSection:
    """The ``[meta]`` table checked (types converted) and split into its parts, once."""
    from metaplastic.meta.objective import Objective

    outer = table.get("outer", "gradient")
    groups, others, entry = _meta_groups(outer)
    auto = table.get("checkpoint", AUTO) == AUTO
    if isinstance(table.get("checkpoint"), str) and not auto:
        raise ConfigError(f"meta.checkpoint must be true, false or \"auto\", got "
                          f"{table['checkpoint']!r}")
    parts = _split({k: v for k, v in table.items() if not (k == "checkpoint" and auto)},
                   "meta", groups, others, ("outer",))
    from metaplastic.meta.guard import Guard
    from metaplastic.meta.mixture import Mixture

    objective = coerce_kwargs(Objective, parts["objective"], "meta")
    outer_options = _coerce(entry, parts["outer"], "meta")
    guard = coerce_kwargs(Guard, parts["guard"], "meta")
    Guard(**guard)  # its checks, at load
    mixture = coerce_kwargs(Mixture, parts["mixture"], "meta")
    head = {"outer": outer} if "outer" in table else {}
    head |= {"checkpoint": AUTO} if table.get("checkpoint") == AUTO else {}
    return MetaSection(head | objective | guard | mixture | outer_options, outer, objective,
                       outer_options, guard, mixture, auto)


#: ``meta.checkpoint``'s default: checkpointing switched on only where memory needs it
AUTO = "auto"


# ---------------------------------------------------------------------- task and rule
def check_piece(kind: str, table: dict) -> None:
    """A ``[task]`` or ``[rule]`` table checked at load: a known name (or an importable
    ``"module:Class"``), known options of the right types. (``task.simulate`` is taken
    by a task that declares it: recordings simulated first; so is ``task.nwb``: recordings
    read from NWB files, :mod:`metaplastic.tasks.nwb`.)"""
    from metaplastic.errors import check_kwargs

    name = table.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"[{kind}] needs a 'name' (a string), got {name!r}")
    entry = registry.entry(kind, name)
    opts = {k: v for k, v in table.items() if k != "name"}
    if kind == "task" and simulates(name):  # recordings simulated or read from NWB first
        if "simulate" in opts and "nwb" in opts:
            raise ConfigError("task.simulate and task.nwb are both set: choose one")
        opts.pop("simulate", None)
        if "nwb" in opts:
            from metaplastic.tasks.nwb import check_spec

            check_spec(opts.pop("nwb"))
    check_kwargs(kind, name, opts, entry.options())
    _coerce(entry, opts, f"{kind} {name!r}")


def simulates(task_name: str) -> bool:
    """Whether the task class declares ``task.simulate`` (:class:`~.capabilities.Simulated`)."""
    cls = registry.entry("task", task_name).cls
    return isinstance(cls, cap.Simulated) and bool(cls.simulates)
