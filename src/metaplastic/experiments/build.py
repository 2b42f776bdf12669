"""Turn a :class:`RunConfig` into the library's pieces: task, network, rule, objective, outer."""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from typing import Any

from metaplastic import registry, rules, tasks
from metaplastic.errors import ConfigError
from metaplastic.experiments import sections
from metaplastic.experiments.config import RunConfig, mixture_label, to_dict
from metaplastic.meta import MetaGradient, Objective, OuterLoop
from metaplastic.meta.mixture import Mixture
from metaplastic.network import Network
from metaplastic.rules.base import Rule
from metaplastic.rules.composed import compose
from metaplastic.tasks.base import Task


@dataclass(frozen=True)
class Pieces:
    task: Task
    network: Network
    rule: Rule
    objective: Objective | Mixture
    outer: OuterLoop


def build_task(cfg: RunConfig, **overrides: Any) -> Task:
    opts = {k: v for k, v in cfg.task.items() if k != "name"} | overrides
    # recordings simulated from a known rule (ground truth)
    if "simulate" in opts and sections.simulates(cfg.task["name"]):
        from metaplastic.experiments.recordings import materialise

        if opts.get("path"):
            raise ConfigError("task.path and task.simulate are both set: choose one")
        spec = opts.pop("simulate")
        if not isinstance(spec, dict):
            raise ConfigError(f"task.simulate must be a table, got {spec!r}")
        opts["path"] = materialise(spec, cfg.network)
    if "nwb" in opts and sections.simulates(cfg.task["name"]):  # recordings from NWB files
        from metaplastic.experiments.recordings import from_nwb

        if opts.get("path"):
            raise ConfigError("task.path and task.nwb are both set: choose one")
        opts["path"] = from_nwb(opts.pop("nwb"))
    return tasks.make(cfg.task["name"], **opts)


def build_rule(cfg: RunConfig, name: str | None = None) -> Rule:
    """The configured rule, or the registered rule ``name`` with the same shared options."""
    opts = {k: v for k, v in cfg.rule.items() if k != "name"}
    if name is not None:
        opts = {k: v for k, v in opts.items() if k in rules.options(name)}
    return rules.make(name or cfg.rule["name"], **opts)


def build_network(cfg: RunConfig, task: Task) -> Network:
    return cfg.network_section.build(task.n_in, task.n_out)


#: pieces built so far, by configuration: validation, training, tuning and evaluation of
#: one run build each piece once (pieces are immutable; datasets load once)
_BUILT: dict[str, Pieces] = {}
_BUILT_MAX = 64


def build(cfg: RunConfig, **task_overrides: Any) -> Pieces:
    """Every piece of a run; ``task_overrides`` change task options (e.g. ``n_in=25``)
    and, under the key ``network``, network options (e.g. ``network={"hidden": [32]}``).

    A run with ``[[mixture]]`` entries gets a :class:`~metaplastic.meta.mixture.Mixture`
    objective over them; its task and network are those of ``[task]`` and ``[network]``
    (with the overrides: an evaluation variant is one problem, not a mixture).

    The same configuration (and overrides) returns the same pieces: built once, reused."""
    try:
        key = json.dumps([registry.generation(), to_dict(cfg), task_overrides],
                         sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return _build(cfg, **task_overrides)
    if key not in _BUILT:
        if len(_BUILT) >= _BUILT_MAX:
            _BUILT.pop(next(iter(_BUILT)))
        _BUILT[key] = _build(cfg, **task_overrides)
    return _BUILT[key]


def _build(cfg: RunConfig, **task_overrides: Any) -> Pieces:
    net_overrides = task_overrides.pop("network", {})
    if not isinstance(net_overrides, dict):
        raise ConfigError(f"network overrides must be a table of [network] options, got "
                          f"{net_overrides!r}")
    if net_overrides:
        cfg = dataclasses.replace(cfg, network=sections.network_options(
            {**cfg.network, **net_overrides}))
    task = build_task(cfg, **task_overrides)
    network = build_network(cfg, task)
    rule = compose(build_rule(cfg), network, task)
    objective: Any = Objective(task, network, rule, **cfg.meta_section.objective)
    if cfg.meta_section.mixture and not cfg.mixture:
        raise ConfigError(f"meta.{', meta.'.join(cfg.meta_section.mixture)} is for runs "
                          f"with [[mixture]] entries; this run has none")
    if cfg.mixture and not task_overrides and not net_overrides:
        objective = build_mixture(cfg)
    return Pieces(task, network, rule, objective, build_outer(cfg, objective))


def mixture_parts(cfg: RunConfig) -> list[tuple[str, float, RunConfig]]:
    """(label, weight, configuration) of every ``[[mixture]]`` entry."""
    out = []
    for i, entry in enumerate(cfg.mixture):
        label = mixture_label(entry)
        try:
            network = sections.network_options({**cfg.network, **entry["network"]})
        except ConfigError as e:
            raise ConfigError(f"mixture entry {i + 1} ({label!r}): {e}") from None
        meta = {k: v for k, v in cfg.meta.items() if k not in sections.MIXTURE_KEYS}
        part = dataclasses.replace(cfg, task={**cfg.task, **entry["task"]}, network=network,
                                   meta=meta, mixture=())
        out.append((label, entry["weight"], part))
    return out


def build_mixture(cfg: RunConfig) -> Mixture:
    """The mixture objective of a run's ``[[mixture]]`` entries (each part built once)."""
    parts = []
    for i, (label, _, part) in enumerate(mixture_parts(cfg)):
        try:
            parts.append(build(part).objective)
        except ConfigError as e:
            raise ConfigError(f"mixture entry {i + 1} ({label!r}): {e}") from None
    labels, weights = zip(*[(lab, w) for lab, w, _ in mixture_parts(cfg)], strict=True)
    return Mixture(tuple(parts), weights, labels, **cfg.meta_section.mixture)


def build_outer(cfg: RunConfig, objective: Objective | None = None) -> OuterLoop:
    """The outer loop; switching is one key, ``meta.outer``."""
    outer = cfg.meta_section.build_outer()
    if objective is not None:
        if isinstance(outer, MetaGradient) and objective.early_exit:
            raise ConfigError("meta.early_exit is for evolution strategies (a meta-gradient "
                              "needs every step of the unroll)")
        truncated = outer.truncation or outer.truncation_schedule
        if objective.grad_mode == "forward" and truncated:
            raise ConfigError("meta.grad_mode = 'forward' is for whole episodes; truncated "
                              "segments take reverse-mode gradients")
        outer.check(objective)
    return outer


def variants(cfg: RunConfig) -> list[tuple[str, dict]]:
    """The evaluation rows as (label, task-option overrides)."""
    if cfg.eval.variants:
        rows = []
        for v in cfg.eval.variants:
            opts = {k: x for k, x in v.items() if k != "label"}
            rows.append((str(v.get("label", _label(opts))), opts))
        return rows
    vary = cfg.eval.vary
    if not vary:
        return [("default", {})]
    keys = list(vary)
    values = [v if isinstance(v, list | tuple) else [v] for v in vary.values()]
    combos = [dict(zip(keys, c, strict=True)) for c in itertools.product(*values)]
    return [(_label(c), c) for c in combos]


def _label(opts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in opts.items()) or "default"
