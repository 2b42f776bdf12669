"""Comparison rules of a run's held-out evaluation: hand-designed rules (tuned on the
meta-training tasks), other learned rule families meta-trained with the same budget, and
ablations of the run's own θ (``rule = "learned"`` under network changes).

:func:`metaplastic.experiments.rule_runs.evaluate_run` evaluates them beside the run's rule.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import jax

from metaplastic import capabilities as cap
from metaplastic import rules, streams
from metaplastic.errors import ConfigError, NonFiniteError
from metaplastic.experiments import sections
from metaplastic.experiments.build import build
from metaplastic.experiments.config import RunConfig
from metaplastic.experiments.evaluate import evaluate, release_compiled, summarise
from metaplastic.experiments.rundir import RunDir
from metaplastic.meta.objective import Objective

#: the baseline rule name that means "the run's own rule and θ" (for ablations)
LEARNED = "learned"


@dataclass(frozen=True)
class Baseline:
    """A comparison rule: a registered rule, its options, network changes, a tuning grid,
    or ``meta_train = true``: meta-trained like the run's own rule (same outer loop,
    budget and seed) — another learned rule family in the same table; ``meta_train =
    "row"``: meta-trained afresh for every evaluation row on that row's meta-training
    classes (like a tuned learning rate: it favours the baseline). ``meta`` changes the
    outer loop of a meta-trained baseline (e.g. ``{lr = 0.05}``; budget and seed stay
    the run's).

    ``rule = "learned"`` is the run's own rule with its meta-trained θ, under the
    baseline's ``network`` changes: the ablations that say what the learned rule uses
    (e.g. ``network = {feedback = "symmetric"}`` or ``{feedback = "none"}``)."""

    label: str
    rule: dict  # {"name": ..., options}
    network: dict  # [network] overrides, e.g. {"feedback": "symmetric"}
    tune: dict  # {rule option: [values]} searched on the meta-training tasks
    meta_train: bool | str = False  # True: like the run's rule; "row": for every row
    meta: dict = dataclasses.field(default_factory=dict)  # [meta] changes when meta-trained

    @classmethod
    def parse(cls, spec: Any) -> Baseline:
        if isinstance(spec, str):
            return cls(spec, {"name": spec}, {}, {})
        if not isinstance(spec, dict) or "rule" not in spec:
            raise ConfigError(f"a baseline is a rule name or a table with 'rule' (and "
                              f"optionally 'label', 'network', 'tune', 'meta_train', "
                              f"'meta'); got {spec!r}")
        bad = sorted(set(spec) - {"label", "rule", "network", "tune", "meta_train", "meta"})
        if bad:
            raise ConfigError(f"baseline {spec!r}: unknown key(s) {bad}")
        rule = spec["rule"] if isinstance(spec["rule"], dict) else {"name": spec["rule"]}
        if not isinstance(rule.get("name"), str):
            raise ConfigError(f"baseline {spec!r}: the rule needs a 'name' (a string)")
        meta_train = spec.get("meta_train", False)
        if not (isinstance(meta_train, bool) or meta_train == "row"):
            raise ConfigError(f"baseline {spec!r}: meta_train must be true, false or "
                              f"\"row\" (meta-trained for every evaluation row)")
        meta = spec.get("meta", {})
        if not isinstance(meta, dict) or (meta and not meta_train):
            raise ConfigError(f"baseline {spec!r}: 'meta' is a table of [meta] changes "
                              f"for a baseline with meta_train, e.g. meta = {{lr = 0.05}}")
        network, tune = spec.get("network", {}), spec.get("tune", {})
        default = rule["name"]
        if default == LEARNED and isinstance(network, dict) and network:
            default += " (" + ", ".join(f"{k} = {v}" for k, v in network.items()) + ")"
        label = spec.get("label", default)
        if not isinstance(network, dict):
            raise ConfigError(f"baseline {spec!r}: 'network' must be a table of [network] "
                              f"options, got {network!r}")
        if not isinstance(tune, dict) or not all(
                isinstance(v, list | tuple) and len(v) > 0 for v in tune.values()):
            raise ConfigError(f"baseline {spec!r}: 'tune' must be a table of rule options, "
                              f"each with a non-empty list of values to try, e.g. "
                              f"tune = {{eta = [0.01, 0.1]}}")
        if not isinstance(label, str):
            raise ConfigError(f"baseline {spec!r}: 'label' must be a string")
        if meta_train and tune:
            raise ConfigError(f"baseline {spec!r}: choose 'tune' or 'meta_train', not both")
        if rule["name"] == LEARNED and (tune or meta_train or len(rule) > 1):
            raise ConfigError(f"baseline {spec!r}: rule 'learned' is the run's own rule and "
                              f"θ; it takes only 'label' and 'network' changes")
        return cls(label, dict(rule), dict(network), dict(tune), meta_train, dict(meta))

    @property
    def learned(self) -> bool:
        return self.rule["name"] == LEARNED

    def config(self, cfg: RunConfig, **rule_opts: Any) -> RunConfig:
        """``cfg`` with this baseline's rule and network (for building its pieces)."""
        network = sections.network_options({**cfg.network, **self.network})
        if self.learned:
            return dataclasses.replace(cfg, network=network, reference=None)
        shared = {k: v for k, v in cfg.rule.items() if k != "name"}
        shared = {k: v for k, v in shared.items() if k in rules.options(self.rule["name"])}
        rule = {"name": self.rule["name"], **shared,
                **{k: v for k, v in self.rule.items() if k != "name"}, **rule_opts}
        meta = {**cfg.meta, **self.meta} if self.meta else cfg.meta
        return dataclasses.replace(cfg, rule=rule, network=network, meta=meta,
                                   reference=None)


def _scaled(theta: Any, factor: float) -> Any:
    return jax.tree.map(lambda x: x * factor, theta)


def _eta_by_scaling(p, base: Baseline) -> bool:
    """Tuning only ``eta`` of a rule linear in θ: scale θ instead of recompiling."""
    return list(base.tune) == ["eta"] and cap.linear_in_theta(p.rule)


def tune_points(base: Baseline) -> int:
    """How many grid points :func:`tune_baseline` evaluates."""
    return math.prod(len(v) for v in base.tune.values()) if base.tune else 0


def tune_baseline(cfg: RunConfig, base: Baseline, n_tasks: int,
                  progress: Any = None, **overrides: Any) -> dict[str, Any]:
    """The grid point of ``base.tune`` with the best score on meta-training tasks (of the
    run's task, or of the task and network changed by ``overrides``). ``progress(what)``
    follows every grid point."""
    if not base.tune:
        return {}
    keys = list(base.tune)
    grid = [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(base.tune[k] for k in keys))]
    best, best_score = {}, None
    key = streams.stream_key(cfg.seed, streams.TUNE)
    bound = cfg.meta_section.build_guard().weight_bound  # what counts as diverged
    p0 = build(base.config(cfg), **overrides)
    for point in grid:
        if _eta_by_scaling(p0, base):  # one compiled program for the whole grid
            p = p0
            theta = _scaled(p.rule.init(jax.random.key(0), p.network.shapes),
                            point["eta"] / p.rule.eta)
        else:
            p = build(base.config(cfg, **point), **overrides)
            theta = p.rule.init(jax.random.key(0), p.network.shapes)
        stats = summarise(evaluate(Objective(p.task, p.network, p.rule), theta, key=key,
                                   n_tasks=n_tasks), bound)
        score = stats[p.task.score]["mean"]
        score = score if p.task.maximise_score else -score
        if progress is not None:
            progress(f"tuning {base.label}")
        if math.isfinite(score) and (best_score is None or score > best_score):
            best, best_score = point, score
    release_compiled()
    return best


