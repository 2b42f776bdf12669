"""The `online` constraint check compiled for its memory analysis only: with LLVM's
optimisation (as any program) or without it (``metaplastic.xla.compile_for_analysis``).

    python benchmarks/bench_analysis_compile.py [--presets oja mlp-digits mlpp-emnist-shape]
        [--rounds 2] [--out benchmarks/results/analysis_compile.json]

Each measurement is a fresh process (the persistent compilation cache off) that builds
the preset's pieces and times :func:`metaplastic.analysis.plausibility.check_online`,
the two ways alternating within each round; the verdict and its byte counts are recorded
so that both ways are seen to report the same analysis. Medians and their ratio
(without / with) per preset.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

from _cli import check_presets, last_json, main_of, run_child, write_results

OUT = Path(__file__).parent / "results" / "analysis_compile.json"

CHILD = """
import json, os, sys, time
os.environ["METAPLASTIC_CACHE_DIR"] = "off"
import jax
from metaplastic import xla
if sys.argv[2] == "optimised":
    xla.ANALYSIS_OPTIONS = {}
from metaplastic.analysis import plausibility
from metaplastic.experiments.build import build
from metaplastic.experiments.study import presets
_, make = presets()[sys.argv[1]]
pieces = build(make())
theta = pieces.rule.init(jax.random.key(0), pieces.network.shapes)
t = time.perf_counter()
r = plausibility.check_online(pieces.network, pieces.rule, theta, pieces.task,
                              jax.random.key(1))
print(json.dumps({"seconds": time.perf_counter() - t, "holds": r.holds, "detail": r.detail}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["oja", "mlp-digits", "mlpp-emnist-shape"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    from metaplastic.experiments.presets import PRESETS  # a rule study's pieces are built

    check_presets(p, args.presets, known=PRESETS)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    out: dict = {"command": "python benchmarks/bench_analysis_compile.py --presets "
                            + " ".join(args.presets) + f" --rounds {args.rounds}",
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                 "presets": {}}
    for preset in args.presets:
        runs: dict = {"optimised": [], "analysis": []}
        for _ in range(args.rounds):
            for way in runs:
                what = f"{preset}'s online check ({way})"
                r = run_child([sys.executable, "-c", CHILD, preset, way], what)
                runs[way].append(last_json(r, what))
        med = {w: statistics.median(x["seconds"] for x in v) for w, v in runs.items()}
        same = len({(x["holds"], x["detail"]) for v in runs.values() for x in v}) == 1
        out["presets"][preset] = {"runs": runs, "median_s": med,
                                  "ratio": med["analysis"] / med["optimised"],
                                  "same_analysis": same}
        print(f"{preset}: online check {med['optimised']:.2f} s -> {med['analysis']:.2f} s "
              f"({med['analysis'] / med['optimised']:.2f}); same verdict and bytes: {same}",
              flush=True)
    write_results(args.out, out)


if __name__ == "__main__":
    main_of(main, "nothing was written")
