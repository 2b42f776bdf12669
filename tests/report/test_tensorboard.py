"""TensorBoard event files written from a run's records, read back with TensorBoard's own
reader: same scalars as metrics.jsonl, θ as named scalars and a histogram."""

import json
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metaplastic import ConfigError
from metaplastic.report.tensorboard import TensorBoardLog, write_run


def _read(path):
    ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    return ea


def _records(n=12):
    rng = np.random.default_rng(0)
    return [{"step": i + 1, "task_loss": float(rng.random()), "skipped": i == 3,
             "theta": [float(i), -0.5 * i, 0.25]} for i in range(n)]


def test_a_run_becomes_event_files_with_the_same_numbers(tmp_path):
    records = _records()
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    path = write_run(tmp_path, ["pre*post", "post^2*w"])
    ea = _read(path)
    loss = ea.Scalars("task_loss")
    assert [e.step for e in loss] == list(range(1, 13))
    np.testing.assert_allclose([e.value for e in loss], [r["task_loss"] for r in records],
                               rtol=1e-6)
    assert [e.value for e in ea.Scalars("skipped")][3] == 1.0
    # tensorboardX keeps tags to [A-Za-z0-9_./-]: pre*post -> pre_post
    assert [e.value for e in ea.Scalars("theta/pre_post")][-1] == 11.0
    assert [e.value for e in ea.Scalars("theta/2")][0] == 0.25  # unnamed: its index
    assert len(ea.Histograms("theta")) == 12
    write_run(tmp_path)  # rewriting replaces the files: no step twice
    assert len(_read(path).Scalars("task_loss")) == 12


def test_live_writes_append_chunk_by_chunk(tmp_path):
    log = TensorBoardLog(tmp_path)
    records = _records(10)
    log.write(records[:5])
    log.write(records[5:])
    log.close()
    assert [e.step for e in _read(log.path).Scalars("task_loss")] == list(range(1, 11))


def test_without_tensorboardx_one_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ConfigError, match="metaplastic\\[tensorboard\\]"):
        TensorBoardLog(tmp_path)
    with pytest.raises(ConfigError, match="no metrics"):
        write_run(tmp_path)


def test_what_a_record_does_not_have_is_not_logged():
    """An ES run's grad_norm is null (or NaN in older records): no scalar, and no
    "NaN or Inf found in input tensor" per step."""
    from metaplastic.report.loggers import scalars

    got = scalars({"step": 1, "task_loss": 0.5, "grad_norm": None, "grad_norm[a]": float("nan"),
                   "sigma": float("inf"), "theta": [0.1, float("nan")]}, ["x", "y"])
    assert got == {"task_loss": 0.5, "theta/x": 0.1}
