"""bfloat16 storage with float32 arithmetic (network.dtype, rule.dtype): a step computes
exactly what float32 computes from the same stored numbers, then rounds what it stores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.errors import ConfigError
from metaplastic.inner import initial_carry, make_step

SIZES = (4, 6, 2)


def _step(dtype: str, theta, task, instance, key):
    net = mp.Network(sizes=SIZES, activation="tanh", dtype=dtype)
    rule = mp.rules.make("abcd", dtype=dtype)
    carry = initial_carry(net, rule, theta, task, instance, key)
    if dtype == "float32":  # start from the weights bfloat16 storage holds
        state = carry[0]._replace(weights=tuple(w.astype(jnp.bfloat16).astype(jnp.float32)
                                                for w in carry[0].weights))
        carry = (state, *carry[1:])
    step = jax.jit(lambda c: make_step(net, rule, theta, task, instance)(c, None)[0])
    return carry, step(carry)


def test_bfloat16_storage_is_float32_arithmetic_rounded_once():
    task = mp.tasks.make("cartpole", n_steps=5)
    rule = mp.rules.make("abcd", init_noise=0.5, eta_init=0.1)
    theta = rule.init(jax.random.key(0), mp.Network(sizes=SIZES).shapes)
    theta = jax.tree.map(lambda x: x.astype(jnp.bfloat16).astype(jnp.float32), theta)
    instance = task.sample(jax.random.key(1))
    key = jax.random.key(2)
    c16, after16 = _step("bfloat16", theta, task, instance, key)
    c32, after32 = _step("float32", theta, task, instance, key)
    assert all(w.dtype == jnp.bfloat16 for w in c16[0].weights + after16[0].weights)
    for w16, w32, w0 in zip(after16[0].weights, after32[0].weights, c32[0].weights,
                            strict=True):
        assert w32.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(w16.astype(jnp.float32)),
                                      np.asarray(w32.astype(jnp.bfloat16).astype(jnp.float32)))
        assert not np.array_equal(np.asarray(w32), np.asarray(w0))  # the weights moved


def test_bfloat16_runs_learn_about_as_float32_does(small_pca):
    """The Oja PCA problem with bfloat16 weights: the neuron still finds the first PC
    (measured, not assumed: the cosine is printed in the failure message)."""
    task, _, rule, _ = small_pca
    theta = {"coef": jnp.asarray(rule.coefficients("oja"))}
    scores = {}
    for dtype in ("float32", "bfloat16"):
        net = mp.Network(sizes=(4, 1), dtype=dtype)
        obj = mp.Objective(task, net, rule, tasks_per_step=16)
        _, aux = jax.jit(obj)(theta, jax.random.key(5))
        scores[dtype] = float(aux["abs_cos"])
    assert scores["float32"] > 0.95, scores
    assert scores["bfloat16"] > scores["float32"] - 0.1, scores


@pytest.mark.parametrize("make", [lambda: mp.Network(sizes=(2, 1), dtype="float16"),
                                  lambda: mp.rules.make("abcd", dtype="half")])
def test_unknown_storage_is_one_message(make):
    with pytest.raises(ConfigError, match="dtype must be one of float32, bfloat16"):
        make()
