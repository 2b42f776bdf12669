"""What more choices buy: `infer-reward-behaviour` fitted to more trajectories and longer
ones, with the identifiability report of each fit.

    python benchmarks/reward_identifiability_sweep.py [--fitted 3 10 30] [--block-trials 80 240]
                                 [--seeds 0-2] [--set KEY=VALUE ...] [--out JSON] [--table]

For every number of fitted trajectories (5 more are simulated and held out) and every
block length (3 blocks per trajectory: 240 or 720 choices), ``metaplastic run
infer-reward-behaviour`` with those recordings (``task.simulate.trajectories``,
``task.heldout``, ``task.simulate.source.block_trials``), all seeds as one program,
everything else as shipped (300 Adam steps of 6 trajectories from θ = 0). Per seed, from
its ``recovery.json``: the directions the data determine (of 18; 95% Wald half-width
<= 10% of |θ|), how many of them hold the truth, x·r's own coefficient
(``pre*modulator``, truth 1), the coefficient cosine, and the held-out deviance explained
by the inferred rule and by the truth.

Writes benchmarks/results/reward_identifiability_sweep.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import write_results

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "reward_identifiability_sweep.json"
HELD_OUT = 5


def one_setting(fitted: int, block_trials: int, seeds: str, out: Path,
                extra: list[str]) -> list[dict]:
    from metaplastic.cli import main

    total = fitted + HELD_OUT
    args = ["run", "infer-reward-behaviour", "--seeds", seeds, "--out", str(out),
            "--set", f"task.simulate.trajectories={total}",
            "--set", f"task.heldout={HELD_OUT / total!r}",
            "--set", f"task.simulate.source.block_trials={block_trials}"]
    for assignment in extra:
        args += ["--set", assignment]
    started = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"`metaplastic {' '.join(args)}` exited {code}")
    rows = []
    for rec in sorted(out.glob("*/seed-*/recovery.json")):
        r = json.loads(rec.read_text())
        ident, coef = r["identifiability"], r["coefficients"]
        held = r["splits"]["heldout"]["rules"]
        names = coef["names"]
        assert r["trajectories"] == {"train": fitted, "heldout": HELD_OUT}, r["trajectories"]
        rows.append({
            "fitted": fitted, "choices_per_trajectory": 3 * block_trials,
            "seed": int(rec.parent.name.split("-")[1]),
            "determined": ident["determined_directions"],
            "truth_inside_determined": ident.get("truth_inside_determined"),
            "withheld": bool(ident.get("intervals_withheld")),
            "xr": coef["inferred"][names.index("pre*modulator")],
            "cosine": coef["cosine"],
            "deviance_inferred": held["inferred"]["deviance_explained"],
            "deviance_truth": held["truth"]["deviance_explained"],
            "seconds_all_seeds": seconds, "set": list(extra)})
    return rows


def table(rows: list[dict]) -> str:
    out = ["| fitted trajectories × choices | determined directions (of 18), per seed | of "
           "them holding the truth | x·r coefficient (truth 1), per seed | cosine, per seed "
           "| held-out deviance explained: inferred / truth (mean) |",
           "|---|---|---|---|---|---|"]
    keys = sorted({(r["fitted"], r["choices_per_trajectory"]) for r in rows})
    for fitted, choices in keys:
        rs = sorted((r for r in rows if (r["fitted"], r["choices_per_trajectory"])
                     == (fitted, choices)), key=lambda r: r["seed"])
        det = ", ".join(str(r["determined"]) for r in rs)
        inside = ", ".join("withheld" if r.get("withheld") else
                           str(r["truth_inside_determined"]) for r in rs)
        xr = ", ".join(format(r["xr"], "+.2f") for r in rs)
        cos = ", ".join(format(r["cosine"], ".2f") for r in rs)
        dev = 100 * np.mean([r["deviance_inferred"] for r in rs])
        dev_t = 100 * np.mean([r["deviance_truth"] for r in rs])
        out.append(f"| {fitted} × {choices} | {det} | {inside} | {xr} | {cos} | "
                   f"{dev:.1f} / {dev_t:.1f}% |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fitted", type=int, nargs="+", default=[3, 10, 30])
    ap.add_argument("--block-trials", type=int, nargs="+", default=[80, 240])
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--set", dest="extra", nargs="+", default=[], metavar="KEY=VALUE",
                    help="more overrides of the preset (e.g. meta.l1=0 meta.steps=1000)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--table", action="store_true", help="print the table of the JSON")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())["rows"]))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for block_trials in args.block_trials:
            for fitted in args.fitted:
                out = Path(tmp) / f"{fitted}x{block_trials}"
                rows += one_setting(fitted, block_trials, args.seeds, out, args.extra)
                write_results(args.out, {"command": " ".join(
                    ["python", "benchmarks/reward_identifiability_sweep.py", *sys.argv[1:]]),
                    "rows": rows})
                print(table(rows), flush=True)


if __name__ == "__main__":
    main()
