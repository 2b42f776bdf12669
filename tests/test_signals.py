import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic import ShapeError
from metaplastic.signals import LocalSignals, layer_signals, per_synapse


def test_per_synapse_sees_only_its_own_signals():
    pre = jnp.array([1.0, 2.0, 3.0])
    post = jnp.array([10.0, 20.0])
    w = jnp.arange(6.0).reshape(2, 3)
    s = layer_signals(pre, post, w, e_pre=-pre, e_post=-post, modulator=0.5)

    def fn(x: LocalSignals):
        assert x.pre.shape == () and x.w.shape == ()
        return x.pre * 1000 + x.post * 100 + x.w + x.e_pre * 0.01 + x.modulator

    got = per_synapse(fn, s)
    want = (pre[None] * 1000 + post[:, None] * 100 + w - pre[None] * 0.01 + 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_missing_feedback_is_zero():
    s = layer_signals(jnp.ones(3), jnp.ones(2), jnp.ones((2, 3)))
    assert float(jnp.abs(s.e_pre).sum() + jnp.abs(s.e_post).sum()) == 0.0


@pytest.mark.parametrize("w_shape", [(3, 2), (2, 2), (6,)])
def test_shape_mismatch_is_a_clear_error(w_shape):
    with pytest.raises(ShapeError, match="n_out, n_in"):
        layer_signals(jnp.ones(3), jnp.ones(2), jnp.ones(w_shape))


def test_feedback_shape_mismatch():
    with pytest.raises(ShapeError, match="e_post"):
        layer_signals(jnp.ones(3), jnp.ones(2), jnp.ones((2, 3)), e_post=jnp.ones(3))


def test_per_synapse_under_jit():
    s = layer_signals(jnp.ones(3), 2 * jnp.ones(2), jnp.zeros((2, 3)))
    out = jax.jit(lambda s: per_synapse(lambda x: x.pre * x.post, s))(s)
    np.testing.assert_allclose(out, 2 * np.ones((2, 3)))
