"""Run configuration: frozen dataclasses, TOML files that map onto them, overrides.

A run is described by :class:`RunConfig`. Its sections are tables whose keys are the
fields of the real classes they build — no second list of options is kept here:

* ``task``, ``rule``: a registry ``name`` (or ``"module:Class"``) and that class's options;
* ``network``: ``hidden`` sizes, ``neuron`` (a registered neuron model: rate, lif, alif,
  or ``"module:Class"``), and the options of the network class and of the neuron model;
* ``meta``: ``outer`` (a registered outer loop: gradient, es, or ``"module:Class"``), the
  options of the :class:`~metaplastic.meta.Objective` (tasks_per_step, l1, ...) and the
  outer loop's own options;
* ``eval``: :class:`EvalConfig`.

Keys are checked against those classes when the config is read, so a typo such as
``meta.stepz`` stops the run with a message listing the valid keys.

``--set key=value`` overrides use dotted keys (``meta.steps=300``, ``task.n_in=25``);
values are read as TOML (``300``, ``3e-3``, ``true``, ``[10, 25]``, ``"tanh"``); a bare
word that is not TOML is taken as a string (``network.activation=tanh``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from metaplastic._fields import coerce_kwargs
from metaplastic._records import read_toml
from metaplastic.errors import ConfigError


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: ``tasks`` fresh tasks per row.

    Rows come from ``variants`` — a list of task-option overrides, each one row, with an
    optional ``label`` (e.g. ``{label = "heavy", ranges = {}, params = {masspole = 0.3}}``)
    — or else from ``vary``, which maps task options to values and makes one row per
    combination (e.g. ``{n_in = [10, 25]}``). ``baselines`` are registered rules evaluated
    alongside the learned one.
    """

    tasks: int = 100
    vary: dict = field(default_factory=dict)
    variants: tuple[dict, ...] = ()
    baselines: tuple[Any, ...] = ()  # rule names, or tables {label, rule, network, tune}
    #: tune the baselines' ``tune`` grids for every row on that row's meta-training
    #: classes (e.g. a learning rate per depth), instead of once on the run's own task
    tune_per_variant: bool = False
    #: which θ of the run is evaluated: "saved" (theta.npz: the kept-best θ where
    #: meta.keep_best is on) or "last" (the last meta-step's, from the checkpoint: what
    #: keep-best replaced; the ablation of keep-best without training again)
    theta: str = "saved"

    def __post_init__(self):
        if self.theta not in ("saved", "last"):
            raise ConfigError(f"eval.theta must be 'saved' or 'last', got {self.theta!r}")


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    seed: int = 0
    reference: str | None = None  # a hand-designed rule the learned one is compared with
    task: dict = field(default_factory=lambda: {"name": "pca"})
    rule: dict = field(default_factory=lambda: {"name": "polynomial"})
    network: dict = field(default_factory=dict)  # {hidden, neuron, network/neuron options}
    meta: dict = field(default_factory=dict)  # {outer, objective and outer-loop options}
    eval: EvalConfig = field(default_factory=EvalConfig)
    #: plausibility constraints checked at the start of the run (metaplastic check):
    #: locality, no_weight_transport, online, dale, spikes_only
    constraints: tuple[str, ...] = ()
    #: meta-train over a mixture of problems: ``[[mixture]]`` entries, each
    #: ``{label, weight, task = {...}, network = {...}}`` overriding the ``[task]`` and
    #: ``[network]`` tables (e.g. ``task = {dataset = "mnist1d"}``,
    #: ``network = {hidden = [32, 32, 32]}``); every meta-step runs every entry and
    #: averages their losses with the weights (``metaplastic.meta.mixture``)
    mixture: tuple[dict, ...] = ()
    #: the kind of run (:mod:`metaplastic.experiments.study`): "rule" discovery,
    #: "inference" from recordings, or a user's own; empty: the one its task declares
    study: str = ""

    @functools.cached_property
    def network_section(self):
        """``[network]`` parsed (:class:`~.sections.NetworkSection`), once per config."""
        from metaplastic.experiments import sections

        return sections.parse_network(self.network)

    @functools.cached_property
    def meta_section(self):
        """``[meta]`` parsed (:class:`~.sections.MetaSection`), once per config."""
        from metaplastic.experiments import sections

        return sections.parse_meta(self.meta)

    def __post_init__(self):
        # one form for every entry (weight, task and network filled in), however built
        object.__setattr__(self, "mixture", tuple(check_mixture(self.mixture)))
        if not self.study:
            name = self.task.get("name") if isinstance(self.task, dict) else None
            object.__setattr__(self, "study",
                               task_study(name) if isinstance(name, str) else "rule")


