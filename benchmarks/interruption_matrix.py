"""Stop runs with SIGINT, SIGTERM and SIGKILL (x meta-gradients, CMA-ES, PES), resume
them with `metaplastic resume`, and compare θ with the same run never stopped.

    python benchmarks/interruption_matrix.py

For each cell: the exit status of the stopped run, what it left (summary status,
meta-steps in summary / metrics / checkpoint), whether any traceback was printed, the
exit status of `metaplastic resume`, and whether the resumed θ equals the uninterrupted
run's bit for bit. Writes benchmarks/results/interruption_matrix.json.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "interruption_matrix.json"
SETS = ["task.n_steps=2000", "task.n_in=4", "meta.chunk=2", "eval.tasks=0",
        "constraints=[]", "meta.steps=60"]
LOOPS = {
    "gradient": ("oja", []),
    "cma-es": ("oja-es", ["meta.population=8"]),
    "pes": ("oja", ["meta.outer='es'", "meta.strategy='pes'", "meta.population=8",
                    "meta.truncation=500"]),
}
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "metaplastic.cli", *args]


def sets(extra: list[str]) -> list[str]:
    return [a for s in [*SETS, *extra] for a in ("--set", s)]


def theta(run: Path) -> np.ndarray:
    with np.load(run / "theta.npz") as f:
        return f["coef"]


def cell(root: Path, preset: str, extra: list[str], sig: int, reference: np.ndarray) -> dict:
    out = root / "stopped"
    proc = subprocess.Popen(cli("run", preset, "--no-eval", "--out", str(out), *sets(extra)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("*/checkpoint.npz")):
        time.sleep(0.05)
    time.sleep(0.3)  # a few chunks in
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    (run,) = list(out.iterdir())
    summary = json.loads((run / "summary.json").read_text()) if (
        run / "summary.json").is_file() else None
    metrics = len((run / "metrics.jsonl").read_text().splitlines())
    with np.load(run / "checkpoint.npz") as f:
        ckpt_step = int(f["leaf_0"])
    resumed = subprocess.run(cli("resume", str(run), "--no-eval"), capture_output=True,
                             text=True, timeout=600)
    return {
        "exit_status": proc.returncode,
        "summary_status": summary and summary["status"],
        "summary_meta_steps": summary and summary["meta_steps"],
        "metrics_lines": metrics, "checkpoint_step": ckpt_step,
        "traceback": "Traceback" in stdout + stderr,
        "resume_exit_status": resumed.returncode,
        "resumed_theta_bitwise_equal": bool(np.array_equal(theta(run), reference)),
    }


def main() -> None:
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        for loop, (preset, extra) in LOOPS.items():
            ref_dir = Path(d) / loop / "reference"
            subprocess.run(cli("run", preset, "--no-eval", "--out", str(ref_dir),
                               *sets(extra)), check=True, capture_output=True)
            (ref_run,) = list(ref_dir.iterdir())
            reference = theta(ref_run)
            for name, sig in SIGNALS.items():
                rows[f"{loop} x {name}"] = cell(Path(d) / loop / name, preset, extra, sig,
                                                reference)
                print(f"{loop:9s} {name:8s}", rows[f"{loop} x {name}"], flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"meta_steps": 60, "chunk": 2, "cells": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
