"""Recorded inner learning (episode.npz) and the figures drawn from it."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from metaplastic.experiments import episode, presets
from metaplastic.experiments.build import build
from metaplastic.experiments.config import override
from metaplastic.report.learning import plot_learning

RATE = ["task.n_steps=120", "task.n_in=5", "meta.steps=2"]
SPIKING = ["task.phases=2", "task.phase_steps=150", "task.n_in=8", "task.n_out=4",
           "meta.steps=2"]


def _recorded(name, sets):
    cfg = override(presets.get(name), sets)
    pieces = build(cfg)
    import jax

    k_init = jax.random.split(jax.random.key(cfg.seed))[0]
    theta0 = pieces.rule.init(k_init, pieces.network.shapes)
    # "learned": the start moved towards the reference, so the two rules differ
    theta = (pieces.rule.coefficients("oja") if name == "oja" else None)
    theta = {"coef": theta} if theta is not None else jax.tree.map(lambda a: 2.0 * a, theta0)
    return cfg, pieces, episode.record(cfg, pieces, theta, theta0)


@pytest.fixture(scope="module")
def rate_run():
    return _recorded("oja", RATE)


@pytest.fixture(scope="module")
def spiking_run():
    return _recorded("spiking-homeostasis", SPIKING)


def test_rate_episode_holds_curves_of_each_rule_and_weights(rate_run):
    cfg, pieces, data = rate_run
    steps = data["curve_steps"]
    assert steps[0] == 2 and steps[-1] == 120  # every 120 // 50 steps
    for rule in ("learned", "start", "oja"):
        v = data[f"curve.{rule}.abs_cos"]
        assert v.shape == (episode.N_TASKS, steps.size) and np.isfinite(v).all()
    # learned θ here is Oja's own coefficients: the same curve as the reference
    np.testing.assert_allclose(data["curve.learned.abs_cos"], data["curve.oja.abs_cos"],
                               atol=1e-6)
    # and it learns: the principal component is found better at the end than at the start
    assert data["curve.oja.abs_cos"][:, -1].mean() > data["curve.oja.abs_cos"][:, 0].mean()
    assert data["w_before.0"].shape == data["w_after.0"].shape == (1, 5)
    assert not np.allclose(data["w_before.0"], data["w_after.0"])
    assert not any(k.startswith(("spikes.", "window.", "abcd.")) for k in data)


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_spiking_episode_holds_spikes_rates_and_the_stdp_window(spiking_run):
    cfg, pieces, data = spiking_run
    n = pieces.task.n_steps
    assert data["spikes.learned.0"].shape == (n, 8) and data["spikes.start.1"].shape == (n, 4)
    assert set(np.unique(data["spikes.learned.1"])) <= {0, 1}
    assert data["spikes.learned.0"].sum() > 0  # the Poisson input does spike
    assert float(data["target_rate"]) == 0.02 and int(data["phase_steps"]) == 150
    dt, pair = data["window_dt"], data["window.pair STDP"]
    # pair STDP: potentiation when post follows pre, depression when it precedes it,
    # both decaying with |Δt|
    assert (pair[dt > 0] > 0).all() and (pair[dt < 0] < 0).all()
    assert pair[dt == 1][0] > pair[dt == 30][0] > 0
    # the start θ is pair STDP (preset start = "stdp"): the same window up to its eta
    start = data["window.start"]
    np.testing.assert_allclose(start / np.abs(start).max(), pair / np.abs(pair).max(),
                               atol=1e-5)


def test_the_figures_that_apply_are_drawn(tmp_path, rate_run, spiking_run):
    for (_, _, data), expected in (
            (rate_run, {"inner.png", "weights.png"}),
            (spiking_run, {"inner.png", "weights.png", "raster.png", "rates.png",
                           "stdp_window.png"})):
        d = tmp_path / expected.__len__().__str__()
        d.mkdir()
        episode.save(d / "episode.npz", data)
        drawn = plot_learning(d)
        assert {p.name for p in drawn} == expected
        for p in drawn:
            h, w, _ = mpimg.imread(p).shape
            assert w > 300 and h > 200


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_abcd_coefficients_are_recorded_per_layer_and_drawn(tmp_path):
    import jax

    cfg = override(presets.get("cartpole-hebbian"), ["task.n_steps=20"])
    pieces = build(cfg)
    theta0 = pieces.rule.init(jax.random.key(0), pieces.network.shapes)
    theta = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape),
                         theta0)
    data = episode.record(cfg, pieces, theta, theta0)
    shapes = pieces.network.shapes
    for l, shape in enumerate(shapes):
        assert data[f"abcd.{l}.A"].shape == shape
        np.testing.assert_allclose(data[f"abcd.{l}.A"], np.asarray(theta[l]["A"]), rtol=1e-6)
    assert "curve.learned.return" in data
    episode.save(tmp_path / "episode.npz", data)
    assert "abcd.png" in {p.name for p in plot_learning(tmp_path)}


def test_a_missing_or_damaged_episode_draws_nothing(tmp_path):
    assert plot_learning(tmp_path) == []
    (tmp_path / "episode.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert plot_learning(tmp_path) == []
    episode.save(tmp_path / "episode.npz", {"curve_steps": np.arange(3),
                                            "curve.learned.loss": np.ones((2, 5)),
                                            "w_before.0": np.ones((2, 2))})
    assert plot_learning(tmp_path) == []  # mismatched shapes, a missing w_after: skipped
