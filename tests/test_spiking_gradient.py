"""The surrogate meta-gradient through a spiking network against an ES estimate of the
same gradient (cosine >= 0.8; `pytest -s` prints it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.neurons.lif import LIFNeuron
from metaplastic.spiking import SpikingNetwork


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_surrogate_gradient_agrees_with_evolution_strategies():
    task = mp.tasks.make("pca", n_in=4, n_steps=100)
    net = SpikingNetwork(sizes=(4, 1), neuron_model=LIFNeuron(threshold=0.3), rate=0.3,
                         init_scale=1.0)
    rule = mp.rules.make("polynomial", variables=["post", "pre_trace", "w"], degree=1,
                         eta=0.01)
    obj = mp.Objective(task, net, rule, tasks_per_step=16)
    theta = {"coef": 0.5 * jax.random.normal(jax.random.key(0), (2, 2, 2))}
    key = jax.random.key(1)  # the same tasks, initial weights and spikes for every call
    grad = jax.grad(lambda t: obj(t, key)[0])(theta)["coef"].reshape(-1)

    sigma, pairs = 0.05, 2048
    eps = jax.random.normal(jax.random.key(2), (pairs, 8))

    def diff(e):
        up = obj({"coef": theta["coef"] + sigma * e.reshape(2, 2, 2)}, key)[0]
        down = obj({"coef": theta["coef"] - sigma * e.reshape(2, 2, 2)}, key)[0]
        return (up - down) / (2 * sigma) * e

    es = jnp.mean(jax.lax.map(diff, eps, batch_size=256), axis=0)
    cos = float(grad @ es / (jnp.linalg.norm(grad) * jnp.linalg.norm(es)))
    print(f"surrogate meta-gradient vs ES estimate: cosine {cos:.3f}")  # docs/spiking.md
    assert np.all(np.isfinite(np.asarray(grad)))
    assert cos >= 0.8, (cos, grad, es)
