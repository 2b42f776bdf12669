"""A three-factor rule: an eligibility trace per synapse, turned into a weight change by a
broadcast modulator (reward, error sign) — Izhikevich 2007; Frémaux & Gerstner 2016.

    e  <- exp(-1 / tau_e) * e + A_plus * post * pre_trace - A_minus * pre * post_trace
    dw  = eta * m * e

The third factor ``m`` is the broadcast ``modulator`` (``third = "modulator"``, e.g. a
reward; R-STDP) or the postsynaptic neuron's own error, ``m = -e_post`` (``third =
"error"``, a neuron-specific learning signal as in e-prop; positive when the neuron should
fire more).

The eligibility's Hebbian part is pair STDP on spike traces (in a rate network the traces
are zero, so the eligibility stays zero: use a spiking network). The modulator comes from
the task (:meth:`~metaplastic.tasks.base.Task.modulator`).
θ = {"a_plus", "a_minus", "log_tau_e"}, shared by every synapse; the eligibility is the
synapse's own rule state.
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
class ThreeFactor(Rule):
    """dw = eta * modulator * eligibility; the eligibility is a decaying STDP trace."""

    eta: float = 0.01
    tau_e: float = field(default=100.0, compare=False)  # initial eligibility time constant
    a_plus: float = field(default=1.0, compare=False)
    a_minus: float = field(default=1.05, compare=False)
    third: str = "modulator"  # or "error": -e_post
    family = "three-factor"

    def __post_init__(self):
        if self.eta <= 0 or self.tau_e <= 0:
            raise ConfigError("rule 'three-factor': eta and tau_e must be positive")
        if self.third not in ("modulator", "error"):
            raise ConfigError(f"rule 'three-factor': third must be 'modulator' or 'error', "
                              f"got {self.third!r}")

    def init(self, key: Array, shapes=None):
        return {"a_plus": jnp.asarray(self.a_plus), "a_minus": jnp.asarray(self.a_minus),
                "log_tau_e": jnp.asarray(float(np.log(self.tau_e)))}

    def init_state(self, shape):
        return jnp.zeros(shape)

    def _step(self, theta, s: LocalSignals, e: Array) -> tuple[Array, Array]:
        decay = jnp.exp(-1.0 / jnp.exp(theta["log_tau_e"]))
        hebb = theta["a_plus"] * s.post * s.pre_trace - theta["a_minus"] * s.pre * s.post_trace
        e = decay * e + hebb
        m = s.modulator if self.third == "modulator" else -s.e_post
        return self.eta * m * e, e

    def synapse(self, theta, s: LocalSignals) -> Array:
        """dw from a zero eligibility (the first step)."""
        return self._step(theta, s, jnp.zeros_like(s.w))[0]

    def update(self, theta, signals: LocalSignals, state):
        s = signals
        pre, post = s.pre[None, :], s.post[:, None]
        pre_tr, post_tr = s.pre_trace[None, :], s.post_trace[:, None]
        return self._step(theta, LocalSignals(pre, post, s.w, s.e_pre[None, :],
                                              s.e_post[:, None], s.modulator, pre_tr, post_tr),
                          state)

    def formula(self, theta) -> str:
        theta = self.checked(theta)
        tau = float(np.exp(np.asarray(theta["log_tau_e"])))
        m = "modulator" if self.third == "modulator" else "(-e_post)"
        return (f"dw = {self.eta:g} * {m} * e,  e <- exp(-1/{tau:.3g}) e "
                f"{float(theta['a_plus']):+.3g} post*pre_trace "
                f"{-float(theta['a_minus']):+.3g} pre*post_trace")
