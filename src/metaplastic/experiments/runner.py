"""Meta-train a configured run into a run directory, and evaluate a finished run.

Pure pieces return numbers; this module is the edge that writes files. Progress goes to
an optional ``progress(records)`` callback (the CLI draws a progress bar with it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax

from metaplastic.errors import NonFiniteError
from metaplastic.experiments.build import build, build_rule, variants
from metaplastic.experiments.config import RunConfig
from metaplastic.experiments.evaluate import (
    cosine_to_reference,
    eval_key,
    evaluate,
    summarise,
)
from metaplastic.experiments.rundir import RunDir
from metaplastic.meta.objective import Objective


def train(cfg: RunConfig, run: RunDir, progress: Callable[[list], None] | None = None) -> dict:
    """Meta-train; writes config, metrics, θ, summary and plots. Returns the summary.

    θ and the metrics so far are saved even when the run stops on NaN/inf or Ctrl-C.
    """
    pieces = build(cfg)
    run.save_config(cfg)
    k_init, k_meta = jax.random.split(jax.random.key(cfg.seed))
    theta0 = pieces.rule.init(k_init, pieces.network.shapes)
    start = time.perf_counter()

    def on_chunk(records):
        run.append_metrics(records)
        if progress is not None:
            progress(records)

    status, result = "finished", None
    try:
        result = pieces.outer.run(pieces.objective, theta0, key=k_meta, progress=on_chunk)
    except NonFiniteError as e:
        status, result = f"stopped: {e}", e.result
        raise
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        theta = result.theta if result is not None else theta0
        run.save_theta(theta)
        summary = _summary(cfg, pieces, theta, result, status, time.perf_counter() - start)
        run.write_json("summary.json", summary)
        from metaplastic.report import make_report

        make_report(run)
    return summary


def _summary(cfg, pieces, theta, result, status, seconds) -> dict[str, Any]:
    rule = pieces.rule
    hist = result.history if result is not None else []
    out: dict[str, Any] = {
        "status": status,
        "seconds": round(seconds, 2),
        "meta_steps": len(hist),
        "skipped_steps": sum(1 for r in hist if r["skipped"]),
        "formula": rule.formula(theta),
    }
    if hist:
        tail = hist[-min(50, len(hist)):]
        out["final_loss_mean50"] = sum(r["task_loss"] for r in tail) / len(tail)
    if cfg.reference:
        ref = build_rule(cfg, cfg.reference)
        out["reference"] = cfg.reference
        ref_theta = ref.init(jax.random.key(0), pieces.network.shapes)
        out["reference_cosine"] = cosine_to_reference(theta, ref_theta)
    return out


def evaluate_run(run: RunDir, n_tasks: int | None = None, baselines=None) -> list[dict]:
    """Evaluate a run's θ (and baseline rules) on held-out tasks; writes eval.json."""
    cfg = run.config()
    theta = run.theta()
    n = n_tasks or cfg.eval.tasks
    names = cfg.eval.baselines if baselines is None else baselines
    rows = []
    for i, (label, var) in enumerate(variants(cfg)):
        pieces = build(cfg, **var)
        key = jax.random.fold_in(eval_key(cfg.seed), i)
        candidates = [("learned", pieces.rule, theta)]
        for name in names:
            rule = build_rule(cfg, name)
            candidates.append((name, rule, rule.init(jax.random.key(0), pieces.network.shapes)))
        for name, rule, th in candidates:
            objective = Objective(pieces.task, pieces.network, rule)
            stats = summarise(evaluate(objective, th, key=key, n_tasks=n))
            rows.append({"rule": name, "variant": label, "score": pieces.task.score, **stats})
    run.write_json("eval.json", {"tasks_per_row": n, "rows": rows})
    return rows
