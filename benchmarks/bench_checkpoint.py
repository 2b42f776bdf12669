"""What saving the run's state after every chunk costs on `metaplastic run oja`.

    python benchmarks/bench_checkpoint.py [--preset oja] [--repeats 3]

Meta-trains the preset (compiled once beforehand) with and without the checkpoint callback
that `metaplastic run` uses (`RunDir.save_checkpoint`: the driver's whole state as .npz,
written to a temporary name and renamed), alternating, and reports the medians and their
ratio; also the median time of one save and the share of meta-training time that the
saves take (saves x one save / meta-training time). Writes
benchmarks/results/checkpoint.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
from _cli import check_presets, main_of, write_results

from metaplastic.experiments import presets
from metaplastic.experiments.build import build
from metaplastic.experiments.rundir import RunDir

OUT = Path(__file__).parent / "results" / "checkpoint.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="oja")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    check_presets(ap, [args.preset], known=presets.PRESETS)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    pieces = build(presets.get(args.preset))
    k_init, k_meta = jax.random.split(jax.random.key(0))
    theta0 = pieces.rule.init(k_init, pieces.network.shapes)
    outer, objective = pieces.outer, pieces.objective
    with tempfile.TemporaryDirectory() as d:
        run = RunDir(d)
        saves = []

        def save(state):
            t0 = time.perf_counter()
            run.save_checkpoint(state)
            saves.append(time.perf_counter() - t0)

        def once(checkpoint):
            t0 = time.perf_counter()
            result = outer.run(objective, theta0, key=k_meta, checkpoint=checkpoint)
            jax.block_until_ready(result.theta)
            return time.perf_counter() - t0

        once(None)  # compile
        with_ckpt, without = [], []
        for _ in range(args.repeats):
            without.append(once(None))
            with_ckpt.append(once(save))
        size = (Path(d) / "checkpoint.npz").stat().st_size
    chunks = -(-outer.steps // outer.chunk)
    t_with, t_without = statistics.median(with_ckpt), statistics.median(without)
    one_save = statistics.median(saves)
    out = {
        "preset": args.preset, "meta_steps": outer.steps, "chunk": outer.chunk,
        "saves_per_run": chunks, "checkpoint_bytes": size,
        "meta_training_s": {"with_checkpoints": with_ckpt, "without": without,
                            "median_with": t_with, "median_without": t_without},
        "ratio_with_over_without": t_with / t_without,
        "one_save_median_s": one_save,
        "save_share_of_meta_training": chunks * one_save / t_with,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "device": jax.devices()[0].device_kind},
    }
    write_results(OUT, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main_of(main, "nothing was written")
