"""Where a whole run's compilation goes: every XLA program compiled by one command, with
its compile seconds and where in the library it was compiled.

    python benchmarks/demo_compile.py [-- run oja] [--out benchmarks/results/demo_compile.json]

Runs the command line in this process (default: ``run oja``, what ``make demo`` runs, with
its held-out evaluation) with the persistent compilation cache off, and records JAX's own
monitoring event for every backend compilation (``/jax/core/compile/backend_compile_duration``)
with the library's innermost call sites at that moment. Grouped by site into the JSON and
printed, the largest first. Compilations in the background thread (the first chunk's
program) are recorded like the others; their seconds overlap the foreground's, so the sum is
CPU time spent compiling, not wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import traceback
from collections import defaultdict
from pathlib import Path

from _cli import write_results

OUT = Path(__file__).parent / "results" / "demo_compile.json"
EVENT = "/jax/core/compile/backend_compile_duration"


def sites() -> str:
    """The library's three innermost frames of the current stack."""
    frames = [f"{f.filename.split('src/metaplastic/')[-1]}:{f.lineno}"
              for f in traceback.extract_stack() if "src/metaplastic/" in f.filename]
    return " < ".join(frames[::-1][:3]) or "(outside the library)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("command", nargs="*", default=["run", "oja"])
    args = p.parse_args()
    os.environ["METAPLASTIC_CACHE_DIR"] = "off"
    import jax.monitoring

    records: list[tuple[float, str, str]] = []

    def listen(event: str, duration: float, **kw) -> None:
        if event == EVENT:
            records.append((duration, str(kw.get("fun_name", "?")), sites()))

    jax.monitoring.register_event_duration_secs_listener(listen)
    from metaplastic.cli import main as cli

    t0 = time.perf_counter()
    rc = cli(list(args.command))
    wall = time.perf_counter() - t0
    grouped: dict = defaultdict(lambda: {"programs": 0, "seconds": 0.0})
    for seconds, name, where in records:
        g = grouped[f"{name} at {where}"]
        g["programs"] += 1
        g["seconds"] += seconds
    table = sorted(grouped.items(), key=lambda kv: -kv[1]["seconds"])
    total = sum(s for s, _, _ in records)
    out = {"command": "python benchmarks/demo_compile.py -- " + " ".join(args.command),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "exit_code": rc, "wall_s": round(wall, 2), "programs": len(records),
           "compile_s": round(total, 2),
           "by_site": [{"site": k, **{a: round(b, 3) for a, b in v.items()}}
                       for k, v in table]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, out)
    print(f"exit {rc}; {len(records)} programs, {total:.2f} s compiling, {wall:.1f} s wall")
    for k, v in table[:15]:
        print(f"{v['seconds']:6.2f} s  {v['programs']:3d}  {k}")


if __name__ == "__main__":
    main()
