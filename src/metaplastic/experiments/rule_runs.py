"""What a rule run (the ``rule`` and ``inference`` studies) adds to the lifecycle: its
checks before training (declared constraints), its summary (formula, reference), the
episode recorded for the figures, and held-out evaluation against baselines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metaplastic import streams
from metaplastic.analysis.plausibility import check_names
from metaplastic.capabilities import term_names
from metaplastic.errors import ConfigError
from metaplastic.experiments.baselines import (
    Baseline,
    baseline_pieces,
    grid_edges,
    meta_trained_baseline,
    on_training_classes,
    tune_baseline,
    tune_points,
    validate_baselines,
)
from metaplastic.experiments.build import Pieces, build, build_rule, variants
from metaplastic.experiments.config import RunConfig, apply_assignments, from_dict, to_dict
from metaplastic.experiments.evaluate import (
    check_eval_tasks,
    cosine_to_reference,
    eval_key,
    evaluate,
    release_compiled,
    summarise,
)
from metaplastic.experiments.rundir import RunDir
from metaplastic.meta import driver
from metaplastic.meta.memory import check_fits
from metaplastic.meta.objective import Objective
from metaplastic.progress import reporting
from metaplastic.rules.base import conform
from metaplastic.rules.composed import synapses_part


def record_episode(cfg: RunConfig, pieces, theta, theta0, run: RunDir) -> str:
    """Record inner learning for the figures (``episode.npz``); says what happened. A
    failure here does not lose the trained run: it is reported in the summary."""
    from metaplastic.experiments import episode
    from metaplastic.report.learning import FILE

    try:
        episode.save(run.path / FILE, episode.record(cfg, pieces, theta, theta0))
    except (ValueError, TypeError, NotImplementedError) as e:
        return f"not recorded: {type(e).__name__}: {e}"
    return f"recorded in {FILE}"




def plausibility(cfg: RunConfig, pieces, theta, names=None) -> list:
    """Run the plausibility checks ``names`` (default: all) on a run's pieces."""
    from metaplastic.analysis.plausibility import check

    key = streams.stream_key(cfg.seed, streams.PLAUSIBILITY)
    return check(names or (), pieces.network, pieces.rule, theta, pieces.task, key)


def check_constraints(cfg: RunConfig, pieces, theta, run: RunDir) -> dict[str, Any]:
    """The declared constraints, checked before training; recorded in the run directory.
    Raises ConstraintError (after recording) when one fails."""
    from metaplastic.analysis.plausibility import ConstraintError

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


def run_theta(run: RunDir, pieces, which: str = "saved") -> Any:
    """The run's θ, checked against what its rule's ``init`` gives (structure, shapes,
    numbers): a θ file of another rule, cut short or damaged is one clear error.
    ``which = "last"``: the last meta-step's θ, from the checkpoint (keep-best's θ is the
    saved one)."""
    if which == "last":
        like = driver.init(pieces.outer, pieces.objective,
                           pieces.rule.init(jax.random.key(0), pieces.network.shapes),
                           jax.random.key(0))
        try:
            state = run.load_checkpoint(like)
        except ConfigError as e:
            raise ConfigError(f"eval.theta = 'last' needs the run's checkpoint: {e}") from None
        return conform(pieces.rule, pieces.outer.theta(state.outer), pieces.network.shapes,
                       what=str(run.path / "checkpoint.npz"))
    return conform(pieces.rule, run.theta(), pieces.network.shapes,
                   what=str(run.path / "theta.npz"))


