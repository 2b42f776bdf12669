"""One local rule over a mixture of datasets and depths (make test-slow).

`metaplastic run mixture-fewshot`, evaluated on its headline cell only: depth 5 (five
plastic layers) on MNIST-5k at its 784 raw inputs, a dataset never in the mixture. The
learned MLP rule (fixed random feedback; locality and no weight transport measured)
beats feedback alignment and DFA by more than the confidence intervals and closes at
least 40% of the gap between FA and online backprop-with-Adam (measured: 50%, seed 0).
"""

import json

import pytest

from metaplastic.cli import main

HEADLINE = ("eval.variants=[{label = 'headline', dataset = 'mnist5k', classes = 'heldout', "
            "network = {hidden = [32, 32, 32, 32]}}]")
BASELINES = ("eval.baselines=["
             "{label = 'FA', rule = 'sgd', network = {feedback = 'random', update_fan_in = 0},"
             " tune = {eta = [0.003, 0.01, 0.03, 0.1, 0.3]}},"
             "{label = 'DFA', rule = 'sgd', network = {feedback = 'direct', update_fan_in = 0},"
             " tune = {eta = [0.003, 0.01, 0.03, 0.1, 0.3]}},"
             "{label = 'Adam', rule = 'adam',"
             " network = {feedback = 'symmetric', update_fan_in = 0},"
             " tune = {eta = [0.0003, 0.001, 0.003, 0.01, 0.03]}}]")


@pytest.mark.slow
def test_mixture_rule_on_an_unseen_dataset_at_depth_5(tmp_path):
    assert main(["run", "mixture-fewshot", "--out", str(tmp_path), "--set", HEADLINE,
                 "--set", BASELINES]) == 0
    (run,) = list(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["constraints"] == {"locality": "holds", "no_weight_transport": "holds",
                                      "online": "holds"}
    rows = {r["rule"]: r["accuracy"] for r in
            json.loads((run / "eval.json").read_text())["rows"]}
    learned, fa, dfa, adam = rows["learned"], rows["FA"], rows["DFA"], rows["Adam"]
    for hand in (fa, dfa):
        assert learned["mean"] - learned["ci95"] > hand["mean"] + hand["ci95"]
    assert (learned["mean"] - fa["mean"]) / (adam["mean"] - fa["mean"]) >= 0.4
