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


def test_a_reward_is_drawn_on_a_linear_axis_and_a_loss_over_decades_on_a_log_one(
        tmp_path, drawn):
    from metaplastic.report import plots

    rl = [{"step": i, "task_loss": -10.0 * i, "return": 10.0 * i} for i in range(1, 31)]
    plots.plot_meta_loss(rl, tmp_path / "m.png", score="return")
    assert drawn["axes"][0, 0].get_yscale() == "linear"  # CartPole's returns, 9 .. 500
    loss = [{"step": i, "task_loss": 10.0 ** (2 - i / 10)} for i in range(1, 41)]
    plots.plot_meta_loss(loss, tmp_path / "l.png")
    assert drawn["axes"][0, 0].get_yscale() == "log"


def test_eval_separates_a_saturated_score_by_its_loss_on_a_log_axis(tmp_path, drawn):
    """abs_cos 0.99 for Oja and Hebb alike, but Hebb's loss is 4.8e14: the score panel is
    fitted to the values (not bars from 0) and the loss panel is logarithmic."""
    rows = [{"rule": r, "variant": "n_in=10", "score": "abs_cos", "tasks": 20,
             "diverged": 0, "abs_cos": {"mean": c, "ci95": 0.001},
             "loss": {"mean": loss, "ci95": loss / 10}}
            for r, c, loss in [("learned", 0.991, 0.2), ("oja", 0.993, 0.1),
                               ("hebb", 0.990, 4.8e14)]]
    (tmp_path / "eval.json").write_text(json.dumps({"tasks_per_row": 20, "rows": rows}))
    plot_eval(tmp_path)
    score_ax, loss_ax = drawn["axes"][0]
    low, high = score_ax.get_ylim()
    assert low > 0.9 and high < 1.0  # the differences are visible
    assert loss_ax.get_yscale() == "log"


def test_inner_curves_merge_identical_metrics_keep_rates_non_negative_and_name_the_start(
        tmp_path):
    from metaplastic.report import learning

    steps = np.arange(1, 11)
    ret = np.tile(np.linspace(10, 200, 10), (4, 1))
    rate = np.abs(np.random.default_rng(0).normal(0.001, 0.01, (4, 10)))
    data = {"curve_steps": steps, "start_name": np.asarray("stdp")}
    for rule in ("learned", "start"):
        data[f"curve.{rule}.return"] = ret
        data[f"curve.{rule}.length"] = ret.copy()  # CartPole: the same numbers
        data[f"curve.{rule}.rate"] = rate
    seen = {}
    real = learning.plt.subplots

    def spy(*a, **k):
        seen["fig"], seen["axes"] = real(*a, **k)
        return seen["fig"], seen["axes"]

    learning.plt.subplots = spy
    try:
        learning.plot_inner(data, tmp_path / "inner.png")
    finally:
        learning.plt.subplots = real
    axes = seen["axes"][0]
    assert [ax.get_ylabel() for ax in axes] == ["return (= length)", "rate"]
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert labels == ["learned θ", "start θ (pair STDP)"]
    for coll in axes[1].collections:  # the CI bands of a non-negative metric
        assert min(path.vertices[:, 1].min() for path in coll.get_paths()) >= 0
