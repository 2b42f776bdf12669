"""Reading a run's ``metrics.jsonl`` (one JSON object per meta-step), tolerant of a last
line cut short by a kill: shared by the run directory and the plots (which must not import
the experiments)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics file ([] if absent); lines that are not JSON objects are
    skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
