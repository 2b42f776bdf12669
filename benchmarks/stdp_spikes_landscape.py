"""Why `infer-stdp-spikes` ends short of the truth: the loss along the straight line from
θ = 0 to the simulated truth, and the cosine of the surrogate meta-gradient's descent
direction with that line, on all 18 training trajectories at once.

    python benchmarks/stdp_spikes_landscape.py [--all-terms]

``--all-terms`` fits the whole 32-term spike-trace polynomial instead of the preset's
4-term STDP family. JSON: benchmarks/results/stdp_spikes_landscape[_all_terms].json.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax
import numpy as np
from _cli import write_results
from jax.flatten_util import ravel_pytree

from metaplastic.experiments import presets
from metaplastic.experiments.build import build
from metaplastic.experiments.recordings import truth
from metaplastic.rules.base import conform

RESULTS = Path(__file__).resolve().parent / "results"
POINTS = (0.0, 0.3, 0.7, 1.0, 1.3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all-terms", action="store_true")
    ap.add_argument("--keys", type=int, default=3, help="batches (keys) per point")
    args = ap.parse_args()
    cfg = presets.get("infer-stdp-spikes")
    rule = {**cfg.rule, "exclude": []} if args.all_terms else cfg.rule
    cfg = dataclasses.replace(cfg, rule=rule, meta={**cfg.meta, "tasks_per_step": 18})
    pieces = build(cfg)
    _, theta_true, _, _ = truth(cfg.task["simulate"], cfg.network)
    true_vec, unravel = ravel_pytree(conform(pieces.rule, theta_true, pieces.network.shapes))
    value_grad = jax.jit(pieces.objective.value_and_grad)
    rows = []
    for a in POINTS:
        losses, cosines = [], []
        towards = np.asarray((1.0 - a) * true_vec, np.float64)
        for k in range(args.keys):
            out = value_grad(unravel(a * true_vec), jax.random.key(k))
            g = np.asarray(ravel_pytree(out[-1])[0], np.float64)
            losses.append(float(out[0]))
            if np.linalg.norm(towards) > 0 and np.linalg.norm(g) > 0:
                cosines.append(float(-g @ towards / (np.linalg.norm(g)
                                                      * np.linalg.norm(towards))))
        rows.append({"along": a, "loss": float(np.mean(losses)),
                     "descent_cosine_with_truth": cosines or None})
        print(f"{a:.1f} x truth: loss {np.mean(losses):.4g}, cosine of -gradient with the "
              f"way to the truth {np.round(cosines, 4).tolist()}", flush=True)
    name = "stdp_spikes_landscape" + ("_all_terms" if args.all_terms else "")
    out = {"command": "python benchmarks/stdp_spikes_landscape.py"
                      + (" --all-terms" if args.all_terms else ""),
           "terms": int(true_vec.size), "trajectories_per_batch": 18, "points": rows}
    write_results(RESULTS / f"{name}.json", out)
    print(f"wrote benchmarks/results/{name}.json")


if __name__ == "__main__":
    main()
