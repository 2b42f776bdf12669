"""Stop runs at every moment and by every fault, resume them with `metaplastic resume`,
and compare θ with the same run never stopped.

    python benchmarks/interruption_matrix.py [--quick]

Outer loops: meta-gradients (`oja`), CMA-ES (`oja-es`), PES (`oja`, truncated ES), and a
`--seeds 0-1` group of meta-gradient runs. Faults, each one cell per loop:

* SIGINT / SIGTERM at **start-up** (0.3 s after launch: imports, before the run directory)
  and during the **first compile** (once config.toml exists, before the first checkpoint);
* SIGINT / SIGTERM / SIGKILL **mid-run** (after the first checkpoint);
* SIGTERM at the **final save** (once the last chunk's metrics are written: θ, checkpoint
  and summary being saved) and during **evaluation** (once training's summary says
  finished);
* a **full disk**: a real file-size limit (RLIMIT_FSIZE, ``ulimit -f``) that metrics.jsonl
  outgrows mid-run;
* a **killed peer**: a 2-process run (``--coordinator``), process 1 killed by SIGKILL mid-run;
  process 0 must stop by itself (exit 5), and the resume runs with 2 processes.

For each cell: the exit status, the first line said, whether a traceback or a C++ stack
was printed, what the run directory holds (summary status; meta-steps in summary / metrics
/ checkpoint), the exit status of `metaplastic resume` (or why it does not apply), and
whether the resumed θ equals the uninterrupted run's bit for bit (multi-process: within
1e-6, the tasks split across processes). Writes benchmarks/results/interruption_matrix.json
and prints a markdown table (docs/runs.md). ``--quick``: the meta-gradient loop only;
``--only FAULT``: that fault alone, merged into the existing JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import write_results

OUT = Path(__file__).parent / "results" / "interruption_matrix.json"
STEPS = 60
SETS = ["task.n_steps=2000", "task.n_in=4", "meta.chunk=2", "eval.tasks=0",
        "constraints=[]", f"meta.steps={STEPS}"]
LOOPS = {
    "meta-gradient": ("oja", [], []),
    "CMA-ES": ("oja-es", ["meta.population=8"], []),
    "PES": ("oja", ["meta.outer='es'", "meta.strategy='pes'", "meta.population=8",
                    "meta.truncation=500"], []),
    "seeds group": ("oja", [], ["--seeds", "0-1"]),
}
ENV = dict(os.environ, METAPLASTIC_CACHE_DIR="off", JAX_PLATFORMS="cpu")
FSIZE = 25_000  # bytes per file: metrics.jsonl (about 1 kB a meta-step) outgrows it mid-run


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "metaplastic.cli", *args]


def sets(extra: list[str]) -> list[str]:
    return [a for s in [*SETS, *extra] for a in ("--set", s)]


def runs_in(out: Path) -> list[Path]:
    """The run directories under ``out`` (the seeds of a group)."""
    found = []
    for d in sorted(out.iterdir()) if out.is_dir() else []:
        seeds = sorted(d.glob("seed-*"))
        found += seeds if seeds else [d]
    return found


def thetas(out: Path) -> list[np.ndarray] | None:
    try:
        return [np.load(r / "theta.npz")["coef"] for r in runs_in(out)]
    except (OSError, KeyError, ValueError):
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, proc, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and not cond() and proc.poll() is None:
        time.sleep(0.02)


def _has(out: Path, pattern: str) -> bool:
    return bool(list(out.glob(pattern)))


def _finished_training(out: Path) -> bool:
    for p in out.glob("**/summary.json"):
        try:
            if json.loads(p.read_text()).get("status") == "finished":
                return True
        except (OSError, ValueError):
            pass
    return False


def _kill_tree(proc: subprocess.Popen, sig: int) -> None:
    """``sig`` to a launched process and, for SIGKILL, to the process it watches (the CLI's
    multi-process parent runs the work in a child)."""
    if sig == signal.SIGKILL:
        try:
            children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        except OSError:
            children = []
        for pid in children:
            try:
                os.kill(int(pid), sig)
            except ProcessLookupError:
                pass
    proc.send_signal(sig)


def launch(args: list[str], out: Path, limited: bool = False) -> subprocess.Popen:
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE, FSIZE))

    return subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, preexec_fn=limit if limited else None)


def files(out: Path) -> str:
    """What the run directory holds: summary status, meta-steps in summary / metrics /
    checkpoint (the first seed of a group)."""
    runs = runs_in(out)
    if not runs:
        return "no run directory"
    run = runs[0]
    parts = []
    if (run / "summary.json").is_file():
        s = json.loads((run / "summary.json").read_text())
        parts.append(f"{s['status'].split(':')[0]}, {s.get('meta_steps', '-')}")
    else:
        parts.append("no summary")
    metrics = run / "metrics.jsonl"
    parts.append(str(len(metrics.read_text().splitlines())) if metrics.is_file() else "-")
    if (run / "checkpoint.npz").is_file():
        with np.load(run / "checkpoint.npz") as f:
            parts.append(str(int(f["leaf_0"].reshape(-1)[0])))
    else:
        parts.append("-")
    return " / ".join(parts)


def cell(root: Path, loop: str, fault: str, reference: list[np.ndarray]) -> dict:
    preset, extra, more = LOOPS[loop]
    out = root / "stopped"
    eval_sets = ["--set", "eval.tasks=200"] if fault == "SIGTERM in evaluation" else []
    args = ["run", preset, *([] if eval_sets else ["--no-eval"]), "--out", str(out),
            *sets(extra), *more, *eval_sets]
    peers = fault == "killed peer"
    if peers:
        port = _free_port()
        procs = [launch([*args, "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                         "2", "--process-id", str(i), "--peer-timeout", "30"], out)
                 for i in range(2)]
        proc = procs[0]
    else:
        proc = launch(args, out, limited=fault == "full disk (RLIMIT_FSIZE)")
    if fault.endswith("at start-up"):
        time.sleep(0.3)
    elif fault.endswith("in first compile"):
        _wait(lambda: _has(out, "**/config.toml"), proc)
    elif fault == "SIGTERM in evaluation":
        _wait(lambda: _finished_training(out), proc)
    elif fault == "SIGTERM at the final save":  # the last chunk's metrics are written
        _wait(lambda: any(len(p.read_text().splitlines()) >= STEPS
                          for p in out.glob("**/metrics.jsonl")), proc)
    elif fault != "full disk (RLIMIT_FSIZE)":
        _wait(lambda: _has(out, "**/checkpoint.npz"), proc)
        time.sleep(0.3)  # a few chunks in
    t0 = time.time()
    if peers:
        _kill_tree(procs[1], signal.SIGKILL)
        procs[1].communicate(timeout=120)
    elif fault != "full disk (RLIMIT_FSIZE)":
        _kill_tree(proc, getattr(signal, fault.split()[0]))
    stdout, stderr = proc.communicate(timeout=600)
    stop_seconds = round(time.time() - t0, 1)
    said = next((line.strip() for line in stdout.splitlines()
                 if line.startswith(("error", "interrupted")) or "interrupted" in line), "")
    row = {"exit_status": proc.returncode, "said": said[:160],
           "stopped_after_s": stop_seconds if peers else None,
           "traceback": "Traceback" in stdout + stderr,
           "cpp_stack": "Check failure" in stdout + stderr, "left": files(out)}
    dirs = sorted(out.iterdir()) if out.is_dir() else []
    if not dirs:
        row.update(resume="nothing to resume (no directory kept)", theta_equal=None)
        return row
    target = dirs[0]
    if peers:
        port = _free_port()
        resumed = [launch(["resume", str(target), "--no-eval", "--coordinator",
                           f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
                           str(i)], out) for i in range(2)]
        codes = [p.communicate(timeout=600) and p.returncode for p in resumed]
        row["resume_exit_status"] = codes
        got = thetas(out)
        row["theta_equal"] = None if got is None else (
            "within 1e-6" if all(np.allclose(a, b, rtol=1e-6, atol=1e-6 * abs(b).max())
                                 for a, b in zip(got, reference, strict=True)) else "differs")
        return row
    resumed = subprocess.run(cli("resume", str(target), "--no-eval"), capture_output=True,
                             text=True, timeout=600, env=ENV)
    row["resume_exit_status"] = resumed.returncode
    got = thetas(out)
    row["theta_equal"] = None if got is None else (
        "bitwise" if all(np.array_equal(a, b) for a, b in zip(got, reference, strict=True))
        else "differs")
    return row


FAULTS = ["SIGINT at start-up", "SIGTERM at start-up", "SIGINT in first compile",
          "SIGTERM in first compile", "SIGINT mid-run", "SIGTERM mid-run", "SIGKILL mid-run",
          "SIGTERM at the final save", "SIGTERM in evaluation", "full disk (RLIMIT_FSIZE)",
          "killed peer"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the meta-gradient loop only")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--only", default=None, choices=FAULTS,
                   help="run this fault alone and merge its cells into --out")
    args = p.parse_args()
    rows: dict[str, dict] = {}
    if args.only and args.out.is_file():
        rows = json.loads(args.out.read_text())["cells"]
    with tempfile.TemporaryDirectory() as d:
        for loop in (["meta-gradient"] if args.quick else list(LOOPS)):
            preset, extra, more = LOOPS[loop]
            ref_dir = Path(d) / loop / "reference"
            subprocess.run(cli("run", preset, "--no-eval", "--out", str(ref_dir),
                               *sets(extra), *more), check=True, capture_output=True, env=ENV)
            reference = thetas(ref_dir)
            for fault in [args.only] if args.only else FAULTS:
                if fault == "killed peer" and loop == "seeds group":
                    continue  # several processes with --seeds: not combined
                rows[f"{loop} x {fault}"] = row = cell(Path(d) / loop / fault.replace(
                    " ", "_"), loop, fault, reference)
                print(f"{loop:14s} {fault:26s}", row, flush=True)
    args.out.parent.mkdir(exist_ok=True)
    write_results(args.out, {"meta_steps": STEPS, "chunk": 2, "cells": rows})
    print("| outer loop | fault | exit | said | left (summary / metrics / checkpoint) | "
          "resume | θ equals uninterrupted |")
    print("|---|---|---|---|---|---|---|")
    for key, r in rows.items():
        loop, fault = key.split(" x ")
        flags = " (traceback)" * r["traceback"] + " (C++ stack)" * r["cpp_stack"]
        print(f"| {loop} | {fault} | {r['exit_status']}{flags} | {r['said'][:70]} | "
              f"{r['left']} | {r.get('resume_exit_status', r.get('resume'))} | "
              f"{r['theta_equal'] or '-'} |")


if __name__ == "__main__":
    main()
