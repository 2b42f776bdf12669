"""Every fault tells the truth: an interrupt at start-up or during evaluation, non-finite
numbers in a config, damaged files, pasteable hints (issue 30's first items)."""

import json
import shlex

import numpy as np
import pytest

from metaplastic.cli import main
from metaplastic.errors import Terminated
from metaplastic.experiments.rundir import RunDir

#: the shapes of tests/cli/test_cli.py's shared run (its compiled programs are reused)
TINY = ["--set", "task.n_steps=200", "--set", "task.n_in=6", "--set", "meta.steps=20",
        "--set", "meta.chunk=10", "--set", "eval.tasks=0", "--set", "constraints=[]"]


def _out(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())


def test_an_interrupt_before_the_first_chunk_says_so_and_resumes_from_step_0(
        tmp_path, capsys, monkeypatch):
    from metaplastic.meta import driver

    chunk_fn = driver.chunk_fn

    def stopped_while_compiling(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "chunk_fn", stopped_while_compiling)
    assert main(["run", "oja", *TINY, "--out", str(tmp_path / "cut")]) == 130
    monkeypatch.setattr(driver, "chunk_fn", chunk_fn)
    (cut,) = (tmp_path / "cut").iterdir()
    out = _out(capsys)
    assert "before the first meta-step finished" in out and "nothing trained" in out
    assert "metaplastic resume" in out and "continue with" not in out
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["meta_steps"] == 0 and summary["resume"].startswith("starts from")
    assert not (cut / "checkpoint.npz").exists()
    assert main(["resume", str(cut)]) == 0  # from step 0 with the saved configuration
    assert main(["run", "oja", *TINY, "--out", str(tmp_path / "whole")]) == 0
    (whole,) = (tmp_path / "whole").iterdir()
    np.testing.assert_array_equal(RunDir(cut).theta()["coef"], RunDir(whole).theta()["coef"])
    assert [r["step"] for r in RunDir(cut).metrics()] == list(range(1, 21))


def test_an_exit_that_waits_for_a_compilation_says_so(tmp_path, capsys, monkeypatch):
    """A process stopped while the first chunk's program still compiles in the background
    waits for it at exit (XLA cannot stop one midway): the user is told, not left with a
    silent wait; with nothing compiling, nothing is said."""
    import threading

    from metaplastic.meta import driver

    compiling = threading.Event()
    monkeypatch.setitem(driver._compiling, "a program", compiling)
    assert main(["run", "oja", "--set", "meta.lr=nan", "--out", str(tmp_path)]) == 2
    assert "waiting for a compilation in progress to end" in _out(capsys)
    compiling.set()
    assert main(["run", "oja", "--set", "meta.lr=nan", "--out", str(tmp_path)]) == 2
    assert "waiting for a compilation" not in _out(capsys)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_numbers_in_a_config_are_refused_at_load(value, tmp_path, capsys):
    assert main(["run", "oja", "--set", f"meta.lr={value}", "--out", str(tmp_path)]) == 2
    assert "must be finite" in _out(capsys) and not list(tmp_path.iterdir())


