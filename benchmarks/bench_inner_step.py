"""What one inner learning step costs, per rule, relative to backprop's SGD.

    python benchmarks/bench_inner_step.py [--repeats 7] [--widths 32 256]

The workload: mixture-fewshot's network at depth 5 (64 inputs, four hidden layers of the
given width, softplus, random feedback), online 5-way 10-shot digits — 50 updates of one
example each and the query loss — one episode under ``jit``, θ fixed (no meta-gradient).
Rules: ``sgd`` (the pseudo-gradient term: FA here; the reference), ``termpool`` (six local
terms, rank-1 fast path) and ``mlp`` (mixture-fewshot's 5-16-1 GELU MLP over pre, post, w,
e_pre, e_post, applied to every synapse). Every episode time is the median of
``--repeats`` calls after a warm-up call (compilation apart), rules interleaved in each
repeat so that load on the machine hits them alike; the ratio to ``sgd`` is per repeat,
then the median. Writes benchmarks/results/inner_step.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax

from metaplastic.experiments import build, config, presets

OUT = Path(__file__).parent / "results" / "inner_step.json"
RULES = {
    "sgd": {"name": "sgd", "eta": 0.03},
    "termpool": {"name": "termpool", "eta": 0.03, "start": "pseudo_grad"},
    "mlp": {"name": "mlp", "inputs": ["pre", "post", "w", "e_pre", "e_post"], "hidden": [16],
            "activation": "gelu", "eta": 0.03, "start": "pseudo_grad"},
}


def episode_fn(rule: dict, width: int):
    cfg = config.override(presets.get("mixture-fewshot"),
                          [f"rule={config.inline_value(rule)}"])
    p = build(cfg, network={"hidden": [width] * 4})  # one problem, not the mixture
    theta = p.rule.init(jax.random.key(0), p.network.shapes)
    run = jax.jit(lambda th, k: p.objective.episode(th, k)[0])
    return run, theta, p.task.n_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 256])
    args = ap.parse_args()
    out = {"machine": platform.processor() or platform.machine(), "jax": jax.__version__,
           "repeats": args.repeats, "widths": {}}
    for width in args.widths:
        fns = {}
        for name, rule in RULES.items():
            run, theta, steps = episode_fn(rule, width)
            t0 = time.perf_counter()
            jax.block_until_ready(run(theta, jax.random.key(1)))
            fns[name] = (run, theta, time.perf_counter() - t0)
        times: dict[str, list[float]] = {n: [] for n in RULES}
        for r in range(args.repeats):
            for name, (run, theta, _) in fns.items():
                key = jax.random.key(100 + r)
                t0 = time.perf_counter()
                jax.block_until_ready(run(theta, key))
                times[name].append(time.perf_counter() - t0)
        ratios = {n: statistics.median(t / s for t, s in zip(times[n], times["sgd"],
                                                                 strict=True))
                  for n in RULES}
        out["widths"][width] = {
            n: {"episode_ms": 1e3 * statistics.median(times[n]),
                "per_update_us": 1e6 * statistics.median(times[n]) / steps,
                "ratio_to_sgd": ratios[n], "first_call_s": fns[n][2]} for n in RULES}
        for n, v in out["widths"][width].items():
            print(f"width {width:4d} {n:9s} episode {v['episode_ms']:8.2f} ms  "
                  f"({v['per_update_us']:7.1f} µs per update)  x{v['ratio_to_sgd']:.2f} sgd  "
                  f"first call {v['first_call_s']:.1f} s", flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
