"""Plausibility checks measured on the computation: the catalogue of registered rules x
feedback pathways, and rules/networks built to fail."""

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.analysis.plausibility import (
    check,
    check_dale,
    check_locality,
    check_online,
    check_spikes,
    check_weight_transport,
)
from metaplastic.errors import ConfigError
from metaplastic.rules.base import Rule
from metaplastic.signals import random_signals

TASK = mp.tasks.make("pca", n_in=4, n_steps=40)
KEY = jax.random.key(0)


def _net(feedback, **kw):
    return mp.Network(sizes=(4, 3, 3, 1), activation="tanh", output_activation="linear",
                      feedback=feedback, **kw)


@functools.cache
def _rule_and_theta(name):
    rule = mp.rules.make(name)
    theta = rule.init(jax.random.key(1), _net("none").shapes)
    if name == "mlp":  # a non-zero network (the default starts at dw = 0)
        theta = mp.rules.make(name, out_scale=1.0).init(jax.random.key(1))
    return rule, theta


@functools.cache
def _locality(name):
    """Locality is measured on the rule's layer update over random signals: it does not
    depend on where the signals come from, so it is measured once per rule."""
    rule, theta = _rule_and_theta(name)
    return check_locality(_net("none"), rule, theta, KEY)


@functools.cache
def _transport(feedback):
    """Weight transport is a property of the feedback pathway alone (no rule involved)."""
    return check_weight_transport(_net(feedback), KEY)


def _catalogue():
    """Every rule x every feedback pathway. The first tier measures every rule with random
    feedback and every pathway with the polynomial rule; the other pairs (one compiled
    unroll each, the same checks) run in the second tier."""
    for name in mp.registry.names("rule"):
        for feedback in mp.network.FEEDBACK:
            if feedback == "sign" and name != "polynomial":  # a reference pathway: once
                continue
            marks = () if feedback == "random" or name == "polynomial" else pytest.mark.tier2
            yield pytest.param(name, feedback, marks=marks, id=f"{name}-{feedback}")


@pytest.mark.parametrize("name, feedback", list(_catalogue()))
@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_catalogue(name, feedback):
    """Expected table: every registered rule is local and online; only symmetric feedback
    (backprop) and sign-concordant feedback (the forward weights' signs) transport
    weights."""
    rule, theta = _rule_and_theta(name)
    online = check_online(_net(feedback), rule, theta, TASK, KEY, lengths=(4, 16))
    local, transport = _locality(name), _transport(feedback)
    assert local.holds, local.detail
    assert online.holds, online.detail
    assert transport.holds == (feedback not in ("symmetric", "sign")), transport.detail
    if feedback == "symmetric":
        assert "depends on forward weights W" in transport.detail


@dataclass(frozen=True)
class NeighbourRule(Rule):
    """Deliberately non-local: synapse i->j also reads presynaptic neuron i+1."""

    family = "neighbour"

    def init(self, key, shapes=None):
        return {}

    def update(self, theta, s, state):
        neighbour = jnp.roll(s.pre, -1)
        return 0.01 * s.post[:, None] * (s.pre + 0.5 * neighbour)[None, :], state


@dataclass(frozen=True)
class SharedTraceRule(Rule):
    """Non-local through its state: each synapse's trace mixes in the layer's mean trace."""

    family = "shared-trace"

    def init(self, key, shapes=None):
        return {}

    def init_state(self, shape):
        return jnp.zeros(shape)

    def update(self, theta, s, state):
        trace = 0.9 * state + s.post[:, None] * s.pre[None, :] + 0.1 * jnp.mean(state)
        return 0.01 * trace, trace


def test_non_local_rules_fail_locality_and_say_where():
    r = check_locality(_net("random"), NeighbourRule(), {}, KEY)
    assert not r.holds and "depends on pre[" in r.detail and r.detail.startswith("layer 1")
    r = check_locality(_net("random"), SharedTraceRule(), {}, KEY)
    assert not r.holds and "rule state of synapse" in r.detail


def test_fa_with_a_polynomial_rule_passes_everything_but_dale_and_spikes():
    net = _net("random")
    rule = mp.rules.make("polynomial", variables=["pre", "post", "w", "e_pre", "e_post"],
                         degree=1, init_noise=0.1)
    res = {r.constraint: r.holds for r in check([], net, rule, rule.init(KEY), TASK, KEY)}
    assert res == {"locality": True, "no_weight_transport": True, "online": True,
                   "dale": False, "spikes_only": False}


