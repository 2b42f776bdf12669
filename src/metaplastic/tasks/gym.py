"""Reinforcement learning in gymnax environments, with plasticity during the episode.

One task instance is one set of physics parameters; the network's weights are drawn
afresh for every episode (or come from θ, for the static baseline) and change at every
step by the rule, as in Najarro & Risi (NeurIPS 2020). An episode is part of the inner
``lax.scan``: the observation is the network's input (flattened when it has more than
one axis, e.g. MinAtar's 10x10xC images), its output picks the action
(``argmax`` for discrete actions; for continuous ones the output, clipped to [-1, 1], is
mapped onto the action bounds), and once the environment reports ``done`` the return
stops accumulating and plasticity stops.

Physics can be fixed (``params = {length = 0.8}``) or drawn uniformly per episode from
ranges (``ranges = {length = [0.3, 0.7]}``), so a rule can be meta-trained on some physics
and evaluated on physics outside that range. Derived parameters (CartPole's total mass
and pole-mass-length) are recomputed after sampling.

The meta-loss is minus the return (evosax and the gradient loop minimise it); the score
reported by evaluation is the return itself.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metaplastic.errors import ConfigError
from metaplastic.tasks.episodes import EpisodeState, EpisodeTask, bounded

Array = jax.Array
ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0")


@functools.cache
def make_env(name: str):
    """The gymnax environment and its default parameters (cached)."""
    import gymnax

    if name not in gymnax.registered_envs:
        raise ConfigError(f"unknown gymnax environment {name!r}; tested: {', '.join(ENVS)}; "
                          f"gymnax has: {', '.join(gymnax.registered_envs)}")
    return gymnax.make(name)


def _fix_derived(env_name: str, params):
    if env_name == "CartPole-v1":
        return params.replace(total_mass=params.masscart + params.masspole,
                              polemass_length=params.masspole * params.length)
    return params


GymState = EpisodeState  # the name earlier code used


def _pairs(d) -> tuple:
    items = d.items() if isinstance(d, dict) else d
    return tuple(sorted((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in items))


@dataclass(frozen=True)
class GymTask(EpisodeTask):
    """An episode of a gymnax environment, the policy's weights plastic."""

    env: str = "CartPole-v1"
    n_steps: int = 0  # 0: the environment's own episode limit
    params: dict = ()  # fixed physics: {name: value}
    ranges: dict = ()  # physics drawn per episode: {name: [low, high]}
    score = "return"

    def __post_init__(self):
        env, default = make_env(self.env)
        object.__setattr__(self, "params", _pairs(self.params))
        object.__setattr__(self, "ranges", _pairs(self.ranges))
        valid = set(type(default).__dataclass_fields__)
        for what, pairs in (("params", self.params), ("ranges", self.ranges)):
            bad = sorted(k for k, _ in pairs if k not in valid)
            if bad:
                raise ConfigError(f"{self.env} has no physics parameter(s) {bad} in {what}; "
                                  f"valid: {', '.join(sorted(valid))}")
        both = sorted({k for k, _ in self.params} & {k for k, _ in self.ranges})
        if both:
            raise ConfigError(f"physics parameter(s) {both} set in both params and ranges")
        for k, v in self.ranges:
            if not (isinstance(v, tuple) and len(v) == 2 and v[0] <= v[1]):
                raise ConfigError(f"range of {k!r} must be [low, high] with low <= high, "
                                  f"got {v}")
        if self.n_steps == 0:
            object.__setattr__(self, "n_steps", int(default.max_steps_in_episode))
        if self.n_steps < 1:
            raise ConfigError(f"n_steps must be >= 1 (or 0 for the default), got {self.n_steps}")

    @property
    def _env(self):
        return make_env(self.env)[0]

    @property
    def _space(self):
        env, default = make_env(self.env)
        return env.action_space(default)

    @property
    def discrete(self) -> bool:
        return not hasattr(self._space, "low")

    @property
    def n_in(self) -> int:
        """Inputs of the network: the observation's numbers (images flattened)."""
        env, default = make_env(self.env)
        return int(math.prod(env.observation_space(default).shape))

    @property
    def n_out(self) -> int:
        space = self._space
        return int(space.n) if self.discrete else int(space.shape[0])

    def env_params(self, key: Array | None = None):
        """The physics of one episode: defaults, fixed values, then sampled ranges."""
        _, params = make_env(self.env)
        params = params.replace(max_steps_in_episode=self.n_steps, **dict(self.params))
        if self.ranges and key is not None:
            keys = jax.random.split(key, len(self.ranges))
            sampled = {k: jax.random.uniform(kk, minval=lo, maxval=hi)
                       for kk, (k, (lo, hi)) in zip(keys, self.ranges, strict=True)}
            params = params.replace(**sampled)
        return _fix_derived(self.env, params)

    def sample(self, key: Array):
        return self.env_params(key)

    def _reset(self, instance, key: Array):
        obs, state = self._env.reset_env(key, instance)
        return state, obs

    def _step(self, instance, state, action: Array, key: Array):
        obs, state, reward, done, _ = self._env.step_env(key, state, action, instance)
        return state, obs, reward, done

    def action(self, y: Array) -> Array:
        if self.discrete:
            return jnp.argmax(y)
        return bounded(y, self._space.low, self._space.high)
