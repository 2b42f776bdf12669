import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError, ShapeError
from metaplastic.network import NetState


def _mse_grads(net, state, x, target):
    def loss(weights):
        y = net.forward(weights, x).rates[-1]
        return 0.5 * jnp.sum((y - target) ** 2)

    return jax.grad(loss)(state.weights)


def _setup(feedback, sizes=(5, 7, 6, 3)):
    net = mp.Network(sizes=sizes, activation="tanh", output_activation="linear",
                     feedback=feedback)
    state = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (sizes[0],))
    target = jax.random.normal(jax.random.key(2), (sizes[-1],))
    act = net.forward(state.weights, x)
    return net, state, x, target, act


def test_forward_shapes_and_values():
    net, state, x, _, act = _setup("none")
    assert [r.shape for r in act.rates] == [(5,), (7,), (6,), (3,)]
    h1 = np.tanh(np.asarray(state.weights[0]) @ np.asarray(x))
    np.testing.assert_allclose(act.rates[1], h1, rtol=1e-5)


def test_symmetric_feedback_pseudo_gradient_is_backprop():
    # with symmetric feedback, -e_post * pre at every layer is exactly -dL/dW
    net, state, x, target, act = _setup("symmetric")
    e_out = act.rates[-1] - target  # dL/dv at a linear output for L = |y - t|^2 / 2
    signals = net.signals(state, act, e_out)
    grads = _mse_grads(net, state, x, target)
    for s, g in zip(signals, grads, strict=True):
        pseudo = mp.per_synapse(lambda z: -z.e_post * z.pre, s)
        np.testing.assert_allclose(pseudo, -g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("feedback", ["random", "direct"])
def test_fa_feedback_does_not_depend_on_forward_weights(feedback):
    net, state, x, target, act = _setup(feedback)
    e_out = act.rates[-1] - target

    def hidden_errors(weights_above):
        st = NetState((state.weights[0], *weights_above), state.feedback)
        return net.errors(st, act, e_out)[1:-1]

    jac = jax.jacobian(hidden_errors)(state.weights[1:])
    assert all(float(jnp.abs(j).max()) == 0.0 for j in jax.tree.leaves(jac))
    # ...whereas symmetric feedback reads them (weight transport)
    sym = mp.Network(sizes=net.sizes, activation="tanh", output_activation="linear",
                     feedback="symmetric")
    jac_sym = jax.jacobian(lambda wa: sym.errors(NetState((state.weights[0], *wa), ()), act,
                                                 e_out)[1:-1])(state.weights[1:])
    assert max(float(jnp.abs(j).max()) for j in jax.tree.leaves(jac_sym)) > 0


def test_feedback_matrix_shapes():
    net, state, *_ = _setup("random")
    assert [b.shape for b in state.feedback] == [(7, 6), (6, 3)]
    net, state, *_ = _setup("direct")
    assert [b.shape for b in state.feedback] == [(7, 3), (6, 3)]
    assert _setup("symmetric")[1].feedback == ()


def test_random_feedback_pseudo_gradient_differs_from_backprop():
    net, state, x, target, act = _setup("random")
    signals = net.signals(state, act, act.rates[-1] - target)
    grads = _mse_grads(net, state, x, target)
    # output layer is exact (no feedback needed); the hidden layers are not
    np.testing.assert_allclose(-signals[-1].e_post[:, None] * signals[-1].pre[None], -grads[-1],
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(-signals[0].e_post[:, None] * signals[0].pre[None], -grads[0])


@pytest.mark.parametrize("kw, err, msg", [
    ({"sizes": (3,)}, ConfigError, "sizes"),
    ({"sizes": (3, 0)}, ConfigError, "sizes"),
    ({"sizes": (3, 1), "feedback": "magic"}, ConfigError, "valid feedback pathways"),
    ({"sizes": (3, 1), "activation": "swish"}, ConfigError, "valid activations"),
])
def test_bad_network_config(kw, err, msg):
    with pytest.raises(err, match=msg):
        mp.Network(**kw)


def test_wrong_input_size():
    net = mp.Network(sizes=(3, 1))
    with pytest.raises(ShapeError, match="inputs of size 3"):
        net.check_input(jnp.ones(4))


def test_every_network_steps_its_neurons_through_one_interface():
    """Leaky rate neurons (network.tau) carry their state from step to step through
    RateNeuron.step; with tau unset the network is the stateless forward pass."""
    from metaplastic.experiments import config, presets
    from metaplastic.experiments.build import build

    cfg = config.override(presets.get("oja"), ["network.tau=4.0"])
    net = build(cfg).network
    assert net.tau == 4.0 and net.stateful
    state = net.init(jax.random.key(0))
    x = jnp.ones(net.sizes[0])
    act1, state = net.run(state, x)
    act2, state = net.run(state, x)
    v1 = state.weights[0] @ x / 4.0  # tau dv/dt = -v + I from v = 0, dt = 1
    np.testing.assert_allclose(act1.rates[-1], v1, rtol=1e-5)
    np.testing.assert_allclose(act2.rates[-1], v1 + (state.weights[0] @ x - v1) / 4.0,
                               rtol=1e-5)
    with pytest.raises(mp.ConfigError, match="step it with run"):
        net.forward(state.weights, x)
    plain = build(presets.get("oja")).network
    out, _ = plain.run(plain.init(jax.random.key(0)), x)
    np.testing.assert_allclose(out.rates[-1], plain.forward(plain.init(jax.random.key(0))
                                                            .weights, x).rates[-1])
