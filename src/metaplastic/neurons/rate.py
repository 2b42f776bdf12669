"""Rate neurons: the firing rate is a pointwise function of the input current.

A rate neuron with time constant ``tau`` integrates its current,
``tau dv/dt = -v + I``, and fires at ``r = f(v)``; with ``tau=None`` (the default) it is
instantaneous, ``r = f(I)``, which is the usual artificial neuron.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metaplastic import activations
from metaplastic.errors import ConfigError

Array = jax.Array


#: the activations a neuron takes (``softplus`` is β = 10 here: :mod:`metaplastic.activations`)
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    name: activations.function(name, "neuron") for name in activations.NAMES["neuron"]}


@dataclass(frozen=True)
class RateNeuron:
    """A population of rate neurons with activation ``f`` (a name in ``ACTIVATIONS``).

    The neuron interface (shared with :class:`~metaplastic.neurons.lif.LIFNeuron`):
    ``init_state(n)``; ``step(state, current) -> (output, state, v)``, where ``v`` is what
    the local gain ``derivative(v)`` is taken at. The state is the membrane variable
    ``v`` (kept even when ``tau is None``, so that every neuron has one shape).
    """

    activation: str = "linear"
    tau: float | None = None
    dt: float = 1.0
    spiking = False  # class constant: outputs are rates, not 0/1 spikes

    def __post_init__(self):
        activations.canonical(self.activation, "neuron")  # a ConfigError if unknown
        if self.tau is not None and not self.tau > 0:
            raise ConfigError(f"rate neuron tau must be positive (or unset), got {self.tau}")

    @property
    def f(self) -> Callable[[Array], Array]:
        return ACTIVATIONS[self.activation]

    def init_state(self, n: int) -> Array:
        return jnp.zeros((n,))

    def step(self, state: Array, current: Array) -> tuple[Array, Array, Array]:
        """``(rate, new state, v)``: ``tau dv/dt = -v + I`` (or ``v = I``), rate ``f(v)``."""
        if self.tau is None:
            v = current
        else:
            v = state + (self.dt / self.tau) * (current - state)
        return self.f(v), v, v

    def derivative(self, v: Array) -> Array:
        """f'(v), the local gain a feedback error is multiplied by."""
        return activations.derivative(self.activation, "neuron")(v)


def make(name: str, **kw) -> RateNeuron:
    """A rate neuron by activation name."""
    return RateNeuron(activation=name, **kw)
