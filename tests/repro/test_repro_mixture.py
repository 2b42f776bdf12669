"""One local rule over a mixture of datasets and depths, over five meta-training seeds
(make test-slow; about an hour on 2 cores).

`metaplastic run mixture-fewshot --seeds 0-4`, each seed evaluated on the headline columns
(depth 5, held-out classes of MNIST-5k — a dataset never in the mixture — and of digits)
against FA, online Adam and the output-layer-only controls (`metaplastic eval RUN --name
headline`, the settings of `presets.mixture_headline_eval`). What docs/results.md claims
from it, checked on the seed mean: no seed ends flagged (diverged or blown up), the
constraints hold, the rule closes a share of the FA-to-Adam gap on the unseen dataset and
beats online Adam on the output layer alone (thresholds below, from the measurement in
docs/results.md with its spread).
"""

import json

import pytest

from metaplastic.cli import main
from metaplastic.experiments import presets
from metaplastic.experiments.config import set_arguments

UNSEEN = presets.MIXTURE_HEADLINE[0]["label"]
#: the seed mean of (rule - FA) / (Adam - FA) on the unseen dataset must reach this
#: (measured 0.508 ± 0.032 over seeds 0-4, every seed 0.47-0.54; docs/results.md)
MIN_GAP_SHARE = 0.45
#: and the rule must beat online Adam on the output layer only by this much, seed mean
#: (measured +0.131 ± 0.011)
MIN_OVER_OUTPUT_ONLY = 0.05
#: and FA with per-layer learning rates meta-learned for the column by this much (step
#: sizes alone; measured +0.143 ± 0.024 over seeds 0-2, paired)
MIN_OVER_FA_RATES = 0.05


@pytest.mark.slow
def test_mixture_headline_over_five_seeds(tmp_path):
    assert main(["run", "mixture-fewshot", "--seeds", "0-4", "--no-eval",
                 "--out", str(tmp_path)]) == 0
    (parent,) = list(tmp_path.iterdir())
    runs = sorted(parent.glob("seed-*"))
    assert len(runs) == 5
    settings = presets.mixture_headline_eval("headline")
    sets = set_arguments("eval", settings)
    shares, over, over_rates = [], [], []
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "finished", (run, summary["status"])  # 0 of 5 flagged
        assert summary["constraints"] == {"locality": "holds",
                                          "no_weight_transport": "holds", "online": "holds"}
        assert main(["eval", str(run), "--name", "headline", *sets]) == 0
        rows = {(r["rule"], r["variant"]): r["accuracy"]["mean"] for r in
                json.loads((run / "headline.json").read_text())["rows"]}
        learned, fa, adam = (rows[(k, UNSEEN)] for k in ("learned", "FA", "backprop Adam"))
        shares.append((learned - fa) / (adam - fa))
        over.append(learned - rows[("Adam, output layer only", UNSEEN)])
        over_rates.append(learned - rows[("FA, meta-learned per-layer rates", UNSEEN)])
    assert sum(shares) / len(shares) >= MIN_GAP_SHARE, shares
    assert sum(over) / len(over) >= MIN_OVER_OUTPUT_ONLY, over
    assert sum(over_rates) / len(over_rates) >= MIN_OVER_FA_RATES, over_rates
