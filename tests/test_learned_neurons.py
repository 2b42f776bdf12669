"""Learned neuron behaviour: a transfer function meta-learned with the rule (one θ)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic import ConfigError
from metaplastic.experiments import build, config, presets
from metaplastic.experiments.rundir import load_theta, save_theta
from metaplastic.neurons import LearnedNeuron

SMALL = ["task.shots=3", "task.queries=3", "network.hidden=[8]", "meta.steps=4",
         "meta.chunk=2", "meta.tasks_per_step=4"]


@pytest.fixture(scope="module")
def learned():
    cfg = config.override(presets.get("fa-digits"), SMALL + ["network.neuron=learned",
                                                              "network.units=4"])
    return cfg, build(cfg)


def test_derivative_is_the_transfer_functions_derivative():
    neuron = LearnedNeuron(units=5)
    params = neuron.init_params(jax.random.key(0))
    params["a"] = jax.random.normal(jax.random.key(1), (5,))
    v = jnp.linspace(-3.0, 3.0, 41)
    auto = jax.vmap(jax.grad(lambda x: neuron.f(x, params)))(v)
    np.testing.assert_allclose(neuron.derivative(v, params), auto, rtol=1e-5, atol=1e-6)


def test_untrained_learned_neurons_are_their_base_activation(learned):
    cfg, p = learned
    fixed = build(config.override(cfg, ["network.neuron=rate"]))
    theta = p.rule.init(jax.random.key(0), p.network.shapes)
    assert p.network.neuron(2).activation == "linear"  # the readout stays linear
    a = p.objective(theta, jax.random.key(3))[0]
    b = fixed.objective(theta["rule"], jax.random.key(3))[0]
    assert float(a) == float(b)  # exactly: a = 0, and no L1 on the neurons' φ


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_meta_learning_changes_rule_and_neurons_together(learned, tmp_path):
    _, p = learned
    theta = p.rule.init(jax.random.key(0), p.network.shapes)
    _, _, grads = jax.jit(p.objective.value_and_grad)(theta, jax.random.key(1))
    assert float(jnp.abs(grads["neuron"]["a"]).sum()) > 0  # φ gets a meta-gradient
    result = p.outer.run(p.objective, theta, key=jax.random.key(2))
    assert not np.allclose(result.theta["neuron"]["a"], 0.0)
    assert "neurons: r = softplus(v)" in p.rule.formula(result.theta)
    save_theta(tmp_path / "t.npz", result.theta)  # nested θ round-trips
    back = load_theta(tmp_path / "t.npz")
    np.testing.assert_array_equal(back["neuron"]["b"], result.theta["neuron"]["b"])


def test_the_synapses_stay_local_with_learned_neurons(learned):
    _, p = learned
    theta = p.rule.init(jax.random.key(0), p.network.shapes)
    from metaplastic.analysis.plausibility import check

    results = check(["locality", "no_weight_transport"], p.network, p.rule,
                    theta, p.task, jax.random.key(0))
    assert all(r.holds for r in results), [r.detail for r in results]


@pytest.mark.parametrize("kw, msg", [({"units": 0}, "units must be an integer"),
                                     ({"base": "swish"}, "unknown base activation")])
def test_bad_learned_neuron_options(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        LearnedNeuron(**kw)
