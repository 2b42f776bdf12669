"""The BCM rule: its update and sliding threshold by hand, a bounded rate under it, and
its place in the registry's checks (local, online)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.errors import ConfigError
from metaplastic.signals import LocalSignals


def test_update_and_threshold_by_hand():
    rule = mp.rules.make("bcm", eta=0.1, tau=4.0, theta0=0.5)
    theta = rule.init(jax.random.key(0))
    pre, post = jnp.array([1.0, -2.0]), jnp.array([3.0])
    s = LocalSignals(pre, post, jnp.zeros((1, 2)), jnp.zeros(2), jnp.zeros(1), 0.0)
    dw, th = rule.update(theta, s, rule.init_state((1, 2)))
    np.testing.assert_allclose(dw, 0.1 * np.array([[1.0, -2.0]]) * 3.0 * (3.0 - 0.5), rtol=1e-6)
    np.testing.assert_allclose(th, 0.5 + (9.0 - 0.5) / 4.0, rtol=1e-6)
    one = LocalSignals(1.0, 3.0, 0.0, 0.0, 0.0, 0.0)
    assert float(rule.synapse(theta, one)) == pytest.approx(0.1 * 3.0 * 2.5)
    assert "theta_M" in rule.formula(theta)
    with pytest.raises(ConfigError, match="bcm"):
        mp.rules.make("bcm", tau=0.5)


def test_the_sliding_threshold_keeps_the_rate_bounded():
    """A linear neuron under Hebb's rule grows without bound; under BCM its weights settle
    (the threshold tracks post², so potentiation turns to depression)."""
    net = mp.Network(sizes=(5, 1))
    task = mp.tasks.make("pca", n_in=5, n_steps=2000, scale_range=[0.5, 2.0])
    inst = task.sample(jax.random.key(0))
    largest = {}
    for name in ("bcm", "hebb"):
        rule = mp.rules.make(name, eta=0.01)
        theta = rule.init(jax.random.key(0), net.shapes)
        out = mp.inner.unroll(net, rule, theta, task, inst, key=jax.random.key(1))
        largest[name] = float(jnp.max(jnp.abs(out.state.weights[0])))
    assert np.isfinite(largest["bcm"]) and largest["bcm"] < 10.0
    assert not largest["hebb"] < 10 * largest["bcm"]
