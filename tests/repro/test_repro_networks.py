"""Rules that are networks, reproduced (make test-slow).

* ``mlp-oja``: the MLP rule reaches mean |cos(w, PC1)| >= 0.95 on held-out tasks (100 per
  row, input sizes 10 and 25), and ``metaplastic explain`` distils it into a polynomial with
  held-out R² >= 0.9 whose three largest terms include Oja's two (pre*post, post^2*w).
* ``mlp-digits``: on held-out digit classes the MLP rule beats feedback alignment (by more
  than the confidence intervals), in the same table as the meta-trained term-pool rule.
"""

import json

import pytest

from metaplastic.cli import main


@pytest.mark.slow
def test_mlp_oja_learns_pca_and_distils_to_oja(tmp_path):
    assert main(["run", "mlp-oja", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    rows = json.loads((run / "eval.json").read_text())["rows"]
    learned = [r for r in rows if r["rule"] == "learned"]
    assert len(learned) == 2
    for row in learned:
        assert row["diverged"] == 0 and row["abs_cos"]["mean"] >= 0.95, row
    assert main(["explain", str(run)]) == 0
    fit = json.loads((run / "explain.json").read_text())
    assert fit["r2_heldout"] >= 0.9, fit["formula"]
    top3 = [t["term"] for t in fit["terms"][:3]]
    assert {"pre*post", "post^2*w"} <= set(top3), fit["formula"]
    coef = {t["term"]: t["coef"] for t in fit["terms"]}
    assert coef["pre*post"] > 0 > coef["post^2*w"]  # Oja's signs


@pytest.mark.slow
def test_mlp_digits_beats_feedback_alignment(tmp_path):
    assert main(["run", "mlp-digits", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    rows = json.loads((run / "eval.json").read_text())["rows"]
    held = {r["rule"]: r["accuracy"] for r in rows if r["variant"] == "digits, held-out classes"}
    assert {"learned", "term-pool (meta-trained)", "FA", "backprop SGD", "backprop Adam", "DFA",
            "learned, symmetric feedback", "learned, no hidden feedback"} <= set(held)
    fa, learned = held["FA"], held["learned"]
    assert learned["mean"] - learned["ci95"] > fa["mean"] + fa["ci95"]
