"""Truncated unrolls for the gradient outer loop."""

import jax
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.errors import ConfigError


def _close(a, b, rtol=1e-4, atol=1e-7):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def test_one_full_length_segment_is_the_whole_episode(small_pca):
    _, _, rule, obj = small_pca
    theta = {"coef": 0.3 * jax.random.normal(jax.random.key(0), (3, 3, 3))}
    key = jax.random.key(1)
    full_loss, _, full_grad = obj.value_and_grad(theta, key)
    inner = obj.start(theta, key)

    def f(t):
        return obj.segment(t, inner, obj.n_steps, True)[0]

    seg_loss, seg_grad = jax.jit(jax.value_and_grad(f))(theta)
    np.testing.assert_allclose(seg_loss, full_loss, rtol=1e-5)
    _close(seg_grad, full_grad)


def test_segments_continue_the_same_inner_problems(small_pca):
    """Two half-length segments reach the same loss as one full episode (forward)."""
    _, _, _, obj = small_pca
    theta = {"coef": 0.3 * jax.random.normal(jax.random.key(0), (3, 3, 3))}
    key = jax.random.key(2)
    half = obj.n_steps // 2
    inner = obj.start(theta, key)
    seg = jax.jit(obj.segment, static_argnums=2)
    _, _, inner = seg(theta, inner, half, True)
    loss2, _, _ = seg(theta, inner, half, False)
    np.testing.assert_allclose(loss2, obj(theta, key)[0], rtol=1e-5)
    # ... and the truncated gradient ignores the first half: it differs from the full one
    g_trunc = jax.grad(lambda t: obj.segment(t, inner, half, False)[0])(theta)
    g_full = obj.value_and_grad(theta, key)[2]
    assert not np.allclose(g_trunc["coef"], g_full["coef"], rtol=1e-2)


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_truncated_meta_training_learns_oja(small_pca):
    _, _, rule, obj = small_pca
    outer = mp.MetaGradient(steps=120, lr=2e-2, chunk=20, truncation=150,
                            truncation_schedule=[[60, 300]])
    theta0 = rule.init(jax.random.key(0))
    result = outer.run(obj, theta0, key=jax.random.key(3))
    lengths = [r["truncation"] for r in result.history]
    assert lengths[:60] == [150] * 60 and lengths[60:] == [300] * 60
    first = np.mean([r["task_loss"] for r in result.history[:10]])
    last = np.mean([r["task_loss"] for r in result.history[-10:]])
    assert last < 0.5 * first
    assert float(obj(result.theta, jax.random.key(4))[1]["abs_cos"]) > 0.9


@pytest.mark.parametrize("kw,msg", [
    ({"truncation": -1}, "truncation must be"),
    ({"truncation_schedule": [[10, 5]], "chunk": 25}, "multiple of chunk"),
    ({"truncation_schedule": [5]}, "pairs"),
])
def test_bad_truncation_options(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        mp.MetaGradient(**kw)


def test_truncation_must_divide_the_inner_problem(small_pca):
    _, _, rule, obj = small_pca
    with pytest.raises(ConfigError, match="must divide"):
        mp.MetaGradient(steps=2, truncation=7, chunk=1).run(
            obj, rule.init(jax.random.key(0)), key=jax.random.key(0))
