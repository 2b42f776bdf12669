"""Streaming memory bandwidth as XLA sees it: the roofline for per-synapse rules.

A jitted ``lax.scan`` of ``x <- 0.999 x + b`` over arrays of a given size (2 reads and 1
write per element per step) — the access pattern of a plastic update with per-synapse
coefficients. Arrays that fit the caches stream faster than ones that come from DRAM.

Usage: python benchmarks/bench_bandwidth.py [--sizes-mb 0.5 4 8 64 256]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from _cli import write_results


def bandwidth(mb: float, steps: int = 200, repeats: int = 5) -> float:
    n = int(mb * 2**20 / 4)
    a, b = jnp.ones(n), jnp.full(n, 2.0)

    def f(a, b):
        return jax.lax.scan(lambda c, _: (c * 0.999 + b, None), a, None, length=steps)[0]

    compiled = jax.jit(f).lower(a, b).compile()
    jax.block_until_ready(compiled(a, b))
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(a, b))
        runs.append(time.perf_counter() - t0)
    return 3 * n * 4 * steps / statistics.median(runs) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mb", type=float, nargs="+", default=[0.5, 4, 8, 64, 256])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bandwidth.json"))
    args = ap.parse_args()
    result = {"backend": jax.default_backend(), "jax": jax.__version__,
              "gb_per_s": {str(mb): bandwidth(mb) for mb in args.sizes_mb}}
    for mb, gbs in result["gb_per_s"].items():
        print(f"{mb:>6} MB per array: {gbs:6.1f} GB/s")
    write_results(Path(args.out), result)


if __name__ == "__main__":
    main()