def test_dale_holds_only_with_sign_constrained_networks():
    rule = mp.rules.make("hebb", eta=0.5)  # strong Hebbian updates push weights across 0
    theta = rule.init(KEY)
    free = mp.Network(sizes=(4, 3, 1), activation="tanh")
    assert not check_dale(free, rule, theta, TASK, KEY).holds
    dale = mp.Network(sizes=(4, 3, 1), activation="tanh", dale=True, excitatory=0.5)
    r = check_dale(dale, rule, theta, TASK, KEY)
    assert r.holds, r.detail
    w = dale.init(KEY).weights[0]
    assert np.all(np.asarray(w[:, :2]) >= 0) and np.all(np.asarray(w[:, 2:]) <= 0)
    # an update that would flip every weight leaves them at zero instead
    np.testing.assert_array_equal(dale.constrain(0, -w), jnp.zeros_like(w))


def test_rate_neurons_are_not_spikes():
    r = check_spikes(_net("random"), KEY)
    assert not r.holds and "the input layer sends" in r.detail
    step = mp.Network(sizes=(4, 3, 1), activation="relu")
    assert not check_spikes(step, KEY).holds


def test_weight_transport_single_layer_and_direct():
    assert check_weight_transport(mp.Network(sizes=(4, 1)), KEY).holds
    assert check_weight_transport(_net("direct"), KEY).holds


def test_online_reports_sizes():
    rule = mp.rules.make("recurrent", out_scale=1.0)
    r = check_online(_net("random"), rule, rule.init(KEY), TASK, KEY)
    assert r.holds and "carried state" in r.detail


def test_unknown_constraint():
    with pytest.raises(ConfigError, match="unknown constraint"):
        check(["locallity"], _net("none"), mp.rules.make("hebb"), {}, TASK, KEY)


def test_the_published_oja_subspace_term_is_flagged_non_local():
    """Shervani-Tabar & Rosenbaum's 'Oja' term (y x^T - y y^T W) reads other neurons'
    weights: the locality check fails when its coefficient is non-zero, and also while it
    is still 0 (meta-training can move it), saying so; a pool of local terms with a zero
    coefficient holds."""
    rule = mp.rules.make("termpool", terms=["pseudo_grad", "oja_subspace"],
                         start="pseudo_grad")
    net = _net("random")
    off = check_locality(net, rule, {"coef": jnp.array([1.0, 0.0])}, KEY)
    on = check_locality(net, rule, {"coef": jnp.array([1.0, 0.5])}, KEY)
    assert not on.holds and "for θ moved slightly" not in on.detail
    assert not off.holds and "for θ moved slightly" in off.detail
    (named,) = mp.analysis.plausibility.check(["locality"], net, rule,
                                              {"coef": jnp.array([1.0, 0.0])}, TASK, KEY)
    assert not named.holds and "non-local term(s) of the rule: oja_subspace" in named.detail
    local = mp.rules.make("termpool", terms=["pseudo_grad", "oja"], start="pseudo_grad")
    assert check_locality(net, local, {"coef": jnp.array([1.0, 0.0])}, KEY).holds
    s = random_signals(jax.random.key(2), 3, 4)  # the layer formula, exactly
    dw, _ = rule.update({"coef": jnp.array([0.0, 1.0])}, s, ())
    want = rule.eta * (jnp.outer(s.post, s.pre) - jnp.outer(s.post, s.post) @ s.w)
    np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-7)
    with pytest.raises(mp.ConfigError, match="no per-synapse definition"):
        mp.rules.make("termpool", terms=["oja_subspace"], fast=False)


def test_locality_says_when_inputs_were_rescaled_before_the_network():
    task = mp.tasks.make("fewshot", dataset="digits", input_norm="global")
    net = mp.Network(sizes=(64, 4, 5), activation="tanh", output_activation="linear",
                     feedback="random")
    rule = mp.rules.make("sgd")
    (result,) = mp.analysis.plausibility.check(["locality"], net, rule, rule.init(KEY), task, KEY)
    assert result.holds and "input_norm = 'global'" in result.detail
