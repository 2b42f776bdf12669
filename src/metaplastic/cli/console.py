"""The command line's edge: the console, exit statuses, stop signals, the persistent
compilation cache, several processes, and the ``--log`` writers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from metaplastic import _startup
from metaplastic.errors import Terminated

#: piped into a file or a log (no terminal to ask), lines of up to 160 columns: a table of
#: rules x datasets stays one line per row instead of wrapping at rich's default 80
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
EXIT_CRASHED, EXIT_ERROR, EXIT_NONFINITE, EXIT_CONSTRAINT, EXIT_PEER = 1, 2, 3, 4, 5
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM
#: what a stop that arrived while the command line was loading carries
STARTUP = "during start-up"


def exit_status(stopped: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_TERMINATED if isinstance(stopped, Terminated) else EXIT_INTERRUPTED


@contextlib.contextmanager
def stop_signals():
    """Ctrl-C (SIGINT) and SIGTERM (timeout, SLURM, Kubernetes) stop a run the same way:
    the first raises KeyboardInterrupt (SIGTERM: its subclass Terminated) and results are
    saved; further ones are ignored until the process exits, so they cannot cut the saving
    short or land in a garbage-collector callback."""
    stopping = []

    def handler(signum, frame):
        stopping.append(signum)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if signum == signal.SIGTERM:
            raise Terminated(f"signal {signum}")
        raise KeyboardInterrupt

    try:
        old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    if _startup.pending:  # a stop while the command line was loading (metaplastic._startup)
        signum = _startup.pending.pop(0)
        _startup.pending.clear()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise (Terminated(STARTUP) if signum == signal.SIGTERM else KeyboardInterrupt(STARTUP))
    try:
        yield
    finally:
        # a stop here, or in a stop_signals() nested inside (which left the signals
        # ignored): they stay ignored until the process exits, else a later press would
        # land in the interpreter's exit with the default handler (death by SIGINT)
        stopped_inside = signal.getsignal(signal.SIGINT) is signal.SIG_IGN and \
            old[signal.SIGINT] is not signal.SIG_IGN
        if not stopping and not stopped_inside:
            for sig, handler_before in old.items():
                signal.signal(sig, handler_before)


def enable_compile_cache() -> None:
    """Persist compiled programs across CLI runs (JAX's persistent compilation cache)."""
    import jax

    if jax.config.jax_compilation_cache_dir:  # already set up (by the caller, or JAX's env)
        return
    default = Path.home() / ".cache" / "metaplastic" / "jax"
    cache = os.environ.get("METAPLASTIC_CACHE_DIR", str(default))
    if cache.lower() in ("", "0", "off", "none"):
        return
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache)
        # every program, however small: a run's start compiles dozens of small ones
        # (checks, initial states) whose compile times add up to seconds
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except OSError as e:  # a read-only home must not stop a run
        console.print(f"[yellow]compilation cache disabled: {e}[/]")


def check_processes(args) -> None:
    """ConfigError for process options that cannot work (before a process is started)."""
    from metaplastic import devices
    from metaplastic.errors import ConfigError

    explicit = (args.coordinator is not None or args.num_processes is not None
                or args.process_id is not None)
    if args.distributed and explicit:
        raise ConfigError("--distributed lets JAX detect the cluster; give it or "
                          "--coordinator/--num-processes/--process-id, not both")
    devices.check_process_options(args.coordinator, args.num_processes, args.process_id,
                                  args.peer_timeout)


def multi_process(args) -> bool:
    return bool(getattr(args, "distributed", False) or getattr(args, "coordinator", None)
                or getattr(args, "num_processes", None) is not None
                or getattr(args, "process_id", None) is not None)


@contextlib.contextmanager
def processes(args):
    """Join a multi-process run when asked (``--coordinator/--num-processes/--process-id``
    or ``--distributed`` to let JAX detect the cluster). Every process runs the same
    programs; only process 0 prints and writes the run directory — the others write into
    a scratch directory that is removed at the end (a resumed run is copied there)."""
    if not multi_process(args):
        yield
        return
    import shutil
    import tempfile

    import jax

    from metaplastic import devices

    check_processes(args)
    devices.initialize(args.coordinator, args.num_processes, args.process_id,
                       args.peer_timeout)
    if devices.is_main():
        console.print(f"process 0 of {jax.process_count()}: {jax.device_count()} devices in "
                      f"all ({jax.local_device_count()} here)")
        yield
        return
    scratch = Path(tempfile.mkdtemp(prefix="metaplastic-process-"))
    console.quiet = True
    try:
        if getattr(args, "out", None) is not None:
            args.out = str(scratch)
        if getattr(args, "run", None) is not None:
            copy = scratch / Path(args.run).resolve().name
            shutil.copytree(args.run, copy)
            args.run = str(copy)
        yield
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_log(args) -> None:
    from metaplastic.report.loggers import check_available

    check_available(args.log)


def open_log(args, run, study, cfg, built):
    """The ``--log`` writer of a run directory (None for jsonl only)."""
    kind, names = args.log, study.log_names(built)
    if kind == "tensorboard":
        from metaplastic.report.tensorboard import TensorBoardLog

        return TensorBoardLog(run.path, names)
    if kind == "wandb":
        from metaplastic.report.wandb_log import WandbLog

        return WandbLog(run.path, names, study.to_dict(cfg))
    return None


def log_hint(log) -> None:
    if log is None:
        return
    if log.path.name == "tensorboard":
        console.print(f"TensorBoard: tensorboard --logdir {log.path}")
    else:
        console.print(f"W&B run (offline unless WANDB_MODE=online) in {log.path}; upload "
                      f"with: wandb sync {log.path}/offline-run-*")


