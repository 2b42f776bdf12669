"""A stop while the command line is still loading (Ctrl-C or SIGTERM in the first seconds:
importing JAX and the library, parsing the arguments) is noted, not acted on: the command
then says it was interrupted during start-up, with exit 130 / 143, instead of a traceback
from inside an import or a death by the signal. Only in a ``metaplastic`` command-line
process (the console script or ``python -m metaplastic.cli``): importing the library
elsewhere leaves signals alone. :func:`metaplastic.cli.console.stop_signals` takes over."""

from __future__ import annotations

import os
import signal
import sys
import threading

#: the signals that arrived before the command line's own handlers were installed
pending: list[int] = []


def _is_cli() -> bool:
    if os.path.basename(sys.argv[0] if sys.argv else "") == "metaplastic":
        return True
    argv = list(sys.orig_argv)
    return any(a == "-m" and b == "metaplastic.cli" for a, b in zip(argv, argv[1:], strict=False))


def _note(signum, frame) -> None:
    pending.append(signum)


def install() -> None:
    """Note SIGINT and SIGTERM from now on, in a command-line process's main thread."""
    if _is_cli() and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _note)