def grid_edges(base: Baseline, chosen: dict) -> list[str]:
    """The tuned options whose chosen value is the smallest or the largest of a grid of
    two or more numbers: the best may lie outside the grid."""
    out = []
    for k, v in chosen.items():
        values = [x for x in base.tune.get(k, ()) if isinstance(x, int | float)]
        if len(values) >= 2 and v in (min(values), max(values)):
            out.append(k)
    return out


def baseline_pieces(cfg: RunConfig, base: Baseline, tuned: dict, **task_overrides):
    """(pieces, θ) of a baseline with its tuned options (by θ scaling where possible)."""
    p = build(base.config(cfg), **task_overrides)
    theta = p.rule.init(jax.random.key(0), p.network.shapes)
    if tuned and _eta_by_scaling(p, base):
        return p, _scaled(theta, tuned["eta"] / p.rule.eta)
    if tuned:
        p = build(base.config(cfg, **tuned), **task_overrides)
        theta = p.rule.init(jax.random.key(0), p.network.shapes)
    return p, theta


def meta_trained_baseline(cfg: RunConfig, base: Baseline, run: RunDir | None,
                          row: tuple[str, dict] | None = None) -> Any:
    """θ of a ``meta_train`` baseline: trained with the run's outer loop, budget and seed
    (and the baseline's ``meta`` changes) — on the run's own tasks, or with ``row``
    (label, changes) on that evaluation row's meta-training classes — and kept in the run
    directory (``baseline-<label>[-<row>].npz``) so evaluation reuses it."""
    from metaplastic.experiments.rundir import load_theta, save_theta

    path = None
    if run is not None:
        name = base.label if row is None else f"{base.label}-{row[0]}"
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
        path = run.path / f"baseline-{safe}.npz"
        if path.exists():
            return load_theta(path)
    p = build(base.config(cfg), **({} if row is None else on_training_classes(cfg, row[1])))
    k_init, k_meta = jax.random.split(jax.random.key(cfg.seed))
    try:
        theta = p.outer.run(p.objective, p.rule.init(k_init, p.network.shapes),
                            key=k_meta).theta
    except NonFiniteError as e:  # the baseline's row is evaluated at its last good θ
        result = e.__dict__.get("result")
        if result is None:
            raise
        theta = result.theta
        warnings.warn(f"baseline {base.label!r}{'' if row is None else ' on ' + row[0]}: "
                      f"its meta-training stopped ({str(e).split('.')[0]}); evaluated "
                      f"at its last good θ", stacklevel=2)
    if path is not None:
        save_theta(path, theta)
    return theta


def on_training_classes(cfg: RunConfig, var: dict) -> dict:
    """A row's task and network changes, on the meta-training classes where the task
    has class splits (where baselines are tuned)."""
    from metaplastic import tasks

    if "classes" in tasks.options(cfg.task["name"]):
        return {**var, "classes": "train"}
    return dict(var)


def validate_baselines(cfg: RunConfig) -> None:
    """Every baseline builds (before training): on the run's own tasks, or — meta-trained
    for every row — on the first row's meta-training classes (a rule with θ per layer
    cannot take a mixture of depths, but each row has one network)."""
    from metaplastic.experiments.build import variants

    first = on_training_classes(cfg, variants(cfg)[0][1])
    for spec in cfg.eval.baselines:
        base = Baseline.parse(spec)
        row = first if base.meta_train == "row" else {}
        for point in [{}] + [{k: v[0]} for k, v in base.tune.items() if v]:
            build(base.config(cfg, **point), **row)
