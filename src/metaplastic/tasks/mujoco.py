"""Reinforcement learning in MuJoCo physics (MJX), through MuJoCo Playground's DeepMind
Control Suite environments (``CartpoleBalance``, ``PendulumSwingup``, ``ReacherEasy``,
``CheetahRun``, ...), with plasticity during the episode.

Optional: ``pip install 'metaplastic[mujoco]'`` (the ``playground`` package; its models
ship with it, nothing is downloaded at run time). The physics runs in MJX's JAX
implementation (``impl = "jax"``), so an episode is part of the inner ``lax.scan`` like a
gymnax one (:mod:`metaplastic.tasks.episodes`: the output clipped to [-1, 1] is the
action, the return stops at ``done``). Every episode uses the environment's physics; the
initial state is drawn by the environment from the episode's key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metaplastic.errors import ConfigError
from metaplastic.tasks.episodes import EpisodeTask

Array = jax.Array
TESTED = ("CartpoleBalance", "PendulumSwingup")


@functools.cache
def make_env(name: str):
    """The MuJoCo Playground environment ``name`` in MJX's JAX implementation (cached)."""
    try:
        from mujoco_playground import registry
    except ImportError:
        raise ConfigError("the mujoco task needs MuJoCo Playground: "
                          "pip install 'metaplastic[mujoco]'") from None
    names = tuple(registry.dm_control_suite.ALL_ENVS)
    if name not in names:
        raise ConfigError(f"unknown MuJoCo Playground environment {name!r}; tested: "
                          f"{', '.join(TESTED)}; DM Control Suite has: {', '.join(names)}")
    env = registry.load(name, config_overrides={"impl": "jax"})
    if not isinstance(env.observation_size, int):
        raise ConfigError(f"{name}'s observations have several parts "
                          f"({env.observation_size}): not supported")
    return env


@dataclass(frozen=True)
class MujocoTask(EpisodeTask):
    """An episode of a MuJoCo Playground environment, the policy's weights plastic."""

    env: str = "CartpoleBalance"
    n_steps: int = 0  # 0: the environment's own episode length

    def __post_init__(self):
        env = make_env(self.env)
        if self.n_steps == 0:
            object.__setattr__(self, "n_steps", int(env._config.episode_length))
        if self.n_steps < 1:
            raise ConfigError(f"n_steps must be >= 1 (or 0 for the default), got {self.n_steps}")

    @property
    def n_in(self) -> int:
        return int(make_env(self.env).observation_size)

    @property
    def n_out(self) -> int:
        return int(make_env(self.env).action_size)

    def sample(self, key: Array):
        return jnp.zeros(())  # one physics; the initial state comes from the reset key

    def _reset(self, instance, key: Array):
        state = make_env(self.env).reset(key)
        return state, state.obs

    def _step(self, instance, state, action: Array, key: Array):
        state = make_env(self.env).step(state, action)
        return state, state.obs, state.reward, state.done

    def action(self, y: Array) -> Array:
        return jnp.clip(y, -1.0, 1.0)
