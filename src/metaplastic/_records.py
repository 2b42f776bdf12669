"""Reading a run's files: ``metrics.jsonl`` (one JSON object per meta-step), tolerant of a
last line cut short by a kill, and its JSON and TOML files; shared by the run directory and the
report (which must not import the experiments)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from metaplastic.errors import ConfigError


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


def unreadable_lines(path: str | Path) -> int:
    """How many non-empty lines of a metrics file are not JSON objects (torn by a kill,
    garbled): what :func:`read_metrics` skips, for the edges to say."""
    path = Path(path)
    if not path.is_file():
        return 0
    bad = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            bad += not isinstance(json.loads(line), dict)
        except json.JSONDecodeError:
            bad += 1
    return bad


def read_toml(path: str | Path) -> dict:
    """A TOML file's table; anything that keeps it from being read (not TOML, not UTF-8,
    nested too deeply, unreadable) is one ConfigError naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is damaged: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path} is damaged: tables nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is damaged: not UTF-8 text ({e.reason} at byte "
                          f"{e.start})") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None


def read_json(path: str | Path, strict: bool = True) -> dict:
    """A JSON object file ({} if absent). Not JSON: a ConfigError naming the file; JSON but
    not an object: a ConfigError when ``strict``, else {}."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is damaged (not JSON: {e})") from None
    if not isinstance(data, dict):
        if strict:
            raise ConfigError(f"{path} is damaged (not a JSON object)")
        return {}
    return data


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested configuration with dotted keys (``{"meta.steps": 300, ...}``), leaf
    values as they are (compare's labels, TensorBoard's hyperparameters)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out

