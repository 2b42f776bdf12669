"""Meta-train a configured run into a run directory, and evaluate a finished run.

Pure pieces return numbers; this module is the edge that writes files. Progress goes to
an optional ``progress(records)`` callback (the CLI draws a progress bar with it).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from metaplastic import rules
from metaplastic.errors import ConfigError, NonFiniteError
from metaplastic.experiments import sections
from metaplastic.experiments.build import Pieces, build, build_rule, variants
from metaplastic.experiments.config import RunConfig, portable
from metaplastic.experiments.evaluate import (
    check_eval_tasks,
    cosine_to_reference,
    eval_key,
    evaluate,
    release_compiled,
    summarise,
)
from metaplastic.experiments.provenance import provenance
from metaplastic.experiments.rundir import RunDir
from metaplastic.interrupts import deferred
from metaplastic.meta import driver
from metaplastic.meta.memory import check_fits
from metaplastic.meta.objective import Objective
from metaplastic.plausibility import check_names
from metaplastic.rules.base import conform


def train(cfg: RunConfig, run: RunDir, progress: Callable[[list], None] | None = None,
          pieces=None, resume: bool = False) -> dict:
    """Meta-train; writes config, metrics, θ, a checkpoint after every chunk, summary and
    plots. Returns the summary.

    ``pieces``: the run's pieces if already built (``build(cfg)`` otherwise). ``resume``:
    continue from the run directory's ``checkpoint.npz`` (same numbers as a run that was
    never stopped). θ and the metrics so far are saved even when the run stops on NaN/inf,
    Ctrl-C or SIGTERM.
    """
    pieces = build(cfg) if pieces is None else pieces
    start = _Start(cfg, run, pieces, resume)
    status, result = "finished", None
    try:
        result = pieces.outer.run(pieces.objective, start.theta0, key=start.key,
                                  progress=start.on_chunk(progress), state=start.state,
                                  checkpoint=run.save_checkpoint)
    except NonFiniteError as e:
        status, result = f"diverged: {e}", e.result
        raise
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM from the command line
        status, result = "interrupted", getattr(e, "result", None)
        raise
    except Exception as e:
        status, result = f"crashed: {type(e).__name__}: {e}", getattr(e, "result", None)
        raise
    finally:
        summary = start.finish(result, status)
    return summary


def train_seeds(cfgs: list[RunConfig], runs: list[RunDir],
                progress: Callable[[int, list], None] | None = None, pieces=None,
                batching: str = "loop") -> list[dict]:
    """Meta-train several seeds of one configuration (``cfgs`` differ only in ``seed``)
    as one program (:mod:`metaplastic.meta.seeds`), each into its own run directory with
    everything :func:`train` writes. A seed that diverges stops alone (its summary says
    so). Returns the summaries."""
    from metaplastic.meta.seeds import run_seeds

    pieces = build(cfgs[0]) if pieces is None else pieces
    starts = [_Start(cfg, run, pieces, False) for cfg, run in zip(cfgs, runs, strict=True)]
    results, status = None, "finished"
    try:
        results = run_seeds(
            pieces.outer, pieces.objective, [s.theta0 for s in starts],
            [s.key for s in starts], batching=batching,
            progress=lambda i, records: starts[i].on_chunk(
                None if progress is None else lambda r: progress(i, r))(records),
            checkpoint=lambda i, state: runs[i].save_checkpoint(state))
    except KeyboardInterrupt as e:
        status, results = "interrupted", getattr(e, "results", None)
        raise
    except Exception as e:
        status = f"crashed: {type(e).__name__}: {e}"
        results = getattr(e, "results", None)
        raise
    finally:
        summaries = []
        for i, s in enumerate(starts):
            r = results[i] if results is not None else None
            why = status
            if r is not None and r.error is not None and status == "finished":
                why = f"diverged: {r.error}"
            summaries.append(s.finish(r, why))
    return summaries


class _Start:
    """One run's start (θ0, keys, resumed state, constraints) and its finish (θ, summary,
    plots): what :func:`train` and :func:`train_seeds` share."""

    def __init__(self, cfg: RunConfig, run: RunDir, pieces, resume: bool):
        self.cfg, self.run, self.pieces, self.resume = cfg, run, pieces, resume
        k_init, self.key = jax.random.split(jax.random.key(cfg.seed))
        self.theta0 = pieces.rule.init(k_init, pieces.network.shapes)
        self.state, self.resumed_at = None, None
        if resume:
            self.state = run.load_checkpoint(driver.init(pieces.outer, pieces.objective,
                                                         self.theta0, self.key))
            self.resumed_at = int(self.state.step)
            run.keep_metrics_until(self.resumed_at)
            self.constraints = run.read_json("summary.json").get("constraints", {})
        else:
            run.save_config(portable(cfg))
            self.constraints = check_constraints(cfg, pieces, self.theta0, run)
        self.started = time.perf_counter()

    def on_chunk(self, progress: Callable[[list], None] | None) -> Callable[[list], None]:
        def on_chunk(records):
            self.run.append_metrics(records)
            if progress is not None:
                progress(records)

        return on_chunk

    def finish(self, result, status: str) -> dict:
        """Save θ after the last whole chunk (θ0 only when not one meta-step was taken:
        the summary then says meta_steps 0), the summary and the plots."""
        cfg, pieces, run = self.cfg, self.pieces, self.run
        theta = result.theta if result is not None else self.theta0
        with deferred():  # a second Ctrl-C does not cut the saving of θ and summary short
            run.save_theta(theta)
            summary = _summary(cfg, pieces, theta, result, status,
                               time.perf_counter() - self.started, run.metrics())
            summary["constraints"] = self.constraints
            summary["provenance"] = provenance()
            if self.resume:
                summary["provenance"]["resumed_at_step"] = self.resumed_at
            summary["plot"] = {"score": pieces.task.score,
                               "theta_names": list(getattr(pieces.rule, "term_names", []))}
            run.write_json("summary.json", summary)
        from metaplastic.report import make_report  # matplotlib: only when plotting

        make_report(run.path)
        return summary


PLAUSIBILITY_STREAM = 4_000_037  # keys for the plausibility checks


def plausibility(cfg: RunConfig, pieces, theta, names=None) -> list:
    """Run the plausibility checks ``names`` (default: all) on a run's pieces."""
    from metaplastic.plausibility import check

    key = jax.random.fold_in(jax.random.key(cfg.seed), PLAUSIBILITY_STREAM)
    return check(names or (), pieces.network, pieces.rule, theta, pieces.task, key)


