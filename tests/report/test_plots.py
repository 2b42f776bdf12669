"""Plots drawn from a run directory's files only."""

import json

import matplotlib.image as mpimg
import numpy as np
import pytest

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


def test_the_running_mean_is_centred_and_does_not_lag():
    from metaplastic.report.plots import _smooth

    y = np.r_[np.full(50, 10.0), np.full(50, 0.01)]  # a loss that drops at step 50
    m = _smooth(y, 25)
    assert m[70] == pytest.approx(0.01) and m[30] == pytest.approx(10.0)  # no lag
    assert m[0] == pytest.approx(10.0) and m[-1] == pytest.approx(0.01)  # shrinking ends
    y[10] = np.nan
    assert np.isfinite(_smooth(y, 25)).all()  # NaN steps are skipped, not spread


@pytest.fixture
def drawn(monkeypatch):
    """The axes the next plot draws on, kept for inspection."""
    from metaplastic.report import plots

    seen = {}
    real = plots.plt.subplots

    def spy(*a, **k):
        fig, axes = real(*a, **k)
        seen["axes"] = axes
        return fig, axes

    monkeypatch.setattr(plots.plt, "subplots", spy)
    return seen


def test_es_and_rl_histories_are_drawn_per_generation_as_rewards(tmp_path, drawn):
    from metaplastic.report import plots

    history = [{"step": i, "task_loss": -10.0 * i, "return": 10.0 * i, "pop_best": -12.0 * i,
                "pop_mean": -5.0 * i} for i in range(1, 31)]
    plots.plot_meta_loss(history, tmp_path / "m.png", score="return")
    ax = drawn["axes"][0, 0]
    assert ax.get_xlabel() == "generation" and "reward" in ax.get_ylabel()
    labels = [line.get_label() for line in ax.get_lines()]
    assert "population best" in labels and "population mean" in labels
    assert min(ax.get_lines()[0].get_ydata()) > 0  # the return, not minus it


def test_coefficients_are_drawn_beside_the_reference_rule(tmp_path, drawn):
    from metaplastic.report import plots

    history = [{"step": i, "theta": [0.1 * i, -0.05 * i, 0.001]} for i in range(1, 11)]
    plots.plot_coefficients(history, ["pre*post", "post^2*w", "1"], tmp_path / "c.png",
                            label_top=2, reference=[1.0, -1.0, 0.0], reference_name="oja")
    ax = drawn["axes"]
    dashed = sorted(line.get_ydata()[0] for line in ax.get_lines()
                    if line.get_linestyle() == "--")
    assert dashed == [-1.0, 1.0] and "oja" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pre*post", "post^2*w"]
