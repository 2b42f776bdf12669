"""Where a compiled program's time goes: XLA's kernels (fusions, dots, copies), summed
over one or more calls from a ``jax.profiler`` trace.

Used by the workload benchmarks' ``--profile``. XLA's CPU runtime may run independent
kernels at the same time on its two threads, so the sum over kernels can exceed the wall
time; the ranking is what tells where to look.
"""

from __future__ import annotations

import collections
import glob
import re
import tempfile

import jax


def top_kernels(compiled, args, calls: int = 2, top: int = 15) -> list[dict]:
    """The ``top`` kernels of the compiled program ``compiled(*args)`` by time: ms per call,
    launches per call, and the kernel's output shape (from the optimised HLO)."""
    hlo = compiled.as_text()
    jax.block_until_ready(compiled(*args))
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(calls):
                jax.block_until_ready(compiled(*args))
        from jax.profiler import ProfileData

        data = ProfileData.from_file(glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)[0])
        total = collections.defaultdict(lambda: [0, 0.0])
        for plane in data.planes:
            for line in plane.lines:
                if not line.name.startswith("tf_XLA"):  # XLA's worker threads
                    continue
                for event in line.events:
                    if "Execute" in event.name or event.name.startswith("while"):
                        continue  # the executor and loops themselves, not kernels
                    row = total[event.name]
                    row[0] += 1
                    row[1] += event.duration_ns
    rows = sorted(total.items(), key=lambda kv: -kv[1][1])[:top]
    return [{"kernel": name, "shape": _shape(hlo, name), "ms_per_call": ns / 1e6 / calls,
             "launches_per_call": n // calls} for name, (n, ns) in rows]


def _shape(hlo: str, name: str) -> str:
    m = re.search(rf"%{re.escape(name)} = ([^ ]+) ", hlo)
    return re.sub(r"\{[0-9,]*\}", "", m.group(1)) if m else "?"


def print_kernels(rows: list[dict], title: str) -> None:
    print(f"{title}: top kernels (ms per call, launches)")
    for r in rows:
        print(f"  {r['ms_per_call']:8.2f} ms {r['launches_per_call']:7d}  {r['kernel']:28s} "
              f"{r['shape']}")
