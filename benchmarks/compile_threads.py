"""How many cores XLA's CPU compiler keeps busy: a preset's meta-step program compiled
once, its wall and CPU seconds (this process's CPU time while it compiles), and the
seconds spent tracing and lowering it before (any study's preset: rule runs,
selection-meta). CPU seconds / the machine's cores bound the compilation's wall time
from below, whatever the threads.

    python benchmarks/compile_threads.py [--presets oja mlp-digits] [--out F]

One fresh process per preset, the persistent compilation cache off; JSON to
benchmarks/results/compile_threads.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from _cli import check_presets, last_json, main_of, run_child, write_results

OUT = Path(__file__).parent / "results" / "compile_threads.json"

CHILD = r"""
import json, os, sys, time
os.environ["METAPLASTIC_CACHE_DIR"] = "off"
import jax, jax.numpy as jnp
from metaplastic.experiments.study import presets
from metaplastic.meta import driver
study, make = presets()[sys.argv[1]]
cfg = make()
built = study.build(cfg, evaluation=False)
key = jax.random.key(1)
theta = study.init(cfg, built, jax.random.key(0))
fn = driver._chunk_fn(built.outer, built.objective, built.outer.truncation_at(0), "",
                      study.guard(cfg))
t0 = time.perf_counter()
lowered = fn.lower(driver.init(built.outer, built.objective, theta, key), key,
                   jnp.asarray(built.outer.steps, jnp.int32))
trace_s = time.perf_counter() - t0
wall, cpu = time.perf_counter(), time.process_time()
lowered.compile()
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"trace_lower_s": round(trace_s, 2), "wall_s": round(wall, 2),
                  "cpu_s": round(cpu, 2), "cores_busy": round(cpu / wall, 2)}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["oja", "mlp-digits"])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    check_presets(p, args.presets)
    out: dict = {"command": "python benchmarks/compile_threads.py --presets "
                            + " ".join(args.presets),
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "presets": {}}
    for preset in args.presets:
        what = f"compiling {preset}'s meta-step program"
        done = run_child([sys.executable, "-c", CHILD, preset], what)
        out["presets"][preset] = last_json(done, what)
        print(preset, out["presets"][preset], flush=True)
    write_results(args.out, out)


if __name__ == "__main__":
    main_of(main, "nothing was written")
