"""Spiking networks to NIR and back: the file loads with nir.read, and the network read
back reproduces the original's spike trains exactly."""

import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest

from metaplastic.analysis.neuromorphic import from_nir, simulate, to_nir, write
from metaplastic.errors import ConfigError
from metaplastic.network import Network
from metaplastic.neurons.lif import LIFNeuron
from metaplastic.spiking import SpikingNetwork

STEPS = 300


def _original(reset="zero", **lif):
    """A 12-8-3 spiking network driven by its Poisson encoder: (network, weights, spikes of
    every layer, input first)."""
    net = SpikingNetwork(sizes=(12, 8, 3), neuron_model=LIFNeuron(
        tau_mem=10.0, threshold=0.5, reset=reset, **lif), rate=0.2)
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    weights = (0.35 * jax.random.normal(k1, (8, 12)) + 0.1,
               0.5 * jax.random.normal(k2, (3, 8)) + 0.25)
    state = net.init(k3, weights)
    x = jax.random.normal(jax.random.key(4), (12,))

    def step(state, _):
        act, state = net.run(state, x)
        return state, act.rates

    spikes = jax.lax.scan(step, state, None, length=STEPS)[1]
    return net, [np.asarray(w) for w in weights], [np.asarray(s).astype(np.uint8)
                                                   for s in spikes]


def test_the_file_loads_with_nir_and_describes_the_network(tmp_path):
    net, weights, _ = _original()
    path = write(tmp_path / "net.nir", net, weights)
    graph = nir.read(path)
    kinds = {k: type(v).__name__ for k, v in graph.nodes.items()}
    assert kinds == {"input": "Input", "linear1": "Linear", "lif1": "LIF",
                     "linear2": "Linear", "lif2": "LIF", "output": "Output"}
    np.testing.assert_array_equal(graph.nodes["linear2"].weight, weights[1])
    lif = graph.nodes["lif1"]
    alpha = np.exp(-1.0 / 10.0)
    np.testing.assert_allclose(lif.tau, 1.0 / (1.0 - alpha))  # tau = dt / (1 - alpha)
    np.testing.assert_allclose(lif.r * 1.0 / lif.tau, 1.0)  # R dt / tau = 1: input as is
    np.testing.assert_array_equal(lif.v_threshold, 0.5)
    assert float(graph.metadata["dt"]) == 1.0


def test_round_trip_reproduces_the_spike_trains_exactly(tmp_path):
    net, weights, spikes = _original()
    assert all(s.sum() > 30 for s in spikes[1:])  # every layer fires: a real comparison
    back_net, back_w = from_nir(write(tmp_path / "net.nir", net, weights))
    assert back_net.sizes == (12, 8, 3) and back_net.neuron_model.reset == "zero"
    again = simulate(back_net, back_w, spikes[0])
    for a, b in zip(again, spikes, strict=True):
        np.testing.assert_array_equal(a, b)


def test_reset_by_subtraction_is_exported_as_reset_to_zero_and_says_so(tmp_path):
    net, weights, spikes = _original(reset="subtract")
    graph = nir.read(write(tmp_path / "net.nir", net, weights))
    assert graph.metadata["reset_in_library"] == "subtract"
    np.testing.assert_array_equal(graph.nodes["lif1"].v_reset, 0.0)
    back_net, back_w = from_nir(graph)
    assert back_net.neuron_model.reset == "zero"


@pytest.mark.parametrize("network, words", [
    (Network(sizes=(3, 2)), "rate neurons"),
    (SpikingNetwork(sizes=(3, 2), neuron_model=LIFNeuron(beta=0.5)), "ALIF"),
    (SpikingNetwork(sizes=(3, 2), neuron_model=LIFNeuron(refractory=2)), "refractory"),
])
def test_networks_nir_cannot_express_are_refused(network, words):
    with pytest.raises(ConfigError, match=words):
        to_nir(network, [np.zeros((2, 3))])


def test_graphs_the_library_cannot_read_are_refused_with_a_message(tmp_path):
    net, weights, _ = _original()
    graph = to_nir(net, weights)
    graph.nodes["lif2"].tau = np.linspace(5, 6, 3)
    with pytest.raises(ConfigError, match="different tau"):
        from_nir(graph)
    graph = to_nir(net, weights)
    graph.nodes["lif1"].v_leak = np.ones(8)
    with pytest.raises(ConfigError, match="v_leak"):
        from_nir(graph)
    graph = to_nir(net, weights)
    graph.edges.append(("input", "lif2"))
    with pytest.raises(ConfigError, match="branches"):
        from_nir(graph)
    (tmp_path / "bad.nir").write_bytes(b"not hdf5")
    with pytest.raises(ConfigError, match="cannot read"):
        from_nir(tmp_path / "bad.nir")
    with pytest.raises(ConfigError, match="do not fit"):
        to_nir(net, [np.zeros((2, 2))])
    with pytest.raises(ConfigError, match="input spikes"):
        simulate(Network(sizes=(12, 3), neuron_model=LIFNeuron()), [jnp.zeros((3, 12))],
                 np.zeros((5, 4)))
