"""What one inner learning step costs, per rule, relative to backprop's SGD.

    python benchmarks/bench_inner_step.py [--repeats 7] [--widths 32 256]

The workload: mixture-fewshot's network at depth 5 (64 inputs, four hidden layers of the
given width, softplus, random feedback), online 5-way 10-shot digits — 50 updates of one
example each and the query loss — one episode under ``jit``, θ fixed (no meta-gradient).
Learners: FA (``sgd``, the pseudo-gradient term with random feedback: the reference),
backprop SGD and backprop Adam (symmetric feedback), ``termpool`` (six local terms,
rank-1 fast path), ``mlp`` (mixture-fewshot's 5-16-1 GELU MLP over pre, post, w, e_pre,
e_post, applied to every synapse) and ``mlp`` with learned neurons. The MLP rule's floor:
FA's episode plus the nonlinearity alone (16 GELU units per synapse per update from one
per-synapse input, and the output unit: :func:`floor_fn`). Every episode time is the
median of ``--repeats`` calls after a warm-up call (compilation apart), learners
interleaved in each repeat so that load on the machine hits them alike; ratios are per
repeat, then the median. Writes benchmarks/results/inner_step.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import jax
from _cli import write_results

from metaplastic.experiments import build, config, presets
from metaplastic.rules.mlp import ACTIVATIONS

OUT = Path(__file__).parent / "results" / "inner_step.json"
MLP = {"name": "mlp", "inputs": ["pre", "post", "w", "e_pre", "e_post"], "hidden": [16],
       "activation": "gelu", "eta": 0.03, "start": "pseudo_grad"}
#: name -> (rule, network changes); "FA" is the reference of every ratio
LEARNERS = {
    "FA": ({"name": "sgd", "eta": 0.03}, {}),
    "backprop SGD": ({"name": "sgd", "eta": 0.03}, {"feedback": "symmetric"}),
    "backprop Adam": ({"name": "adam", "eta": 1e-3}, {"feedback": "symmetric"}),
    "termpool": ({"name": "termpool", "eta": 0.03, "start": "pseudo_grad"}, {}),
    "mlp": (MLP, {}),
    "mlp + learned neurons": (MLP, {"neuron": "learned"}),
}
H = 16  # the MLP rule's hidden units


def episode_fn(rule: dict, network: dict, width: int):
    cfg = config.override(presets.get("mixture-fewshot"),
                          [f"rule={config.inline_value(rule)}"])
    # one problem, not the mixture
    p = build(cfg, network={"hidden": [width] * 4, **network})
    theta = p.rule.init(jax.random.key(0), p.network.shapes)
    run = jax.jit(lambda th, k: p.objective.episode(th, k)[0])
    return run, theta, p.task.n_steps, p.network.shapes


def floor_fn(shapes, steps: int):
    """The MLP rule's irreducible work, for the same layers and number of updates: every
    synapse's H hidden units from one per-synapse input, the GELU and the output unit
    (``dw = v . gelu(a w + b)``), nothing else — no other inputs, no forward or error
    pass (FA's episode, measured apart, is added to it for the floor)."""
    a, b, v = (jax.random.normal(jax.random.key(i), (H,)) / 4 for i in range(3))
    gelu = ACTIVATIONS["gelu"]  # the rule's own

    def episode(ws):
        def step(ws, _):
            return [w + 1e-3 * (gelu(w[..., None] * a + b) @ v) for w in ws], None
        return sum(w.sum() for w in jax.lax.scan(step, ws, None, length=steps)[0])

    ws = [jax.random.normal(jax.random.key(10 + l), s) / 8 for l, s in enumerate(shapes)]
    run = jax.jit(lambda ws, k: episode(ws))
    return run, ws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 256])
    args = ap.parse_args()
    out = {"machine": platform.processor() or platform.machine(), "jax": jax.__version__,
           "repeats": args.repeats, "widths": {}}
    for width in args.widths:
        fns = {}
        for name, (rule, network) in LEARNERS.items():
            run, theta, steps, shapes = episode_fn(rule, network, width)
            t0 = time.perf_counter()
            jax.block_until_ready(run(theta, jax.random.key(1)))
            fns[name] = (run, theta, time.perf_counter() - t0)
        run, ws = floor_fn(shapes, steps)
        jax.block_until_ready(run(ws, None))
        fns["nonlinearity alone"] = (run, ws, 0.0)
        times: dict[str, list[float]] = {n: [] for n in fns}
        for r in range(args.repeats):
            for name, (run, theta, _) in fns.items():
                key = jax.random.key(100 + r)
                t0 = time.perf_counter()
                jax.block_until_ready(run(theta, key))
                times[name].append(time.perf_counter() - t0)
        floor = [f + n for f, n in zip(times["FA"], times["nonlinearity alone"], strict=True)]
        ratio = {n: statistics.median(t / s for t, s in zip(times[n], times["FA"],
                                                                strict=True)) for n in fns}
        out["widths"][width] = {
            n: {"episode_ms": 1e3 * statistics.median(times[n]),
                "per_update_us": 1e6 * statistics.median(times[n]) / steps,
                "ratio_to_fa": ratio[n], "first_call_s": fns[n][2]} for n in fns}
        out["widths"][width]["floor"] = {
            "per_update_us": 1e6 * statistics.median(floor) / steps,
            "what": "FA's episode + the nonlinearity alone, per update",
            "mlp_over_floor": statistics.median(
                t / f for t, f in zip(times["mlp"], floor, strict=True))}
        for n, v in out["widths"][width].items():
            if n == "floor":
                print(f"width {width:4d} floor {v['per_update_us']:.1f} µs per update; "
                      f"mlp / floor {v['mlp_over_floor']:.2f}", flush=True)
                continue
            print(f"width {width:4d} {n:22s} episode {v['episode_ms']:8.2f} ms  "
                  f"({v['per_update_us']:7.1f} µs per update)  x{v['ratio_to_fa']:.2f} FA  "
                  f"first call {v['first_call_s']:.1f} s", flush=True)
    OUT.parent.mkdir(exist_ok=True)
    write_results(OUT, out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
