"""Signals held back while results are written, so a run's files agree with each other.

Ctrl-C (SIGINT) and SIGTERM raise an exception wherever Python happens to be. Arriving
between "θ after this chunk" and "this chunk's metrics appended", such an exception would
leave a summary that counts more steps than ``metrics.jsonl`` holds. Inside
:func:`deferred` a signal is only noted; it is delivered (to the handler that was
installed before) when the block ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM until the block ends, then deliver the first one that
    arrived. Handlers that are not Python functions (default, ignore) are left alone, and
    outside the main thread nothing changes (Python delivers signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for sig in SIGNALS:
        old = signal.getsignal(sig)
        if callable(old):
            previous[sig] = old
            signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if pending:
            previous[pending[0]](pending[0], None)
