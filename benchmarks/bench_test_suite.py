"""Wall time of `make test` in two checkouts, back to back, each with an empty compilation
cache: the suite's speed before and after a change, measured on one machine.

    python benchmarks/bench_test_suite.py --before /path/to/old/clone --after .

Each checkout must have its `.venv` installed (`make test` once). The test session's
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
import subprocess
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "test_suite.json"


def run_suite(checkout: Path, target: str) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {"METAPLASTIC_TEST_CACHE": cache, "METAPLASTIC_CACHE_DIR": cache}
        t0 = time.perf_counter()
        done = subprocess.run(["make", "--no-print-directory", "-C", str(checkout), target],
                              capture_output=True, text=True, env={**_env(), **env})
        wall = time.perf_counter() - t0
    lines = [ln for ln in done.stdout.splitlines() if re.search(r"\d+ passed", ln)]
    tail = lines[-1].strip("= ") if lines else ""
    pytest_s = re.search(r" in ([0-9.]+)s", tail)
    return {"checkout": str(checkout), "target": target, "wall_s": round(wall, 1),
            "pytest_s": float(pytest_s.group(1)) if pytest_s else None,
            "exit_status": done.returncode, "summary": tail}


def _env() -> dict:
    return dict(os.environ)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True)
    p.add_argument("--after", type=Path, default=Path("."))
    p.add_argument("--target", default="test")
    args = p.parse_args()
    before = run_suite(args.before.resolve(), args.target)
    after = run_suite(args.after.resolve(), args.target)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "before": before, "after": after,
              "after_over_before": round(after["wall_s"] / before["wall_s"], 3),
              "note": "wall_s includes make's install check; pytest_s is pytest's own time"}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