def task_study(task_name: str) -> str:
    """The kind of run a task declares as its own (``Task.study``; :mod:`.study`),
    "rule" if the task cannot be had (the build names the problem)."""
    from metaplastic import registry
    from metaplastic.tasks.base import Task

    try:
        cls = registry.entry("task", task_name).cls
    except ConfigError:
        return "rule"
    return cls.study if isinstance(cls, type) and issubclass(cls, Task) else "rule"


_TABLES = ("task", "rule", "network", "meta")


RUN_NAME = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9._+\-]{0,99}")


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Validate a nested dict (e.g. a parsed TOML file) and build a RunConfig."""
    from metaplastic.experiments import sections

    if not isinstance(d, dict):
        raise ConfigError(f"a config must be a table, got {type(d).__name__}")
    top = {k: v for k, v in d.items() if k != "eval"}
    kw = coerce_kwargs(RunConfig, top, "config")
    for key in _TABLES:
        if key in kw:
            kw[key] = dict(kw[key])
    for key in ("task", "rule"):
        if key in kw and "name" not in kw[key]:
            raise ConfigError(f"[{key}] needs a 'name'")
    if "eval" in d:
        if not isinstance(d["eval"], dict):
            raise ConfigError(f"[eval] must be a table, got {d['eval']!r}")
        kw["eval"] = EvalConfig(**coerce_kwargs(EvalConfig, d["eval"], "eval"))
    cfg = RunConfig(**kw)
    if cfg.seed < 0:
        raise ConfigError(f"seed must be >= 0, got {cfg.seed}")
    if not RUN_NAME.fullmatch(cfg.name):
        raise ConfigError(f"name {cfg.name!r} must be a plain file name (letters, digits, "
                          f"'.', '_', '+', '-'; not starting with '.'): run directories "
                          f"are created under --out as NAME-DATE-TIME")
    network, meta = sections.parse_network(cfg.network), sections.parse_meta(cfg.meta)
    sections.check_piece("task", cfg.task)
    sections.check_piece("rule", cfg.rule)
    out = dataclasses.replace(cfg, network=network.table, meta=meta.table)
    out.__dict__.update(network_section=network, meta_section=meta)  # parsed once
    return out


MIXTURE_KEYS = ("label", "weight", "task", "network")


def check_mixture(entries) -> list[dict]:
    """``[[mixture]]`` entries checked for their keys and types (their task and network
    options are checked when the parts are built, before any training)."""
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ConfigError(f"mixture entry {i + 1} must be a table with {MIXTURE_KEYS}, "
                              f"got {e!r}")
        bad = sorted(set(e) - set(MIXTURE_KEYS))
        if bad:
            raise ConfigError(f"mixture entry {i + 1}: unknown key(s) {bad}; valid keys: "
                              f"{', '.join(MIXTURE_KEYS)}")
        for table in ("task", "network"):
            if not isinstance(e.get(table, {}), dict):
                raise ConfigError(f"mixture entry {i + 1}: {table!r} must be a table of "
                                  f"[{table}] options, got {e[table]!r}")
        if "name" in e.get("task", {}):
            raise ConfigError(f"mixture entry {i + 1}: the task's name comes from [task]; "
                              f"entries change its options")
        w = e.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 < w < float("inf"):
            raise ConfigError(f"mixture entry {i + 1}: weight must be a positive number, "
                              f"got {w!r}")
        if not isinstance(e.get("label", ""), str):
            raise ConfigError(f"mixture entry {i + 1}: label must be a string")
        out.append({**e, "weight": float(w), "task": dict(e.get("task", {})),
                    "network": dict(e.get("network", {}))})
    labels = [mixture_label(e) for e in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"mixture entries need distinct labels; {dup} appear twice")
    return out


def mixture_label(entry: dict) -> str:
    """An entry's label: its own, or its overrides written out."""
    if entry.get("label"):
        return entry["label"]
    opts = {**entry.get("task", {}), **entry.get("network", {})}
    return ", ".join(f"{k}={v}" for k, v in opts.items()) or "default"


