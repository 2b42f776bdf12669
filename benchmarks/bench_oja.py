"""Speed of the Oja workload: compile time apart from run time, medians, ratios.

Measures, in one process and side by side:
  * one meta-gradient step (8 tasks x 1000 inner steps, 10 inputs, 27-term rule) with the
    polynomial fast path vs the per-synapse definition, with and without jax.checkpoint;
  * XLA's planned temporary memory of those programs;
  * one layer update, fast path vs per-synapse definition, for growing layer sizes;
  * held-out evaluation throughput (inner steps per second, 100 tasks vmapped);
  * optionally (--cli) the wall time of `metaplastic run oja --no-eval`, cold and warm
    persistent compilation cache.

Usage: python benchmarks/bench_oja.py [--repeats 7] [--cli] [--out benchmarks/results/oja.json]
"""

from __future__ import annotations

import argparse
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
from _cli import write_results

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
    """Compile the four variants, then time them round-robin so drift hits all alike."""
    cfg = presets.get("oja")
    base = build(cfg)
    key = jax.random.key(0)
    progs, out = {}, {}
    for fast in (True, False):
        for ckpt in (False, True):
            rule = mp.rules.make("polynomial", eta=0.01, fast=fast)
            obj = mp.Objective(base.task, base.network, rule, tasks_per_step=8, l1=1e-3,
                               checkpoint=ckpt)
            theta = {"coef": jnp.asarray(rule.coefficients("oja"))}
            t0 = time.perf_counter()
            compiled = jax.jit(obj.value_and_grad).lower(theta, key).compile()
            name = f"{'fast' if fast else 'per_synapse'}{'+checkpoint' if ckpt else ''}"
            out[name] = {"compile_s": time.perf_counter() - t0, "runs_s": [],
                         "temp_bytes": compiled.memory_analysis().temp_size_in_bytes}
            progs[name] = (compiled, theta)
            jax.block_until_ready(compiled(theta, key))  # warm-up
    for _ in range(repeats):
        for name, (compiled, theta) in progs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(theta, key))
            out[name]["runs_s"].append(time.perf_counter() - t0)
    for v in out.values():
        v["median_step_s"] = statistics.median(v["runs_s"])
    ref = out["fast"]["median_step_s"]
    for v in out.values():
        v["ratio_to_fast"] = v["median_step_s"] / ref
    return out


def bench_rule_update(repeats):
    """One layer update, fast path vs per-synapse definition, for growing layers."""
    from metaplastic.signals import layer_signals

    out = {}
    for n_out, n_in in ((1, 10), (100, 100), (500, 500)):
        k = jax.random.split(jax.random.key(0), 3)
        s = layer_signals(jax.random.normal(k[0], (n_in,)), jax.random.normal(k[1], (n_out,)),
                          jax.random.normal(k[2], (n_out, n_in)))
        row = {}
        for fast in (True, False):
            rule = mp.rules.make("polynomial", fast=fast)
            theta = {"coef": jnp.asarray(rule.coefficients("oja"))}
            f = jax.jit(lambda t, s, r=rule: r.update(t, s, ())[0])
            # time 100 updates in one call so that dispatch does not dominate
            many = jax.jit(lambda t, s, f=f: jax.lax.fori_loop(
                0, 100, lambda i, a: a + f(t, s._replace(w=s.w + a * 1e-9)), jnp.zeros_like(s.w)))
            _, med, _ = _time(lambda m=many, t=theta, x=s: m(t, x), repeats)
            row["fast" if fast else "per_synapse"] = med / 100
        row["ratio_per_synapse_to_fast"] = row["per_synapse"] / row["fast"]
        out[f"{n_out}x{n_in}"] = row
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
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--cli", action="store_true", help="also time `metaplastic run oja`")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "oja.json"))
    args = ap.parse_args()
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "backend": jax.default_backend()},
        "meta_step": bench_meta_step(args.repeats),
        "eval": bench_eval(args.repeats),
        "rule_update": bench_rule_update(args.repeats),
    }
    if args.cli:
        result["cli"] = bench_cli()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_results(Path(args.out), result)
    for name, v in result["meta_step"].items():
        print(f"meta-step {name:24s} median {1e3 * v['median_step_s']:8.1f} ms  "
              f"x{v['ratio_to_fast']:.2f}  compile {v['compile_s']:.1f} s  "
              f"temp {v['temp_bytes'] / 1e6:.2f} MB")
    for shape, v in result["rule_update"].items():
        print(f"layer update {shape:8s} fast {1e6 * v['fast']:8.1f} us  per-synapse "
              f"{1e6 * v['per_synapse']:8.1f} us  ratio {v['ratio_per_synapse_to_fast']:.2f}")
    e = result["eval"]
    print(f"eval: {e['inner_steps_per_s']:.3g} inner steps/s (100 tasks), "
          f"compile {e['compile_s']:.1f} s")
    if "cli" in result:
        print("cli: " + ", ".join(f"{k} {v:.1f} s" for k, v in result["cli"].items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
