"""Reproduction table for Oja's rule: `metaplastic run oja` over several seeds.

Runs the preset for each seed (training + held-out evaluation), then writes
benchmarks/results/repro_oja.json and prints the markdown table of docs/results.md.

Usage: python benchmarks/repro_oja.py [--seeds 0 1 2 3 4] [--out-dir /tmp/repro_oja]
       python benchmarks/repro_oja.py --table-only   (re-print from the saved JSON)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

from _cli import write_results

from metaplastic.experiments.evaluate import mean_ci


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out-dir", default="/tmp/repro_oja")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "repro_oja.json"))
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if args.table_only:
        print_table(json.loads(Path(args.out).read_text()))
        return
    per_seed = []
    for seed in args.seeds:
        out = Path(args.out_dir) / f"seed{seed}"
        subprocess.run([sys.executable, "-m", "metaplastic.cli", "run", "oja", "--seed",
                        str(seed), "--out", str(out)], check=True, capture_output=True)
        (run,) = sorted(out.iterdir())[-1:]
        summary = json.loads((run / "summary.json").read_text())
        rows = json.loads((run / "eval.json").read_text())["rows"]
        per_seed.append({"seed": seed, "seconds": summary["seconds"],
                         "reference_cosine": summary["reference_cosine"],
                         "formula": summary["formula"], "eval": rows})
        print(f"seed {seed}: cosine {summary['reference_cosine']:.3f} "
              f"({summary['seconds']:.1f} s)  {summary['formula']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_results(Path(args.out), per_seed)
    print_table(per_seed)


def print_table(per_seed):
    cos = [s["reference_cosine"] for s in per_seed]
    m, ci, n = mean_ci(cos)
    print(f"\ncosine with Oja's coefficients over {n} seeds: {m:.3f} ± {ci:.3f} "
          f"(min {min(cos):.3f}); meta-training time median "
          f"{statistics.median(s['seconds'] for s in per_seed):.1f} s\n")
    print("| rule | held-out tasks | abs cos(w, PC1): mean over seeds ± 95% CI | "
          "min over seeds | mean norm ||w|| |")
    print("|---|---|---|---|---|")
    keys = sorted({(r["rule"], r["variant"]) for s in per_seed for r in s["eval"]},
                  key=lambda k: (k[1], ["learned", "oja", "hebb"].index(k[0])
                                 if k[0] in ("learned", "oja", "hebb") else 9))
    for rule, variant in keys:
        vals = [r["abs_cos"]["mean"] for s in per_seed for r in s["eval"]
                if (r["rule"], r["variant"]) == (rule, variant)]
        norms = [r["norm"]["mean"] for s in per_seed for r in s["eval"]
                 if (r["rule"], r["variant"]) == (rule, variant)]
        mm, cc, _ = mean_ci(vals)
        cc_s = "n/a" if math.isnan(cc) else f"{cc:.4f}"
        print(f"| {rule} | {variant} | {mm:.4f} ± {cc_s} | {min(vals):.4f} | "
              f"{statistics.mean(norms):.3g} |")


if __name__ == "__main__":
    main()
