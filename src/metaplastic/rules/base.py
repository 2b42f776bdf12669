"""The rule interface shared by every plasticity rule.

A rule is a frozen dataclass (static configuration) with

* ``init(key) -> theta``: its trainable parameters, a pytree of arrays;
* ``init_state(shape) -> state``: per-layer state for stateful rules (``()`` otherwise);
* ``synapse(theta, s) -> dw``: the definition, for ONE synapse, from its scalar signals;
* ``update(theta, signals, state) -> (dw, state)``: the whole layer at once.

The default ``update`` maps ``synapse`` over the layer with
:func:`metaplastic.signals.per_synapse`; rules may override it with a fast path that must be
tested equal to the per-synapse definition.
"""

from __future__ import annotations

from typing import Any

import jax

from metaplastic.signals import LocalSignals, per_synapse

Array = jax.Array


class Rule:
    """Base class: subclasses are frozen dataclasses defining ``init`` and ``synapse``."""

    #: the name of the rule family, as in the registry
    family: str = "rule"

    def init(self, key: Array) -> Any:
        raise NotImplementedError

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
