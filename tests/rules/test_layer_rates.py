"""FA / SGD with one meta-learned learning rate per layer (rule ``layer-rates``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic import rules
from metaplastic.errors import ConfigError
from metaplastic.signals import random_signals

SHAPES = [(6, 4), (3, 6)]


def test_fast_path_equals_per_synapse_definition():
    rule = rules.make("layer-rates", eta=0.2)
    s = random_signals(jax.random.key(1), 6, 4)
    theta_l = {"log_rate": jnp.asarray(0.7)}
    np.testing.assert_allclose(rule.update(theta_l, s, ())[0],
                               rule.update_per_synapse(theta_l, s, ())[0],
                               rtol=1e-5, atol=1e-7)


def test_starts_as_sgd_and_scales_each_layer_alone():
    rule, sgd = rules.make("layer-rates", eta=0.05), rules.make("sgd", eta=0.05)
    theta = rule.init(jax.random.key(0), SHAPES)
    s = random_signals(jax.random.key(2), 6, 4)
    np.testing.assert_allclose(rule.update(rule.layer_theta(theta, 0), s, ())[0],
                               sgd.update(sgd.init(None), s, ())[0], rtol=1e-6)
    theta = (theta[0], {"log_rate": jnp.log(jnp.asarray(4.0))})
    np.testing.assert_allclose(rule.rates(theta), [0.05, 0.2], rtol=1e-6)
    np.testing.assert_allclose(rule.update(rule.layer_theta(theta, 1), s, ())[0],
                               4 * sgd.update(sgd.init(None), s, ())[0], rtol=1e-5)
    assert rule.formula(theta) == "dw_l = -r_l * e_post * pre,  r = (0.05, 0.2) (layers 1-2)"


def test_needs_the_network_shapes_and_a_positive_eta():
    with pytest.raises(ConfigError, match="per layer"):
        rules.make("layer-rates").init(jax.random.key(0))
    with pytest.raises(ConfigError, match="eta must be positive"):
        rules.make("layer-rates", eta=0.0)
