"""TensorBoard event files from a run's metrics (``--log tensorboard``), through
tensorboardX (``pip install 'metaplastic[tensorboard]'``).

``metrics.jsonl`` stays the source of truth: these files are written from the same
records, live during ``metaplastic run/resume --log tensorboard`` (after every chunk) or
afterwards by ``metaplastic report RUN --tensorboard``. Per meta-step: every numeric
metric as a scalar (booleans as 0/1), the rule's coefficients as scalars
``theta/<term>`` (TensorBoard keeps tags to letters, digits and ``_./-``: ``pre*post``
becomes ``theta/pre_post``) and a histogram ``theta`` of all of them — when the run logs θ in its
records (rules of up to ``meta.driver.THETA_LOG_MAX`` numbers). Event files go to the run
directory's ``tensorboard/``: ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from metaplastic._records import read_metrics
from metaplastic.errors import ConfigError

SUBDIR = "tensorboard"


class TensorBoardLog:
    """Writes records (dicts with a ``step``) as TensorBoard scalars and histograms."""

    def __init__(self, run_dir: str | Path, theta_names: list[str] | tuple = ()):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ConfigError("--log tensorboard needs tensorboardX: pip install "
                              "'metaplastic[tensorboard]' (or tensorboardX)") from None
        self.path = Path(run_dir) / SUBDIR
        self.names = list(theta_names)
        self.writer = SummaryWriter(str(self.path))

    def write(self, records: list[dict]) -> None:
        for r in records:
            step = int(r["step"])
            for key, value in r.items():
                if key in ("step", "theta"):
                    continue
                if isinstance(value, bool | int | float) and value is not None:
                    self.writer.add_scalar(key, float(value), step)
            theta = r.get("theta")
            if theta is not None:
                arr = np.asarray(theta, float)
                finite = arr[np.isfinite(arr)]
                if finite.size:
                    self.writer.add_histogram("theta", finite, step)
                for i, v in enumerate(arr):
                    name = self.names[i] if i < len(self.names) else str(i)
                    if math.isfinite(v):
                        self.writer.add_scalar(f"theta/{name}", float(v), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_run(run_dir: str | Path, theta_names: list[str] | tuple = ()) -> Path:
    """Event files for a finished (or stopped) run from its ``metrics.jsonl``."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    if not records:
        raise ConfigError(f"{run_dir} has no metrics to write as TensorBoard events")
    for old in (run_dir / SUBDIR).glob("events.out.tfevents.*"):
        old.unlink()  # rewritten from the records: no step twice
    log = TensorBoardLog(run_dir, theta_names)
    try:
        log.write(records)
    finally:
        log.close()
    return log.path
