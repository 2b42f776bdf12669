"""Persistent ES (unbiased across truncations) against truncated ES, on a quadratic
inner problem whose gradient is known exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.errors import ConfigError
from metaplastic.meta import driver

T, K = 20, 5  # inner problem length, truncation


class LinearSystem:
    """Inner problem s_{t+1} = a s_t + b from s_0 = 1; segment loss = sum (s_t - 0.5)^2."""

    n_steps = T

    def start(self, theta, key):
        return jnp.ones(())

    def segment(self, theta, s, length, first):
        s = jnp.where(first, 1.0, jax.lax.stop_gradient(s))

        def step(s, _):
            s = theta["a"] * s + theta["b"]
            return s, (s - 0.5) ** 2

        s, losses = jax.lax.scan(step, s, None, length=length)
        return jnp.sum(losses), {}, s

    def __call__(self, theta, key):
        return self.segment(theta, self.start(theta, key), T, True)[0], {}


THETA0 = {"a": jnp.asarray(0.9), "b": jnp.asarray(0.2)}


def _mean_estimate(strategy: str, runs: int = 400, lr: float = 1e-6) -> np.ndarray:
    """Average over independent runs of the gradient that one inner problem's worth of
    generations applied: (theta0 - theta_after) / lr, with plain SGD."""
    es = mp.meta.EvolutionStrategy(strategy=strategy, population=64, sigma=0.01, lr=lr,
                              optimizer="sgd", truncation=K, steps=T // K, chunk=T // K,
                              fitness_shaping="none")
    run_chunk = driver.chunk_fn(es, LinearSystem())
    total = jnp.asarray(T // K, jnp.int32)

    def one(k):
        state, _ = run_chunk(driver.init(es, LinearSystem(), THETA0, k), k, total)
        mean = es.theta(state.outer)
        return jnp.stack([(THETA0[n] - mean[n]) / lr for n in ("a", "b")])

    return np.asarray(jnp.mean(jax.vmap(one)(jax.random.split(jax.random.key(0), runs)), 0))


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_pes_is_unbiased_and_truncated_es_is_not():
    obj = LinearSystem()
    true = jax.grad(lambda t: obj(t, None)[0])(THETA0)
    true = np.array([true["a"], true["b"]])
    pes = _mean_estimate("pes")
    np.testing.assert_allclose(pes, true, rtol=0.1)
    tes = _mean_estimate("open_es")  # same truncations, no accumulated perturbations
    assert np.max(np.abs(tes - true) / np.abs(true)) > 0.3


def test_pes_needs_truncation():
    with pytest.raises(ConfigError, match="needs truncation"):
        mp.meta.EvolutionStrategy(strategy="pes")


def test_truncation_must_divide_for_es():
    es = mp.meta.EvolutionStrategy(strategy="pes", truncation=7, population=4)
    with pytest.raises(ConfigError, match="must divide"):
        es.run(LinearSystem(), THETA0, key=jax.random.key(0))


def test_pes_optimises_the_inner_problem():
    obj = LinearSystem()
    es = mp.meta.EvolutionStrategy(strategy="pes", population=32, sigma=0.01, lr=0.01,
                                   truncation=K, steps=400, chunk=100)
    result = es.run(obj, THETA0, key=jax.random.key(1))
    before, after = float(obj(THETA0, None)[0]), float(obj(result.theta, None)[0])
    assert after < 0.05 * before


def test_pes_runs_on_truncated_pca_unrolls(small_pca):
    _, _, rule, obj = small_pca
    es = mp.meta.EvolutionStrategy(strategy="pes", population=8, sigma=0.05, lr=0.01,
                                   truncation=300, steps=6, chunk=6)
    theta0 = rule.init(jax.random.key(0))
    result = es.run(obj, theta0, key=jax.random.key(1))
    assert [r["truncation"] for r in result.history] == [300] * 6
    assert np.all(np.isfinite(result.theta["coef"]))
    assert np.max(np.abs(result.theta["coef"])) > 0  # it moved