def summary(cfg: RunConfig, pieces, theta, hist: list[dict]) -> dict[str, Any]:
    """A rule run's summary entries: the learned formula, the final meta-loss, the
    comparison with the reference rule, and what the plots need."""
    rule = pieces.rule
    out: dict[str, Any] = {
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
        rule, theta = synapses_part(rule, theta)  # e.g. without a fitted start
        same = (type(ref) is type(rule)
                and jax.tree.structure(ref_theta) == jax.tree.structure(theta)
                and all(jnp.shape(a) == jnp.shape(b) for a, b in
                        zip(jax.tree.leaves(ref_theta), jax.tree.leaves(theta), strict=True)))
        if same:
            out["reference_cosine"] = cosine_to_reference(theta, ref_theta)
            flat = ravel_pytree(ref_theta)[0]
            if flat.size <= driver.THETA_LOG_MAX:  # for the coefficient plot
                out["reference_theta"] = [float(v) for v in np.asarray(flat)]
        else:
            out["reference_note"] = (
                f"θ of rule {rule.family!r} is not comparable with {cfg.reference!r}'s "
                f"coefficients; `metaplastic explain RUN` distils it into a formula")
    out["plot"] = {"score": pieces.task.score, "theta_names": term_names(pieces.rule)}
    return out


def evaluate_run(run: RunDir, n_tasks: int | None = None, baselines=None,
                 progress: Callable[[int, int, str], None] | bool | None = None,
                 sets: tuple[str, ...] = (), name: str = "eval") -> list[dict]:
    """:func:`_evaluate_run` with the library's progress contract
    (:mod:`metaplastic.progress`): ``progress(done, total, what)``, ``None`` a bar on a
    terminal, ``False`` silent."""
    with reporting(progress, "evaluating") as report:
        return _evaluate_run(run, n_tasks, baselines, report, sets, name)


def _evaluate_run(run: RunDir, n_tasks: int | None, baselines,
                  progress: Callable[[int, int, str], None] | None,
                  sets: tuple[str, ...], name: str) -> list[dict]:
    """Evaluate a run's θ and the baselines on held-out tasks; writes ``NAME.json``
    (default ``eval.json``; with ``sets`` it also records the evaluation settings used).

    ``sets``: ``eval.KEY=VALUE`` overrides (other rows, baselines or controls for a
    trained run; only ``eval.*`` keys: training is not redone). Baselines with a ``tune``
    grid are tuned first on meta-training tasks (the run's own task configuration, with
    keys used neither by training nor by evaluation). ``progress(done, total, what)``
    follows every tuning point and every table cell.
    """
    cfg, file_stem = run.config(), name
    if sets:
        cfg = eval_overrides(cfg, sets)
    theta = run_theta(run, build(cfg), cfg.eval.theta)
    n = n_tasks or cfg.eval.tasks
    check_eval_tasks(n, "--tasks" if n_tasks else "eval.tasks")
    specs = [Baseline.parse(b) for b in (cfg.eval.baselines if baselines is None
                                         else baselines)]
    rows_of = variants(cfg)
    per_variant = cfg.eval.tune_per_variant
    total = (sum(tune_points(b) for b in specs) * (len(rows_of) if per_variant else 1)
             + len(rows_of) * (1 + len(specs) + sum(b.meta_train == "row" for b in specs)))
    done = [0]

    def step(what: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total, what)

    if per_variant:  # every row's own learning rate, found on its meta-training classes
        tuned = {(b.label, label): tune_baseline(cfg, b, n, step,
                                                 **on_training_classes(cfg, var))
                 for b in specs for label, var in rows_of}
    else:
        tuned = {(b.label, ""): tune_baseline(cfg, b, n, step) for b in specs}
    trained = {(b.label, ""): meta_trained_baseline(cfg, b, run)
               for b in specs if b.meta_train is True}
    once: dict = {}  # rows with the same meta-training classes share one training
    for b in (b for b in specs if b.meta_train == "row"):
        for label, var in rows_of:
            same = (b.label, json.dumps(on_training_classes(cfg, var), sort_keys=True,
                                        default=str))
            if same not in once:
                once[same] = meta_trained_baseline(cfg, b, run, (label, var))
            trained[b.label, label] = once[same]
            step(f"meta-trained {b.label} for {label}")
    rows = []
    bound = cfg.meta_section.build_guard().weight_bound  # what counts as diverged
    for i, (label, var) in enumerate(rows_of):
        key = jax.random.fold_in(eval_key(cfg.seed), i)
        pieces = build(cfg, **var)
        candidates = [("learned", pieces, theta, {})]
        for b in specs:
            chosen = tuned[b.label, label if per_variant else ""]
            p, th = baseline_pieces(cfg, b, chosen, **var)
            if b.meta_train:
                th = trained[b.label, label if b.meta_train == "row" else ""]
            elif b.learned:
                th = theta
            candidates.append((b.label, p, th, chosen))
        for name, p, th, chosen in candidates:
            objective = Objective(p.task, p.network, p.rule)
            stats = summarise(evaluate(objective, th, key=key, n_tasks=n), bound)
            row = {"rule": name, "variant": label, "score": p.task.score, **stats,
                   "each_once": p.task.instance_ids() is not None}
            if chosen:
                row["tuned"] = chosen
                edges = grid_edges(next(b for b in specs if b.label == name), chosen)
                if edges:
                    row["tuned_on_grid_edge"] = edges
            rows.append(row)
            step(f"{name} on {label}")
        release_compiled()  # programs of this row's shapes are not needed again
    counts = sorted({r["tasks"] for r in rows}) or [n]  # recordings: their trajectories
    per_row = counts[0] if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    out: dict = {"tasks_per_row": per_row, "rows": rows}
    if sets:
        out["eval_settings"] = json.loads(json.dumps(to_dict(cfg)["eval"], default=str))
    run.write_json(f"{file_stem}.json", out)
    from metaplastic.report import plot_eval  # matplotlib: only when plotting

    plot_eval(run.path, file_stem)
    return rows


def eval_overrides(cfg: RunConfig, sets: tuple[str, ...]) -> RunConfig:
    """``cfg`` with ``eval.KEY=VALUE`` overrides (one ConfigError for any other key)."""
    other = [s for s in sets if not s.strip().startswith("eval.")]
    if other:
        raise ConfigError(f"metaplastic eval --set takes eval.* keys only (training is not "
                          f"redone); got {', '.join(map(repr, other))}")
    cfg = from_dict(apply_assignments(to_dict(cfg), list(sets)))
    validate_baselines(cfg)
    for _, var in variants(cfg):
        build(cfg, **var)
    return cfg


def validate(cfg: RunConfig, evaluation: bool = True) -> Pieces:
    """Build everything a run will need — pieces, reference and baseline rules, the
    evaluation variants — so that a bad name or value fails before any training.
    ``evaluation = False`` (``--no-eval``): the evaluation's baselines and rows are not
    built (``metaplastic eval`` checks them when it runs)."""
    pieces = build(cfg)
    pieces.outer.check(pieces.objective)
    check_fits(pieces.outer, pieces.objective, pieces.objective.theta_like)
    check_names(cfg.constraints)
    if cfg.reference:
        build_rule(cfg, cfg.reference)
    check_eval_tasks(cfg.eval.tasks, "eval.tasks")
    for spec in cfg.eval.baselines:  # their form even when not evaluated now (--no-eval)
        Baseline.parse(spec)
    if not evaluation:
        return pieces
    validate_baselines(cfg)
    check_eval_tasks(cfg.eval.tasks, "eval.tasks")
    for _, var in variants(cfg):
        build(cfg, **var)
    return pieces
