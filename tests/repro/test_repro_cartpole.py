"""CartPole from random weights with an evolved Hebbian rule (make test-slow).

`metaplastic run cartpole-hebbian`: after its 200 generations of OpenAI-ES, the rule
reaches a mean return >= 475 over 100 evaluation episodes, each from fresh random weights.
"""

import json

import pytest

from metaplastic.cli import main


@pytest.mark.slow
def test_cartpole_hebbian_reaches_475(tmp_path):
    assert main(["run", "cartpole-hebbian", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    rows = json.loads((run / "eval.json").read_text())["rows"]
    train_physics = next(r for r in rows if r["variant"] == "train physics")
    assert train_physics["tasks"] == 100
    assert train_physics["return"]["mean"] >= 475, train_physics
