"""A run stopped by Ctrl-C, SIGTERM or an error keeps the θ it reached (never θ0 by
mistake), with a summary that says how far it got."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from metaplastic.experiments import config, presets
from metaplastic.experiments.rundir import RunDir, new_run_dir
from metaplastic.experiments.runner import train

SETS = ["task.n_steps=100", "task.n_in=4", "meta.chunk=5", "eval.tasks=0", "meta.schedule=constant",
        "constraints=[]"]


def _run(tmp_path, steps, stop_after_chunks=None):
    cfg = config.override(presets.get("oja"), [*SETS, f"meta.steps={steps}"])
    run = RunDir(new_run_dir(tmp_path, "x"))
    chunks = []

    def progress(records):
        chunks.append(records)
        if stop_after_chunks and len(chunks) == stop_after_chunks:
            raise KeyboardInterrupt

    if stop_after_chunks:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, run, progress)
    else:
        train(cfg, run, progress)
    return run


def test_ctrl_c_keeps_the_theta_of_the_last_whole_chunk(tmp_path):
    stopped = _run(tmp_path, steps=50, stop_after_chunks=2)
    summary = stopped.read_json("summary.json")
    assert summary["status"] == "interrupted" and summary["meta_steps"] == 10
    assert len(stopped.metrics()) == 10
    reference = _run(tmp_path, steps=10)  # the same 10 steps, not interrupted
    np.testing.assert_array_equal(stopped.theta()["coef"], reference.theta()["coef"])
    assert np.any(stopped.theta()["coef"] != 0)  # not θ0 (all zeros)


@pytest.mark.tier2
def test_sigterm_saves_partial_results_and_exits_143(tmp_path):
    cmd = [sys.executable, "-m", "metaplastic.cli", "run", "oja", "--no-eval",
           "--out", str(tmp_path), *[a for s in SETS for a in ("--set", s)],
           "--set", "meta.steps=100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    metrics = None
    while time.time() < deadline:
        runs = list(tmp_path.iterdir())
        metrics = runs[0] / "metrics.jsonl" if runs else None
        if metrics is not None and metrics.is_file() and metrics.stat().st_size > 0:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    assert "interrupted after" in out and "Traceback" not in out + err
    run = metrics.parent
    summary = json.loads((run / "summary.json").read_text())
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert summary["status"] == "interrupted" and summary["meta_steps"] == len(lines) > 0
    with np.load(run / "theta.npz") as f:
        assert np.any(f["coef"] != 0)
    assert os.path.isfile(run / "meta_loss.png")
