"""TensorBoard event files from a run's metrics (``--log tensorboard``), through
tensorboardX (``pip install 'metaplastic[tensorboard]'``).

``metrics.jsonl`` stays the source of truth: these files are written from the same
records, live during ``metaplastic run/resume --log tensorboard`` (after every chunk) or
afterwards by ``metaplastic report RUN --tensorboard``; the numbers are those of
:func:`metaplastic.report.loggers.scalars`, plus a histogram ``theta``. After training
(and evaluation), :func:`write_results` adds the held-out evaluation tables as scalars,
the configuration as hyperparameters (the HParams plugin's format, with the evaluation
scores as its metrics) and the figures as images. Event files go to
the run directory's ``tensorboard/``: ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from metaplastic._records import flatten, read_metrics, read_toml
from metaplastic.errors import ConfigError
from metaplastic.report.loggers import check_available, scalars, tag, theta_values

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
    """Event files for a finished (or stopped) run from its ``metrics.jsonl``, with its
    evaluation tables, hyperparameters and figures (:func:`write_results`)."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    if not records:
        raise ConfigError(f"{run_dir} has no metrics to write as TensorBoard events")
    for old in (run_dir / SUBDIR).rglob("events.out.tfevents.*"):
        old.unlink()  # rewritten from the records: no step twice
    log = TensorBoardLog(run_dir, theta_names)
    try:
        log.write(records)
    finally:
        log.close()
    write_results(run_dir, int(records[-1]["step"]))
    return log.path


def _hparams(config: dict) -> dict:
    """A config as HParams values: dotted keys; numbers, booleans and strings as they are,
    anything else (lists) as its JSON text."""
    return {k: v if isinstance(v, bool | int | float | str) else json.dumps(v, default=str)
            for k, v in flatten(config).items()}


def eval_scalars(run_dir: Path) -> dict[str, float]:
    """Every held-out evaluation table of the run (``eval*.json``) as scalars:
    ``<table>/<row>/<rule>/<score>`` (mean over tasks), loss and diverged count too."""
    out = {}
    for path in sorted(run_dir.glob("eval*.json")):
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a damaged table is not the logger's to report
        rows = table.get("rows") if isinstance(table, dict) else None
        for r in rows if isinstance(rows, list) else []:
            if not isinstance(r, dict):
                continue
            base = f"{tag(path.stem)}/{tag(r.get('variant', ''))}/{tag(r.get('rule', ''))}"
            for key in (r.get("score"), "loss"):
                stats = r.get(key)
                if isinstance(stats, dict) and isinstance(stats.get("mean"), int | float) \
                        and math.isfinite(stats["mean"]):
                    out[f"{base}/{tag(key)}"] = float(stats["mean"])
            if isinstance(r.get("diverged"), int | float):
                out[f"{base}/diverged"] = float(r["diverged"])
    return out


def write_results(run_dir: str | Path, step: int) -> None:
    """What a run has after training, into its TensorBoard folder: the evaluation tables
    as scalars (at the last meta-step), the configuration as HParams (with the evaluation
    scores and the final meta-loss as its metrics), and every figure as an image."""
    check_available("tensorboard")
    from matplotlib.image import imread
    from tensorboardX import SummaryWriter

    run_dir = Path(run_dir)
    # its own file name: the metrics' file of the same second would be overwritten
    writer = SummaryWriter(str(run_dir / SUBDIR), filename_suffix=".results")
    try:
        results = eval_scalars(run_dir)
        for key, value in results.items():
            writer.add_scalar(key, value, step)
        for png in sorted(run_dir.glob("*.png")):
            image = imread(png)
            if image.ndim == 3:
                writer.add_image(f"figures/{png.stem}", image[..., :3], step,
                                 dataformats="HWC")
        config = run_dir / "config.toml"
        if config.is_file():
            records = read_metrics(run_dir / "metrics.jsonl")
            metrics = {f"result/{k}": v for k, v in results.items()}
            last = [r.get("loss") for r in records if isinstance(r.get("loss"), int | float)]
            if last and math.isfinite(last[-1]):
                metrics["result/final_meta_loss"] = float(last[-1])
            if metrics:
                writer.add_hparams(_hparams(read_toml(config)), metrics, name="hparams",
                                   global_step=step)
    finally:
        writer.close()
