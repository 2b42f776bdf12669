import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.inner import unroll


def test_oja_rule_learns_the_principal_component(small_pca, oja_theta):
    task, net, rule, objective = small_pca
    keys = jax.random.split(jax.random.key(0), 32)
    _, metrics, _ = jax.jit(jax.vmap(lambda k: objective.episode(oja_theta, k)))(keys)
    assert float(jnp.mean(metrics["abs_cos"])) > 0.95
    assert float(jnp.mean(jnp.abs(metrics["norm"] - 1))) < 0.1


def test_zero_rule_leaves_weights_unchanged(small_pca):
    task, net, rule, _ = small_pca
    inst = task.sample(jax.random.key(0))
    out = unroll(net, rule, rule.init(jax.random.key(0)), task, inst, key=jax.random.key(1))
    np.testing.assert_array_equal(out.state.weights[0], net.init(jax.random.key(1)).weights[0])


def test_records_and_remainder_steps(oja_theta):
    task = mp.tasks.make("pca", n_in=4, n_steps=23)
    net, rule = mp.Network(sizes=(4, 1)), mp.rules.make("polynomial", eta=0.02)
    inst, key = task.sample(jax.random.key(0)), jax.random.key(1)
    plain = unroll(net, rule, oja_theta, task, inst, key=key)
    rec = unroll(net, rule, oja_theta, task, inst, key=key, record_every=5)
    np.testing.assert_allclose(plain.state.weights[0], rec.state.weights[0], rtol=1e-6)
    assert rec.records["abs_cos"].shape == (4,)  # steps 5, 10, 15, 20; 3 steps after
    short = mp.tasks.make("pca", n_in=4, n_steps=10)
    first10 = unroll(net, rule, oja_theta, short, inst, key=key)
    np.testing.assert_allclose(rec.records["norm"][1], jnp.linalg.norm(first10.state.weights[0]),
                               rtol=1e-5)


def test_checkpointing_changes_nothing_but_memory(small_pca, oja_theta):
    task, net, rule, _ = small_pca
    inst = task.sample(jax.random.key(0))

    def loss(theta, checkpoint):
        out = unroll(net, rule, theta, task, inst, key=jax.random.key(1), checkpoint=checkpoint)
        return task.loss(inst, out.state, out.env)

    g0 = jax.grad(loss)(oja_theta, False)["coef"]
    g1 = jax.grad(loss)(oja_theta, True)["coef"]
    np.testing.assert_allclose(g0, g1, rtol=1e-5, atol=1e-7)


def _temp_bytes(n_steps, grad):
    task = mp.tasks.make("pca", n_in=8, n_steps=n_steps)
    net, rule = mp.Network(sizes=(8, 1)), mp.rules.make("polynomial")
    obj = mp.Objective(task, net, rule, tasks_per_step=1)
    theta = rule.init(jax.random.key(0))
    f = jax.grad(lambda t, k: obj(t, k)[0]) if grad else (lambda t, k: obj(t, k)[0])
    compiled = jax.jit(f).lower(theta, jax.random.key(0)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_inner_loop_memory_is_constant_in_time():
    # the forward unroll keeps no history: XLA's buffer plan is the same for 100 and 2000 steps
    assert _temp_bytes(2000, grad=False) == _temp_bytes(100, grad=False)


def test_unroll_is_reproducible_and_jit_equals_eager(small_pca, oja_theta):
    task, net, rule, objective = small_pca
    a = objective.episode(oja_theta, jax.random.key(5))[0]
    b = jax.jit(objective.episode)(oja_theta, jax.random.key(5))[0]
    c = jax.jit(objective.episode)(oja_theta, jax.random.key(5))[0]
    assert float(b) == float(c)
    assert float(a) == pytest.approx(float(b), rel=1e-5)


def test_update_fan_in_scales_each_layer_by_its_presynaptic_count():
    """Under ``update_fan_in = F`` a layer with n_in inputs learns as if eta were
    multiplied by F / n_in: a one-layer network's whole unroll equals the rule at that
    eta, exactly."""
    task = mp.tasks.make("fewshot", dataset="digits", ways=5, shots=2, queries=2)
    inst, key = task.sample(jax.random.key(3)), jax.random.key(4)
    theta = mp.rules.make("sgd").init(jax.random.key(0))

    def net(sizes=(64, 5), **kw):
        return mp.Network(sizes=sizes, activation="tanh", output_activation="linear",
                          feedback="random", **kw)

    scaled = unroll(net(update_fan_in=16), mp.rules.make("sgd", eta=0.2), theta, task, inst,
                    key=key)
    plain = unroll(net(), mp.rules.make("sgd", eta=0.05), theta, task, inst, key=key)
    np.testing.assert_allclose(scaled.state.weights[0], plain.state.weights[0], rtol=1e-6,
                               atol=1e-7)
    deep = net((64, 16, 5), update_fan_in=32)
    assert (deep.update_scale(0), deep.update_scale(1)) == (0.5, 2.0)
    assert net().update_scale(0) == 1.0  # off
    with pytest.raises(mp.ConfigError, match="update_fan_in must be >= 0"):
        net(update_fan_in=-1)
