"""Progress of long library calls, for people.

Every long call takes ``progress=``: a callable the call reports to — ``progress(done,
total, what)`` (evaluation, ``rule_runs.evaluate_run``: every tuning point and table cell;
rule recovery, ``rule_recovery.analyse``: its refits, meta-step by meta-step;
simulated recordings, ``analysis.simulate.simulate``: steps, from inside the compiled loop;
``outer.run``: the records of each chunk instead) — ``False`` for silence, or ``None``
(the default): a bar
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
    """A rich progress bar on stderr (or ``console``) while the block runs, with the time
    left; yields ``update(done, info="", total=None)`` (``total``: a new total, for work
    whose size is known as it goes). Transient: it leaves nothing behind."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn(what), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console or Console(stderr=True),
                  transient=True) as p:
        task = p.add_task(what, total=total, info="compiling...")

        def update(done: int, info: str = "", total: int | None = None) -> None:
            if total is not None:
                p.update(task, total=total)
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


@contextlib.contextmanager
def reporting(progress: Any, title: str) -> Iterator[Callable[[int, int | None, str], None] | None]:
    """What a long call reports ``(done, total, what)`` to while the block runs: the
    callable given, a bar titled ``title`` for ``None`` on a terminal, nothing (None)
    otherwise or for ``False``."""
    report, draw = resolve(progress)
    if not draw:
        yield report
        return
    with bar(title, None) as update:
        yield lambda done, total, what: update(done, what, total)

