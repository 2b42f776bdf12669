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

from metaplastic.errors import ConfigError, unknown_name

Array = jax.Array


SOFTPLUS_BETA = 10.0  # Softplus(beta = 10), as in Shervani-Tabar & Rosenbaum (2023)


def _softplus10(v: Array) -> Array:
    return jax.nn.softplus(SOFTPLUS_BETA * v) / SOFTPLUS_BETA


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "linear": lambda v: v,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "softplus": _softplus10,
}


#: closed-form f' (cheaper than autodiff of f, above all inside a meta-gradient, which
#: would otherwise differentiate a derivative); tested equal to jax.grad(f)
DERIVATIVES: dict[str, Callable[[Array], Array]] = {
    "linear": jnp.ones_like,
    "tanh": lambda v: 1.0 - jnp.tanh(v) ** 2,
    "relu": lambda v: (v > 0).astype(v.dtype),
    "sigmoid": lambda v: jax.nn.sigmoid(v) * (1.0 - jax.nn.sigmoid(v)),
    "softplus": lambda v: jax.nn.sigmoid(SOFTPLUS_BETA * v),
}


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
        if self.activation not in ACTIVATIONS:
            raise unknown_name("activation", self.activation, ACTIVATIONS)
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
        if self.activation in DERIVATIVES:
            return DERIVATIVES[self.activation](v)
        return jax.vmap(jax.grad(self.f))(v.reshape(-1)).reshape(v.shape)


def make(name: str, **kw) -> RateNeuron:
    """A rate neuron by activation name."""
    return RateNeuron(activation=name, **kw)