def portable(cfg: RunConfig) -> RunConfig:
    """``cfg`` with every piece named so that another process can build it: a rule, task,
    outer loop or neuron registered by the user's own code is written ``"module:Class"``
    (with the options its registration fixed)."""
    from metaplastic import registry

    def table(kind: str, d: dict, key: str, default: str | None = None) -> dict:
        if key not in d and default is None:
            return d
        name, extra = registry.portable(kind, d.get(key, default))
        return {**extra, **d, key: name} if extra or name != d.get(key, default) else d

    return dataclasses.replace(cfg, rule=table("rule", cfg.rule, "name"),
                               task=table("task", cfg.task, "name"),
                               meta=table("outer", cfg.meta, "outer", "gradient"),
                               network=table("neuron", cfg.network, "neuron", "rate"))


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """A plain nested dict (TOML-writable: no None values)."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if v is not None}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return clean(dataclasses.asdict(cfg))


def load(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    return from_dict(read_toml(path))


def save(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(tomli_w.dumps(to_dict(cfg)))


def parse_value(text: str) -> Any:
    """A TOML value, or the text itself if it is not one."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def inline_value(value: Any) -> str:
    """``value`` (bools, numbers, strings, lists, tables) as one line of inline TOML, as
    ``--set KEY=VALUE`` takes it: :func:`parse_value` inverts it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {inline_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(inline_value(v) for v in value) + "]"


def set_arguments(section: str, table: dict) -> list[str]:
    """``["--set", "SECTION.KEY=VALUE", ...]`` for every entry of ``table``."""
    return [a for k, v in table.items() for a in ("--set", f"{section}.{k}={inline_value(v)}")]


def apply_assignments(d: dict, assignments: list[str]) -> dict:
    """``d`` (a config as nested dicts) with ``key=value`` overrides (dotted keys,
    TOML values) set in place."""
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set needs key=value, got {item!r}")
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section of the config")
            node = node[p]
        node[parts[-1]] = parse_value(text.strip())
    return d


def override(cfg: RunConfig, assignments: list[str]) -> RunConfig:
    """Apply ``key=value`` overrides (dotted keys) and re-validate."""
    d = apply_assignments(to_dict(cfg), assignments)
    if any(a.partition("=")[0].strip() == "task.env" for a in assignments):
        d = switch_environment(d)
    out = from_dict(d)
    _check_not_inert(out, assignments)
    return out


def switch_environment(d: dict) -> dict:
    """``--set task.env=X`` on a task registered as one environment (``cartpole``: gymnax's
    CartPole-v1): the task becomes the general task of that kind for X (``gym``), the run
    is named after X (``cartpole-hebbian`` -> ``mountaincar-v0-hebbian``), and evaluation
    rows that set physics X does not have are left out, each with a warning."""
    import warnings

    from metaplastic import registry

    task = d.get("task", {})
    entries = registry.entries("task")
    entry = entries.get(task.get("name"))
    if entry is None or "env" not in entry.fixed:
        return d
    alias, env = task["name"], task["env"]
    general = next((n for n, e in entries.items() if e.cls is entry.cls and not e.fixed),
                   None)
    if env == entry.fixed["env"] or general is None:
        task.pop("env")
        return d
    task["name"] = general
    slug = re.sub(r"[^a-z0-9]+", "-", env.lower()).strip("-")
    name = d.get("name", "")
    d["name"] = slug + name[len(alias):] if name.startswith(alias) else f"{slug}-{name}"
    kept = []
    for var in d.get("eval", {}).get("variants", []):
        physics = {k: var[k] for k in ("params", "ranges") if k in var}
        try:
            registry.make("task", general, env=env, **physics)
        except ConfigError as e:
            warnings.warn(f"evaluation row {var.get('label', physics)!r} is left out: {e}",
                          stacklevel=2)
            continue
        kept.append(var)
    if "variants" in d.get("eval", {}):
        d["eval"]["variants"] = kept or [{"label": f"{env}, default physics"}]
    return d


def _check_not_inert(cfg: RunConfig, assignments: list[str]) -> None:
    """An explicit ``--set meta.X`` / ``network.X`` that the chosen outer loop or neuron
    model does not take (it belongs to another one, so the table keeps it inert) would be
    ignored silently: it is an error instead."""
    for item in assignments:
        parts = item.partition("=")[0].strip().split(".")
        if len(parts) != 2 or parts[0] not in ("meta", "network"):
            continue
        table = getattr(cfg, parts[0])
        if parts[1] not in table and parts[1] not in ("outer", "neuron"):
            owner = (f"outer loop {table.get('outer', 'gradient')!r}" if parts[0] == "meta"
                     else f"neuron model {table.get('neuron', 'rate')!r}")
            raise ConfigError(f"--set {parts[0]}.{parts[1]}: not an option of the {owner} "
                              f"(it belongs to another one and would be ignored); "
                              f"`metaplastic list` shows each one's options")
