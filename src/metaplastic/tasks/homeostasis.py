"""Firing-rate homeostasis (after Confavreux et al., NeurIPS 2020 / 2023): reach and hold a
target output rate while the input statistics change.

An episode has ``phases`` phases of ``phase_steps`` steps. In each phase every input has
its own rate factor ``f_i = m * u_i``: a phase-wide level ``m``, log-uniform in
``level_range``, times a per-input spread ``u_i`` uniform in ``[1 - spread, 1 + spread]``.
The task hands the network ``x_i = f_i - 1``, so a Poisson encoder with ``gain = 1`` makes
input ``i`` spike with probability ``rate * f_i`` per step (the level of input drive
changes from phase to phase, up to 10-fold with the default range).

The output neurons should fire at ``target`` spikes per step. Their rate is counted over the
last ``1 - settle`` fraction of every phase (the first part is the time allowed to adapt);
the meta-loss is the mean over phases and output neurons of the squared relative error
``((rate - target) / target)^2``, the score ``rate_error`` its root (0 is perfect;
1 means e.g. silence). Works with rate networks too (then ``y`` is a rate, not a spike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metaplastic.errors import ConfigError
from metaplastic.network import NetState, Network
from metaplastic.tasks.base import Task, log_uniform, positive_range

Array = jax.Array


class HomeostasisInstance(NamedTuple):
    factors: Array  # (phases, n_in) input rate factors


class HomeostasisEnv(NamedTuple):
    t: Array  # step
    count: Array  # (n_out,) spikes counted so far in this phase's counting window
    sq_error: Array  # sum over finished phases of the mean squared relative error
    last_rate: Array  # (n_out,) the rate counted in the last finished phase


@dataclass(frozen=True)
class HomeostasisTask(Task):
    """Hold every output neuron at ``target`` spikes per step across input phases."""

    n_in: int = 20
    n_out: int = 10
    phases: int = 4
    phase_steps: int = 500
    target: float = 0.02
    level_range: tuple[float, ...] = (0.25, 2.5)
    spread: float = 0.5
    settle: float = 0.5
    score = "rate_error"
    maximise_score = False

    def __post_init__(self):
        if self.n_in < 1 or self.n_out < 1 or self.phases < 1 or self.phase_steps < 2:
            raise ConfigError("homeostasis needs n_in, n_out, phases >= 1 and phase_steps >= 2")
        object.__setattr__(self, "level_range",
                           positive_range("homeostasis", "level_range", self.level_range))
        if not 0 < self.target < 1:
            raise ConfigError(f"homeostasis target must be a rate in (0, 1) spikes per step, "
                              f"got {self.target}")
        if not 0 <= self.spread < 1:
            raise ConfigError(f"homeostasis spread must be in [0, 1), got {self.spread}")
        if not 0 <= self.settle < 1 or self.window < 1:
            raise ConfigError(f"homeostasis settle must be in [0, 1) and leave >= 1 counted "
                              f"step per phase, got {self.settle}")

    @property
    def n_steps(self) -> int:
        return self.phases * self.phase_steps

    @property
    def window(self) -> int:
        """Steps counted at the end of every phase."""
        return self.phase_steps - int(round(self.settle * self.phase_steps))

    def sample(self, key: Array) -> HomeostasisInstance:
        k_level, k_spread = jax.random.split(key)
        level = log_uniform(k_level, self.level_range, (self.phases, 1))
        u = jax.random.uniform(k_spread, (self.phases, self.n_in), minval=1 - self.spread,
                               maxval=1 + self.spread)
        return HomeostasisInstance(level * u)

    def reset(self, instance: HomeostasisInstance, key: Array) -> HomeostasisEnv:
        z = jnp.zeros((self.n_out,))
        return HomeostasisEnv(jnp.zeros((), jnp.int32), z, jnp.zeros(()), z)

    def observe(self, instance: HomeostasisInstance, env: HomeostasisEnv):
        phase = jnp.minimum(env.t // self.phase_steps, self.phases - 1)
        return instance.factors[phase] - 1.0, None

    def transition(self, instance, env: HomeostasisEnv, y: Array) -> HomeostasisEnv:
        pos = env.t % self.phase_steps
        counting = pos >= self.phase_steps - self.window
        count = env.count + jnp.where(counting, y, 0.0)
        end = pos == self.phase_steps - 1
        rate = count / self.window
        rel_sq = jnp.mean(((rate - self.target) / self.target) ** 2)
        return HomeostasisEnv(env.t + 1, jnp.where(end, 0.0, count),
                              env.sq_error + jnp.where(end, rel_sq, 0.0),
                              jnp.where(end, rate, env.last_rate))

    def _phases_done(self, env: HomeostasisEnv) -> Array:
        return jnp.maximum(env.t // self.phase_steps, 1)

    def loss(self, instance, state: NetState, env: HomeostasisEnv, network=None) -> Array:
        return env.sq_error / self._phases_done(env)

    def metrics(self, instance, state: NetState, env: HomeostasisEnv,
                network=None) -> dict[str, Array]:
        mse = self.loss(instance, state, env)
        return {"rate_error": jnp.sqrt(mse), "last_rate": jnp.mean(env.last_rate)}

    def check_network(self, network: Network) -> None:
        if network.sizes[0] != self.n_in or network.sizes[-1] != self.n_out:
            raise ConfigError(f"homeostasis needs a network {self.n_in} -> ... -> "
                              f"{self.n_out}; got sizes {network.sizes}")
