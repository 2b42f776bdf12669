"""Progress of long library calls, for people.

Every long call takes ``progress=``: a callable the call reports to (``outer.run``: the
records of each chunk), ``False`` for silence, or ``None`` (the default): a progress bar
on the terminal when one is attached (stderr is a TTY and ``METAPLASTIC_PROGRESS`` is not
``0``), else silence, so that scripts, notebooks' logs and tests print nothing unasked.
The command line draws its own bars and passes its own callables.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any


def interactive() -> bool:
    """Whether a default progress bar is drawn: stderr is a terminal, and the
    environment does not say ``METAPLASTIC_PROGRESS=0``."""
    return os.environ.get("METAPLASTIC_PROGRESS", "1") != "0" and sys.stderr.isatty()


@contextlib.contextmanager
def bar(what: str, total: int | None, console: Any = None) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr (or ``console``) while the block runs; yields
    ``update(done, info="")``. Transient: it leaves nothing behind in the terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn(what), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console or Console(stderr=True),
                  transient=True) as p:
        task = p.add_task(what, total=total, info="compiling...")

        def update(done: int, info: str = "") -> None:
            p.update(task, completed=done, info=info)

        yield update


def resolve(progress: Any) -> tuple[Any, bool]:
    """``(callable or None, whether to draw the default bar)`` of a ``progress=``
    argument: a callable as given, ``False`` silent, ``None`` a bar when interactive."""
    if progress is False:
        return None, False
    if progress is None:
        return None, interactive()
    if not callable(progress):
        from metaplastic.errors import ConfigError

        raise ConfigError(f"progress must be a callable, False or None; got {progress!r}")
    return progress, False
