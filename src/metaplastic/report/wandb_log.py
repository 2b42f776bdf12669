"""A Weights & Biases run from a run's metrics (``--log wandb``; ``pip install wandb``).

Offline by default — nothing leaves the machine: the run is written to the run
directory's ``wandb/`` and can be uploaded later with ``wandb sync RUN/wandb/offline-run-*``.
``WANDB_MODE=online`` (and a login) logs live instead; ``WANDB_PROJECT`` names the project
(default ``metaplastic``). The numbers are those of :func:`metaplastic.report.loggers.scalars`,
at the run's meta-steps, and a histogram ``theta_histogram``; the run's
configuration is the W&B config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from metaplastic.report.loggers import check_available, scalars, theta_values

SUBDIR = "wandb"


class WandbLog:
    """Writes records (dicts with a ``step``) to one W&B run."""

    def __init__(self, run_dir: str | Path, theta_names: list[str] | tuple = (),
                 config: dict[str, Any] | None = None):
        check_available("wandb")
        import wandb

        self._wandb = wandb
        self.names = list(theta_names)
        run_dir = Path(run_dir)
        self.path = run_dir / SUBDIR
        self.path.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "metaplastic"),
                              name=run_dir.name, dir=str(run_dir), config=config or {},
                              mode=os.environ.get("WANDB_MODE", "offline"),
                              reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off"))

    def write(self, records: list[dict]) -> None:
        for r in records:
            values: dict[str, Any] = scalars(r, self.names)
            theta = theta_values(r)
            if theta is not None:
                values["theta_histogram"] = self._wandb.Histogram(theta)
            self.run.log(values, step=int(r["step"]))

    def close(self) -> None:
        """Finish the run and stop W&B's helper process: ``finish`` alone returns before
        that process has always flushed the offline ``.wandb`` file (seen: 1 run in 15
        under load held no rows when read right after); stopping it waits for the file."""
        self.run.finish()
        self._wandb.teardown()
