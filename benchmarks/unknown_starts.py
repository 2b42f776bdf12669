"""Recovery when the starting weights were not recorded: how long must trajectories be?

    python benchmarks/unknown_starts.py [--lengths 500 1000 2000 5000] [--seeds 0-2]
        [--burn-in 100] [--steps 400] [--set KEY=VALUE ...]
        [--out benchmarks/results/unknown_starts.json]

The ``infer-oja-activity`` setting (recordings simulated per length with
``task.simulate.source.n_steps``; everything else the preset's), fitted three ways at each
length, each with ``--steps`` meta-steps (the preset's Adam; fewer than its 1000, the same
for every way): from the **recorded** starts (the preset's); from starts **drawn** by the
network (``task.initial = "drawn"``: the recordings' start distribution, not their
values) with every step compared; and drawn with the first ``--burn-in`` steps learned
from but not compared (``task.burn_in``: the time the rule needs to forget its start);
and a start **fitted per trajectory** from its own recordings (``task.initial =
"fitted_each"``, nothing held out).
Each is ``metaplastic run infer-oja-activity --seeds S`` with those settings (the seeds as
one program). Scores per seed, from the run's ``recovery.json``: the cosine between the
inferred and Oja's coefficients, the held-out activity R² (every held-out trajectory once;
drawn starts are drawn for the held-out trajectories too) and the truth's. A length
"suffices" when the drawn starts' mean cosine is at least the lower end of the 95% CI of
the recorded starts' at that length (t-interval over the seeds that did not diverge; a
seed whose run stopped is counted as diverged, not dropped silently).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import write_results

OUT = Path(__file__).parent / "results" / "unknown_starts.json"
WAYS = {"recorded": [], "drawn": ["task.initial=drawn"],
        "drawn+burn-in": ["task.initial=drawn", "task.burn_in={burn}"],
        # a start per trajectory, fitted from its own recordings: nothing is held out
        "fitted-each": ["task.initial=fitted_each", "task.heldout=0",
                        'eval.variants=[{{label = "training trajectories"}}]']}


def run(length: int, way: str, seeds: str, burn: int, out: Path, steps: int,
        extra: tuple[str, ...] = ()) -> list[dict]:
    from metaplastic.cli import main

    sets = [f"task.simulate.source.n_steps={length}", f"meta.steps={steps}",
            *(s.format(burn=burn) for s in WAYS[way]), *extra]
    args = ["run", "infer-oja-activity", "--seeds", seeds, "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    t = time.perf_counter()
    code = main(args)  # not 0 where a seed diverged: counted, not fatal
    seconds = time.perf_counter() - t
    rows = []
    for seed_dir in sorted(next(out.iterdir()).glob("seed-*")):
        status = json.loads((seed_dir / "summary.json").read_text()).get("status", "?")
        if status != "finished" or not (seed_dir / "recovery.json").is_file():
            rows.append({"seed": int(seed_dir.name.split("-")[1]), "status": status,
                         "exit": code})
            continue
        rec = json.loads((seed_dir / "recovery.json").read_text())
        held = rec["splits"].get("heldout", {}).get("rules")
        train = rec["splits"]["train"]["rules"]
        rows.append({"seed": int(seed_dir.name.split("-")[1]),
                     "cosine": rec["coefficients"]["cosine"],
                     "heldout_r2": held["inferred"]["r2"]["mean"] if held else None,
                     "heldout_r2_truth": held["truth"]["r2"]["mean"] if held else None,
                     "train_r2": train["inferred"]["r2"]["mean"],
                     "train_r2_truth": train["truth"]["r2"]["mean"],
                     # rollbacks of the safeguards (meta.on_nan = "rollback": a streak
                     # of diverging fits undone with the step size cut)
                     "rollbacks": _rollbacks(seed_dir),
                     "seconds_all_seeds": round(seconds, 1)})
    return rows


def _rollbacks(run: Path) -> list[int]:
    """The meta-steps at which a seed's run was rolled back (summary.json's guard)."""
    try:
        guard = json.loads((run / "summary.json").read_text()).get("guard") or {}
    except (OSError, ValueError):
        return []
    return [int(e["at_step"]) for e in guard.get("events", [])]


def ci(values: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    v = np.asarray(values, float)
    half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 \
        else float("nan")
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--burn-in", type=int, default=100)
    ap.add_argument("--steps", type=int, default=400,
                    help="meta-steps of every fit (the preset: 1000; the comparison is "
                         "between ways at equal steps)")
    ap.add_argument("--ways", nargs="+", default=list(WAYS), choices=list(WAYS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config change for every fit (e.g. meta.warmup=25)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    data = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data.update(machine=f"{platform.machine()}, {platform.processor() or '?'}",
                command="python benchmarks/unknown_starts.py " + " ".join(
                    " ".join(f"--set {x}" for x in v) if k == "set" else
                    f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in vars(args).items() if k != "out" and v != []),
                burn_in=args.burn_in)
    results = data.setdefault("results", {})
    for length in args.lengths:
        for way in args.ways:
            key = f"{length}/{way}"
            if key in results:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                rows = run(length, way, args.seeds, args.burn_in, Path(tmp), args.steps,
                           tuple(args.set))
            done = [r for r in rows if "cosine" in r]
            cos = ci([r["cosine"] for r in done])
            held = [r["heldout_r2"] for r in done if r["heldout_r2"] is not None]
            results[key] = {"length": length, "way": way, "seeds": rows,
                            "diverged": len(rows) - len(done),
                            "cosine_mean_ci": cos,
                            "heldout_r2_mean": float(np.mean(held)) if held else None,
                            "train_r2_mean": float(np.mean([r["train_r2"] for r in done]))}
            print(f"{key}: cosine {cos[0]:.4f} [{cos[1]:.4f}, {cos[2]:.4f}], training R² "
                  f"{results[key]['train_r2_mean']:.4f}, {len(rows) - len(done)} of "
                  f"{len(rows)} seeds diverged", flush=True)
            write_results(args.out, data)
    for length in args.lengths:
        rec = results.get(f"{length}/recorded")
        if not rec:
            continue
        for way in ("drawn", "drawn+burn-in", "fitted-each"):
            other = results.get(f"{length}/{way}")
            if other:
                lo = rec["cosine_mean_ci"][1]  # as good as recorded starts, within their CI
                other["as_good_within_ci"] = bool(other["cosine_mean_ci"][0] >= lo)
    write_results(args.out, data)


if __name__ == "__main__":
    main()
