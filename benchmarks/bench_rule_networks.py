"""Cost of rules that are networks: one meta-gradient step, MLP rule vs polynomial rule.

The workload: a 64-100-10 network (softplus, random feedback) learning online
for 500 steps (10-way 50-shot digits, one example per step), meta-gradient through the
whole unroll, 4 tasks per step. Rules: ``mlp`` (shared 5-16-1 GELU MLP over pre, post, w,
e_pre, e_post) and ``polynomial`` (degree 2 over the same five signals, 243 terms, rank-1
fast path); each with and without ``jax.checkpoint`` on the scan body. Reports compile time
apart, the median step time, and XLA's planned temporary memory (the peak working set of
the step beyond its inputs and outputs).

Usage: python benchmarks/bench_rule_networks.py [--repeats 5] [--tasks 4]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import jax
from _cli import write_results

import metaplastic as mp


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                         "rule_networks.json"))
    args = ap.parse_args()
    task = mp.tasks.make("fewshot", dataset="digits", ways=10, shots=50, queries=5,
                         classes="all")
    net = mp.Network(sizes=(64, 100, 10), activation="softplus", output_activation="linear",
                     feedback="random")
    signals = ["pre", "post", "w", "e_pre", "e_post"]
    rules = {"mlp": mp.rules.make("mlp", inputs=signals, hidden=[16], activation="gelu",
                                  eta=0.03, out_scale=0.1),
             "polynomial": mp.rules.make("polynomial", variables=signals, degree=2,
                                         eta=0.03, init_noise=0.01)}
    key = jax.random.key(0)
    progs, out = {}, {}
    for name, rule in rules.items():
        theta = rule.init(jax.random.key(1), net.shapes)
        for ckpt in (True, False):
            obj = mp.Objective(task, net, rule, tasks_per_step=args.tasks, checkpoint=ckpt)
            label = f"{name}{'+checkpoint' if ckpt else ''}"
            t0 = time.perf_counter()
            compiled = jax.jit(obj.value_and_grad).lower(theta, key).compile()
            mem = compiled.memory_analysis()
            out[label] = {"compile_s": time.perf_counter() - t0,
                          "temp_mb": mem.temp_size_in_bytes / 2**20, "runs_s": []}
            jax.block_until_ready(compiled(theta, key))
            progs[label] = (compiled, theta)
            print(f"{label}: compiled in {out[label]['compile_s']:.1f} s, "
                  f"temp {out[label]['temp_mb']:.1f} MB", flush=True)
    for _ in range(args.repeats):  # round-robin so that drift hits every variant alike
        for label, (compiled, theta) in progs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(theta, key))
            out[label]["runs_s"].append(time.perf_counter() - t0)
    for label, v in out.items():
        v["median_step_s"] = statistics.median(v["runs_s"])
        print(f"{label:24s} {1e3 * v['median_step_s']:8.1f} ms/meta-step   "
              f"temp {v['temp_mb']:8.1f} MB   compile {v['compile_s']:.1f} s")
    ref = out["polynomial+checkpoint"]["median_step_s"]
    for v in out.values():
        v["ratio_to_polynomial_checkpoint"] = v["median_step_s"] / ref
    result = {"machine": {"platform": platform.platform(), "jax": jax.__version__,
                          "backend": jax.default_backend()},
              "network": list(net.sizes), "inner_steps": task.n_steps,
              "tasks_per_step": args.tasks, "variants": out}
    write_results(Path(args.out), result)


if __name__ == "__main__":
    main()
