"""--log wandb: an offline W&B run beside metrics.jsonl, with the same numbers (read back
from W&B's own file; second tier: W&B starts a helper process)."""

import json
import struct
from pathlib import Path

import pytest

from metaplastic.cli import main

wandb_pb2 = pytest.importorskip("wandb.proto.wandb_internal_pb2")  # in the dev extras


def read_history(path: Path) -> list[dict]:
    """The logged rows of a W&B ``.wandb`` file (a LevelDB-style log of protobuf records:
    a 7-byte file header, 32 KiB blocks, records of 7-byte headers with a type FULL,
    FIRST, MIDDLE or LAST)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, rows, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: one record
            rec = wandb_pb2.Record()
            rec.ParseFromString(buf)
            buf = b""
            if rec.WhichOneof("record_type") == "history":
                rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                             for i in rec.history.item})
    return rows


@pytest.mark.tier2
def test_log_wandb_writes_an_offline_run_with_the_metrics(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline by default: no network
    assert main(["run", "oja", "--set", "meta.steps=6", "--set", "meta.chunk=3",
                 "--set", "task.n_steps=50", "--no-eval", "--log", "wandb",
                 "--out", str(tmp_path)]) == 0
    assert "wandb sync" in capsys.readouterr().out
    (run,) = list(tmp_path.iterdir())
    (file,) = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    rows = read_history(file)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["_step"] for r in rows] == [m["step"] for m in metrics] == list(range(1, 7))
    import metaplastic as mp

    where = mp.rules.make("polynomial").term_names.index("pre*post")
    for row, m in zip(rows, metrics, strict=True):
        assert row["task_loss"] == pytest.approx(m["task_loss"], rel=1e-12)
        assert row["theta/pre_post"] == pytest.approx(m["theta"][where], rel=1e-12)
    assert rows[0]["theta_histogram/_type"] == "histogram"  # of the coefficients
