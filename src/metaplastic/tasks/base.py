"""The task interface.

A task is a frozen dataclass (static configuration) describing a *distribution* of
learning problems. The inner loop talks to it like to an environment:

* ``sample(key) -> instance``: one problem (a pytree of arrays), e.g. a covariance or a
  set of physics parameters;
* ``reset(instance, key) -> env``: the task's own state at step 0 (a step counter, an
  environment state, accumulated reward, ...);
* ``observe(instance, env) -> (x, target)``: what the network receives now (``target`` is
  ``None`` for unsupervised and reinforcement tasks);
* ``output_error(y, target)``: the error at the output neurons, or ``None``;
* ``transition(instance, env, y) -> env``: the world's response to the network output;
* ``active(instance, env)``: False once an episode has ended (plasticity then stops);
* ``loss(instance, state, env, network)``: the meta-objective (always minimised; a
  reinforcement task returns minus the return; ``network`` lets a task test the learned
  network on held-back data);
* ``metrics(instance, state, env, network)``: named scalars; ``score`` names the headline one and
  ``maximise_score`` says which way is better.

Inputs are produced step by step, so an unroll's memory does not grow with its length.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError
from metaplastic.network import NetState, Network

Array = jax.Array


def positive_range(task: str, name: str, value) -> tuple[float, float]:
    """``value`` as a ``(low, high)`` pair with ``0 < low <= high``, or a ConfigError."""
    lo_hi = tuple(float(v) for v in value)
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
        raise ConfigError(f"{task} {name} must be [low, high] with 0 < low <= high, "
                          f"got {value}")
    return lo_hi


def log_uniform(key: Array, lo_hi: tuple[float, float], shape=()) -> Array:
    """Draws log-uniform in ``[low, high]``."""
    lo, hi = lo_hi
    return jnp.exp(jax.random.uniform(key, shape, minval=jnp.log(lo), maxval=jnp.log(hi)))


class Task:
    n_in: int
    n_out: int
    n_steps: int
    #: the metric that evaluation reports first
    score: str = "score"
    maximise_score: bool = True
    #: the kind of run (:mod:`metaplastic.experiments.study`) a config of this task is,
    #: unless it names one: rule discovery; recordings say "inference"
    study: ClassVar[str] = "rule"

    def sample(self, key: Array) -> Any:
        raise NotImplementedError

    def reset(self, instance: Any, key: Array) -> Any:
        return jnp.zeros((), jnp.int32)

    def observe(self, instance: Any, env: Any) -> tuple[Array, Array | None]:
        raise NotImplementedError

    def output_error(self, y: Array, target: Array | None) -> Array | None:
        return None

    def transition(self, instance: Any, env: Any, y: Array) -> Any:
        return env + 1

    def modulator(self, instance: Any, env: Any, y: Array, target: Array | None) -> Array:
        """The broadcast third factor (reward, error sign, surprise) every synapse receives
        this step, from the task's state before its transition; 0 unless a task says."""
        return jnp.zeros(())

    def active(self, instance: Any, env: Any) -> Array:
        return jnp.asarray(True)

    @property
    def fits_start(self) -> bool:
        """Whether the network's initial weights are fitted with the rule (part of θ:
        recordings without the weights each trajectory started from)."""
        return False

    @property
    def fitted_starts(self) -> int:
        """How many fitted starts θ holds (``fits_start``): 1 (shared), or one per
        instance, which :meth:`start_of` picks from."""
        return 1

    def start_estimate(self, network: Network, draw: tuple) -> tuple:
        """The fitted starts' first value (``fits_start``): ``draw``, the network's, unless
        the task estimates them from its data."""
        return draw

    def start_of(self, instance: Any, weights: tuple) -> tuple:
        """The initial weights of ``instance`` among θ's fitted ones (as given when θ holds
        one start)."""
        return weights

    def instance_ids(self) -> np.ndarray | None:
        """A task with a finite set of instances (recorded trajectories) returns their ids
        for :meth:`instance`: an evaluation then scores each exactly once instead of
        drawing with replacement. None (the default): instances are drawn at random."""
        return None

    def learns(self, instance: Any, env: Any) -> Array:
        """Whether the synapses update this step (from the state before its transition):
        while the task is active, unless a task says otherwise (e.g. recordings whose
        synapses changed only at the end of each trial)."""
        return self.active(instance, env)

    def loss(self, instance: Any, state: NetState, env: Any,
             network: Network | None = None) -> Array:
        raise NotImplementedError

    def metrics(self, instance: Any, state: NetState, env: Any,
                network: Network | None = None) -> dict[str, Array]:
        return {}

    def check_network(self, network: Network) -> None:
        """Raise a ConfigError if ``network`` cannot do this task."""
