"""Several processes (jax.distributed, gloo collectives on CPU), launched on 127.0.0.1:
the same θ as one process; only process 0 writes; kill -9 then resume in this mode."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

SETS = ["task.n_steps=2000", "task.n_in=4", "meta.chunk=2", "eval.tasks=0",
        "constraints=[]", "meta.steps=30"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "metaplastic.cli", *args]


def _processes(args: list[str], n: int = 2) -> list[subprocess.Popen]:
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", METAPLASTIC_CACHE_DIR="off")
    return [subprocess.Popen(_cmd(*args, "--coordinator", f"127.0.0.1:{port}",
                                  "--num-processes", str(n), "--process-id", str(i)),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
            for i in range(n)]


def _sets(preset: str, extra=()) -> list[str]:
    return [preset, "--no-eval", *[a for s in [*SETS, *extra] for a in ("--set", s)]]


@pytest.mark.tier2
@pytest.mark.parametrize("preset, extra", [("oja", []),
                                           ("oja-es", ["meta.population=8"])])
def test_two_processes_kill_9_resume_equal_one_process(preset, extra, tmp_path):
    args = _sets(preset, extra)
    ref = subprocess.run(_cmd("run", *args, "--out", str(tmp_path / "one")),
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stdout[-2000:] + ref.stderr[-2000:]
    (one,) = list((tmp_path / "one").iterdir())

    procs = _processes(["run", *args, "--out", str(tmp_path / "two")])
    deadline = time.time() + 300
    ckpt = []
    while time.time() < deadline and not ckpt and procs[0].poll() is None:
        if (tmp_path / "two").exists():
            ckpt = list((tmp_path / "two").glob("*/checkpoint.npz"))
        time.sleep(0.2)
    for p in procs:
        p.kill()  # SIGKILL: no handler runs, in either process
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert ckpt, outs[0][-2000:]
    (two,) = list((tmp_path / "two").iterdir())  # process 1 wrote nothing here
    assert not (two / "summary.json").exists()

    procs = _processes(["resume", str(two), "--no-eval"])
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert "process 0 of 2: 2 devices in all" in outs[0]
    assert "resuming" not in outs[1]  # only process 0 prints
    with np.load(one / "theta.npz") as a, np.load(two / "theta.npz") as b:
        # the tasks (or members) split across the processes: within 1e-6 relative
        np.testing.assert_allclose(b["coef"], a["coef"], rtol=1e-6,
                                   atol=1e-6 * np.abs(a["coef"]).max())
    steps = [json.loads(line)["step"] for line in
             (two / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))
    summary = json.loads((two / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["provenance"]["resumed_at_step"] > 0


@pytest.mark.tier2
def test_bad_process_options_are_one_message(tmp_path):
    for extra, msg in [(["--num-processes", "2"], "needs all of --coordinator"),
                       (["--coordinator", "localhost", "--num-processes", "2",
                         "--process-id", "0"], "HOST:PORT"),
                       (["--coordinator", "127.0.0.1:1", "--num-processes", "2",
                         "--process-id", "5"], "--process-id must be in [0, 1]")]:
        done = subprocess.run(_cmd("run", "oja", "--out", str(tmp_path), *extra),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and msg in done.stdout, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    assert not any(tmp_path.iterdir())
