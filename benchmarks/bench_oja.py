"""Speed of the Oja workload: compile time apart from run time, medians, ratios.

Measures, in one process and side by side:
  * one meta-gradient step (8 tasks x 1000 inner steps, 10 inputs, 27-term rule) with the
    polynomial fast path vs the per-synapse definition, with and without jax.checkpoint;
  * XLA's planned temporary memory of those programs;
  * held-out evaluation throughput (inner steps per second, 100 tasks vmapped);
  * optionally (--cli) the wall time of `metaplastic run oja --no-eval`, cold and warm
    persistent compilation cache.

Usage: python benchmarks/bench_oja.py [--repeats 7] [--cli] [--out benchmarks/results/oja.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import metaplastic as mp
from metaplastic.experiments import build, presets


def _time(fn, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs), runs


def bench_meta_step(repeats):
    cfg = presets.get("oja")
    base = build(cfg)
    out = {}
    for fast in (True, False):
        for ckpt in (False, True):
            rule = mp.rules.make("polynomial", eta=0.01, fast=fast)
            obj = mp.Objective(base.task, base.network, rule, tasks_per_step=8, l1=1e-3,
                               checkpoint=ckpt)
            theta = {"coef": jnp.asarray(rule.coefficients("oja"))}
            key = jax.random.key(0)
            t0 = time.perf_counter()
            compiled = jax.jit(obj.value_and_grad).lower(theta, key).compile()
            compile_s = time.perf_counter() - t0
            _, med, runs = _time(lambda c=compiled, t=theta, k=key: c(t, k), repeats)
            name = f"{'fast' if fast else 'per_synapse'}{'+checkpoint' if ckpt else ''}"
            out[name] = {"compile_s": compile_s, "median_step_s": med, "runs_s": runs,
                         "temp_bytes": compiled.memory_analysis().temp_size_in_bytes}
    ref = out["fast"]["median_step_s"]
    for v in out.values():
        v["ratio_to_fast"] = v["median_step_s"] / ref
    return out


def bench_eval(repeats):
    cfg = presets.get("oja")
    p = build(cfg)
    theta = {"coef": jnp.asarray(p.rule.coefficients("oja"))}
    from metaplastic.experiments.evaluate import _evaluate

    keys = jax.random.split(jax.random.key(0), 100)
    t0 = time.perf_counter()
    compiled = _evaluate.lower(p.objective, theta, keys).compile()
    compile_s = time.perf_counter() - t0
    _, med, runs = _time(lambda: compiled(theta, keys), repeats)
    steps = 100 * p.task.n_steps
    return {"tasks": 100, "inner_steps": steps, "compile_s": compile_s,
            "median_s": med, "inner_steps_per_s": steps / med}


def bench_cli():
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, METAPLASTIC_CACHE_DIR=str(Path(tmp) / "cache"))
        for label in ("cold_cache", "warm_cache"):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "metaplastic.cli", "run", "oja", "--no-eval",
                            "--out", str(Path(tmp) / "runs")], env=env, check=True,
                           capture_output=True)
            out[label + "_wall_s"] = time.perf_counter() - t0
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cli", action="store_true", help="also time `metaplastic run oja`")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "oja.json"))
    args = ap.parse_args()
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "backend": jax.default_backend()},
        "meta_step": bench_meta_step(args.repeats),
        "eval": bench_eval(args.repeats),
    }
    if args.cli:
        result["cli"] = bench_cli()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, v in result["meta_step"].items():
        print(f"meta-step {name:24s} median {1e3 * v['median_step_s']:8.1f} ms  "
              f"x{v['ratio_to_fast']:.2f}  compile {v['compile_s']:.1f} s  "
              f"temp {v['temp_bytes'] / 1e6:.2f} MB")
    e = result["eval"]
    print(f"eval: {e['inner_steps_per_s']:.3g} inner steps/s (100 tasks), "
          f"compile {e['compile_s']:.1f} s")
    if "cli" in result:
        print("cli: " + ", ".join(f"{k} {v:.1f} s" for k, v in result["cli"].items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
