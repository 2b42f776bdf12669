"""TensorBoard event files from a run's metrics (``--log tensorboard``), through
tensorboardX (``pip install 'metaplastic[tensorboard]'``).

``metrics.jsonl`` stays the source of truth: these files are written from the same
records, live during ``metaplastic run/resume --log tensorboard`` (after every chunk) or
afterwards by ``metaplastic report RUN --tensorboard``; the numbers are those of
:func:`metaplastic.report.loggers.scalars`, plus a histogram ``theta``. Event files go to
the run directory's ``tensorboard/``: ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

from pathlib import Path

from metaplastic._records import read_metrics
from metaplastic.errors import ConfigError
from metaplastic.report.loggers import check_available, scalars, theta_values

SUBDIR = "tensorboard"


class TensorBoardLog:
    """Writes records (dicts with a ``step``) as TensorBoard scalars and histograms."""

    def __init__(self, run_dir: str | Path, theta_names: list[str] | tuple = ()):
        check_available("tensorboard")
        from tensorboardX import SummaryWriter

        self.path = Path(run_dir) / SUBDIR
        self.names = list(theta_names)
        self.writer = SummaryWriter(str(self.path))

    def write(self, records: list[dict]) -> None:
        for r in records:
            step = int(r["step"])
            for key, value in scalars(r, self.names).items():
                self.writer.add_scalar(key, value, step)
            theta = theta_values(r)
            if theta is not None:
                self.writer.add_histogram("theta", theta, step)
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