def abandon(message: str, code: int) -> NoReturn:
    """Say ``message`` (in every process, the quiet ones too) and end this process at once
    with ``code``: after a lost peer, JAX's distributed service would otherwise hold the
    process at exit (a shutdown barrier with the lost peer) and then abort it with a C++
    stack trace."""
    console.quiet = False
    console.print(f"[red]{escape(message)}[/]")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


#: a line of the distributed service's own (glog) log: ``F1205 21:02:05.288579 20715 x.h:80]``
_GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]")
_SUPERVISED = "METAPLASTIC_SUPERVISED"  # set in the child: it runs the command itself
_RUN_FILE = "METAPLASTIC_RUN_FILE"  # where the child notes the run directory it writes


def supervised(argv: list[str], timeout: int) -> int | None:
    """Run this multi-process command in a child process and watch it, or ``None`` in
    the child (it runs the command). JAX's distributed service ends a process whose
    coordinator or peer is lost with a C++ abort and stack trace that Python cannot
    catch; here that becomes one message and exit 5, within ``timeout`` (--peer-timeout)
    of the loss, with the run directory's summary saying so. The child's own output
    passes through; the service's log lines are kept in a file and shown only if the
    child ended normally. Ctrl-C and SIGTERM go to the child (it saves and exits)."""
    import subprocess
    import tempfile

    if os.environ.get(_SUPERVISED) == "1":
        return None
    with tempfile.TemporaryDirectory(prefix="metaplastic-process-") as tmp:
        note = Path(tmp) / "run"
        env = {**os.environ, _SUPERVISED: "1", _RUN_FILE: str(note)}
        child = subprocess.Popen([sys.executable, "-m", "metaplastic.cli", *argv], env=env,
                                 stderr=subprocess.PIPE, text=True, errors="replace",
                                 preexec_fn=_stop_with_parent)
        forward = lambda signum, frame: child.send_signal(signum)  # noqa: E731
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        held: list[str] = []  # from the service's first log line on
        try:
            for line in child.stderr:
                if held or _GLOG.match(line):
                    held.append(line)
                else:
                    sys.stderr.write(line)
            rc = child.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if rc >= 0:  # the command ended by itself: whatever it said stays visible
            sys.stderr.writelines(held)
            return rc
        noted = note.read_text().strip() if note.is_file() else None
        run = noted or None  # "" from a process other than 0: process 0 writes the run
        why = _service_reason(held) or f"ended by signal {-rc}"
        kept = (Path(run) / "distributed-service.log" if run else
                Path(tempfile.gettempdir()) / f"metaplastic-service-{os.getpid()}.log")
        with contextlib.suppress(OSError):
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text("".join(held))
        if run:
            _note_lost(Path(run), why)
        where = (f"; what the run kept is in {run} (continue it with: metaplastic resume "
                 f"{run} and the same process options)" if run else
                 "; process 0 keeps the run directory" if noted is not None else
                 "; it stopped before a run directory was written")
        console.quiet = False
        console.print(f"[red]error: a peer process of this multi-process run was lost or the "
                      f"coordinator could not be reached within {timeout} s "
                      f"(--peer-timeout): {escape(why)}{escape(where)}. The distributed "
                      f"service's log: {kept}[/]")
        return EXIT_PEER


def _stop_with_parent() -> None:
    """In the child, before it starts (Linux): SIGTERM when the watching parent dies, even
    by kill -9 — the child then saves and exits like any stopped run, never an orphan."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


#: what the distributed service's log says, in words (the first that matches)
_CAUSES = (("heartbeat", "a peer process stopped sending heartbeats (killed, crashed or cut off)"),
           ("Barrier timed out", "a peer process did not reach the others in time (it stopped, "
                                 "or it is still working on something else)"),
           ("Connection reset", "the coordinator (process 0) closed the connection"),
           ("Connection refused", "the coordinator refused the connection (not started, or "
                                  "another address)"),
           ("RegisterTask", "the processes could not all join (the coordinator unreachable, "
                            "or a process missing)"),
           ("DEADLINE_EXCEEDED", "the peers did not answer in time"))


def _service_reason(lines: list[str]) -> str | None:
    """What the distributed service logged, in one line of words."""
    text = "".join(lines)
    for marker, words in _CAUSES:
        if marker in text:
            return words
    for line in lines:
        if _GLOG.match(line) and line[0] in "EF":
            return line.split("]", 1)[1].strip()[:300]
    return None


def note_run_dir(path: Path) -> None:
    """In a supervised process: say which run directory it writes (:func:`supervised`)."""
    import jax

    target = os.environ.get(_RUN_FILE)
    if target:
        with contextlib.suppress(OSError):  # only process 0 writes the real directory
            Path(target).write_text(str(path) if jax.process_index() == 0 else "")


def _note_lost(run: Path, why: str) -> None:
    """The summaries of a run (or of each seed of a --seeds group) say that a peer was
    lost, and what ``resume`` will do."""
    from metaplastic.experiments.lifecycle import resume_from
    from metaplastic.experiments.rundir import RunDir

    for path in [run, *sorted(run.glob("seed-*"))]:
        if not (path / "config.toml").is_file():
            continue
        rd = RunDir(path)
        summary = {**rd.summary(), "status": f"lost a peer process: {why}",
                   "resume": resume_from(rd)}
        with contextlib.suppress(OSError):
            rd.write_json("summary.json", summary)
