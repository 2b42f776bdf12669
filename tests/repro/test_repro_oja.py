"""Full reproduction: `metaplastic run oja` rediscovers Oja's rule (make test-slow).

For five seeds: the learned coefficient vector has cosine >= 0.95 with Oja's (+1 pre*post,
-1 post^2*w), and on 100 fresh tasks per row — new random covariances, with the training
input size (10) and an unseen one (25) — the mean |cos(w, PC1)| is >= 0.95.
"""

import json

import pytest

from metaplastic.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_oja_is_rediscovered(seed, tmp_path):
    assert main(["run", "oja", "--seed", str(seed), "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_steps"] == 0
    assert summary["reference_cosine"] >= 0.95, summary["formula"]
    rows = json.loads((run / "eval.json").read_text())["rows"]
    learned = {r["variant"]: r for r in rows if r["rule"] == "learned"}
    assert set(learned) == {"n_in=10", "n_in=25"}
    for row in learned.values():
        assert row["tasks"] == 100 and row["diverged"] == 0
        assert row["abs_cos"]["mean"] >= 0.95, row
