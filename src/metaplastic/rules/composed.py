"""A plasticity rule meta-learned jointly with learned neuron behaviour.

``WithLearnedNeurons(rule, neuron)`` has θ = ``{"rule": θ_rule, "neuron": φ}``: every
synapse updates by ``rule`` with ``θ_rule`` exactly as it would alone, and φ sets the
transfer function of every hidden neuron (``neuron`` is a model with ``init_params``,
e.g. :class:`~metaplastic.neurons.learned.LearnedNeuron`). One θ, so every outer loop
meta-learns both at once. The library composes it when ``network.neuron = "learned"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from metaplastic import capabilities as cap
from metaplastic.rules import feedback
from metaplastic.rules.base import Rule
from metaplastic.signals import LocalSignals

Array = jax.Array


class Composed(Rule):
    """A rule whose θ is ``{"rule": θ_rule, ...}``: every synapse updates by ``rule`` with
    ``θ_rule`` exactly as it would alone; the other entries of θ are something else the
    meta-learning fits with it (neurons' φ, a start). Subclasses are frozen dataclasses
    with a ``rule`` field and say what ``SUFFIX`` their family gets."""

    rule: Rule
    SUFFIX = ""

    @property
    def family(self) -> str:  # type: ignore[override]
        return f"{self.rule.family}+{self.SUFFIX}"

    @property
    def per_layer(self) -> bool:  # type: ignore[override]
        return self.rule.per_layer

    @property
    def linear_in_theta(self) -> bool:
        return False  # scaling θ would scale the other entries too

    @property
    def term_names(self) -> list[str]:
        return cap.term_names(self.rule)

    def layer_theta(self, theta, layer: int):
        return self.rule.layer_theta(theta["rule"], layer)

    def held(self, theta):
        """The synapses' rule's entries that do not act (its
        :class:`~metaplastic.capabilities.HoldsEntries`); every other entry acts."""
        out = jax.tree.map(lambda x: np.zeros(np.shape(x), bool), theta)
        inner = cap.held(self.rule, theta["rule"])
        return out if inner is None else {**out, "rule": inner}

    def init_state(self, shape):
        return self.rule.init_state(shape)

    def synapse(self, theta, s: LocalSignals) -> Array:
        return self.rule.synapse(theta, s)

    def update(self, theta, signals: LocalSignals, state):
        return self.rule.update(theta, signals, state)

    def update_per_synapse(self, theta, signals: LocalSignals, state):
        return self.rule.update_per_synapse(theta, signals, state)

    def feedback_params(self, theta):
        """The feedback synapses' rule coefficients within θ (None: fixed feedback)."""
        return cap.feedback_params(self.rule, theta["rule"])


@dataclass(frozen=True)
class WithLearnedNeurons(Composed):
    """``rule`` for the synapses, φ for the neurons; see the module docstring."""

    rule: Rule
    neuron: Any
    SUFFIX = "learned-neurons"

    def init(self, key: Array, shapes=None) -> dict:
        k_rule, k_neuron = jax.random.split(key)
        return {"rule": self.rule.init(k_rule, shapes),
                "neuron": self.neuron.init_params(k_neuron)}

    def initial_weights(self, theta):
        return self.rule.initial_weights(theta["rule"])

    def neuron_params(self, theta):
        return theta["neuron"]

    def sparse_part(self, theta):
        """What the objective's L1 penalty applies to: the synapses' rule only."""
        return theta["rule"]

    def formula(self, theta) -> str:
        return (f"{self.rule.formula(theta['rule'])}; neurons: "
                f"{self.neuron.describe(theta['neuron'])}")


@dataclass(frozen=True)
class WithFittedStart(Composed):
    """``rule`` for the synapses, and the network's initial weights fitted with it.

    θ = ``{"rule": θ_rule, "w0": (W_1, W_2, ...)}``: every episode starts from the weights
    ``w0`` (fitted jointly with the rule, one start shared by every trajectory) instead of
    drawn or recorded ones. The library composes it for a recordings task with
    ``initial = "fitted"``: when the recordings do not hold the weights each trajectory
    started from, the start is inferred with the rule. ``w0`` starts at ``network``'s
    draw; L1 applies to the rule only."""

    rule: Rule
    network: Any
    #: starts held: 1 (shared), or one per trajectory (leading axis; the task picks one)
    count: int = 1
    #: the task whose data may set the starts' first value (``task.start_estimate``)
    task: Any = None
    SUFFIX = "fitted-start"

    def init(self, key: Array, shapes=None) -> dict:
        k_rule, k_start = jax.random.split(key)
        if self.count == 1:
            starts = tuple(self.network.init(k_start).weights)
        else:
            starts = tuple(jax.vmap(lambda k: self.network.init(k).weights)(
                jax.random.split(k_start, self.count)))
        if self.task is not None:
            starts = tuple(self.task.start_estimate(self.network, starts))
        return {"rule": self.rule.init(k_rule, shapes), "w0": starts}

    def initial_weights(self, theta):
        return tuple(theta["w0"])

    def neuron_params(self, theta):
        return cap.neuron_params(self.rule, theta["rule"])

    def sparse_part(self, theta):
        """What the objective's L1 penalty applies to: the synapses' rule only."""
        return cap.sparse_part(self.rule, theta["rule"])

    def formula(self, theta) -> str:
        return f"{self.rule.formula(theta['rule'])}; initial weights fitted"


@dataclass(frozen=True)
class WithPlasticFeedback(Composed):
    """``rule`` for the forward synapses; the feedback synapses by the meta-learned
    feedback rule of :mod:`metaplastic.rules.feedback`. θ = ``{"rule": θ_rule, "feedback": c}``."""

    rule: Rule
    start: str = "kolen_pollack"
    decay: float = 0.0
    SUFFIX = "plastic-feedback"

    def __post_init__(self):
        feedback.coefficients(self.start)  # a clear error for an unknown start

    def init(self, key: Array, shapes=None) -> dict:
        return {"rule": self.rule.init(key, shapes),
                "feedback": feedback.coefficients(self.start, self.decay)}

    def initial_weights(self, theta):
        return self.rule.initial_weights(theta["rule"])

    def feedback_params(self, theta) -> Array:
        return theta["feedback"]

    def neuron_params(self, theta):
        return cap.neuron_params(self.rule, theta["rule"])

    def sparse_part(self, theta):
        return cap.sparse_part(self.rule, theta["rule"])

    def formula(self, theta) -> str:
        return (f"{self.rule.formula(theta['rule'])}; feedback: "
                f"{feedback.formula(theta['feedback'])}")


def synapses_part(rule: Rule, theta: Any) -> tuple[Rule, Any]:
    """The synapses' own rule and its θ within a composed rule (learned neurons, a fitted
    start), or ``(rule, theta)`` as they are: what compares with a reference's terms."""
    while isinstance(rule, Composed):
        rule, theta = rule.rule, theta["rule"]
    return rule, theta


def with_synapses_part(rule: Rule, theta: Any, part: Any) -> Any:
    """``theta`` with the synapses' own θ (what :func:`synapses_part` returns) replaced by
    ``part``; the composed rule's other entries unchanged."""
    if isinstance(rule, Composed):
        return {**theta, "rule": with_synapses_part(rule.rule, theta["rule"], part)}
    return part


def compose(rule: Rule, network: Any, task: Any) -> Rule:
    """The rule a network and task need around ``rule``: learned neurons' φ in θ when the
    network's hidden neurons are learned (:class:`WithLearnedNeurons`), the feedback
    synapses' rule when they are plastic (:class:`WithPlasticFeedback`), and the initial
    weights fitted with the rule when the task asks for it (``task.fits_start``:
    recordings without the weights each trajectory started from; :class:`WithFittedStart`).
    ``rule`` as it is otherwise."""
    if network.learned_neurons:  # one θ for the synapses' rule and the neurons' φ
        rule = WithLearnedNeurons(rule, network.neuron_model)
    if network.feedback_plasticity == "learned":  # the feedback synapses' rule in θ
        rule = WithPlasticFeedback(rule, network.feedback_start, network.feedback_decay)
    if task.fits_start:  # the initial weights fitted with the rule (recordings)
        rule = WithFittedStart(rule, network, task.fitted_starts, task)
    return rule
