"""What the live metric writers beside ``metrics.jsonl`` share (``--log``):
:class:`~metaplastic.report.tensorboard.TensorBoardLog` (event files) and
:class:`~metaplastic.report.wandb_log.WandbLog` (a Weights & Biases run).
``metrics.jsonl`` stays the source of truth; a writer gets the same records after every
chunk (``write(records)``, then ``close()``).

Both write the same numbers (:func:`scalars`): every numeric metric of a meta-step
(booleans as 0/1) and, where the run logs θ (rules of up to ``THETA_LOG_MAX`` numbers),
each coefficient as ``theta/<term>`` (``pre*post`` becomes ``theta/pre_post``: TensorBoard
keeps tags to letters, digits and ``_./-``) plus a histogram of all of them.
"""

from __future__ import annotations

import math
import re

import numpy as np

from metaplastic.errors import ConfigError


def tag(name: str) -> str:
    """A metric name both writers accept."""
    return re.sub(r"[^A-Za-z0-9_./-]+", "_", name).strip("_") or "_"


def scalars(record: dict, theta_names: list[str] | tuple = ()) -> dict[str, float]:
    """The numbers of one meta-step's record, by tag (see the module)."""
    out = {}
    for key, value in record.items():
        if key in ("step", "theta"):
            continue
        if isinstance(value, bool | int | float) and math.isfinite(float(value)):
            out[key] = float(value)  # what does not exist (null, NaN) is not logged
    theta = record.get("theta")
    if theta is not None:
        for i, v in enumerate(np.asarray(theta, float)):
            name = theta_names[i] if i < len(theta_names) else str(i)
            if math.isfinite(v):
                out[f"theta/{tag(name)}"] = float(v)
    return out


def theta_values(record: dict) -> np.ndarray | None:
    """The record's finite θ entries (for a histogram), or None."""
    theta = record.get("theta")
    if theta is None:
        return None
    arr = np.asarray(theta, float)
    arr = arr[np.isfinite(arr)]
    return arr if arr.size else None


NEEDS = {"tensorboard": ("tensorboardX", "'metaplastic[tensorboard]' (or tensorboardX)"),
         "wandb": ("wandb", "'metaplastic[wandb]' (or wandb)")}


def check_available(kind: str) -> None:
    """ConfigError if ``--log kind`` needs a package that is not installed (checked before
    a run directory is created)."""
    import importlib.util

    if kind in NEEDS and importlib.util.find_spec(NEEDS[kind][0]) is None:
        raise ConfigError(f"--log {kind} needs {NEEDS[kind][0]}: pip install {NEEDS[kind][1]}")
