"""Hebbian rule vs evolved static weights, same ES budget, on held-out physics.

Runs `metaplastic run PRESET --seed S` for both presets of a pair and several seeds (each
run: meta-training, then 100 evaluation episodes per row with fresh random weights), and
prints the markdown table of docs/results.md; JSON in benchmarks/results/.

Usage: python benchmarks/heldout_physics.py [--pair acrobot] [--seeds 0 1 2]
       python benchmarks/heldout_physics.py --table-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _cli import write_results

from metaplastic.experiments.evaluate import mean_ci


def run_all(pair: str, seeds: list[int], out_dir: Path) -> list[dict]:
    results = []
    for preset in (f"{pair}-hebbian", f"{pair}-static"):
        for seed in seeds:
            out = out_dir / f"{preset}-{seed}"
            subprocess.run([sys.executable, "-m", "metaplastic.cli", "run", preset, "--seed",
                            str(seed), "--out", str(out)], check=True, capture_output=True)
            run = sorted(out.iterdir())[-1]
            summary = json.loads((run / "summary.json").read_text())
            rows = json.loads((run / "eval.json").read_text())["rows"]
            results.append({"preset": preset, "seed": seed, "seconds": summary["seconds"],
                            "rows": [r for r in rows if r["rule"] == "learned"]})
            print(f"{preset} seed {seed}: {summary['seconds']:.1f} s; " + "; ".join(
                f"{r['variant']}: {r['return']['mean']:.1f}" for r in results[-1]["rows"]),
                flush=True)
    return results


def print_table(results: list[dict]) -> None:
    variants = [r["variant"] for r in results[0]["rows"]]
    presets = sorted({r["preset"] for r in results}, key=lambda p: "static" in p)
    print("| evaluation physics | " + " | ".join(presets) + " |")
    print("|---|" + "---|" * len(presets))
    for v in variants:
        cells = []
        for p in presets:
            means = [row["return"]["mean"] for r in results if r["preset"] == p
                     for row in r["rows"] if row["variant"] == v]
            m, ci, n = mean_ci(means)
            cells.append(f"{m:.1f} ± {ci:.1f} (n={n})")
        print(f"| {v} | " + " | ".join(cells) + " |")
    for p in presets:
        secs = [r["seconds"] for r in results if r["preset"] == p]
        print(f"\n{p}: meta-training {min(secs):.1f}–{max(secs):.1f} s per seed", end="")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="acrobot")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out-dir", default="/tmp/heldout_physics")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    out = Path(__file__).parent / "results" / f"heldout_{args.pair}.json"
    if args.table_only:
        results = json.loads(out.read_text())
    else:
        results = run_all(args.pair, args.seeds, Path(args.out_dir))
        out.parent.mkdir(parents=True, exist_ok=True)
        write_results(out, results)
    print_table(results)


if __name__ == "__main__":
    main()
