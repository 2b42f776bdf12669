"""Plots drawn from a run directory's files only."""

import json

import matplotlib.image as mpimg

from metaplastic.report import make_report, plot_eval


def _row(rule, variant, mean, ci=0.01, diverged=0):
    return {"rule": rule, "variant": variant, "score": "accuracy", "tasks": 20,
            "diverged": diverged, "accuracy": {"mean": mean, "ci95": ci},
            "loss": {"mean": 1.0, "ci95": 0.1}}


def test_eval_heatmap_has_a_cell_per_rule_and_row(tmp_path):
    rows = [_row(r, v, m) for r, v, m in [("learned", "a", 0.8), ("learned", "b", 0.3),
                                          ("FA", "a", 0.5), ("FA", "b", None)]]
    rows[-1]["diverged"] = 20
    (tmp_path / "eval.json").write_text(json.dumps({"tasks_per_row": 20, "rows": rows}))
    out = plot_eval(tmp_path)
    assert out == tmp_path / "eval.png"
    h, w, _ = mpimg.imread(out).shape
    assert w > 200 and h > 100


def test_no_or_damaged_eval_draws_nothing(tmp_path):
    assert plot_eval(tmp_path) is None
    (tmp_path / "eval.json").write_text("{not json")
    assert plot_eval(tmp_path) is None
    assert make_report(tmp_path) == []  # no metrics either: nothing to draw
