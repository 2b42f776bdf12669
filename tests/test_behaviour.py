"""Rescorla–Wagner beside the rule: its likelihood by hand, its parameters recovered from
choices it made itself, the odour task's outcomes given back exactly from a simulation's
choices and modulators, the recordings layout's ``outcomes``, bad input refused."""

import jax
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.analysis import behaviour
from metaplastic.analysis.simulate import simulate
from metaplastic.errors import ConfigError


def _rw_data(n, t, alpha, beta, bias, v0, seed):
    """Choices made by Rescorla–Wagner itself on the two-odour task (reward p 0.2 / 0.8,
    swapped halfway)."""
    rng = np.random.default_rng(seed)
    cue = rng.integers(0, 2, (n, t))
    x = np.eye(2, dtype=np.float32)[cue]
    p_rew = np.where((np.arange(t) < t // 2)[None, :], np.where(cue == 0, 0.2, 0.8),
                     np.where(cue == 0, 0.8, 0.2))
    w = np.full((n, 2), v0)
    choices = np.zeros((n, t), np.int32)
    outcomes = np.zeros((n, t), np.float32)
    for s in range(t):
        v = np.sum(w * x[:, s], 1)
        c = rng.random(n) < 1 / (1 + np.exp(-(beta * v + bias)))
        o = c * (rng.random(n) < p_rew[:, s])
        w = w + (alpha * c * (o - v))[:, None] * x[:, s]
        choices[:, s], outcomes[:, s] = c, o
    return x, choices, outcomes, np.full(n, t, np.int32)


def test_likelihood_by_hand():
    x, c, o, n = _rw_data(2, 6, 0.4, 3.0, -0.5, 0.3, seed=0)
    n = np.array([6, 4], np.int32)  # the second trajectory stops after 4 trials
    model = behaviour.RescorlaWagner(alpha=0.4, beta=3.0, bias=-0.5, v0=0.3)
    got = behaviour.nll_per_trajectory(model, x, c, o, n)
    want = []
    for i in range(2):
        w, total = np.full(2, 0.3), 0.0
        for s in range(n[i]):
            v = w @ x[i, s]
            p = 1 / (1 + np.exp(-(3.0 * v - 0.5)))
            total -= np.log(p if c[i, s] else 1 - p)
            if c[i, s]:
                w = w + 0.4 * (o[i, s] - v) * x[i, s]
        want.append(total / n[i])
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.tier2  # a maximum-likelihood fit from 18 starts (~10 s)
def test_parameters_are_recovered_from_its_own_choices():
    x, c, o, n = _rw_data(16, 200, alpha=0.3, beta=5.0, bias=-1.0, v0=0.5, seed=1)
    fit = behaviour.fit(x, c, o, n)
    assert fit.alpha == pytest.approx(0.3, abs=0.15)
    assert fit.beta == pytest.approx(5.0, abs=1.5)
    assert fit.bias == pytest.approx(-1.0, abs=0.6)
    # the fit explains its own choices better than the truth's parameters do (ML)
    truth = behaviour.RescorlaWagner(0.3, 5.0, -1.0, 0.5)
    assert behaviour.nll_per_trajectory(fit, x, c, o, n).mean() <= \
        behaviour.nll_per_trajectory(truth, x, c, o, n).mean() + 1e-6


def test_non_binary_choices_and_bad_shapes_are_refused():
    x, c, o, n = _rw_data(2, 5, 0.3, 1.0, 0.0, 0.5, seed=2)
    with pytest.raises(ConfigError, match="binary"):
        behaviour.fit(x, c + 1, o, n)
    with pytest.raises(ConfigError, match="inputs"):
        behaviour.fit(x[0], c, o, n)


def test_the_odour_tasks_outcomes_are_the_rewards_the_simulation_drew():
    task = mp.tasks.make("odour-choice", block_trials=20)
    net = mp.Network(sizes=(2, 1))
    rule = mp.rules.make("xr", eta=0.5)
    theta = rule.init(jax.random.key(0), net.shapes)
    data = simulate(net, rule, theta, task, 4, jax.random.key(1))
    o, c = data["outcomes"], data["choices"]
    assert o.shape == c.shape and set(np.unique(o)) <= {0.0, 1.0}
    assert np.all(o[c == 0] == 0) and o.sum() > 0  # refused trials are never rewarded
    # the modulator is reward − expected on accepted trials: the recovered rewards and the
    # running expectation give it back
    expected = np.full(4, 0.5, np.float32)
    for t in range(c.shape[1]):
        np.testing.assert_allclose(data["rewards"][:, t], c[:, t] * (o[:, t] - expected),
                                   atol=1e-6)
        expected = expected + 0.1 * c[:, t] * (o[:, t] - expected)


def test_recordings_take_outcomes_of_the_right_shape(tmp_path):
    good = {"inputs": np.zeros((2, 5, 2), np.float32), "choices": np.zeros((2, 5), np.int32),
            "outcomes": np.zeros((2, 5), np.float32)}
    np.savez(tmp_path / "ok.npz", **good)
    task = mp.tasks.make("recorded", path=str(tmp_path / "ok.npz"), fit="choices",
                          initial="drawn")
    assert task._data["outcomes"].shape == (2, 5)
    np.savez(tmp_path / "bad.npz", **{**good, "outcomes": np.zeros((2, 4), np.float32)})
    with pytest.raises(ConfigError, match="outcomes must be"):
        mp.tasks.make("recorded", path=str(tmp_path / "bad.npz"), fit="choices",
                      initial="drawn")
