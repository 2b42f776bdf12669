import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError, tasks
from metaplastic.network import NetState


def test_pc1_is_top_eigenvector_and_spectrum_is_as_configured():
    task = tasks.make("pca", n_in=6, decay=0.5)
    inst = task.sample(jax.random.key(0))
    cov = np.asarray(inst.mixing @ inst.mixing.T)
    evals, evecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(evals[::-1], 0.5 ** np.arange(6), rtol=1e-4)
    assert abs(evecs[:, -1] @ np.asarray(inst.pc1)) == pytest.approx(1.0, abs=1e-5)


def test_scale_range_scales_the_covariance():
    task = tasks.make("pca", n_in=4, scale_range=[0.5, 2.0])
    traces = []
    for k in range(20):
        inst = task.sample(jax.random.key(k))
        traces.append(float(jnp.trace(inst.mixing @ inst.mixing.T)))
    base = float(np.sum(0.5 ** np.arange(4)))
    assert min(traces) >= 0.5 * base - 1e-4 and max(traces) <= 2.0 * base + 1e-4
    assert max(traces) / min(traces) > 1.5


def test_inputs_have_the_task_covariance():
    task = tasks.make("pca", n_in=3, decay=0.4)
    inst = task.sample(jax.random.key(1))
    xs = jax.vmap(lambda t: task.observe(inst, t)[0])(jnp.arange(20000))
    emp = np.cov(np.asarray(xs).T)
    np.testing.assert_allclose(emp, inst.mixing @ inst.mixing.T, atol=0.03)


def test_loss_is_zero_at_the_principal_component():
    task = tasks.make("pca", n_in=5)
    inst = task.sample(jax.random.key(2))
    state = NetState((-inst.pc1[None, :],), ())
    assert float(task.loss(inst, state)) == pytest.approx(0.0, abs=1e-6)
    off = NetState((2 * jnp.ones((1, 5)),), ())
    assert float(task.loss(inst, off)) > 0.5


@pytest.mark.parametrize("kw, msg", [({"n_in": 1}, "n_in"), ({"decay": 1.5}, "decay"),
                                     ({"scale_range": [2.0, 1.0]}, "scale_range"),
                                     ({"n_stepz": 3}, "valid options"),
                                     ({"n_in": 2.5}, "integer")])
def test_bad_task_options(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        tasks.make("pca", **kw)


def test_unknown_task_lists_valid_names():
    with pytest.raises(ConfigError, match="valid tasks: acrobot, cartpole, fewshot, .*pca"):
        tasks.make("pcaa")


def test_pca_needs_a_single_layer_network():
    task = tasks.make("pca", n_in=4)
    with pytest.raises(ConfigError, match="single layer 4 -> 1"):
        mp.Objective(task, mp.Network(sizes=(4, 3, 1)), mp.rules.make("oja"))
