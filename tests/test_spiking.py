"""Spiking neurons and networks: LIF by hand, surrogate gradients, encoders, traces,
spikes only between neurons, STDP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.analysis.plausibility import check_locality, check_spikes
from metaplastic.errors import ConfigError
from metaplastic.inner import initial_carry, make_step_detail
from metaplastic.neurons.lif import LIFNeuron, spike
from metaplastic.spiking import SpikingNetwork


def _run(neuron, currents):
    state = neuron.init_state(1)
    vs, ss = [], []
    for c in currents:
        s, state, _ = neuron.step(state, jnp.array([c]))
        vs.append(float(state.v[0]))
        ss.append(float(s[0]))
    return np.array(vs), np.array(ss)


def test_lif_voltage_by_hand():
    # tau 10 ms, dt 1 ms: alpha = exp(-0.1) = 0.904837; constant current 0.3
    # v1 = 0.3; v2 = 0.3 a + 0.3 = 0.571451; v3 = 0.817071; v4 = 1.039316 >= 1: spike,
    # subtract the threshold: 0.039316; v5 = 0.039316 a + 0.3 = 0.335575
    v, s = _run(LIFNeuron(tau_mem=10.0), [0.3] * 5)
    np.testing.assert_allclose(v, [0.3, 0.571451, 0.817071, 0.039316, 0.335575], atol=2e-6)
    np.testing.assert_array_equal(s, [0, 0, 0, 1, 0])
    # reset to zero instead, and two refractory steps: held at 0, then integrating again
    v, s = _run(LIFNeuron(tau_mem=10.0, reset="zero", refractory=2), [0.3] * 7)
    np.testing.assert_allclose(v, [0.3, 0.571451, 0.817071, 0.0, 0.0, 0.0, 0.3], atol=2e-6)
    np.testing.assert_array_equal(s, [0, 0, 0, 1, 0, 0, 0])


def test_alif_threshold_adapts():
    lif, alif = LIFNeuron(tau_mem=10.0), LIFNeuron(tau_mem=10.0, beta=0.5, tau_adapt=100.0)
    _, s_lif = _run(lif, [0.3] * 60)
    _, s_alif = _run(alif, [0.3] * 60)
    assert s_alif.sum() < s_lif.sum()  # each spike raises the threshold: fewer spikes
    state = alif.init_state(1)
    for _ in range(4):
        _, state, _ = alif.step(state, jnp.array([0.3]))
    np.testing.assert_allclose(state.adaptation, [1.0])  # one spike so far


def test_surrogate_gradient_and_exact_spikes():
    x = jnp.array([-0.2, 0.0, 0.1])
    np.testing.assert_array_equal(spike(x), [0.0, 1.0, 1.0])
    g = jax.vmap(jax.grad(lambda v: spike(v, 10.0)))(x)
    np.testing.assert_allclose(g, [1 / 9, 1.0, 0.25], rtol=1e-6)


def test_bad_lif_options():
    with pytest.raises(ConfigError, match="reset"):
        LIFNeuron(reset="soft")
    with pytest.raises(ConfigError, match="threshold"):
        LIFNeuron(threshold=0.0)
    with pytest.raises(ConfigError, match="unknown encoder"):
        SpikingNetwork(sizes=(3, 2), encoder="burst")


def _snet(**kw):
    return SpikingNetwork(sizes=(6, 5, 3), feedback="random",
                          neuron_model=LIFNeuron(threshold=0.3), rate=0.3, **kw)


def test_poisson_encoder_rates():
    net = _snet()
    state = net.init(jax.random.key(0))
    x = jnp.array([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0])

    def step(st, _):
        act, st = net.run(st, x)
        return st, act.rates[0]

    _, spikes = jax.lax.scan(step, state, None, length=4000)
    want = np.clip(0.3 * (1 + np.asarray(x)), 0, 1)
    np.testing.assert_allclose(np.mean(np.asarray(spikes), 0), want, atol=0.025)


def test_latency_encoder_by_hand():
    net = _snet(encoder="latency", window=5, gain=1.0)
    state = net.init(jax.random.key(0))
    x = jnp.array([10.0, 0.0, -10.0, 10.0, 0.0, -10.0])
    spikes = []
    for _ in range(5):
        act, state = net.run(state, x)
        spikes.append(np.asarray(act.rates[0]))
    # spike step round(4 * (1 - sigmoid(x))): x = 10 -> 0, x = 0 -> 2, x = -10 -> 4
    first = np.argmax(np.array(spikes), axis=0)
    np.testing.assert_array_equal(first, [0, 2, 4, 0, 2, 4])
    np.testing.assert_array_equal(np.array(spikes).sum(0), np.ones(6))  # once per window


def test_only_spikes_pass_between_neurons_and_traces_follow_them():
    """Over a whole unroll, every layer's synapses receive 0/1 pre and post signals, and
    the traces are the exponentially filtered spikes."""
    task = mp.tasks.make("pca", n_in=6, n_steps=300)
    net = SpikingNetwork(sizes=(6, 1), neuron_model=LIFNeuron(threshold=0.1), rate=0.3,
                         init_scale=2.0)
    rule = mp.rules.make("stdp", eta=1e-4)
    theta = rule.init(jax.random.key(0))
    inst = task.sample(jax.random.key(1))
    detail = make_step_detail(net, rule, theta, task, inst)

    def step(carry, _):
        carry, signals, _, _ = detail(carry)
        s = signals[0]
        return carry, (s.pre, s.post, s.pre_trace, s.post_trace)

    carry = initial_carry(net, rule, theta, task, inst, jax.random.key(2))
    _, (pre, post, pre_tr, post_tr) = jax.lax.scan(step, carry, None, length=300)
    for x in (pre, post):
        assert set(np.unique(np.asarray(x))) <= {0.0, 1.0}
    assert float(jnp.sum(post)) > 5 and float(jnp.sum(pre)) > 50  # it does spike
    decay = net.trace_decay
    want = np.zeros(6)
    for t in range(300):
        want = decay * want + np.asarray(pre[t])
    np.testing.assert_allclose(pre_tr[-1], want, rtol=1e-5)
    assert check_spikes(net, jax.random.key(3)).holds
    assert check_spikes(_snet(), jax.random.key(3)).holds


def test_stdp_rule_by_hand_and_local():
    rule = mp.rules.make("stdp", eta=0.1)
    theta = rule.init(jax.random.key(0))
    s = mp.signals.layer_signals(pre=jnp.array([1.0, 0.0]), post=jnp.array([1.0]),
                                 w=jnp.zeros((1, 2)), pre_trace=jnp.array([1.5, 0.5]),
                                 post_trace=jnp.array([2.0]))
    dw, _ = rule.update(theta, s, ())
    # dw = 0.1 * (post * pre_trace - 1.05 * pre * post_trace)
    np.testing.assert_allclose(dw, [[0.1 * (1.5 - 1.05 * 2.0), 0.1 * 0.5]], rtol=1e-6)
    slow = mp.rules.make("stdp", eta=0.1, fast=False)
    np.testing.assert_allclose(slow.update(theta, s, ())[0], dw, rtol=1e-6)
    assert check_locality(_snet(), rule, theta, jax.random.key(1)).holds


def test_spiking_network_from_the_config():
    from metaplastic.experiments import build, config, presets

    cfg = config.override(presets.get("oja"), ["network.neuron=alif", "rule.name=stdp"])
    p = build(cfg)
    assert isinstance(p.network, SpikingNetwork) and p.network.neuron_model.beta == 0.5
    with pytest.raises(ConfigError, match="unknown neuron 'hh'"):
        build(config.override(presets.get("oja"), ["network.neuron=hh"]))


def test_three_factor_rule_by_hand():
    rule = mp.rules.make("three-factor", eta=0.01)
    theta = rule.init(jax.random.key(0))
    s = mp.signals.layer_signals(pre=jnp.array([1.0, 0.0]), post=jnp.array([1.0]),
                                 w=jnp.zeros((1, 2)), modulator=0.5,
                                 pre_trace=jnp.array([1.5, 0.5]), post_trace=jnp.array([2.0]))
    e0 = rule.init_state((1, 2))
    dw, e1 = rule.update(theta, s, e0)
    hebb = np.array([[1.5 - 1.05 * 2.0, 0.5]])
    np.testing.assert_allclose(e1, hebb, rtol=1e-6)
    np.testing.assert_allclose(dw, 0.01 * 0.5 * hebb, rtol=1e-6)
    dw2, e2 = rule.update(theta, s._replace(modulator=jnp.asarray(0.0)), e1)
    np.testing.assert_allclose(e2, np.exp(-1 / 100) * hebb + hebb, rtol=1e-5)
    np.testing.assert_array_equal(dw2, np.zeros((1, 2)))  # no modulator: no change
    np.testing.assert_allclose(rule.synapse(theta, s._replace(
        pre=s.pre[0], post=s.post[0], w=s.w[0, 0], e_pre=s.e_pre[0], e_post=s.e_post[0],
        pre_trace=s.pre_trace[0], post_trace=s.post_trace[0])), dw[0, 0], rtol=1e-6)


def test_the_task_modulator_reaches_every_synapse():
    class Rewarded(type(mp.tasks.make("pca", n_in=3))):
        def modulator(self, instance, env, y, target):
            return jnp.where(env % 2 == 0, 1.0, -1.0)

    task = Rewarded(n_in=3, n_steps=4)
    net = _snet().__class__(sizes=(3, 1), rate=0.3)
    rule = mp.rules.make("three-factor")
    theta = rule.init(jax.random.key(0))
    inst = task.sample(jax.random.key(1))
    detail = make_step_detail(net, rule, theta, task, inst)
    carry = initial_carry(net, rule, theta, task, inst, jax.random.key(2))
    seen = []
    for _ in range(4):
        carry, signals, _, _ = detail(carry)
        seen.append(float(signals[0].modulator))
    assert seen == [1.0, -1.0, 1.0, -1.0]