def check_constraints(cfg: RunConfig, pieces, theta, run: RunDir) -> dict[str, Any]:
    """The declared constraints, checked before training; recorded in the run directory.
    Raises ConstraintError (after recording) when one fails."""
    from metaplastic.plausibility import ConstraintError

    if not cfg.constraints:
        run.write_json("plausibility.json", {"declared": [], "results": []})
        return {}
    results = plausibility(cfg, pieces, theta, cfg.constraints)
    run.write_json("plausibility.json", {"declared": list(cfg.constraints),
                                         "results": [r.to_json() for r in results]})
    states = {r.constraint: ("holds" if r.holds else f"fails: {r.detail}") for r in results}
    failed = [r for r in results if not r.holds]
    if failed:
        run.write_json("summary.json", {"status": "stopped: a declared constraint fails",
                                        "constraints": states})
        raise ConstraintError("declared constraint(s) fail: " + "; ".join(
            f"{r.constraint}: {r.detail}" for r in failed))
    return states


def run_theta(run: RunDir, pieces) -> Any:
    """The run's θ, checked against what its rule's ``init`` gives (structure, shapes,
    numbers): a θ file of another rule, cut short or damaged is one clear error."""
    return conform(pieces.rule, run.theta(), pieces.network.shapes,
                   what=str(run.path / "theta.npz"))


