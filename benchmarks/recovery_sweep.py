"""How well a rule is recovered from recordings, as the recordings get sparser, noisier
and fewer: the ``infer-oja-activity`` setting (4 linear neurons learning under Oja's rule,
27-term polynomial fitted from θ = 0) with one of its recording parameters changed.

    python benchmarks/recovery_sweep.py [--steps 300] [--replicates 3] [--plot-only]

Axes (the others at the preset's values: 50% of neurons recorded, 10% noise, fits to 8
trajectories): ``record`` (fraction of the 4 neurons recorded: 0.25, 0.5, 1), ``noise``
(measurement noise, fraction of the activity's SD: 0, 0.1, 0.3, 1), ``trajectories``
(trajectories fitted: 1, 2, 4, 8, 16, 32). Each point: ``--replicates`` fits, each to
another random subset of the 32 training trajectories (all replicates of one setting in
one program, :func:`metaplastic.analysis.recovery_scores.refit`), ``--steps`` meta-steps of
the preset's Adam (fewer than the preset's 1000: the sweep is about trends). Scores: cosine between
the inferred and Oja's coefficients; held-out activity R² (the 8 held-out trajectories,
each once) beside the truth's (the ceiling under that noise).

Writes benchmarks/results/recovery_sweep.json and docs/figures/recovery_sweep.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
from _cli import write_results
from jax.flatten_util import ravel_pytree

from metaplastic.analysis import recovery_scores as recovery
from metaplastic.experiments import presets, recordings
from metaplastic.experiments.build import build
from metaplastic.experiments.evaluate import coefficient_cosine
from metaplastic.experiments.lifecycle import run_keys

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "recovery_sweep.json"
FIG = ROOT / "docs" / "figures" / "recovery_sweep.png"
AXES = {"record": [0.25, 0.5, 1.0], "noise": [0.0, 0.1, 0.3, 1.0],
        "trajectories": [1, 2, 4, 8, 16, 32]}
FITTED = 8  # trajectories fitted on the record and noise axes


def setting(axis: str, value, steps: int):
    base = presets.get("infer-oja-activity")
    spec = dict(base.task["simulate"])
    if axis != "trajectories":
        spec[axis] = value
    return dataclasses.replace(base, task={**base.task, "simulate": spec},
                               meta={**base.meta, "steps": steps})


def run_setting(axis: str, values: list, steps: int, replicates: int) -> list[dict]:
    """One program per recordings (record, noise) or one for every count (trajectories)."""
    out = []
    groups = [[v] for v in values] if axis != "trajectories" else [values]
    for group in groups:
        cfg = setting(axis, group[0], steps)
        pieces = build(cfg)
        task = pieces.objective.task
        train, held = np.asarray(task.indices), np.asarray(
            dataclasses.replace(task, split="heldout").indices)
        rng = np.random.default_rng(0)
        counts = [int(v) if axis == "trajectories" else FITTED for v in group]
        rows = [(c, rng.permutation(train)[:c]) for c in counts for _ in range(replicates)]
        width = max(c for c, _ in rows)
        pools = np.stack([np.resize(p, width) for _, p in rows])
        k_init, key = run_keys(cfg)
        theta0 = pieces.rule.init(k_init, pieces.network.shapes)
        started = time.perf_counter()
        thetas, _ = recovery.refit(pieces.objective, pieces.outer, theta0, pools,
                                   [c for c, _ in rows], key)
        seconds = time.perf_counter() - started
        t_rule, t_theta, t_net, _ = recordings.truth(cfg.task["simulate"], cfg.network)
        truth = np.asarray(ravel_pytree(t_theta)[0])
        score_key = jax.random.key(1)
        ceiling = float(np.mean(recovery.per_trajectory(pieces.objective, t_theta, held,
                                                        score_key, t_net, t_rule)["r2"]))
        for j, (c, _) in enumerate(rows):
            theta = jax.tree.map(lambda x, j=j: x[j], thetas)
            flat = np.asarray(ravel_pytree(theta)[0])
            r2 = recovery.per_trajectory(pieces.objective, theta, held, score_key)["r2"]
            out.append({"axis": axis, "value": group[0] if axis != "trajectories" else c,
                        "replicate": j % replicates, "fitted": c,
                        "cosine": coefficient_cosine(flat, truth),
                        "heldout_r2": float(np.mean(r2)), "truth_r2": ceiling})
        print(f"{axis:12s} {group}: {len(rows)} fits in {seconds:.0f} s; cosines "
              + " ".join(f"{r['cosine']:.3f}" for r in out[-len(rows):]), flush=True)
    return out


def plot(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    labels = {"record": "fraction of neurons recorded", "noise": "noise (fraction of SD)",
              "trajectories": "trajectories fitted"}
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharey="row")
    for col, axis in enumerate(AXES):
        sel = [r for r in rows if r["axis"] == axis]
        values = sorted({r["value"] for r in sel})
        x = np.arange(len(values))
        for row, (metric, name) in enumerate((("cosine", "cosine with Oja's coefficients"),
                                              ("heldout_r2", "held-out activity R²"))):
            ax = axes[row, col]
            per = [[r[metric] for r in sel if r["value"] == v] for v in values]
            ax.plot(np.repeat(x, [len(p) for p in per]), [v for p in per for v in p], "o",
                    color="C0", alpha=0.5, label="each fit")
            ax.plot(x, [np.mean(p) for p in per], "-", color="C0", label="mean")
            if metric == "heldout_r2":
                ax.plot(x, [np.mean([r["truth_r2"] for r in sel if r["value"] == v])
                            for v in values], "--", color="k", label="the true rule")
            ax.set_xticks(x, [f"{v:g}" for v in values])
            ax.set_xlabel(labels[axis])
            if col == 0:
                ax.set_ylabel(name)
            ax.legend(fontsize=7)
    fig.suptitle(f"recovering Oja's rule from recordings ({data['steps']} meta-steps, "
                 f"{data['replicates']} fits per point)")
    fig.tight_layout()
    FIG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--replicates", type=int, default=3)
    p.add_argument("--axes", nargs="+", default=list(AXES), choices=list(AXES))
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    if not args.plot_only:
        rows = [r for axis in args.axes for r in run_setting(axis, AXES[axis], args.steps,
                                                             args.replicates)]
        write_results(OUT, {"steps": args.steps, "replicates": args.replicates,
                            "jax": jax.__version__, "rows": rows})
    plot(json.loads(OUT.read_text()))
    print(f"wrote {OUT} and {FIG}")


if __name__ == "__main__":
    main()
