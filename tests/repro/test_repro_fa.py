"""Feedback alignment vs a meta-learned local rule (make test-slow).

`metaplastic run fa-digits`: on held-out digit classes, 5-way 10-shot online learning in a
network with 3 plastic layers, the meta-learned term-pool rule beats feedback alignment by
more than the confidence intervals and closes at least half of the FA-to-backprop gap;
FA and backprop are themselves apart (otherwise the setting could not show anything).
"""

import json

import pytest

from metaplastic.cli import main


@pytest.mark.slow
def test_learned_rule_closes_half_the_gap_to_backprop(tmp_path):
    assert main(["run", "fa-digits", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    rows = json.loads((run / "eval.json").read_text())["rows"]
    held = {r["rule"]: r["accuracy"] for r in rows if r["variant"] == "digits, held-out classes"}
    fa, bp, learned = held["FA"], held["backprop SGD"], held["learned"]
    assert all(r["tasks"] == 200 for r in rows)
    assert bp["mean"] - bp["ci95"] > fa["mean"] + fa["ci95"]  # the setting separates them
    assert learned["mean"] - learned["ci95"] > fa["mean"] + fa["ci95"]
    assert learned["mean"] - fa["mean"] >= 0.5 * (bp["mean"] - fa["mean"])
