"""The rule interface shared by every plasticity rule.

A rule is a frozen dataclass (static configuration) with

* ``init(key, shapes) -> theta``: its trainable parameters, a pytree of arrays; ``shapes``
  are the network's weight shapes ``[(n_out, n_in), ...]`` (rules with per-synapse or
  per-layer parameters need them; shared rules ignore them);
* ``layer_theta(theta, l)``: the part of θ that layer ``l`` uses (all of it when shared);
* ``init_state(shape) -> state``: per-layer state for stateful rules (``()`` otherwise);
* ``synapse(theta_l, s) -> dw``: the definition, for ONE synapse, from its scalar signals
  (and, for per-synapse parameters, its own slice of them);
* ``update(theta_l, signals, state) -> (dw, state)``: the whole layer at once;
* ``initial_weights(theta)``: meta-learned initial weights, or ``None`` (drawn afresh).

The default ``update`` maps ``synapse`` over the layer with
:func:`metaplastic.signals.per_synapse`; rules may override it with a fast path that must be
tested equal to the per-synapse definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from metaplastic.signals import LocalSignals, per_synapse

Array = jax.Array


class Rule:
    """Base class: subclasses are frozen dataclasses defining ``init`` and ``synapse``."""

    #: the name of the rule family, as in the registry
    family: str = "rule"
    #: True when θ holds one entry per layer (``layer_theta`` indexes it)
    per_layer: bool = False

    def init(self, key: Array, shapes: Sequence[tuple[int, int]] | None = None) -> Any:
        raise NotImplementedError

    def layer_theta(self, theta: Any, layer: int) -> Any:
        return theta[layer] if self.per_layer else theta

    def initial_weights(self, theta: Any) -> tuple[Array, ...] | None:
        return None

    def init_state(self, shape: tuple[int, int]) -> Any:
        return ()

    def synapse(self, theta: Any, s: LocalSignals) -> Array:
        raise NotImplementedError

    def update(self, theta: Any, signals: LocalSignals, state: Any) -> tuple[Array, Any]:
        return self.update_per_synapse(theta, signals, state)

    def update_per_synapse(self, theta, signals: LocalSignals, state) -> tuple[Array, Any]:
        """The reference path: ``synapse`` vmapped over every (post, pre) pair."""
        return per_synapse(lambda s: self.synapse(theta, s), signals), state

    def formula(self, theta: Any) -> str:
        """The rule as a readable equation."""
        return f"{type(self).__name__}(theta)"
