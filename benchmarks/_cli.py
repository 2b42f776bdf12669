"""What the benchmark scripts share on their command lines.

* Preset names are checked before any work starts (:func:`check_presets`): a misspelt one
  is argparse's error (exit 2) naming it and the valid names — not a traceback, minutes
  of failing child processes, or a results file of errors.
* A child process that fails is said in a few lines (:func:`run_child`), not as
  ``CalledProcessError`` with the whole child script in it.
* A results file that a script extends (:func:`results_to_extend`) is read with care: a
  damaged one, or one of another script, is said and left as it is.
* Results are written whole or not at all (:func:`write_results`: a temporary file
  renamed over the old one), so Ctrl-C or a full disk never leaves a committed results
  file torn.
* Ctrl-C says what was kept (:func:`main_of`) and exits 130, without a traceback.

Not a benchmark itself (the leading underscore); the scripts import it as their sibling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path


def known_presets() -> list[str]:
    """Every preset of every registered study (rule studies' and ``selection-meta``)."""
    from metaplastic.experiments import studies  # noqa: F401  (registers the studies)
    from metaplastic.experiments.study import presets

    return sorted(presets())


def check_presets(parser: argparse.ArgumentParser, names: Iterable[str],
                  known: Iterable[str] | None = None) -> list[str]:
    """``names`` as a list when each is a preset (``known``: the names allowed; default
    every preset); otherwise ``parser``'s error (exit 2) naming the unknown ones."""
    names = list(names)
    known = sorted(known) if known is not None else known_presets()
    bad = [n for n in names if n not in known]
    if bad:
        parser.error(f"unknown preset{'s' if len(bad) > 1 else ''} "
                     f"{', '.join(map(repr, bad))}; valid presets: {', '.join(known)}")
    return names


def tail(text: str, lines: int = 8) -> str:
    """The last ``lines`` non-empty lines of ``text``."""
    return "\n".join([ln for ln in (text or "").splitlines() if ln.strip()][-lines:])


def run_child(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd)`` with its output captured; a failure exits this script with
    ``what`` and the end of the child's output."""
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n"
                         f"{tail(done.stderr) or tail(done.stdout)}")
    return done


def last_json(done: subprocess.CompletedProcess, what: str) -> dict:
    """The JSON object a child printed as its last line."""
    lines = done.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        out = None
    if not isinstance(out, dict):
        raise SystemExit(f"{what} printed no result line:\n{tail(done.stdout + done.stderr)}")
    return out


def results_to_extend(parser: argparse.ArgumentParser, path: Path,
                      key: str = "presets") -> dict:
    """The ``key`` table of the results file at ``path`` that this run adds to ({} where
    there is none yet); ``parser``'s error where the file cannot be read back or is not
    such a file (it is left as it is)."""
    if not path.exists():
        return {}
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        parser.error(f"--out {path}: cannot add to it ({type(e).__name__}: {e}); "
                     "name another file, or move this one away")
    if not isinstance(found, dict) or not isinstance(found.get(key), dict):
        parser.error(f"--out {path} is not a results file of this script (no {key!r} "
                     "table); name another file, or move this one away")
    return found[key]


def write_results(path: Path, results: dict) -> None:
    """``results`` as JSON at ``path``, whole or not at all (written beside it, then
    renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # (the umask's permissions)
    try:
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main_of(main: Callable[[], object],
            kept: str | Callable[[], str] = "nothing was written") -> None:
    """Run ``main``; on Ctrl-C say what was written before it (``kept``, or what it
    returns then) and exit 130."""
    try:
        main()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {kept() if callable(kept) else kept}", file=sys.stderr)
        sys.exit(130)
