"""mixture-fewshot's safeguards ablated one at a time, over meta-training seeds 0-2, on the
two depth-5 headline columns (docs/results.md, "What each safeguard did").

    metaplastic run mixture-fewshot --seeds 0-2 --no-eval --out runs/abl/standard
    metaplastic run mixture-fewshot --seeds 0-2 --no-eval --out runs/abl/noclip \\
        --set meta.task_loss_clip=0
    metaplastic run mixture-fewshot --seeds 0-2 --no-eval --out runs/abl/nobound \\
        --set network.update_bound_w=0 --set network.update_bound_init=0
    metaplastic run mixture-fewshot --seeds 0-2 --no-eval --out runs/abl/nopartclip \\
        --set meta.part_clip=0
    python benchmarks/mixture_seeds.py runs/abl/<each>/mixture-fewshot-seeds-* \\
        --evaluate headline last --out <each>.json
    python benchmarks/mixture_ablations.py standard.json noclip.json nobound.json \\
        nopartclip.json

Each input is the JSON that benchmarks/mixture_seeds.py writes for one configuration.
Keep-best is ablated without training again: ``last`` evaluates the last meta-step's θ of
the same runs (``eval.theta = "last"``; keep-best does not change the trajectory). Per
configuration and column: the learned rule's accuracy and the share of the FA-to-Adam gap
(mean over seeds ± 95% CI, t), the seeds that ended flagged, the rollbacks; and, where
evaluated, the last-θ rule and the FA control with meta-learned per-layer rates. Writes
benchmarks/results/mixture_ablations.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _cli import write_results

from metaplastic._stats import mean_ci

OUT = Path(__file__).parent / "results" / "mixture_ablations.json"
LAST = "learned, last θ (no keep-best)"
FA_RATES = "FA, meta-learned per-layer rates"


def row(data: dict) -> dict:
    out = {"seeds": [s["seed"] for s in data["seeds"]], "flagged": data["flagged"],
           "rollbacks": [s["rollbacks"] for s in data["seeds"]], "columns": {}}
    for col, cells in data["columns"].items():
        entry = {"learned": cells["learned"], "gap_fraction": cells["gap_fraction"]}
        for extra in (LAST, FA_RATES):
            if extra in cells:
                entry[extra] = cells[extra]
        if LAST in cells:  # the gap share of the last θ, per seed
            fa, adam = cells["FA"]["per_seed"], cells["backprop Adam"]["per_seed"]
            gaps = [(x - f) / (a - f) for x, f, a in zip(
                cells[LAST]["per_seed"], fa, adam, strict=True)]
            m, ci, n = mean_ci(gaps)
            entry["last_gap_fraction"] = {"mean": m, "ci95": ci, "n": n, "per_seed": gaps}
        out["columns"][col] = entry
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", type=Path,
                   help="mixture_seeds.py JSON files, one per configuration (the file's "
                        "stem names the row)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    table = {path.stem: row(json.loads(path.read_text())) for path in args.results}
    write_results(args.out, table)

    def fmt(v: dict, pct: bool = False) -> str:
        k = 100 if pct else 1
        return (f"{k * v['mean']:.1f} ± {k * v['ci95']:.1f}%" if pct
                else f"{v['mean']:.3f} ± {v['ci95']:.3f}")

    print("| configuration | column | rule | share of the gap | last θ | last θ's share | "
          "FA, per-layer rates | flagged | rollbacks |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in table.items():
        for col, c in r["columns"].items():
            print(f"| {name} | {col.split(' held-out')[0]} | {fmt(c['learned'])} | "
                  f"{fmt(c['gap_fraction'], True)} | "
                  f"{fmt(c[LAST]) if LAST in c else '-'} | "
                  f"{fmt(c['last_gap_fraction'], True) if 'last_gap_fraction' in c else '-'}"
                  f" | {fmt(c[FA_RATES]) if FA_RATES in c else '-'} | "
                  f"{len(r['flagged'])} of {len(r['seeds'])} | {r['rollbacks']} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