def _summary(cfg, pieces, theta, result, status, seconds, hist) -> dict[str, Any]:
    rule = pieces.rule
    done = int(result.state.step) if result is not None and result.state is not None else 0
    out: dict[str, Any] = {
        "status": status,
        "seconds": round(seconds, 2),
        "meta_steps": done,
        "skipped_steps": sum(1 for r in hist if r.get("skipped")),
        "formula": rule.formula(theta),
    }
    if hist:
        tail = hist[-min(50, len(hist)):]
        vals = [r.get("task_loss") for r in tail]  # (NaN is saved as null)
        vals = [float("nan") if v is None else float(v) for v in vals]
        out["final_loss_mean50"] = sum(vals) / len(vals)
    if cfg.reference:
        ref = build_rule(cfg, cfg.reference)
        out["reference"] = cfg.reference
        ref_theta = ref.init(jax.random.key(0), pieces.network.shapes)
        same = (type(ref) is type(rule)
                and jax.tree.structure(ref_theta) == jax.tree.structure(theta)
                and all(jnp.shape(a) == jnp.shape(b) for a, b in
                        zip(jax.tree.leaves(ref_theta), jax.tree.leaves(theta), strict=True)))
        if same:
            out["reference_cosine"] = cosine_to_reference(theta, ref_theta)
        else:
            out["reference_note"] = (
                f"θ of rule {rule.family!r} is not comparable with {cfg.reference!r}'s "
                f"coefficients; `metaplastic explain RUN` distils it into a formula")
    return out


#: the baseline rule name that means "the run's own rule and θ" (for ablations)
LEARNED = "learned"
TUNE_STREAM = 2_000_003  # keys for tuning baselines: neither training nor evaluation


@dataclass(frozen=True)
class Baseline:
    """A comparison rule: a registered rule, its options, network changes, a tuning grid,
    or ``meta_train = true``: meta-trained like the run's own rule (same outer loop,
    budget and seed) — another learned rule family in the same table.

    ``rule = "learned"`` is the run's own rule with its meta-trained θ, under the
    baseline's ``network`` changes: the ablations that say what the learned rule uses
    (e.g. ``network = {feedback = "symmetric"}`` or ``{feedback = "none"}``)."""

    label: str
    rule: dict  # {"name": ..., options}
    network: dict  # [network] overrides, e.g. {"feedback": "symmetric"}
    tune: dict  # {rule option: [values]} searched on the meta-training tasks
    meta_train: bool = False

    @classmethod
    def parse(cls, spec: Any) -> Baseline:
        if isinstance(spec, str):
            return cls(spec, {"name": spec}, {}, {})
        if not isinstance(spec, dict) or "rule" not in spec:
            raise ConfigError(f"a baseline is a rule name or a table with 'rule' (and "
                              f"optionally 'label', 'network', 'tune', 'meta_train'); "
                              f"got {spec!r}")
        bad = sorted(set(spec) - {"label", "rule", "network", "tune", "meta_train"})
        if bad:
            raise ConfigError(f"baseline {spec!r}: unknown key(s) {bad}")
        rule = spec["rule"] if isinstance(spec["rule"], dict) else {"name": spec["rule"]}
        if not isinstance(rule.get("name"), str):
            raise ConfigError(f"baseline {spec!r}: the rule needs a 'name' (a string)")
        meta_train = spec.get("meta_train", False)
        if not isinstance(meta_train, bool):
            raise ConfigError(f"baseline {spec!r}: meta_train must be true or false")
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
        return cls(label, dict(rule), dict(network), dict(tune), meta_train)

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
        return dataclasses.replace(cfg, rule=rule, network=network, reference=None)


def _scaled(theta: Any, factor: float) -> Any:
    return jax.tree.map(lambda x: x * factor, theta)


def _eta_by_scaling(p, base: Baseline) -> bool:
    """Tuning only ``eta`` of a rule linear in θ: scale θ instead of recompiling."""
    return list(base.tune) == ["eta"] and getattr(p.rule, "linear_in_theta", False)


def tune_baseline(cfg: RunConfig, base: Baseline, n_tasks: int,
                  **overrides: Any) -> dict[str, Any]:
    """The grid point of ``base.tune`` with the best score on meta-training tasks (of the
    run's task, or of the task and network changed by ``overrides``)."""
    if not base.tune:
        return {}
    keys = list(base.tune)
    grid = [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(base.tune[k] for k in keys))]
    best, best_score = {}, None
    key = jax.random.fold_in(jax.random.key(cfg.seed), TUNE_STREAM)
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
                                   n_tasks=n_tasks))
        score = stats[p.task.score]["mean"]
        score = score if p.task.maximise_score else -score
        if math.isfinite(score) and (best_score is None or score > best_score):
            best, best_score = point, score
    release_compiled()
    return best


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


