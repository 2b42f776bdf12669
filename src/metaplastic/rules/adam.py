"""Online Adam on the pseudo-gradient: the strongest hand-designed baseline for few-shot
online learning.

For the synapse pre -> post the pseudo-gradient is ``g = e_post * pre`` (the error at the
postsynaptic neuron arrives through the network's feedback pathway). Each synapse keeps
Adam's moments (Kingma & Ba 2015) and its own step count:

    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,   t <- t + 1
    dw = -eta * coef * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

With symmetric feedback this is backprop with online Adam (batch 1); with random feedback,
feedback alignment with Adam; with direct feedback, DFA with Adam. Everything a synapse
reads is its own (its signals and its own three numbers of state), so the rule passes the
locality check; whether the *errors* are plausible is the feedback pathway's question.

θ is one number, ``coef`` (1 by default): dw is linear in it, so tuning ``eta`` scales θ
instead of recompiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metaplastic.errors import ConfigError
from metaplastic.rules.base import Rule
from metaplastic.signals import LocalSignals, per_synapse

Array = jax.Array


@dataclass(frozen=True)
class OnlineAdam(Rule):
    """Per-synapse Adam on ``e_post * pre``; state ``(m, v, t)`` per synapse."""

    eta: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    fast: bool = True
    linear_in_theta = True
    family = "adam"

    def __post_init__(self):
        if not self.eta > 0:
            raise ConfigError(f"adam: eta must be positive, got {self.eta}")
        for name in ("b1", "b2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"adam: {name} must be in [0, 1), got {getattr(self, name)}")
        if not self.eps > 0:
            raise ConfigError(f"adam: eps must be positive, got {self.eps}")

    def init(self, key, shapes=None):
        return {"coef": jnp.ones((1,))}

    def init_state(self, shape):
        return jnp.zeros((*shape, 3))  # m, v, t of every synapse

    def _adam(self, coef, g, mvt):
        # (the guards only matter for states no run produces: v < 0 or t < 0)
        m, v, t = mvt[..., 0], jnp.maximum(mvt[..., 1], 0.0), jnp.maximum(mvt[..., 2], 0.0) + 1

        m = self.b1 * m + (1.0 - self.b1) * g
        v = self.b2 * v + (1.0 - self.b2) * g * g
        m_hat = m / (1.0 - self.b1**t)
        v_hat = v / (1.0 - self.b2**t)
        dw = -self.eta * coef * m_hat / (jnp.sqrt(v_hat) + self.eps)
        return dw, jnp.stack([m, v, t], axis=-1)

    def synapse_step(self, theta, s: LocalSignals, mvt: Array) -> tuple[Array, Array]:
        """One synapse: ``(dw, new state)`` from its scalar signals and ``(m, v, t)``."""
        return self._adam(theta["coef"][0], s.e_post * s.pre, mvt)

    def synapse(self, theta, s: LocalSignals) -> Array:
        """dw at the first step (zero moments): ``-eta * coef * sign(g)`` up to eps."""
        return self.synapse_step(theta, s, jnp.zeros((3,)))[0]

    def update_per_synapse(self, theta, signals: LocalSignals, state):
        return per_synapse(lambda s, st: self.synapse_step(theta, s, st), signals, state)

    def update(self, theta, signals: LocalSignals, state):
        if not self.fast:
            return self.update_per_synapse(theta, signals, state)
        g = jnp.outer(signals.e_post, signals.pre)
        return self._adam(theta["coef"][0], g, state)

    def formula(self, theta) -> str:
        theta = self.checked(theta)
        c = float(jnp.asarray(theta["coef"])[0])
        return (f"dw = -{self.eta * c:.3g} * Adam(e_post * pre)  (per-synapse moments, "
                f"b1 = {self.b1:g}, b2 = {self.b2:g})")
