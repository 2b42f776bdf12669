"""The task interface.

A task is a frozen dataclass (static configuration) describing a *distribution* of
learning problems:

* ``sample(key) -> instance``: one problem (a pytree of arrays), e.g. a covariance;
* ``input(instance, t) -> (x, target)``: what the network receives at inner step ``t``
  (generated on the fly, so an unroll's memory does not grow with its length);
* ``output_error(y, target)``: the error at the output neurons, or ``None`` (unsupervised);
* ``loss(instance, state)``: the meta-objective of the network state after learning;
* ``metrics(instance, state)``: named scalars for curves and evaluation; ``score`` names
  the headline one (higher is better).
"""

from __future__ import annotations

from typing import Any

import jax

from metaplastic.network import NetState, Network

Array = jax.Array


class Task:
    n_in: int
    n_out: int
    n_steps: int
    #: the metric that evaluation reports first (higher is better)
    score: str = "score"

    def sample(self, key: Array) -> Any:
        raise NotImplementedError

    def input(self, instance: Any, t: Array) -> tuple[Array, Array | None]:
        raise NotImplementedError

    def output_error(self, y: Array, target: Array | None) -> Array | None:
        return None

    def loss(self, instance: Any, state: NetState) -> Array:
        raise NotImplementedError

    def metrics(self, instance: Any, state: NetState) -> dict[str, Array]:
        return {}

    def check_network(self, network: Network) -> None:
        """Raise a ConfigError if ``network`` cannot do this task."""
