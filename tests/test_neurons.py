import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic import ConfigError, neurons


def test_activation_values():
    v = jnp.array([-1.0, 0.0, 2.0])
    expected = {
        "linear": [-1.0, 0.0, 2.0],
        "tanh": np.tanh([-1.0, 0.0, 2.0]),
        "relu": [0.0, 0.0, 2.0],
        "sigmoid": 1 / (1 + np.exp([1.0, 0.0, -2.0])),
        "softplus": np.log1p(np.exp(10 * np.array([-1.0, 0.0, 2.0]))) / 10,
        "softplus10": np.log1p(np.exp(10 * np.array([-1.0, 0.0, 2.0]))) / 10,
        "softplus1": np.log1p(np.exp(np.array([-1.0, 0.0, 2.0]))),
    }
    assert set(expected) == set(neurons.ACTIVATIONS)
    for name, want in expected.items():
        r, _, _ = neurons.make(name).step(jnp.zeros(3), v)
        np.testing.assert_allclose(r, want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", sorted(neurons.ACTIVATIONS))
def test_derivative_matches_finite_difference(name):
    n = neurons.make(name)
    v = jnp.array([-0.7, 0.3, 1.1])
    h = 1e-3
    fd = (n.f(v + h) - n.f(v - h)) / (2 * h)
    np.testing.assert_allclose(n.derivative(v), fd, rtol=1e-2, atol=1e-3)


def test_leaky_rate_neuron_integrates():
    n = neurons.RateNeuron("linear", tau=10.0, dt=1.0)
    r, v, _ = n.step(jnp.zeros(1), jnp.ones(1))
    assert float(v[0]) == pytest.approx(0.1)
    r, v, _ = n.step(v, jnp.ones(1))
    assert float(v[0]) == pytest.approx(0.1 + 0.1 * 0.9)


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ConfigError, match="tanh"):
        neurons.make("tanhh")


@pytest.mark.tier2
def test_no_device_arrays_at_import():
    # importing the library must not allocate (users ask that no GPU memory is grabbed)
    import subprocess
    import sys

    code = ("import jax, metaplastic; "
            "print(len(jax.live_arrays()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
    assert jax is not None


def test_one_activation_table_names_softplus_beta_in_each_place():
    """A neuron's "softplus" is β = 10, an MLP rule's β = 1 (as configs always meant)."""
    from metaplastic import activations
    from metaplastic.rules.mlp import ACTIVATIONS as RULE

    v = jnp.array([-1.0, 0.5])
    np.testing.assert_allclose(neurons.ACTIVATIONS["softplus"](v),
                               activations.TABLE["softplus10"][0](v))
    np.testing.assert_allclose(RULE["softplus"](v), activations.TABLE["softplus1"][0](v))
    assert activations.canonical("softplus", "neuron") == "softplus10"
    assert activations.canonical("softplus", "rule") == "softplus1"
    with pytest.raises(ConfigError, match="gelu"):  # lists the valid names
        activations.canonical("swish", "rule")
