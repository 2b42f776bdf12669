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


def _kill_9(p: subprocess.Popen) -> None:
    """kill -9 a launched process: the process doing the work (the child of the CLI's
    watching parent, docs/runs.md) and the parent, so that no handler runs anywhere."""
    try:
        children = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
    except OSError:
        children = []
    for pid in children:
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            pass
    p.kill()


def _sets(preset: str, extra=()) -> list[str]:
    return [preset, "--no-eval", *[a for s in [*SETS, *extra] for a in ("--set", s)]]


@pytest.mark.tier2
@pytest.mark.xla_defaults  # two processes' programs and one's: the same bits
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
        _kill_9(p)  # SIGKILL: no handler runs, in either process
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


@pytest.mark.tier2
def test_a_lost_peer_ends_the_survivor_with_one_message_and_resume_continues(tmp_path):
    """kill -9 of process 1: process 0 stops within seconds (gloo's closed connection;
    at most --peer-timeout when no collective is under way) with one message and exit 5,
    its summary says so, and a resume with both processes finishes the run."""
    args = _sets("oja", ["meta.steps=100000"])
    procs = _processes(["run", *args, "--out", str(tmp_path), "--peer-timeout", "20"])
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.glob("*/checkpoint.npz")):
        time.sleep(0.2)
    _kill_9(procs[1])
    t0 = time.time()
    out = procs[0].communicate(timeout=120)[0]
    procs[1].communicate(timeout=60)
    assert procs[0].returncode == 5, out[-3000:]
    assert time.time() - t0 < 45
    assert "a peer process of this 2-process run was lost" in " ".join(out.split())
    assert "Traceback" not in out and "Check failure" not in out
    (run,) = list(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"].startswith("lost a peer process")
    assert summary["resume"] == "continues from the checkpoint of the last whole chunk"
    stopped_at = summary["meta_steps"]
    (run / "config.toml").write_text((run / "config.toml").read_text().replace(
        "steps = 100000", f"steps = {stopped_at + 2}"))
    procs = _processes(["resume", str(run), "--no-eval"])
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


@pytest.mark.tier2
def test_an_unreachable_coordinator_is_one_message_within_the_peer_timeout(tmp_path):
    port = _free_port()  # nobody listens there
    t0 = time.time()
    done = subprocess.run(_cmd("run", "oja", "--out", str(tmp_path), "--coordinator",
                               f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
                               "1", "--peer-timeout", "5"),
                          capture_output=True, text=True, timeout=120)
    said = " ".join(done.stdout.split())
    assert done.returncode == 5, said + done.stderr[-2000:]
    assert time.time() - t0 < 60  # about twice the timeout, plus start-up
    assert "could not be reached within 5 s (--peer-timeout)" in said
    assert "Traceback" not in done.stdout + done.stderr
    assert "Check failure" not in done.stdout + done.stderr
    assert not any(tmp_path.iterdir())
    done = subprocess.run(_cmd("run", "oja", "--out", str(tmp_path), "--coordinator",
                               f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
                               "1", "--peer-timeout", "0"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--peer-timeout must be whole seconds" in done.stdout
