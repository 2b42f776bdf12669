"""Leaky integrate-and-fire neurons (LIF, and adaptive ALIF), with a surrogate gradient.

One time step of ``dt`` (ms) for a population, current-based synapses:

    v <- alpha * v + I                         alpha = exp(-dt / tau_mem)
    s  = H(v - theta)                          theta = threshold + beta * a   (ALIF: beta > 0)
    v <- v - s * threshold   (reset = "subtract")   or   v * (1 - s)   (reset = "zero")
    a <- rho * a + s                           rho = exp(-dt / tau_adapt)

A neuron that spiked is refractory for ``refractory`` steps: its voltage is held at 0 and
it cannot spike. ``I`` is the weighted sum of the presynaptic spikes (0/1) this step.

The spike is a Heaviside step; for meta-gradients its derivative is replaced by the
SuperSpike surrogate ``1 / (1 + slope * |v - theta|)^2`` (Zenke & Ganguli 2018) through a
``jax.custom_jvp``: the forward pass still emits exact 0/1 spikes. The same surrogate is
the neuron's local gain for feedback errors (``derivative``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError

Array = jax.Array


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def spike(x: Array, slope: float = 10.0) -> Array:
    """Heaviside step H(x) (x = v - threshold) with a SuperSpike surrogate derivative."""
    return (x >= 0).astype(jnp.result_type(x, jnp.float32))


@spike.defjvp
def _spike_jvp(slope, primals, tangents):
    (x,), (dx,) = primals, tangents
    return spike(x, slope), dx * surrogate(x, slope)


def surrogate(x: Array, slope: float = 10.0) -> Array:
    """The SuperSpike pseudo-derivative 1 / (1 + slope |x|)^2."""
    return 1.0 / (1.0 + slope * jnp.abs(x)) ** 2


class LIFState(NamedTuple):
    v: Array  # membrane potential
    refractory: Array  # steps of refractoriness left
    adaptation: Array  # ALIF threshold adaptation (zeros for LIF)


@dataclass(frozen=True)
class LIFNeuron:
    """A population of (A)LIF neurons; ``beta > 0`` makes them adaptive (ALIF)."""

    tau_mem: float = 20.0
    threshold: float = 1.0
    reset: str = "subtract"  # or "zero"
    refractory: int = 0  # steps
    tau_adapt: float = 200.0
    beta: float = 0.0  # ALIF threshold increase per spike (0: plain LIF)
    dt: float = 1.0
    slope: float = 10.0  # surrogate sharpness
    spiking = True  # class constant: outputs are 0/1 spikes (a SpikingNetwork's neurons)

    def __post_init__(self):
        if self.tau_mem <= 0 or self.tau_adapt <= 0 or self.dt <= 0:
            raise ConfigError("LIF time constants and dt must be positive")
        if self.threshold <= 0:
            raise ConfigError(f"LIF threshold must be positive, got {self.threshold}")
        if self.reset not in ("subtract", "zero"):
            raise ConfigError(f"LIF reset must be 'subtract' or 'zero', got {self.reset!r}")
        if self.refractory < 0 or self.beta < 0 or self.slope <= 0:
            raise ConfigError("LIF refractory and beta must be >= 0, slope > 0")

    @property
    def alpha(self) -> float:
        return float(np.exp(-self.dt / self.tau_mem))

    @property
    def rho(self) -> float:
        return float(np.exp(-self.dt / self.tau_adapt))

    def init_state(self, n: int) -> LIFState:
        z = jnp.zeros((n,))
        return LIFState(z, jnp.zeros((n,), jnp.int32), z)

    def step(self, state: LIFState, current: Array) -> tuple[Array, LIFState, Array]:
        """``(spikes, new state, v - theta)``: the last is the surrogate's argument."""
        free = state.refractory == 0
        v = jnp.where(free, self.alpha * state.v + current, 0.0)
        theta = self.threshold + self.beta * state.adaptation
        x = v - theta
        s = spike(x, self.slope) * free
        if self.reset == "subtract":
            v = v - s * self.threshold
        else:
            v = v * (1.0 - s)
        refr = jnp.where(s > 0, self.refractory, jnp.maximum(state.refractory - 1, 0))
        a = self.rho * state.adaptation + s
        return s, LIFState(v, refr.astype(jnp.int32), a), x

    def derivative(self, x: Array) -> Array:
        """The local gain for feedback errors: the surrogate at ``x = v - theta``."""
        return surrogate(x, self.slope)
