"""Online Adam on the pseudo-gradient: equal to optax's Adam step for step, fast path equal
to the per-synapse definition (its locality is in the plausibility catalogue)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metaplastic import rules
from metaplastic.errors import ConfigError
from metaplastic.signals import random_signals


def _steps(rule, theta, n, shape=(4, 3)):
    """dw of ``n`` steps on random signals, and the gradients e_post * pre fed."""
    state = rule.init_state(shape)
    dws, grads = [], []
    for t in range(n):
        s = random_signals(jax.random.key(t), *shape)
        dw, state = rule.update(theta, s, state)
        dws.append(dw)
        grads.append(jnp.outer(s.e_post, s.pre))
    return dws, grads


def test_adam_equals_optax_adam_step_for_step():
    rule = rules.make("adam", eta=0.01)
    theta = rule.init(jax.random.key(0))
    dws, grads = _steps(rule, theta, 6)
    opt = optax.adam(0.01, b1=0.9, b2=0.999, eps=1e-8)
    st = opt.init(jnp.zeros((4, 3)))
    for dw, g in zip(dws, grads, strict=True):
        upd, st = opt.update(g, st)
        np.testing.assert_allclose(dw, upd, rtol=1e-5, atol=1e-8)


def test_adam_is_linear_in_theta():
    rule = rules.make("adam", eta=0.01)
    dw1, _ = _steps(rule, {"coef": jnp.ones((1,))}, 3)
    dw3, _ = _steps(rule, {"coef": 3.0 * jnp.ones((1,))}, 3)
    np.testing.assert_allclose(dw3[-1], 3.0 * dw1[-1], rtol=1e-6)


def test_adam_fast_path_equals_per_synapse_definition():
    fast, slow = rules.make("adam"), rules.make("adam", fast=False)
    theta = fast.init(jax.random.key(0))
    a, _ = _steps(fast, theta, 4)
    b, _ = _steps(slow, theta, 4)
    np.testing.assert_allclose(a[-1], b[-1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kw, msg", [({"eta": 0.0}, "eta must be positive"),
                                     ({"b1": 1.0}, "b1 must be in"),
                                     ({"eps": -1.0}, "eps must be positive")])
def test_adam_bad_values(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        rules.make("adam", **kw)