def meta_trained_baseline(cfg: RunConfig, base: Baseline, run: RunDir | None) -> Any:
    """θ of a ``meta_train`` baseline: trained with the run's outer loop, budget and seed,
    and kept in the run directory (``baseline-<label>.npz``) so evaluation reuses it."""
    from metaplastic.experiments.rundir import load_theta, save_theta

    path = None
    if run is not None:
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in base.label)
        path = run.path / f"baseline-{safe}.npz"
        if path.exists():
            return load_theta(path)
    p = build(base.config(cfg))
    k_init, k_meta = jax.random.split(jax.random.key(cfg.seed))
    theta = p.outer.run(p.objective, p.rule.init(k_init, p.network.shapes), key=k_meta).theta
    if path is not None:
        save_theta(path, theta)
    return theta


def _on_training_classes(cfg: RunConfig, var: dict) -> dict:
    """A row's task and network changes, on the meta-training classes where the task
    has class splits (where baselines are tuned)."""
    from metaplastic import tasks

    if "classes" in tasks.options(cfg.task["name"]):
        return {**var, "classes": "train"}
    return dict(var)


def validate_baselines(cfg: RunConfig) -> None:
    for spec in cfg.eval.baselines:
        base = Baseline.parse(spec)
        for point in [{}] + [{k: v[0]} for k, v in base.tune.items() if v]:
            build(base.config(cfg, **point))


def evaluate_run(run: RunDir, n_tasks: int | None = None, baselines=None) -> list[dict]:
    """Evaluate a run's θ and the baselines on held-out tasks; writes eval.json.

    Baselines with a ``tune`` grid are tuned first on meta-training tasks (the run's own
    task configuration, with keys used neither by training nor by evaluation).
    """
    cfg = run.config()
    theta = run_theta(run, build(cfg))
    n = n_tasks or cfg.eval.tasks
    check_eval_tasks(n, "--tasks" if n_tasks else "eval.tasks")
    specs = [Baseline.parse(b) for b in (cfg.eval.baselines if baselines is None
                                         else baselines)]
    rows_of = variants(cfg)
    per_variant = cfg.eval.tune_per_variant
    if per_variant:  # every row's own learning rate, found on its meta-training classes
        tuned = {(b.label, label): tune_baseline(cfg, b, n, **_on_training_classes(cfg, var))
                 for b in specs for label, var in rows_of}
    else:
        tuned = {(b.label, ""): tune_baseline(cfg, b, n) for b in specs}
    trained = {b.label: meta_trained_baseline(cfg, b, run) for b in specs if b.meta_train}
    rows = []
    for i, (label, var) in enumerate(rows_of):
        key = jax.random.fold_in(eval_key(cfg.seed), i)
        pieces = build(cfg, **var)
        candidates = [("learned", pieces, theta, {})]
        for b in specs:
            chosen = tuned[b.label, label if per_variant else ""]
            p, th = baseline_pieces(cfg, b, chosen, **var)
            if b.meta_train:
                th = trained[b.label]
            elif b.learned:
                th = theta
            candidates.append((b.label, p, th, chosen))
        for name, p, th, chosen in candidates:
            objective = Objective(p.task, p.network, p.rule)
            stats = summarise(evaluate(objective, th, key=key, n_tasks=n))
            row = {"rule": name, "variant": label, "score": p.task.score, **stats}
            if chosen:
                row["tuned"] = chosen
            rows.append(row)
        release_compiled()  # programs of this row's shapes are not needed again
    run.write_json("eval.json", {"tasks_per_row": n, "rows": rows})
    from metaplastic.report import plot_eval  # matplotlib: only when plotting

    plot_eval(run.path)
    return rows


def validate(cfg: RunConfig) -> Pieces:
    """Build everything a run will need — pieces, reference and baseline rules, the
    evaluation variants — so that a bad name or value fails before any training."""
    pieces = build(cfg)
    pieces.outer.check(pieces.objective)
    check_fits(pieces.outer, pieces.objective, pieces.objective.theta_like)
    check_names(cfg.constraints)
    if cfg.reference:
        build_rule(cfg, cfg.reference)
    validate_baselines(cfg)
    check_eval_tasks(cfg.eval.tasks, "eval.tasks")
    for _, var in variants(cfg):
        build(cfg, **var)
    return pieces
