"""Wall time of `make test` in two checkouts, back to back, each with an empty compilation
cache: the suite's speed before and after a change, measured on one machine.

    python benchmarks/bench_test_suite.py --before /path/to/old/clone --after . [--rounds 2]

With ``--rounds N`` the two alternate N times (before, after, before, after, ...); the
JSON holds every run (lists ``before`` and ``after``) and the medians' ratio. Each
checkout must have its `.venv` installed (`make test` once). The test session's
persistent compilation cache is pointed at a fresh temporary folder for each run
(METAPLASTIC_TEST_CACHE), so nothing compiled earlier is reused. Writes
benchmarks/results/test_suite.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _cli import write_results

OUT = Path(__file__).parent / "results" / "test_suite.json"


def run_suite(checkout: Path, target: str) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {"METAPLASTIC_TEST_CACHE": cache, "METAPLASTIC_CACHE_DIR": cache}
        t0 = time.perf_counter()
        done = subprocess.run(["make", "--no-print-directory", "-C", str(checkout), target],
                              capture_output=True, text=True, env={**_env(), **env})
        wall = time.perf_counter() - t0
    # one summary line per pytest call the target makes
    lines = [ln.strip("= ") for ln in done.stdout.splitlines()
             if re.search(r"\d+ (passed|failed)", ln)]
    seconds = [re.search(r" in ([0-9.]+)s", ln) for ln in lines]
    return {"checkout": str(checkout), "target": target, "wall_s": round(wall, 1),
            "pytest_s": round(sum(float(m.group(1)) for m in seconds if m), 2) if lines
            else None,
            "exit_status": done.returncode, "summary": " + ".join(lines)}


def _env() -> dict:
    return dict(os.environ)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True)
    p.add_argument("--after", type=Path, default=Path("."))
    p.add_argument("--target", default="test")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(args.rounds):  # alternating: a slow moment hits both alike
        for which in ("before", "after"):
            runs[which].append(run_suite(getattr(args, which).resolve(), args.target))
            print(which, runs[which][-1]["wall_s"], "s", runs[which][-1]["summary"],
                  flush=True)
    median = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "command": "python benchmarks/bench_test_suite.py " + " ".join(
                  f"--{k} {v}" for k, v in (("before", args.before), ("after", args.after),
                                            ("target", args.target),
                                            ("rounds", args.rounds))),
              **runs,
              "median_wall_s": median,
              "after_over_before": (round(median["after"] / median["before"], 3)
                                    if median["before"] > 0 else None),
              "note": "wall_s includes make's install check; pytest_s is pytest's own time "
                      "(summed over the pytest calls the target makes)"}
    args.out.parent.mkdir(exist_ok=True)
    write_results(args.out, result)
    print(json.dumps(result, indent=2))
    failed = [f"{k} (exit {r['exit_status']})" for k, v in runs.items() for r in v
              if r["exit_status"] != 0]
    if failed:  # a failing suite's time is not the suite's time
        raise SystemExit(f"make {args.target} failed in: {', '.join(failed)}; the times in "
                         f"{args.out} are not those of a passing suite")


if __name__ == "__main__":
    main()
