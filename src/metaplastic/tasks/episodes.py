"""Reinforcement-learning episodes with plastic weights: what every environment family
shares (gymnax in :mod:`metaplastic.tasks.gym`, MuJoCo Playground in
:mod:`metaplastic.tasks.mujoco`).

An episode is part of the inner ``lax.scan``: the observation (flattened when it has more
than one axis) is the network's input, its output picks the action, and once the
environment reports ``done`` the return stops accumulating, the state stops changing and
plasticity stops. The meta-loss is minus the return; the score is the return. A family
gives ``_reset(instance, key) -> (env state, observation)``, ``_step(instance, env state,
action, key) -> (env state, observation, reward, done)`` and ``action(y)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metaplastic.errors import ConfigError
from metaplastic.network import NetState, Network
from metaplastic.tasks.base import Task

Array = jax.Array


class EpisodeState(NamedTuple):
    state: Any  # the environment's own state
    obs: Array
    ret: Array  # return so far
    done: Array
    steps: Array  # steps taken before the episode ended
    key: Array


def flat(obs: Array) -> Array:
    """An observation as the network's input vector: images (MinAtar's 10x10xC channels)
    flattened row-major, as float32."""
    return jnp.ravel(obs).astype(jnp.float32)


def bounded(y: Array, low, high) -> Array:
    """A continuous action: the output clipped to [-1, 1] and mapped onto [low, high]."""
    return low + (jnp.clip(y, -1.0, 1.0) + 1.0) / 2.0 * (high - low)


class EpisodeTask(Task):
    """An episode of an environment, the policy's weights plastic (see the module)."""

    score = "return"
    env: str

    def _reset(self, instance, key: Array) -> tuple[Any, Array]:
        raise NotImplementedError

    def _step(self, instance, state, action: Array, key: Array):
        raise NotImplementedError

    def action(self, y: Array) -> Array:
        raise NotImplementedError

    def reset(self, instance, key: Array) -> EpisodeState:
        k_reset, k_run = jax.random.split(key)
        state, obs = self._reset(instance, k_reset)
        zero = jnp.zeros((), jnp.float32)
        return EpisodeState(state, flat(obs), zero, jnp.zeros((), bool),
                            jnp.zeros((), jnp.int32), k_run)

    def observe(self, instance, env: EpisodeState):
        return env.obs, None

    def transition(self, instance, env: EpisodeState, y: Array) -> EpisodeState:
        k_next, k_step = jax.random.split(env.key)
        state, obs, reward, done = self._step(instance, env.state, self.action(y), k_step)
        live = ~env.done
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(live, a, b), new, old)  # noqa: E731
        return EpisodeState(
            keep(state, env.state),
            jnp.where(live, flat(obs), env.obs),
            env.ret + jnp.where(live, reward, 0.0).astype(jnp.float32),
            env.done | jnp.asarray(done).astype(bool),
            env.steps + live.astype(jnp.int32),
            k_next,
        )

    def active(self, instance, env: EpisodeState) -> Array:
        return ~env.done

    def loss(self, instance, state: NetState, env: EpisodeState, network=None) -> Array:
        return -env.ret

    def metrics(self, instance, state: NetState, env: EpisodeState,
                network=None) -> dict[str, Array]:
        return {"return": env.ret, "length": env.steps.astype(jnp.float32)}

    def check_network(self, network: Network) -> None:
        if network.sizes[0] != self.n_in or network.sizes[-1] != self.n_out:
            raise ConfigError(f"{self.env} needs a network {self.n_in} -> ... -> {self.n_out}; "
                              f"got sizes {network.sizes}")
