"""One meta-episode of Shervani-Tabar & Rosenbaum's setting (the ``mlpp-emnist-shape``
preset), against a plain single-file JAX version of the same computation.

Workload (the published setting): MLP 784-170-130-100-70-47 without biases, Softplus(beta = 10),
fixed random feedback, rule = pseudo-gradient + error-Hebbian + Oja-subspace terms whose
meta-learned coefficients are the learning rates (start 0.001 x pseudo-gradient); a
meta-episode = 250 online batch-1 updates (5-way 50-shot) + the query loss on 50 examples
+ the meta-gradient through the whole unroll (checkpointed per step in reverse mode) + an
Adam step (no gradient clipping, as published).

Four programs: the library's step (the preset's forward-mode meta-gradient, and
reverse-mode with ``jax.checkpoint``) and the plain-JAX version of each. Reports compile
time apart, the median of ``--repeats`` meta-episodes (calls interleaved), XLA's temp
memory for each compiled step, and the process's peak RSS, as JSON.

Usage: python benchmarks/bench_mlpp.py [--repeats 9] [--profile]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _cli import write_results
from kernel_profile import print_kernels, top_kernels

from metaplastic import xla
from metaplastic.experiments import presets
from metaplastic.experiments.build import build
from metaplastic.meta import driver
from metaplastic.tasks import datasets

SIZES = (784, 170, 130, 100, 70, 47)
WAYS, SHOTS, QUERIES, LR = 5, 50, 10, 1e-3


def softplus10(v):
    return jax.nn.softplus(10.0 * v) / 10.0


def plain_meta_step(mode: str = "reverse"):
    """The same meta-episode written directly in JAX, without the library; ``mode``:
    backprop through the unroll (checkpointed per step) or forward-mode."""
    ds = datasets.load("mnist5k")
    x_all = jnp.asarray(ds.x, jnp.float32)
    table = jnp.asarray(np.stack([np.flatnonzero(ds.y == c)[:400] for c in range(5)]))
    opt = optax.adam(LR)
    shapes = list(zip(SIZES[1:], SIZES[:-1], strict=True))

    def episode(coef, key):
        k_cls, k_ex, k_ord, k_w, k_b = jax.random.split(key, 5)
        classes = jax.random.permutation(k_cls, 5)[:WAYS]
        picks = jax.vmap(lambda k, c: jax.random.permutation(k, table[c])[:SHOTS + QUERIES])(
            jax.random.split(k_ex, WAYS), classes)
        labels = jnp.repeat(jnp.arange(WAYS), SHOTS + QUERIES).reshape(WAYS, -1)
        order = jax.random.permutation(k_ord, WAYS * SHOTS)
        sx = x_all[picks[:, :SHOTS].reshape(-1)[order]]
        sy = labels[:, :SHOTS].reshape(-1)[order]
        qx, qy = x_all[picks[:, SHOTS:].reshape(-1)], labels[:, SHOTS:].reshape(-1)
        ws = [jax.random.normal(k, s) / jnp.sqrt(s[1])
              for k, s in zip(jax.random.split(k_w, 5), shapes, strict=True)]
        bs = [jax.random.normal(k, (n, m)) / jnp.sqrt(m)
              for k, n, m in zip(jax.random.split(k_b, 4), SIZES[1:-1], SIZES[2:],
                                 strict=True)]
        c_pg, c_eh, c_sub = coef[0], coef[1], coef[2]

        def step(ws, t):
            hs, vs = [sx[t]], []
            for i, w in enumerate(ws):
                v = w @ hs[-1]
                vs.append(v)
                hs.append(v if i == len(ws) - 1 else softplus10(v))
            errs = [None] * 6
            errs[0] = jnp.zeros(SIZES[0])
            errs[5] = jax.nn.softmax(hs[5]) - jax.nn.one_hot(sy[t], SIZES[-1])
            for l in range(4, 0, -1):
                errs[l] = (bs[l - 1] @ errs[l + 1]) * jax.nn.sigmoid(10.0 * vs[l - 1])
            new = []
            for l, w in enumerate(ws):
                pre, post, e_pre, e_post = hs[l], hs[l + 1], errs[l], errs[l + 1]
                # pseudo-gradient, error-Hebbian, Oja subspace y (x - W^T y)
                a = -c_pg * e_post + c_sub * post
                b = -c_eh * e_post
                new.append(w + jnp.outer(a, pre) + jnp.outer(b, e_pre)
                           - jnp.outer(c_sub * post, post @ w))
            return new, None

        body = jax.checkpoint(step) if mode == "reverse" else step
        ws, _ = jax.lax.scan(body, ws, jnp.arange(WAYS * SHOTS))
        h = qx.T
        for i, w in enumerate(ws):
            h = w @ h if i == len(ws) - 1 else softplus10(w @ h)
        logp = jax.nn.log_softmax(h.T)
        return -jnp.mean(jnp.take_along_axis(logp, qy[:, None], axis=1))

    def meta_step(carry, key):
        coef, opt_state = carry
        if mode == "reverse":
            loss, grad = jax.value_and_grad(episode)(coef, key)
        else:
            def with_value(c):
                loss = episode(c, key)
                return loss, loss

            grad, loss = jax.jacfwd(with_value, has_aux=True)(coef)
        updates, opt_state = opt.update(grad, opt_state, coef)
        return (optax.apply_updates(coef, updates), opt_state), loss

    coef = jnp.array([0.001, 0.0, 0.0])
    return meta_step, (coef, opt.init(coef))


def _temp_mb(compiled) -> float:
    try:
        return compiled.memory_analysis().temp_size_in_bytes / 2**20
    except Exception:  # noqa: BLE001 - not every backend reports it
        return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--programs", nargs="+",
                    default=[f"{w}_{m}{o}" for m in ("forward", "reverse")
                             for w, o in (("library", ""), ("plain", ""),
                                          ("plain", "_xla_options"))],
                    help="which programs to run (peak RSS covers those run)")
    ap.add_argument("--profile", action="store_true",
                    help="also list each program's most expensive XLA kernels")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mlpp.json"))
    args = ap.parse_args()

    total = jnp.asarray(10**6, jnp.int32)
    fns = {}
    for mode in ("forward", "reverse"):
        cfg = presets.get("mlpp-emnist-shape")
        cfg = dataclasses.replace(cfg, meta={
            **cfg.meta, "chunk": 1, "grad_mode": mode, "checkpoint": mode == "reverse"})
        p = build(cfg)
        state = driver.init(p.outer, p.objective, p.rule.init(jax.random.key(0)),
                            jax.random.key(0))
        step = driver.chunk_fn(p.outer, p.objective)  # the library's jit, as `metaplastic run`
        fns[f"library_{mode}"] = (step, lambda k, state=state: (state, k, total))
        plain_fn, carry = plain_meta_step(mode)
        fns[f"plain_{mode}"] = (jax.jit(plain_fn), lambda k, carry=carry: (carry, k))
        # the same plain program compiled with the XLA options the library uses, to tell
        # the library's own overhead apart from what the options save
        fns[f"plain_{mode}_xla_options"] = (
            jax.jit(plain_fn, compiler_options=xla.compiler_options()),
            lambda k, carry=carry: (carry, k))
    fns = {k: v for k, v in fns.items() if k in args.programs}
    compiled, rows = {}, {}
    for name, (fn, inputs) in fns.items():
        t0 = time.perf_counter()
        compiled[name] = fn.lower(*inputs(jax.random.key(1))).compile()
        rows[name] = {"compile_s": time.perf_counter() - t0, "runs_s": [],
                      "temp_mb": _temp_mb(compiled[name])}
        jax.block_until_ready(compiled[name](*inputs(jax.random.key(1))))
    for i in range(args.repeats):  # interleaved, so that drift hits all alike
        for name, (_, a) in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled[name](*a(jax.random.key(10 + i))))
            rows[name]["runs_s"].append(time.perf_counter() - t0)
    for name, row in rows.items():
        row["median_s"] = statistics.median(row["runs_s"])
        print(f"{name:>29}: {1e3 * row['median_s']:6.1f} ms per meta-episode (compile "
              f"{row['compile_s']:.1f} s, XLA temp {row['temp_mb']:.0f} MB)")
    if args.profile:
        for name, (_, a) in fns.items():
            rows[name]["kernels"] = top_kernels(compiled[name], a(jax.random.key(99)))
            print_kernels(rows[name]["kernels"], name)
    ratio = {f"{m}{o}": rows[f"library_{m}"]["median_s"] / rows[f"plain_{m}{o}"]["median_s"]
             for m in ("forward", "reverse") for o in ("", "_xla_options")
             if f"library_{m}" in rows and f"plain_{m}{o}" in rows}
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "backend": jax.default_backend(),
                    "devices": len(jax.devices())},
        "workload": {"sizes": SIZES, "updates": WAYS * SHOTS, "queries": WAYS * QUERIES},
        **rows,
        "library_over_plain": ratio,
        "programs": list(rows),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "target_s": 0.090, "target_memory_gb": 1.0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_results(Path(args.out), result)
    ratios = ", ".join(f"{m} {r:.2f}" for m, r in ratio.items())
    print(f"library/plain: {ratios}; peak RSS ({', '.join(rows)}) "
          f"{result['peak_rss_mb']:.0f} MB; target 90 ms, 1 GB -> {args.out}")


if __name__ == "__main__":
    main()