def test_a_non_finite_number_in_a_toml_file_is_refused(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[task]\nname = "pca"\n[rule]\nname = "polynomial"\neta = inf\n')
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "rule.eta = inf" in _out(capsys)


def test_an_interrupt_during_evaluation_keeps_and_says_the_trained_run(
        tmp_path, capsys, monkeypatch):
    import metaplastic.cli.training as training

    def terminated(*a, **kw):
        raise Terminated("signal 15")

    monkeypatch.setattr(training, "print_eval", terminated)
    args = ["run", "oja", *TINY, "--set", "eval.tasks=2", "--out", str(tmp_path)]
    assert main(args) == 143
    (run,) = tmp_path.iterdir()
    out = _out(capsys)
    assert "the trained run is saved" in out and "metaplastic eval" in out
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_damaged_inputs_are_one_message(tmp_path, capsys):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["run", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "is empty" in _out(capsys)
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "{a = " * 500 + "1" + "}" * 500 + "\n")
    assert main(["run", str(deep), "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" not in _out(capsys)
    assert main(["run", "oja", "--seeds-vmap", "--out", str(tmp_path / "o")]) == 2
    assert "--seeds too" in _out(capsys)


def test_a_damaged_run_is_reported_not_a_traceback(tmp_path, capsys):
    assert main(["run", "oja", *TINY, "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    (run / "summary.json").write_text("[1, 2]")
    assert main(["report", str(run), "--tensorboard"]) == 0
    assert "summary.jsonisdamaged" in _out(capsys).replace(" ", "")
    (run / "export").write_text("a file where the folder goes")
    assert main(["export", str(run)]) == 2
    assert "is a file" in _out(capsys)


def test_recordings_of_strings_are_one_message(tmp_path):
    from metaplastic.errors import ConfigError
    from metaplastic.tasks.recorded import load

    path = tmp_path / "r.npz"
    np.savez(path, inputs=np.full((2, 3, 4), "x"), activity=np.zeros((2, 3, 1)))
    with pytest.raises(ConfigError, match="inputs holds"):
        load(str(path))


def test_printed_hints_can_be_pasted_into_a_shell(tmp_path, capsys):
    out = tmp_path / "o ut;x"
    assert main(["run", "oja", *TINY, "--set", "eval.tasks=2", "--out", str(out)]) == 0
    (run,) = out.iterdir()
    text = capsys.readouterr().out.replace("\n", "")
    assert f"metaplastic eval {shlex.quote(str(run))}" in text


def test_a_second_writer_is_refused_and_an_edited_config_is_said(tmp_path, capsys):
    assert main(["run", "oja", *TINY, "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    capsys.readouterr()
    with RunDir(run).writer():  # another process still training this run
        assert main(["resume", str(run)]) == 2
        assert "being written by another process" in _out(capsys)
    cfg = (run / "config.toml").read_text()
    (run / "config.toml").write_text(cfg.replace("steps = 20", "steps = 30"))
    assert main(["resume", str(run)]) == 0
    out = _out(capsys)
    assert "config.toml was changed since the run started" in out
    assert "meta.steps: 20 -> 30" in out
    assert [r["step"] for r in RunDir(run).metrics()] == list(range(1, 31))


@pytest.mark.tier2  # seeds as one program: a program of its own (second tier)
def test_compare_counts_a_seed_once_expands_groups_and_names_damage(tmp_path, capsys):
    import shutil

    assert main(["run", "oja", *TINY, "--seeds", "0-1", "--out", str(tmp_path)]) == 0
    (group,) = tmp_path.iterdir()
    shutil.copytree(group / "seed-0", tmp_path / "copy-of-seed-0")
    shutil.copytree(group / "seed-1", tmp_path / "torn")
    (tmp_path / "torn" / "config.toml").write_text(
        (group / "seed-1" / "config.toml").read_text().replace("seed = 1", "seed = 7"))
    (tmp_path / "torn" / "metrics.jsonl").write_text('{"step": 1, "task_lo')
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "*"), "--out", str(tmp_path / "cmp")]) == 0
    out = _out(capsys).replace(" ", "")
    assert "countedonce" in out and "noreadablemetrics.jsonl" in out
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    (g,) = data["groups"]
    assert sorted(g["seeds"]) == [0, 1, 7]  # the group expanded, the copy counted once


def test_torn_metrics_lines_are_said_by_report_and_resume(tmp_path, capsys):
    assert main(["run", "oja", *TINY, "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 21, "task_lo')
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert "1 line(s) of metrics.jsonl could not be read" in _out(capsys)
    assert main(["resume", str(run)]) == 0
    assert "they are dropped" in _out(capsys)
    assert [r["step"] for r in RunDir(run).metrics()] == list(range(1, 21))


@pytest.mark.parametrize("args, msg", [
    (["--coordinator", "127.0.0.1:99999", "--num-processes", "2", "--process-id", "0"],
     "1..65535"),
    (["--distributed", "--coordinator", "127.0.0.1:1234", "--num-processes", "2",
      "--process-id", "0"], "not both"),
])
def test_impossible_process_options_are_refused_at_once(args, msg, tmp_path, capsys):
    assert main(["run", "oja", *args, "--out", str(tmp_path)]) == 2
    assert msg in _out(capsys) and not list(tmp_path.iterdir())


def test_a_full_disk_is_one_message_and_the_last_checkpoint_resumes(
        tmp_path, capsys, monkeypatch):
    import errno

    import metaplastic.experiments.rundir as rundir

    savez, calls = rundir.np.savez, []

    def full_after_the_first(file, **arrays):
        calls.append(file)
        if len(calls) > 1:  # the second save: part written, then the disk is full
            open(file, "wb").write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        savez(file, **arrays)

    monkeypatch.setattr(rundir.np, "savez", full_after_the_first)
    assert main(["run", "oja", *TINY, "--out", str(tmp_path / "full")]) == 1
    monkeypatch.setattr(rundir.np, "savez", savez)
    out = _out(capsys)
    assert "No space left on device" in out and "Traceback" not in out
    (run,) = (tmp_path / "full").iterdir()
    assert not list(run.glob(".*tmp*"))  # no half-written file left behind
    assert main(["resume", str(run)]) == 0
    assert main(["run", "oja", *TINY, "--out", str(tmp_path / "whole")]) == 0
    (whole,) = (tmp_path / "whole").iterdir()
    np.testing.assert_array_equal(RunDir(run).theta()["coef"], RunDir(whole).theta()["coef"])


@pytest.mark.tier2  # a process of its own under a file-size limit (second tier)
def test_a_file_size_limit_is_one_message_and_resume_finishes_the_run(tmp_path):
    """`ulimit -f` (RLIMIT_FSIZE) as a real limit: a write past it fails (EFBIG); the run
    says so once (exit 1), leaves no temporary file, and resume without the limit ends
    at the θ of a run never stopped."""
    import os
    import resource
    import subprocess
    import sys

    sets = [*TINY[:-6], "--set", "meta.steps=60", "--set", "meta.chunk=2",
            "--set", "eval.tasks=0", "--set", "constraints=[]"]
    limit = 24_000  # bytes per file: metrics.jsonl outgrows it after about 30 steps

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, METAPLASTIC_CACHE_DIR="off")
    cmd = [sys.executable, "-m", "metaplastic.cli"]
    done = subprocess.run([*cmd, "run", "oja", *sets, "--no-eval", "--out",
                           str(tmp_path / "full")], capture_output=True, text=True,
                          timeout=600, preexec_fn=limited, env=env)
    said = " ".join(done.stdout.split())
    assert done.returncode == 1, said + done.stderr[-3000:]
    assert "File too large" in said and "resume" in said
    assert "Traceback" not in done.stdout + done.stderr
    (run,) = (tmp_path / "full").iterdir()
    assert not list(run.glob(".*tmp*")) and not list(run.glob("*.tmp*"))
    # the files agree: summary, metrics and checkpoint at the last whole chunk
    summary = json.loads((run / "summary.json").read_text())
    with np.load(run / "checkpoint.npz") as f:
        at = int(f["leaf_0"])
    assert summary["status"].startswith("crashed") and 0 < summary["meta_steps"] == at < 60
    assert [r["step"] for r in RunDir(run).metrics()] == list(range(1, at + 1))
    resumed = subprocess.run([*cmd, "resume", str(run), "--no-eval"], capture_output=True,
                             text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert main(["run", "oja", *sets, "--no-eval", "--out", str(tmp_path / "whole")]) == 0
    (whole,) = (tmp_path / "whole").iterdir()
    np.testing.assert_array_equal(RunDir(run).theta()["coef"], RunDir(whole).theta()["coef"])
    steps = [json.loads(line)["step"] for line in
             (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 61))


def test_a_stop_noted_while_loading_is_said_at_once(tmp_path, capsys):
    """A signal that arrived while the command line was loading (noted by
    metaplastic._startup) stops the command before it writes anything."""
    import signal

    from metaplastic import _startup

    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        _startup.pending.append(sig)
        try:
            assert main(["run", "oja", *TINY, "--out", str(tmp_path)]) == code
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert "interrupted during start-up, before anything was written" in _out(capsys)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.tier2  # processes of their own (second tier)
@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_while_importing_is_one_message_not_a_traceback(sig, code, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "metaplastic.cli", "run", "oja",
                             "--out", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60  # while JAX is being imported (its library is mapped)
    while time.time() < deadline and proc.poll() is None:
        try:
            if "jaxlib" in open(f"/proc/{proc.pid}/maps").read():
                break
        except OSError:
            pass
        time.sleep(0.01)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out + err
    assert "interrupted during start-up, before anything was written" in out
    assert "Traceback" not in out + err
    assert not any(tmp_path.iterdir())


@pytest.mark.tier2  # seeds as one program: a program of its own (second tier)
def test_a_seeds_group_stopped_in_evaluation_says_the_trained_runs_are_kept(
        tmp_path, capsys, monkeypatch):
    import metaplastic.cli.training as training

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_after_training", stopped)
    sets = [a for a in TINY if a != "eval.tasks=0" and a != "--set"]
    sets = [x for s in sets for x in ("--set", s)] + ["--set", "eval.tasks=2"]
    assert main(["run", "oja", *sets, "--seeds", "0-1", "--out", str(tmp_path)]) == 130
    said = _out(capsys)
    assert "interrupted after training: every seed's trained run is saved under" in said
    (group,) = tmp_path.iterdir()
    for seed in (0, 1):
        summary = json.loads((group / f"seed-{seed}" / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["meta_steps"] == 20


BAD_PIECE = '''
from dataclasses import dataclass

import jax.numpy as jnp

from metaplastic.errors import ConfigError
from metaplastic.rules.base import Rule


@dataclass(frozen=True)
class Refuses(Rule):
    eta: float = 0.01

    def init(self, key, shapes=None):
        return {"coef": jnp.zeros(1)}

    def update(self, theta, s, state):
        raise ConfigError("this rule refuses to be traced")
'''


def test_an_error_of_a_users_piece_after_the_run_exists_is_a_crash(tmp_path, monkeypatch,
                                                                   capsys):
    """Exit 2 means bad input and nothing created; an error raised once the run directory
    exists (a user's rule while the first program is traced) is the documented crash:
    status 'crashed: ...' and exit 1, the message saying where the run is."""
    (tmp_path / "bad_piece_for_test.py").write_text(BAD_PIECE)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["run", "oja", "--set", "rule.name=bad_piece_for_test:Refuses",
                 "--set", "constraints=[]", "--no-eval", "--out", str(tmp_path / "out")])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1 and "this rule refuses to be traced" in out and "crashed" in out
    (run,) = list((tmp_path / "out").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "crashed: ConfigError: this rule refuses to be traced"
