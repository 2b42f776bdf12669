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

from metaplastic.experiments import config, lifecycle, presets, study
from metaplastic.experiments.rundir import RunDir, new_run_dir

SETS = ["task.n_steps=100", "task.n_in=4", "meta.chunk=5", "eval.tasks=0", "meta.schedule=constant",
        "constraints=[]"]


def train(cfg, run, progress=None, resume=False):
    """The one lifecycle, for the study the config names (rule discovery here)."""
    return lifecycle.train(study.get(cfg.study), cfg, run, progress, resume=resume)


def _run(tmp_path, steps, stop_after_chunks=None, error=KeyboardInterrupt):
    """A small oja run; ``stop_after_chunks``: ``error`` is raised after that many chunks."""
    cfg = config.override(presets.get("oja"), [*SETS, f"meta.steps={steps}"])
    run = RunDir(new_run_dir(tmp_path, "x"))
    chunks = []

    def progress(records):
        chunks.append(records)
        if stop_after_chunks and len(chunks) == stop_after_chunks:
            raise error

    if stop_after_chunks:
        with pytest.raises(error if isinstance(error, type) else type(error)):
            train(cfg, run, progress)
    else:
        train(cfg, run, progress)
    return run


@pytest.mark.tier2  # slow: trains end to end (second tier)
def test_ctrl_c_keeps_the_theta_of_the_last_whole_chunk(tmp_path):
    # stopped while the third chunk is being recorded (its metrics written, its checkpoint
    # not): the last whole chunk is the second
    stopped = _run(tmp_path, steps=50, stop_after_chunks=3)
    summary = stopped.read_json("summary.json")
    assert summary["status"] == "interrupted" and summary["meta_steps"] == 10
    assert len(stopped.metrics()) == 10
    reference = _run(tmp_path, steps=10)  # the same 10 steps, not interrupted
    np.testing.assert_array_equal(stopped.theta()["coef"], reference.theta()["coef"])
    assert np.any(stopped.theta()["coef"] != 0)  # not θ0 (all zeros)


@pytest.mark.tier2  # slow: trains end to end (second tier)
def test_a_crash_is_recorded_as_crashed_with_provenance(tmp_path, capsys):
    from metaplastic.cli import main

    run = _run(tmp_path, steps=50, stop_after_chunks=3, error=RuntimeError("disk full"))
    summary = run.read_json("summary.json")
    assert summary["status"] == "crashed: RuntimeError: disk full"
    assert summary["meta_steps"] == 10 and len(run.metrics()) == 10
    prov = summary["provenance"]
    assert prov["versions"]["jax"] and prov["devices"]["count"] >= 1 and prov["command"]
    capsys.readouterr()
    assert main(["eval", str(run.path), "--tasks", "2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "did not finish (crashed: RuntimeError: disk full; 10 meta-steps)" in out
    assert "continue it with: metaplastic resume" in out


@pytest.mark.tier2
@pytest.mark.parametrize("sig, times, status", [(signal.SIGTERM, 1, 143), (signal.SIGINT, 3, 130)])
def test_a_signal_saves_partial_results_that_agree(tmp_path, sig, times, status):
    """SIGTERM, or Ctrl-C pressed three times (the later presses while results are being
    saved): θ, summary and metrics agree, exit 143/130, no traceback anywhere."""
    cmd = [sys.executable, "-m", "metaplastic.cli", "run", "oja", "--no-eval",
           "--out", str(tmp_path), *[a for s in SETS for a in ("--set", s)],
           "--set", "meta.steps=100000", "--set", "meta.chunk=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    metrics = None
    while time.time() < deadline:
        runs = list(tmp_path.iterdir())
        metrics = runs[0] / "metrics.jsonl" if runs else None
        if metrics is not None and metrics.is_file() and metrics.stat().st_size > 0:
            break
        time.sleep(0.05)
    for _ in range(times):
        proc.send_signal(sig)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, out + err
    assert "interrupted after" in out and "Traceback" not in out + err
    run = metrics.parent
    summary = json.loads((run / "summary.json").read_text())
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert summary["status"] == "interrupted" and summary["meta_steps"] == len(lines) > 0
    with np.load(run / "theta.npz") as f:
        assert np.any(f["coef"] != 0)
    with np.load(run / "checkpoint.npz") as f:  # the checkpoint is of the same step
        assert int(f["leaf_0"]) == summary["meta_steps"]
    assert os.path.isfile(run / "meta_loss.png")


def test_resume_continues_to_the_numbers_of_a_run_never_stopped(tmp_path):
    stopped = _run(tmp_path, steps=20, stop_after_chunks=2)
    with open(stopped.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "task_lo')  # a line cut by a kill: ignored, then dropped
    cfg = stopped.config()
    summary = train(cfg, stopped, resume=True)
    assert summary["status"] == "finished" and summary["meta_steps"] == 20
    steps = [r["step"] for r in stopped.metrics()]
    assert steps == list(range(1, 21))
    reference = _run(tmp_path, steps=20)
    np.testing.assert_array_equal(stopped.theta()["coef"], reference.theta()["coef"])


def test_resume_needs_a_checkpoint_and_refuses_a_damaged_one(tmp_path):
    from metaplastic.cli import main

    run = _run(tmp_path, steps=10)
    (run.path / "checkpoint.npz").write_bytes(b"not a zip")
    assert main(["resume", str(run.path), "--no-eval"]) == 2
    (run.path / "checkpoint.npz").unlink()
    assert main(["resume", str(run.path), "--no-eval"]) == 2


KILL_CASES = {
    "gradient": ("oja", []),
    "es": ("oja-es", ["meta.population=8"]),
    "learned-es": ("oja-learned-es", ["meta.population=8"]),
    "pes": ("oja", ["meta.outer='es'", "meta.strategy='pes'", "meta.population=8",
                    "meta.truncation=500"]),
}


@pytest.mark.tier2
@pytest.mark.parametrize("case", KILL_CASES)
def test_kill_9_then_resume_gives_the_same_theta(case, tmp_path):
    preset, extra = KILL_CASES[case]
    sets = ["task.n_steps=2000", "task.n_in=4", "meta.chunk=2", "eval.tasks=0",
            "constraints=[]", "meta.steps=40", *extra]
    cmd = [sys.executable, "-m", "metaplastic.cli", "run", preset, "--no-eval",
           "--out", str(tmp_path / "a"), *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        ckpt = list((tmp_path / "a").glob("*/checkpoint.npz")) if (tmp_path / "a").exists() else []
        if ckpt:
            break
        time.sleep(0.2)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=60)
    run_dir = ckpt[0].parent
    assert not (run_dir / "summary.json").exists()  # killed mid-run: no handler ran
    done = subprocess.run([sys.executable, "-m", "metaplastic.cli", "resume", str(run_dir),
                           "--no-eval"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    again = subprocess.run([*cmd[:-len(sets) * 2 - 1], str(tmp_path / "b"),
                            *[a for s in sets for a in ("--set", s)]],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    (ref,) = list((tmp_path / "b").iterdir())
    with np.load(run_dir / "theta.npz") as a, np.load(ref / "theta.npz") as b:
        np.testing.assert_array_equal(a["coef"], b["coef"])
    steps = [json.loads(line)["step"] for line in
             (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))
