"""Learned neuron behaviour: a transfer function that is a small network shared by every
hidden neuron, meta-learned together with the plasticity rule (in the spirit of VSML,
Kirsch & Schmidhuber 2021: the forward behaviour of each neuron and its local update rule
are both decided by meta-learned networks).

    r = f(v) = base(v) + sum_k a_k tanh(b_k v + c_k)

with ``units`` hidden units, ``base`` a fixed activation (softplus by default) and
φ = (a, b, c) shared by every hidden neuron of the network. φ starts with ``a = 0``, so an
untrained learned neuron is exactly its base activation. The local gain a feedback error
is multiplied by is f'(v), in closed form.

φ is not a weight: it lives in θ (``θ["neuron"]`` of a
:class:`~metaplastic.rules.composed.WithLearnedNeurons` rule, which the library composes when
``network.neuron = "learned"``), reaches the network at the start of every episode
(``NetState.params``) and does not change during inner learning — the meta-gradient or the
evolution strategy changes it, between episodes. The output layer keeps the network's
``output_activation`` (a few-shot task needs a linear readout).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metaplastic import activations
from metaplastic.errors import ConfigError

Array = jax.Array


def _absent(params) -> bool:
    """No φ given (a network state built without θ): the base activation."""
    return params is None or (isinstance(params, tuple) and not params)


@dataclass(frozen=True)
class LearnedNeuron:
    """A rate neuron ``r = base(v) + MLP_φ(v)``; φ from θ (see the module docstring)."""

    base: str = "softplus"
    units: int = 8
    spiking = False  # class constants: rates; no state between steps; φ is meta-learned
    stateful = False
    learned = True

    def __post_init__(self):
        activations.canonical(self.base, "neuron", "base activation")
        if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1:
            raise ConfigError(f"learned neuron: units must be an integer >= 1, got "
                              f"{self.units!r}")

    def init_params(self, key: Array) -> dict:
        """φ at the start of meta-learning: hidden units spread over the input range, the
        output at zero (the base activation exactly)."""
        return {"a": jnp.zeros((self.units,)),
                "b": 1.0 + 0.5 * jax.random.normal(key, (self.units,)),
                "c": jnp.linspace(-2.0, 2.0, self.units)}

    def init_state(self, n: int) -> Array:
        return jnp.zeros((n,))

    def _hidden(self, params, v: Array) -> Array:
        return jnp.tanh(v[..., None] * params["b"] + params["c"])

    def f(self, v: Array, params=None) -> Array:
        out = activations.function(self.base, "neuron")(v)
        if _absent(params):
            return out
        return out + self._hidden(params, v) @ params["a"]

    def step(self, state: Array, current: Array, params=None) -> tuple[Array, Array, Array]:
        return self.f(current, params), current, current

    def derivative(self, v: Array, params=None) -> Array:
        """f'(v): the base activation's derivative plus sum_k a_k b_k (1 - tanh^2)."""
        out = activations.derivative(self.base, "neuron")(v)
        if _absent(params):
            return out
        h = self._hidden(params, v)
        return out + (1.0 - h**2) @ (params["a"] * params["b"])

    def describe(self, params=None) -> str:
        return (f"r = {self.base}(v) + sum_k a_k tanh(b_k v + c_k), {self.units} units "
                f"shared by every hidden neuron")
