"""The cost of learning through depth: meta-gradient steps and inner steps, depth 2 to 32,
unrolls of 100 to 1,600 steps.

    python benchmarks/bench_depth.py [--repeats 5] [--quick] [--plot-only]

Workload: online 5-way 10-shot digits (64 inputs, 5 outputs), hidden layers of fixed
width 32 (softplus), fixed random feedback, one episode per meta-step; a depth-``d``
network has ``d`` plastic layers. The unroll length is set by presenting each example for
``hold`` steps (50 examples x hold 2..32 = 100..1,600 steps). Measured:

* **meta-gradient step** (``Objective.value_and_grad`` of the 6-term term-pool rule,
  jitted): reverse mode (backprop through the unroll, every step's carry stored),
  reverse + ``jax.checkpoint`` (each step recomputed in the backward pass) and forward
  mode (one tangent per coefficient carried along) — time (median of ``--repeats``) and
  XLA's memory for the compiled program (``temp`` bytes from ``memory_analysis``);
* **inner step**: one step of online learning (forward pass, feedback, update) under
  the term-pool rule with FA feedback, under backprop SGD (``sgd``, symmetric feedback)
  and under FA (``sgd``, random feedback): unroll time / steps.

Sweeps: depth 2, 4, 8, 16, 32 at 400 steps; unroll 100 ... 1,600 at depth 8. Slopes are
least-squares fits of log(time) and log(memory) against log(depth) or log(steps).
Writes benchmarks/results/depth.json and docs/figures/bench_depth.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from _cli import write_results

import metaplastic as mp

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "depth.json"
FIG = ROOT / "docs" / "figures" / "bench_depth.png"
WIDTH = 32
MODES = ("reverse", "reverse+checkpoint", "forward")
INNER = {"term pool (FA feedback)": ("termpool", "random"),
         "backprop SGD": ("sgd", "symmetric"), "FA": ("sgd", "random")}


def objective(depth: int, hold: int, *, rule: str = "termpool", feedback: str = "random",
              mode: str = "reverse") -> mp.Objective:
    task = mp.tasks.make("fewshot", dataset="digits", ways=5, shots=10, queries=10,
                         hold=hold)
    net = mp.Network(sizes=(64, *[WIDTH] * (depth - 1), 5), activation="softplus",
                     output_activation="linear", feedback=feedback)
    r = mp.rules.make(rule, eta=0.03, start="pseudo_grad") if rule == "termpool" else \
        mp.rules.make(rule, eta=0.03)
    return mp.Objective(task, net, r, tasks_per_step=1,
                        checkpoint=mode == "reverse+checkpoint",
                        grad_mode="forward" if mode == "forward" else "reverse")


def _median_time(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compiled and warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _temp_bytes(fn, args) -> int | None:
    try:
        stats = fn.lower(*args).compile().memory_analysis()
    except Exception:  # noqa: BLE001 - backends without memory analysis
        return None
    return int(stats.temp_size_in_bytes) if stats is not None else None


def meta_step(depth: int, hold: int, mode: str, repeats: int) -> dict:
    obj = objective(depth, hold, mode=mode)
    theta = obj.rule.init(jax.random.key(0), obj.network.shapes)
    fn = jax.jit(obj.value_and_grad)
    args = (theta, jax.random.key(1))
    return {"depth": depth, "steps": obj.n_steps, "mode": mode,
            "seconds": _median_time(fn, args, repeats), "temp_bytes": _temp_bytes(fn, args)}


def inner_step(depth: int, hold: int, label: str, repeats: int) -> dict:
    rule, feedback = INNER[label]
    obj = objective(depth, hold, rule=rule, feedback=feedback)
    theta = obj.rule.init(jax.random.key(0), obj.network.shapes)
    fn = jax.jit(obj.__call__)
    args = (theta, jax.random.key(1))
    total = _median_time(fn, args, repeats)
    return {"depth": depth, "steps": obj.n_steps, "rule": label,
            "seconds_per_step": total / obj.n_steps}


def slope(xs, ys) -> float:
    ok = [(x, y) for x, y in zip(xs, ys, strict=True) if y]
    return float(np.polyfit(np.log([x for x, _ in ok]), np.log([y for _, y in ok]), 1)[0])


def _plain_ticks(ax, xs) -> None:
    from matplotlib.ticker import NullLocator

    ax.set_xticks(xs, [str(x) for x in xs])
    ax.xaxis.set_minor_locator(NullLocator())


def plot(res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for (sweep, x), ax_t in (((res["depth_sweep"], "depth"), axes[0]),
                             ((res["unroll_sweep"], "steps"), axes[1])):
        ax_m = ax_t.twinx()
        for i, mode in enumerate(MODES):
            rows = [r for r in sweep if r["mode"] == mode]
            xs = [r[x] for r in rows]
            c = f"C{i}"
            s = res["slopes"][f"{x}:{mode}"]
            ax_t.loglog(xs, [r["seconds"] * 1e3 for r in rows], "o-", color=c,
                        label=f"{mode}: time ~ {x}^{s['time']:.2f}")
            if all(r["temp_bytes"] for r in rows):
                ax_m.loglog(xs, [r["temp_bytes"] / 2**20 for r in rows], "s--", color=c,
                            alpha=0.5, label=f"{mode}: memory ~ {x}^{s['memory']:.2f}")
        _plain_ticks(ax_t, sorted({r[x] for r in sweep}))
        ax_t.set_xlabel("plastic layers" if x == "depth" else "inner steps (unroll)")
        ax_t.set_ylabel("meta-gradient step (ms), solid")
        ax_m.set_ylabel("XLA temp memory (MiB), dashed")
        fixed = "400 steps" if x == "depth" else "depth 8"
        ax_t.set_title(f"meta-gradient step vs {x} ({fixed}, width {WIDTH})")
        h1, l1 = ax_t.get_legend_handles_labels()
        h2, l2 = ax_m.get_legend_handles_labels()
        ax_t.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    ax = axes[2]
    for i, label in enumerate(INNER):
        rows = [r for r in res["inner_sweep"] if r["rule"] == label]
        s = res["slopes"][f"inner:{label}"]
        ax.loglog([r["depth"] for r in rows], [r["seconds_per_step"] * 1e6 for r in rows],
                  "o-", color=f"C{i + 3}", label=f"{label}: ~ depth^{s:.2f}")
    _plain_ticks(ax, sorted({r["depth"] for r in res["inner_sweep"]}))
    ax.set_xlabel("plastic layers")
    ax.set_ylabel("one inner step (µs)")
    ax.set_title("one step of online learning (400-step episodes)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    FIG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="depths 2-8, unrolls 100-400")
    ap.add_argument("--plot-only", action="store_true",
                    help="redraw the figure from benchmarks/results/depth.json")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(OUT.read_text()))
        return
    depths = (2, 4, 8) if args.quick else (2, 4, 8, 16, 32)
    holds = (2, 4, 8) if args.quick else (2, 4, 8, 16, 32)
    res: dict = {"depth_sweep": [], "unroll_sweep": [], "inner_sweep": []}
    for d in depths:
        for mode in MODES:
            res["depth_sweep"].append(meta_step(d, 8, mode, args.repeats))
            print(res["depth_sweep"][-1], flush=True)
        for label in INNER:
            res["inner_sweep"].append(inner_step(d, 8, label, args.repeats))
            print(res["inner_sweep"][-1], flush=True)
    for h in holds:
        for mode in MODES:
            res["unroll_sweep"].append(meta_step(8, h, mode, args.repeats))
            print(res["unroll_sweep"][-1], flush=True)
    slopes = {}
    for sweep, x in ((res["depth_sweep"], "depth"), (res["unroll_sweep"], "steps")):
        for mode in MODES:
            rows = [r for r in sweep if r["mode"] == mode]
            slopes[f"{x}:{mode}"] = {
                "time": slope([r[x] for r in rows], [r["seconds"] for r in rows]),
                "memory": slope([r[x] for r in rows], [r["temp_bytes"] or 0 for r in rows])
                if all(r["temp_bytes"] for r in rows) else None}
    for label in INNER:
        rows = [r for r in res["inner_sweep"] if r["rule"] == label]
        slopes[f"inner:{label}"] = slope([r["depth"] for r in rows],
                                         [r["seconds_per_step"] for r in rows])
    res["slopes"] = slopes
    res["setup"] = {"width": WIDTH, "task": "fewshot digits 5-way 10-shot, hold 2..32",
                    "rule": "termpool (6 terms)", "repeats": args.repeats,
                    "command": "python benchmarks/bench_depth.py"
                               + (" --quick" if args.quick else ""),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "jax": jax.__version__, "device": jax.devices()[0].device_kind}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_results(OUT, res)
    plot(res)
    print(json.dumps(slopes, indent=2))
    print(f"wrote {OUT} and {FIG}")


if __name__ == "__main__":
    main()
