"""The meta-objective: how well a rule makes a network learn, over a batch of tasks.

``Objective(task, network, rule)(theta, key)`` samples ``tasks_per_step`` task instances,
runs the inner loop on each (vmapped), and returns the mean task loss plus an L1 penalty
on θ (sparse rules, as in Confavreux et al. 2020), with named metrics. Every outer loop —
meta-gradients, evolution strategies — optimises this same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from metaplastic.errors import ConfigError
from metaplastic.inner import unroll
from metaplastic.network import Network
from metaplastic.rules.base import Rule
from metaplastic.tasks.base import Task

Array = jax.Array


def l1_norm(theta: Any) -> Array:
    return sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(theta))


@dataclass(frozen=True)
class Objective:
    """Mean meta-loss of ``rule`` with parameters θ on ``tasks_per_step`` fresh tasks."""

    task: Task
    network: Network
    rule: Rule
    tasks_per_step: int = 8
    l1: float = 0.0
    checkpoint: bool = False

    def __post_init__(self):
        if self.tasks_per_step < 1:
            raise ConfigError(f"tasks_per_step must be >= 1, got {self.tasks_per_step}")
        if self.l1 < 0:
            raise ConfigError(f"l1 must be >= 0, got {self.l1}")
        self.task.check_network(self.network)

    def episode(self, theta: Any, key: Array, record_every: int | None = None):
        """One task: (loss, metrics after learning, records during learning)."""
        k_task, k_net = jax.random.split(key)
        instance = self.task.sample(k_task)
        out = unroll(
            self.network, self.rule, theta, self.task, instance,
            key=k_net, record_every=record_every, checkpoint=self.checkpoint,
        )
        return (
            self.task.loss(instance, out.state),
            self.task.metrics(instance, out.state),
            out.records,
        )

    def __call__(self, theta: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        keys = jax.random.split(key, self.tasks_per_step)
        losses, metrics, _ = jax.vmap(self.episode, in_axes=(None, 0))(theta, keys)
        finite = jnp.isfinite(losses)
        task_loss = jnp.mean(losses)
        penalty = self.l1 * l1_norm(theta)
        aux = {
            "task_loss": task_loss,
            "l1": penalty,
            "nonfinite": 1.0 - jnp.mean(finite),
            **{k: jnp.mean(jnp.where(finite, v, jnp.nan)) for k, v in metrics.items()},
        }
        return task_loss + penalty, aux
