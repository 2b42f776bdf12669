"""The two-odour choice task, fitting choices, fixed layers and term masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.analysis.simulate import simulate
from metaplastic.errors import ConfigError
from metaplastic.inner import unroll

BLOCKS = ((0.2, 0.9), (0.9, 0.2))


def _net(**kw):
    return mp.Network(sizes=(2, 6, 1), activation="sigmoid", output_activation="linear",
                      plastic=[2], init_scale=3.0, **kw)


def test_rewards_follow_the_block_probabilities_of_accepted_odours():
    task = mp.tasks.make("odour-choice", blocks=BLOCKS, block_trials=400)
    net = mp.Network(sizes=(2, 1))
    static = mp.rules.make("static")
    theta = {"w": (jnp.full((1, 2), 50.0),)}  # a logit of 50: always accept
    key = jax.random.key(0)
    out = unroll(net, static, theta, task, task.sample(key), key=key)
    choices, rewards = np.asarray(out.env.choices), np.asarray(out.env.rewards)
    assert choices.mean() == 1.0
    odours = np.asarray(task.sample(key).odours)
    for b, (p1, p2) in enumerate(BLOCKS):
        sl = slice(400 * b, 400 * (b + 1))
        for odour, p in ((0, p1), (1, p2)):
            got = rewards[sl][odours[sl] == odour].mean()
            assert abs(got - p) < 0.1, (b, odour, got)
    theta = {"w": (jnp.full((1, 2), -50.0),)}  # always refuse: never rewarded
    out = unroll(net, static, theta, task, task.sample(key), key=key)
    assert float(out.env.choices.sum()) == 0 and float(out.env.rewards.sum()) == 0


def test_choices_replayed_with_the_true_rule_give_their_likelihood(tmp_path):
    task = mp.tasks.make("odour-choice", blocks=BLOCKS, block_trials=40)
    net, xr = _net(), mp.rules.make("xr", eta=0.5)
    theta = xr.init(jax.random.key(0), net.shapes)
    data = simulate(net, xr, theta, task, 4, jax.random.key(1))
    assert data["choices"].shape == (4, 80) and set(np.unique(data["choices"])) <= {0, 1}
    # the modulator recorded is zero on refused trials
    assert np.all(data["rewards"][data["choices"] == 0] == 0)
    np.savez(tmp_path / "r.npz", **data)
    rec = mp.tasks.make("recorded", path=str(tmp_path / "r.npz"), fit="choices",
                        split="all")
    for i in range(4):
        out = unroll(net, xr, theta, rec, rec.instance(i), key=jax.random.key(9))
        logit, c = data["activity"][i, :, 0], data["choices"][i]
        expected = -np.mean(np.where(c > 0, -np.logaddexp(0, -logit),
                                     -np.logaddexp(0, logit)))
        np.testing.assert_allclose(float(rec.loss(rec.instance(i), out.state, out.env)),
                                   expected, rtol=1e-4)
        # the fixed first layer kept its recorded weights; the plastic one learned
        np.testing.assert_array_equal(out.state.weights[0], data["w0_1"][i])
        assert not np.allclose(out.state.weights[1], data["w0_2"][i])


def test_excluded_terms_have_no_effect_and_no_gradient():
    rule = mp.rules.make("polynomial", variables=["pre", "modulator", "w"],
                         exclude=["w^2", "pre*w^2"])
    free = mp.rules.make("polynomial", variables=["pre", "modulator", "w"])
    coef = jax.random.normal(jax.random.key(0), (3, 3, 3))
    s = mp.signals.random_signals(jax.random.key(1), 3, 4)
    masked = coef.at[0, 0, 2].set(0.0).at[1, 0, 2].set(0.0)
    np.testing.assert_allclose(rule.update({"coef": coef}, s, ())[0],
                               free.update({"coef": masked}, s, ())[0], rtol=1e-5)
    g = jax.grad(lambda c: jnp.sum(rule.update({"coef": c}, s, ())[0] ** 2)
                 + jnp.sum(jnp.abs(rule.sparse_part({"coef": c}))))(coef)
    assert float(g[0, 0, 2]) == 0.0 and float(g[1, 0, 2]) == 0.0 and float(g[1, 1, 0]) != 0


def test_bad_settings_are_one_message():
    with pytest.raises(ConfigError, match="blocks"):
        mp.tasks.make("odour-choice", blocks=[[0.2, 1.5]])
    with pytest.raises(ConfigError, match="plastic"):
        mp.Network(sizes=(2, 3, 1), plastic=[3])
    with pytest.raises(ConfigError, match="2 -> ... -> 1"):
        mp.Objective(mp.tasks.make("odour-choice"), mp.Network(sizes=(3, 1)),
                     mp.rules.make("xr"))
