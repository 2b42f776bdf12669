"""The command line's edge: the console, exit statuses, stop signals, the persistent
compilation cache, several processes, and the ``--log`` writers."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from rich.console import Console

from metaplastic.errors import Terminated

#: piped into a file or a log (no terminal to ask), lines of up to 160 columns: a table of
#: rules x datasets stays one line per row instead of wrapping at rich's default 80
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
EXIT_CRASHED, EXIT_ERROR, EXIT_NONFINITE, EXIT_CONSTRAINT = 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM


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
    try:
        yield
    finally:
        if not stopping:
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
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    except OSError as e:  # a read-only home must not stop a run
        console.print(f"[yellow]compilation cache disabled: {e}[/]")


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

    explicit = (args.coordinator is not None or args.num_processes is not None
                or args.process_id is not None)
    if args.distributed and explicit:
        from metaplastic.errors import ConfigError

        raise ConfigError("--distributed lets JAX detect the cluster; give it or "
                          "--coordinator/--num-processes/--process-id, not both")
    devices.initialize(args.coordinator, args.num_processes, args.process_id)
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


