"""The learned evolution strategy against hand-designed ones, on rule searches it never saw.

    python benchmarks/bench_learned_es.py [--seeds 5] [--searches oja fa-digits cartpole]
                                          [--quick] [--plot-only]

Held-out searches (none was used to train the shipped selection network φ, which saw
analytic functions and delta-rule searches only):

* ``oja``: the ``oja`` preset's task, 27-term polynomial rule and L1 penalty, 4 tasks per
  generation, population 16, 150 generations, sigma 0.1;
* ``fa-digits``: the ``fa-digits`` preset's 6-number term-pool rule (FA network, 5-way
  10-shot digits, classes 0-4), 8 tasks per generation, population 16, 100 generations;
* ``cartpole``: the ``cartpole-hebbian`` preset (ABCD rule, 6,080 numbers, RL: no gradient
  exists), 1 episode per generation, population 64, 100 generations.

Strategies at **equal numbers of fitness evaluations** (the same population and
generations; one evaluation = one member's objective on one generation's tasks): the
learned ES (shipped φ; only sigma to set), OpenAI-ES, SNES, CMA-ES (not on cartpole: a
6,080² covariance), and evosax's own learned ES (LES, its shipped meta-evolved
parameters). Hand-designed settings are the presets' (OpenAI-ES lr 0.05, cartpole 0.2 as
published; CMA-ES/SNES/LES their defaults with the same initial sigma).

Per search, strategy and seed: the search mean's fitness every generation (on that
generation's tasks), the best and final fitness, the final mean's held-out score (oja:
loss on 64 fresh tasks with 25 inputs; fa-digits: accuracy on 64 tasks of the held-out
classes 5-9; cartpole: return over 64 fresh episodes; for oja also the |cosine| of the
found coefficients with Oja's rule; and the score on 64 fresh tasks of the training
kind: oja's loss with 10 inputs, fa-digits' accuracy on classes 0-4), and the time per
generation
(median over chunks after the first, which compiles). Mean ± 95% CI over seeds (t).
Writes benchmarks/results/learned_es.json and docs/figures/learned_es.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from _cli import write_results

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "learned_es.json"
FIG = ROOT / "docs" / "figures" / "learned_es.png"

SEARCHES = {
    "oja": dict(preset="oja-es", population=16, generations=150, sigma=0.1, lr=0.05,
                tasks=4, heldout={"n_in": 25}, heldout_metric="loss"),
    "fa-digits": dict(preset="fa-digits", population=16, generations=100, sigma=0.1,
                      lr=0.05, tasks=8, heldout={"classes": "heldout"},
                      heldout_metric="accuracy"),
    "cartpole": dict(preset="cartpole-hebbian", population=64, generations=100, sigma=0.1,
                     lr=0.2, tasks=1, heldout={}, heldout_metric="return"),
}
STRATEGIES = {
    "learned-es": dict(outer="learned-es"),
    "openai-es": dict(outer="es", strategy="open_es", fitness_shaping="centered_rank"),
    "snes": dict(outer="es", strategy="snes"),
    "cma-es": dict(outer="es", strategy="cma_es"),
    "evosax-les": dict(outer="es", strategy="LES"),
}


def _ci(values) -> tuple[float, float]:
    from metaplastic._stats import mean_ci

    return mean_ci(values)[:2]


def _config(search: dict, strategy: dict, seed: int, generations: int):
    from metaplastic.experiments import config, presets

    meta = {**strategy, "population": search["population"], "sigma": search["sigma"],
            "steps": generations, "tasks_per_step": search["tasks"], "chunk": 10}
    if strategy["outer"] == "es" and strategy.get("strategy") in ("open_es", "snes"):
        meta["lr"] = search["lr"]
    base = presets.get(search["preset"])
    meta["l1"] = base.meta.get("l1", 0.0)
    import dataclasses

    cfg = dataclasses.replace(base, meta=meta, seed=seed)
    return config.from_dict(config.to_dict(cfg))


def run_one(name: str, strategy: str, seed: int, generations: int) -> dict:
    from metaplastic.experiments.build import build

    search = SEARCHES[name]
    cfg = _config(search, STRATEGIES[strategy], seed, generations)
    pieces = build(cfg)
    k_init, k_meta = jax.random.split(jax.random.key(cfg.seed))
    theta0 = pieces.rule.init(k_init, pieces.network.shapes)
    stamps = []
    res = pieces.outer.run(pieces.objective, theta0, key=k_meta,
                           progress=lambda recs: stamps.append(time.perf_counter()),
                           guard=cfg.meta_section.build_guard())  # the preset's bounds
    chunk_times = np.diff(stamps) / 10 if len(stamps) > 2 else [float("nan")]
    curve = [r["loss"] for r in res.history]
    heldout_cfg = _config(search, STRATEGIES[strategy], seed, generations)
    import dataclasses

    heldout_cfg = dataclasses.replace(heldout_cfg,
                                      meta={**heldout_cfg.meta, "tasks_per_step": 64})
    metric = search["heldout_metric"]

    def score(**overrides):
        pieces_h = build(heldout_cfg, **overrides)
        _, aux = jax.jit(pieces_h.objective.__call__)(res.theta, jax.random.key(99_991 + seed))
        return float(aux["task_loss"] if metric == "loss" else aux[metric])

    heldout = score(**search["heldout"])
    same = score() if search["heldout"] else heldout  # fresh tasks of the training kind
    out = {"curve": curve, "best": float(np.nanmin(curve)), "final": float(curve[-1]),
           "heldout": heldout, "fresh_tasks": same,
           "seconds_per_generation": float(np.median(chunk_times)),
           "evaluations_per_generation": search["population"]}
    if cfg.reference:  # oja: |cosine| of the found coefficients with the reference rule's
        ref = np.ravel(pieces.rule.coefficients(cfg.reference))
        found = np.ravel(np.asarray(res.theta["coef"]))
        out["reference_cosine"] = float(abs(found @ ref) / (np.linalg.norm(found)
                                                             * np.linalg.norm(ref) + 1e-12))
    return out


def summarise(runs: list[dict]) -> dict:
    from metaplastic._stats import t95

    curves = np.array([r["curve"] for r in runs], float)
    extra = {"reference_cosine": _ci([r["reference_cosine"] for r in runs])} \
        if "reference_cosine" in runs[0] else {}
    return {"best": _ci([r["best"] for r in runs]), "final": _ci([r["final"] for r in runs]),
            "heldout": _ci([r["heldout"] for r in runs]),
            "fresh_tasks": _ci([r["fresh_tasks"] for r in runs]), **extra,
            "seconds_per_generation": statistics.median(r["seconds_per_generation"]
                                                        for r in runs),
            "curve_mean": np.nanmean(curves, 0).tolist(),
            "curve_ci": [float(t95(len(runs)) * s / math.sqrt(len(runs)))
                         for s in np.nanstd(curves, 0, ddof=1)] if len(runs) > 1 else [],
            "seeds": [{k: v for k, v in r.items() if k != "curve"} for r in runs]}


def _smooth(y, k=5):
    y = np.asarray(y, float)
    return np.convolve(np.pad(y, (k - 1, 0), mode="edge"), np.ones(k) / k, mode="valid")


def budget_ratio(results: dict) -> dict:
    """Per search: the share of the budget the learned ES needs to reach the best
    hand-designed strategy's final fitness (running mean of 5 generations, mean over
    seeds; ``None`` if it never does)."""
    out = {}
    for name, by in results.items():
        if "learned-es" not in by:
            continue
        hand = {s: _smooth(v["curve_mean"])[-1] for s, v in by.items()
                if s not in ("learned-es", "evosax-les")}
        if not hand:
            continue
        best_s = min(hand, key=hand.get)
        ours = _smooth(by["learned-es"]["curve_mean"])
        hit = np.nonzero(ours <= hand[best_s])[0]
        out[name] = {"best_hand_designed": best_s, "its_final": float(hand[best_s]),
                     "learned_reaches_it_at": None if not hit.size else
                     float((hit[0] + 1) / len(ours)),
                     "generation_time_ratio_vs_openai_es":
                         by["learned-es"]["seconds_per_generation"]
                         / by["openai-es"]["seconds_per_generation"]
                         if "openai-es" in by else None}
    return out


def plot(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.9), squeeze=False)
    for ax, (name, by) in zip(axes[0], results.items(), strict=True):
        for strategy, v in by.items():
            color = f"C{list(STRATEGIES).index(strategy)}"
            y = _smooth(v["curve_mean"])
            x = np.arange(1, len(y) + 1) * SEARCHES[name]["population"]
            ax.plot(x, y, color=color, label=strategy, lw=2 if strategy == "learned-es" else 1)
            if v["curve_ci"]:
                ci = _smooth(v["curve_ci"])
                low = np.maximum(y - ci, y / 10) if name == "oja" else y - ci
                ax.fill_between(x, low, y + ci, color=color, alpha=0.12)
        ax.set(xlabel="fitness evaluations", ylabel="meta-loss of the search mean",
               title=f"{name} ({data['seeds']} seeds, 95% CI)")
        if name == "oja":
            ax.set(yscale="log", ylabel="meta-loss (log; bands clipped at mean/10)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    FIG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG, dpi=110)
    plt.close(fig)


def table(data: dict) -> str:
    """The results as a markdown table (mean ± 95% CI over seeds)."""
    fmt = lambda v: f"{v[0]:.4g} ± {v[1]:.2g}"  # noqa: E731
    lines = ["| search | strategy | best fitness | final fitness | fresh tasks (score) | "
             "held-out score | s / generation |", "|---|---|---|---|---|---|---|"]
    for name, by in data["results"].items():
        for strategy, v in by.items():
            held = fmt(v["heldout"]) + (f" (cos {fmt(v['reference_cosine'])})"
                                        if "reference_cosine" in v else "")
            lines.append(f"| {name} | {strategy} | {fmt(v['best'])} | {fmt(v['final'])} | "
                         f"{fmt(v['fresh_tasks'])} | {held} | "
                         f"{v['seconds_per_generation']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=list(SEARCHES))
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                   choices=list(STRATEGIES))
    p.add_argument("--quick", action="store_true", help="2 seeds, a fifth of the generations")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--table", action="store_true", help="print the saved results as markdown")
    p.add_argument("--out", default=None, help="write the JSON (and its figure) here instead "
                                               "of benchmarks/results and docs/figures")
    args = p.parse_args()
    global OUT, FIG
    if args.out:
        OUT, FIG = Path(args.out), Path(args.out).with_suffix(".png")
    if args.plot_only or args.table:
        data = json.loads(OUT.read_text())
        plot(data) if args.plot_only else print(table(data))
        return
    jax.config.update("jax_compilation_cache_dir",
                      str(Path.home() / ".cache" / "metaplastic" / "jax"))
    seeds = 2 if args.quick else args.seeds
    data = json.loads(OUT.read_text()) if OUT.is_file() and not args.quick else {}
    print(f"JAX {jax.__version__} on {jax.devices()}", flush=True)
    data.update({"machine": {"cpu": platform.processor() or platform.machine(),
                             "cores": os.cpu_count(), "jax": jax.__version__,
                             "backend": jax.default_backend(),
                             "devices": [str(d) for d in jax.devices()]},
                 "seeds": seeds, "command": "python benchmarks/bench_learned_es.py"})
    results = data.setdefault("results", {})
    for name in args.searches:
        gens = SEARCHES[name]["generations"] // (5 if args.quick else 1)
        for strategy in args.strategies:
            if name == "cartpole" and strategy == "cma-es":
                continue  # a 6,080 x 6,080 covariance, decomposed every generation
            runs = []
            for seed in range(seeds):
                t = time.perf_counter()
                runs.append(run_one(name, strategy, seed, gens))
                print(f"{name:10s} {strategy:11s} seed {seed}: best {runs[-1]['best']:.4g} "
                      f"final {runs[-1]['final']:.4g} held-out {runs[-1]['heldout']:.4g} "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)
            results.setdefault(name, {})[strategy] = summarise(runs)
            data["budget"] = budget_ratio(results)
            if not args.quick or args.out:
                write_results(OUT, data)
    data["budget"] = budget_ratio(results)
    print(json.dumps(data["budget"], indent=1))
    if not args.quick or args.out:
        write_results(OUT, data)
        plot(data)


if __name__ == "__main__":
    main()
