"""The BCM rule (Bienenstock, Cooper & Munro 1982; in the form of Intrator & Cooper 1992):
Hebbian change gated by a sliding threshold, a running mean of the postsynaptic
activity's square.

    dw      = eta * pre * post * (post - theta_M)
    theta_M <- theta_M + (post^2 - theta_M) / tau

Activity above the threshold potentiates, below it depresses, and the threshold rises
with the neuron's recent activity: the neuron becomes selective and its rate stays
bounded without any weight normalisation. The threshold is each synapse's rule state
(a copy of its postsynaptic neuron's running mean, computed from that synapse's own
``post``: local). It is outside the polynomial family (a rule state carried from step to
step, not a function of this step's signals): the ground truth for rule inference whose
answer the fitted family cannot express exactly. θ = ``{"log_tau"}`` (the threshold's
time constant in steps); ``eta`` and the threshold's start ``theta0`` are settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError
from metaplastic.rules.base import Rule
from metaplastic.signals import LocalSignals

Array = jax.Array


@dataclass(frozen=True)
class BCM(Rule):
    """dw = eta * pre * post * (post - theta_M), theta_M a running mean of post^2."""

    eta: float = 0.01
    tau: float = field(default=20.0, compare=False)  # the threshold's time constant (steps)
    theta0: float = 1.0  # the threshold before the first step
    family = "bcm"

    def __post_init__(self):
        if not self.eta > 0 or not self.tau >= 1 or not self.theta0 >= 0:
            raise ConfigError(f"rule 'bcm': eta must be > 0, tau >= 1 (steps) and theta0 >= "
                              f"0; got eta={self.eta}, tau={self.tau}, theta0={self.theta0}")

    def init(self, key: Array, shapes=None):
        return {"log_tau": jnp.asarray(float(np.log(self.tau)))}

    def init_state(self, shape):
        return jnp.full(shape, self.theta0, jnp.float32)

    def _step(self, theta, pre, post, threshold):
        dw = self.eta * pre * post * (post - threshold)
        new = threshold + (post ** 2 - threshold) / jnp.exp(theta["log_tau"])
        return dw, new

    def synapse(self, theta, s: LocalSignals) -> Array:
        """dw at the starting threshold (the first step)."""
        return self._step(theta, s.pre, s.post, self.theta0)[0]

    def update(self, theta, signals: LocalSignals, state):
        return self._step(theta, signals.pre[None, :], signals.post[:, None], state)

    def formula(self, theta) -> str:
        theta = self.checked(theta)
        tau = float(np.exp(np.asarray(theta["log_tau"])))
        return (f"dw = {self.eta:g} * pre * post * (post - theta_M),  theta_M <- theta_M + "
                f"(post^2 - theta_M) / {tau:.3g}")
