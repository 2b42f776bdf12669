"""Plastic feedback pathways: the feedback synapses change by their own meta-learned local
rule (reading the error they carry, their target's activity and their own weight);
Kolen-Pollack is a special case; sign-concordant feedback is a flagged non-local
reference."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError
from metaplastic.analysis.plausibility import check_weight_transport
from metaplastic.experiments import presets
from metaplastic.experiments.build import build
from metaplastic.inner import initial_carry, make_step_detail
from metaplastic.rules import feedback

ETA, LAM = 0.03, 0.05


@pytest.fixture(scope="module")
def kolen_pollack():
    cfg = presets.get("fa-digits")
    cfg = dataclasses.replace(
        cfg, rule={"name": "termpool", "terms": ["pseudo_grad", "decay"], "eta": ETA,
                   "start": "pseudo_grad"},
        network={**cfg.network, "feedback": "random", "feedback_plasticity": "learned",
                 "feedback_eta": ETA, "feedback_decay": LAM, "hidden": [8, 8],
                 "update_fan_in": 0})
    p = build(cfg)
    theta = p.rule.init(jax.random.key(0), p.network.shapes)
    theta = {"rule": {"coef": jnp.array([1.0, LAM])}, "feedback": theta["feedback"]}
    return p, theta


def test_kolen_pollack_is_a_special_case(kolen_pollack):
    # forward: eta (-e_post pre - lam w); feedback: eta (-e r - lam b): the same local
    # update, so B - W^T shrinks by (1 - eta lam) at every learning step, exactly
    p, theta = kolen_pollack
    np.testing.assert_array_equal(theta["feedback"], feedback.coefficients("kolen_pollack",
                                                                            LAM))
    task, net, rule = p.task, p.network, p.rule
    instance = task.sample(jax.random.key(1))
    carry = initial_carry(net, rule, theta, task, instance, jax.random.key(2))
    step = jax.jit(make_step_detail(net, rule, theta, task, instance))

    def gaps(c):
        return np.array([float(jnp.linalg.norm(b - c[0].weights[l + 1].T))
                         for l, b in enumerate(c[0].feedback)])

    before, learned = gaps(carry), 0
    for _ in range(task.n_steps):
        carry, _, _, live = step(carry)
        learned += int(live)
    assert learned > 10
    np.testing.assert_allclose(gaps(carry), before * (1 - ETA * LAM) ** learned, rtol=1e-4)
    assert "feedback: db = eta_b * (-1 e*r -0.05 b)" in rule.formula(theta)


@pytest.mark.tier2  # one compiled meta-gradient (second tier)
def test_the_feedback_rule_is_meta_learned(kolen_pollack):
    p, theta = kolen_pollack
    obj = mp.Objective(p.task, p.network, p.rule, tasks_per_step=2)
    _, _, grads = obj.value_and_grad(theta, jax.random.key(3))
    assert float(jnp.linalg.norm(grads["feedback"])) > 0  # θ["feedback"] gets a gradient


def test_feedback_synapses_read_nothing_of_the_forward_weights(kolen_pollack):
    p, _ = kolen_pollack
    assert check_weight_transport(p.network, jax.random.key(0)).holds


def test_sign_concordant_feedback_is_flagged_as_non_local():
    net = mp.Network(sizes=(5, 4, 4, 3), activation="tanh", feedback="sign")
    result = check_weight_transport(net, jax.random.key(0))
    assert not result.holds and "non-local" in result.detail
    # it does carry the forward weights' signs with fixed magnitudes
    state = net.init(jax.random.key(1))
    act, state = net.run(state, jnp.ones(5))
    errs = net.errors(state, act, jnp.ones(3))
    b = jnp.sign(state.weights[2].T) * jnp.abs(state.feedback[1])
    gain = net.neuron(2).derivative(act.currents[1])
    np.testing.assert_allclose(errs[2], (b @ jnp.ones(3)) * gain, rtol=1e-6)


def test_plastic_feedback_options_are_checked():
    with pytest.raises(ConfigError, match="feedback synapses of their own"):
        mp.Network(sizes=(4, 3, 2), feedback="symmetric", feedback_plasticity="learned")
    with pytest.raises(ConfigError, match="feedback plasticity"):
        mp.Network(sizes=(4, 3, 2), feedback="random", feedback_plasticity="hebb")
    with pytest.raises(ConfigError, match="feedback rule start"):
        feedback.coefficients("backprop")
