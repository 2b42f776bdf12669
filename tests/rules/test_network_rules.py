"""The rules that are networks: mlp, neuron-mlp, recurrent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from helpers import random_signals
from metaplastic.errors import ConfigError
from metaplastic.rules.mlp import apply_mlp

KW = {"mlp": {"inputs": ["pre", "post", "w", "e_pre", "e_post", "modulator"],
              "hidden": [8, 8], "out_scale": 1.0},
      "neuron-mlp": {"pre_inputs": ["pre", "e_pre", "modulator"],
                     "post_inputs": ["post", "e_post"], "rank": 3},
      "recurrent": {"inputs": ["pre", "post", "w", "e_post"], "out_scale": 1.0}}


def _signals(key, n_in=5, n_out=4):
    return random_signals(key, n_in, n_out)._replace(modulator=jnp.asarray(0.7))


@pytest.mark.parametrize("name", list(KW))
def test_fast_path_equals_per_synapse_definition(name):
    s = _signals(jax.random.key(0))
    fast = mp.rules.make(name, **KW[name])
    slow = mp.rules.make(name, fast=False, **KW[name])
    theta = fast.init(jax.random.key(1))
    state = fast.init_state(s.w.shape)
    if name == "recurrent":  # a non-zero hidden state, so the recurrence matters
        state = jax.random.normal(jax.random.key(2), state.shape)
    dw_fast, st_fast = fast.update(theta, s, state)
    dw_slow, st_slow = slow.update(theta, s, state)
    assert dw_fast.shape == s.w.shape
    assert float(jnp.max(jnp.abs(dw_fast))) > 1e-4  # not trivially zero
    np.testing.assert_allclose(dw_fast, dw_slow, rtol=1e-5, atol=1e-7)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 st_fast, st_slow)


def test_mlp_synapse_by_hand():
    rule = mp.rules.make("mlp", inputs=["pre", "post"], hidden=[2], eta=0.5)
    theta = {"mlp": [{"w": jnp.array([[1.0, 0.0], [0.0, 2.0]]), "b": jnp.array([0.0, 0.5])},
                     {"w": jnp.array([[1.0], [-1.0]]), "b": jnp.array([0.25])}]}
    s = mp.signals.layer_signals(jnp.array([0.3]), jnp.array([-0.2]), jnp.zeros((1, 1)))
    want = 0.5 * (np.tanh(0.3) - np.tanh(2 * -0.2 + 0.5) + 0.25)
    np.testing.assert_allclose(rule.update(theta, s, ())[0][0, 0], want, rtol=1e-6)


def test_mlp_starts_at_zero_update_by_default():
    rule = mp.rules.make("mlp")
    theta = rule.init(jax.random.key(0))
    dw, _ = rule.update(theta, _signals(jax.random.key(1)), ())
    assert float(jnp.max(jnp.abs(dw))) == 0.0
    # ... but the meta-gradient reaches the output layer
    g = jax.grad(lambda t: jnp.sum(rule.update(t, _signals(jax.random.key(1)), ())[0] ** 2
                                   + rule.update(t, _signals(jax.random.key(1)), ())[0]))(theta)
    assert float(jnp.max(jnp.abs(g["mlp"][-1]["w"]))) > 0


def test_neuron_mlp_can_express_oja():
    """K = 1 with a = pre, b = post and d = post^2 is Oja's rule; set the networks by hand
    to linear read-outs of pre and post and a quadratic-free check on d."""
    rule = mp.rules.make("neuron-mlp", rank=1, hidden=[1], activation="relu", eta=1.0)
    # a = relu(pre) - relu(-pre) = pre through two paths would need 2 units; use pre > 0
    theta = {"pre": [{"w": jnp.array([[1.0]]), "b": jnp.zeros(1)},
                     {"w": jnp.array([[1.0]]), "b": jnp.zeros(1)}],
             "post": [{"w": jnp.array([[1.0]]), "b": jnp.zeros(1)},
                      {"w": jnp.array([[1.0, 0.0]]), "b": jnp.zeros(2)}]}
    pre, post = jnp.array([0.5, 2.0]), jnp.array([0.3, 1.5, 0.1])
    w = jnp.ones((3, 2))
    s = mp.signals.layer_signals(pre, post, w)
    dw, _ = rule.update(theta, s, ())
    np.testing.assert_allclose(dw, np.outer(post, pre), rtol=1e-6)  # d = 0: Hebb


def test_recurrent_state_carries_across_steps():
    rule = mp.rules.make("recurrent", out_scale=1.0)
    theta = rule.init(jax.random.key(0))
    s = _signals(jax.random.key(1))
    h0 = rule.init_state(s.w.shape)
    assert h0.shape == (*s.w.shape, rule.state_size)
    dw1, h1 = rule.update(theta, s, h0)
    dw2, h2 = rule.update(theta, s, h1)
    assert float(jnp.max(jnp.abs(h1))) > 0
    assert not np.allclose(dw1, dw2)  # same signals, different history


@pytest.mark.parametrize("name,kw,msg", [
    ("mlp", {"inputs": ["pre", "spikes"]}, "inputs must be distinct names"),
    ("mlp", {"hidden": [0]}, "hidden sizes"),
    ("mlp", {"activation": "swish2"}, "unknown activation"),
    ("mlp", {"eta": 0.0}, "eta must be positive"),
    ("neuron-mlp", {"pre_inputs": ["post"]}, "inputs must be distinct names"),
    ("neuron-mlp", {"rank": 0}, "rank must be"),
    ("recurrent", {"state_size": 0}, "hidden sizes"),
])
def test_bad_network_rule_options(name, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        mp.rules.make(name, **kw)


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_mlp_rule_trains_in_an_unroll():
    """A meta-gradient through an unroll with the MLP rule is finite and non-zero."""
    task = mp.tasks.make("pca", n_in=4, n_steps=20)
    net = mp.Network(sizes=(4, 1))
    rule = mp.rules.make("mlp", out_scale=0.1)
    obj = mp.Objective(task, net, rule, tasks_per_step=2)
    theta = rule.init(jax.random.key(0))
    loss, _, g = obj.value_and_grad(theta, jax.random.key(1))
    assert bool(jnp.isfinite(loss))
    leaves = jax.tree.leaves(g)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert max(float(jnp.max(jnp.abs(x))) for x in leaves) > 0


def test_apply_mlp_shapes():
    layers = mp.rules.mlp.init_mlp(jax.random.key(0), [3, 5, 2], 1.0)
    assert apply_mlp(layers, jnp.ones((7, 4, 3)), jnp.tanh).shape == (7, 4, 2)
