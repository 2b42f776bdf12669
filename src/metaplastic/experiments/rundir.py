"""The run directory: everything a run leaves behind, in safe formats.

::

    runs/oja-20261128-142501/
      config.toml      the resolved configuration (re-runnable: metaplastic run config.toml)
      metrics.jsonl    one JSON object per meta-step
      theta.npz        the learned parameters (plain arrays; no pickle)
      summary.json     final numbers: learned formula, time, cosine to the reference rule
      checkpoint.npz   the outer loop's whole state after the last chunk (metaplastic resume)
      eval.json        held-out evaluation (metaplastic eval)
      episode.npz      inner learning recorded after training, for the figures
      *.png            figures drawn from these files only (metaplastic report)
      export/          the rule, explain's formula and spiking networks (metaplastic export)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from metaplastic import _npz
from metaplastic._records import read_json, read_metrics
from metaplastic.errors import ConfigError
from metaplastic.experiments import config as config_mod

SEP = "/"


def new_run_dir(root: str | Path, name: str) -> Path:
    """A fresh directory ``root/name-YYYYmmdd-HHMMSS[-k]``."""
    root = Path(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-{stamp}"
    path, k = base, 1
    while True:  # mkdir is the test: two processes starting at once get different names
        try:
            path.mkdir(parents=True, exist_ok=False)
            break
        except FileExistsError:
            path, k = Path(f"{base}-{k}"), k + 1
        except OSError as e:
            raise ConfigError(f"cannot create the run directory under {str(root)!r}: "
                              f"{e.strerror or e}") from None
    return path


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts / tuples of arrays -> {"a/[0]/b": array}; sequences get "[i]" keys."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if SEP in str(k) or str(k).startswith("["):
                raise ConfigError(f"parameter names may not contain {SEP!r} or start with "
                                  f"'[': {k!r}")
            out |= _flatten(v, f"{prefix}{k}{SEP}")
        return out
    if isinstance(tree, list | tuple):
        out = {}
        for i, v in enumerate(tree):
            out |= _flatten(v, f"{prefix}[{i}]{SEP}")
        return out
    arr = np.asarray(tree)
    if arr.dtype == object:
        raise ConfigError(f"cannot save parameter {prefix.rstrip(SEP)!r}: not a numeric array")
    return {prefix.rstrip(SEP): arr}


def _unflatten(flat: dict[str, np.ndarray]) -> Any:
    root: dict = {}
    for key, value in flat.items():
        node = root
        *parents, leaf = key.split(SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    def build(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.startswith("[") for k in node):
            return tuple(build(node[k]) for k in sorted(node, key=lambda k: int(k[1:-1])))
        return {k: build(v) for k, v in node.items()}

    return build(root)


def _replace_atomically(path: str | Path, write: Any) -> None:
    """``write(tmp)`` beside ``path``, then rename: a kill mid-write leaves the old file."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:  # a full disk, a kill: no half-written file left behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def save_theta(path: str | Path, theta: Any) -> None:
    """Save θ (nested dicts and tuples of arrays) as .npz of plain arrays; no pickle.
    Written atomically; ``.npz`` is appended to a path without it (as numpy does)."""
    path = Path(path)
    path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    arrays = _flatten(theta)
    _replace_atomically(path, lambda tmp: np.savez(tmp, **arrays))


def load_theta(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no parameters file at {str(path)!r}")
    return _unflatten(_npz.read(path, "parameters file"))


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray | np.generic):  # numpy arrays and scalars as plain values
        x = x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


class RunDir:
    """Reading and writing the files of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextlib.contextmanager
    def writer(self):
        """Hold the run directory's lock while writing it (``run.lock``; an advisory
        ``flock``, released by the system when the process ends, even by kill -9): a
        second writer — ``metaplastic resume`` of a run still training — gets one
        ConfigError instead of two processes writing the same files."""
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): no second-writer check
            yield
            return
        with open(self.path / "run.lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ConfigError(f"{self.path} is being written by another process (a run "
                                  f"or resume still going on); wait for it or stop it "
                                  f"first") from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if not (run.path / "config.toml").is_file():
            raise ConfigError(f"{str(path)!r} is not a run directory (no config.toml)")
        return run

    def config(self) -> config_mod.RunConfig:
        return config_mod.load(self.path / "config.toml")

    def save_config(self, cfg: config_mod.RunConfig) -> None:
        config_mod.save(cfg, self.path / "config.toml")

    def append_metrics(self, records: list[dict]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            for r in records:
                f.write(json.dumps(_jsonable(r)) + "\n")

    def metrics(self) -> list[dict]:
        """The records of metrics.jsonl; a line cut short by a kill is skipped."""
        return read_metrics(self.path / "metrics.jsonl")

    def save_theta(self, theta: dict) -> None:
        save_theta(self.path / "theta.npz", theta)

    def theta(self) -> dict:
        return load_theta(self.path / "theta.npz")

    # --- checkpoints: the run's whole state after a chunk (metaplastic resume) -------------
    def save_checkpoint(self, state) -> None:
        """Write the driver's state as plain arrays, atomically (a kill mid-write leaves
        the previous checkpoint)."""
        from metaplastic.meta.driver import state_arrays

        arrays = state_arrays(state)
        _replace_atomically(self.path / "checkpoint.npz", lambda tmp: np.savez(tmp, **arrays))

    def load_checkpoint(self, like):
        """The saved state, shaped like ``like`` (a fresh driver state of the same run)."""
        from metaplastic.meta.driver import state_from_arrays

        path = self.path / "checkpoint.npz"
        if not path.is_file():
            raise ConfigError(f"{self.path} has no checkpoint.npz to resume from")
        arrays = _npz.read(path, "the checkpoint to resume from")
        try:
            return state_from_arrays(like, arrays)
        except ValueError as e:
            raise ConfigError(f"cannot resume from {str(path)!r}: {e}") from None

    def keep_metrics_until(self, step: int) -> None:
        """Drop metrics records after meta-step ``step`` (and a last line cut by a kill)."""
        p = self.path / "metrics.jsonl"
        if p.is_file():
            kept = [r for r in self.metrics() if r.get("step", step + 1) <= step]
            text = "".join(json.dumps(r) + "\n" for r in kept)
            _replace_atomically(p, lambda tmp: tmp.write_text(text))

    def write_json(self, name: str, data: dict) -> None:
        text = json.dumps(_jsonable(data), indent=2) + "\n"
        _replace_atomically(self.path / name, lambda tmp: tmp.write_text(text))

    def read_json(self, name: str) -> dict:
        """A JSON file of the run ({} if absent); a damaged one is a ConfigError."""
        return read_json(self.path / name)

    def summary(self) -> dict:
        """``summary.json`` as a table; {} where there is none, or it is damaged (not
        JSON, or not a table)."""
        try:
            summary = self.read_json("summary.json")
        except (OSError, ValueError):  # ConfigError is a ValueError
            return {}
        return summary if isinstance(summary, dict) else {}
