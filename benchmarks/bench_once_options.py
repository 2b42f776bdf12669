"""Held-out evaluation's program compiled as meta-training's are (XLA's default LLVM
optimisation, level 2) or as a program run once (``metaplastic.xla.once``: level 1);
with ``--compare threefry``, as a program run once lowered with JAX's threefry loop or
unrolled (both at level 1: what ``xla.once`` does now).

    python benchmarks/bench_once_options.py [--presets oja fa-digits ...] [--tasks 100]
        [--compare options|threefry] [--out benchmarks/results/once_options.json]

For each preset, one fresh process (the persistent compilation cache off) builds the
pieces, takes θ = the rule's start plus 1% Gaussian noise (so that every term acts), lowers
:func:`metaplastic.experiments.evaluate._evaluate` for ``--tasks`` held-out tasks, and
compiles that one lowering both ways (the order alternating between presets); each
executable then runs the tasks once to warm up and three times timed (median). Recorded:
compile and run seconds both ways, whether every per-task output is bitwise the same,
and the largest change of a summarised mean as a fraction of its 95% CI. (With
``--compare threefry`` the function is lowered once per way, each in its mode.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from _cli import check_presets, main_of, write_results

OUT = Path(__file__).parent / "results" / "once_options.json"
#: the two ways compared: name -> (threefry mode of the lowering, compiler options)
COMPARE = {"options": {"default": ["rolled", {}],
                       "once": ["rolled", {"xla_backend_optimization_level": 1}]},
           "threefry": {"rolled": ["rolled", {"xla_backend_optimization_level": 1}],
                        "unrolled": ["unrolled", {"xla_backend_optimization_level": 1}]}}
PRESETS = ["oja", "mlp-oja", "cartpole-hebbian", "hml-cartpole", "acrobot-hebbian",
           "fa-digits", "mlp-digits", "mlpp-emnist-shape", "mlpp-emnist-local",
           "mixture-fewshot", "stdp-pca", "spiking-homeostasis", "spiking-digits",
           "infer-oja-activity", "infer-oja-spikes", "infer-oja-calcium",
           "infer-reward-behaviour"]

CHILD = r"""
import json, os, statistics, sys, time
os.environ["METAPLASTIC_CACHE_DIR"] = "off"
import jax, jax.numpy as jnp, numpy as np
from metaplastic import xla
from metaplastic.experiments.build import build
from metaplastic.experiments.evaluate import _evaluate, eval_key, summarise
from metaplastic.experiments.study import presets
from metaplastic.meta.objective import Objective
name, tasks, first, ways = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
_, make = presets()[name]
p = build(make())
start = p.rule.init(jax.random.key(1), p.network.shapes)
leaves, tree = jax.tree.flatten(start)
noise = jax.random.split(jax.random.key(2), len(leaves))
theta = jax.tree.unflatten(tree, [
    a + 0.01 * jax.random.normal(k, jnp.shape(a), jnp.result_type(a))
    if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a
    for a, k in zip(leaves, noise)])
objective = Objective(p.task, p.network, p.rule)
ids = p.task.instance_ids()
if ids is not None:
    ids = jnp.asarray(np.asarray(ids), jnp.int32)
keys = jax.random.split(eval_key(0), tasks if ids is None else ids.shape[0])
# lowered from a plain jit (``_evaluate`` itself carries the run-once options), traced
# afresh per mode (JAX caches a lowering by the traced program, not by our mode)
lowered = {}
for mode in {m for m, _ in ways.values()}:
    with xla.threefry_mode(mode):
        lowered[mode] = jax.jit(lambda *a: _evaluate.fn(*a), static_argnums=0).lower(
            objective, theta, keys, ids)
order = list(ways) if first == list(ways)[0] else list(ways)[::-1]
out = {}
for way in order:
    mode, options = ways[way]
    t = time.perf_counter()
    compiled = lowered[mode].compile(compiler_options=options)
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(theta, keys, ids))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        res = jax.block_until_ready(compiled(theta, keys, ids))
        times.append(time.perf_counter() - t)
    out[way] = {"compile_s": compile_s, "run_s": statistics.median(times),
                "per_task": {k: np.asarray(v) for k, v in res.items()}}
a, b = (out[w]["per_task"] for w in ways)
same = all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
sa, sb = summarise(a), summarise(b)
moved = max((abs(sa[k]["mean"] - sb[k]["mean"]) / sa[k]["ci95"]
             if sa[k]["ci95"] else 0.0) for k in a)
print(json.dumps({"tasks": int(keys.shape[0]), "bitwise": same, "mean_moved_of_ci": moved,
                  **{f"{w}_{m}": round(out[w][m], 4) for w in ways
                     for m in ("compile_s", "run_s")}}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=PRESETS)
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--compare", choices=sorted(COMPARE), default="options")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    from metaplastic.experiments import presets  # a rule study's pieces are built

    check_presets(p, args.presets, known=presets.PRESETS)
    if args.tasks < 1:
        p.error("--tasks must be at least 1")
    out: dict = {"command": "python benchmarks/bench_once_options.py --presets "
                            + " ".join(args.presets) + f" --tasks {args.tasks}"
                            + f" --compare {args.compare}",
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "presets": {}}
    ways = COMPARE[args.compare]
    base, new = ways
    for i, preset in enumerate(args.presets):
        first = base if i % 2 == 0 else new
        done = subprocess.run([sys.executable, "-c", CHILD, preset, str(args.tasks), first,
                               json.dumps(ways)], capture_output=True, text=True)
        if done.returncode:
            out["presets"][preset] = {"error": done.stderr.strip().splitlines()[-1]}
        else:
            r = json.loads(done.stdout.strip().splitlines()[-1])
            r["compile_ratio"] = round(r[f"{new}_compile_s"] / r[f"{base}_compile_s"], 3)
            r["run_ratio"] = round(r[f"{new}_run_s"] / r[f"{base}_run_s"], 3)
            out["presets"][preset] = r
        print(preset, out["presets"][preset], flush=True)
    rs = [r for r in out["presets"].values() if "compile_ratio" in r]
    if rs:
        out["summary"] = {
            "compile_ratio_median": sorted(r["compile_ratio"] for r in rs)[len(rs) // 2],
            "run_ratio_range": [min(r["run_ratio"] for r in rs),
                                max(r["run_ratio"] for r in rs)],
            "bitwise": sum(r["bitwise"] for r in rs), "presets": len(rs),
            "largest_mean_moved_of_ci": max(r["mean_moved_of_ci"] for r in rs)}
        print(out["summary"])
    write_results(args.out, out)


if __name__ == "__main__":
    main_of(main, "nothing was written")
