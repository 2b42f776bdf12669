"""A two-odour choice task with probabilistic rewards in blocks (after the fly experiments
fitted by Mehta et al., NeurIPS 2023).

Every step is a trial: one of two odours is presented (input: its one-hot code), the
network's single output is the logit of accepting it, the agent accepts with that
probability, and an accepted odour is rewarded with its probability in the current block
(``blocks``: one ``[p_odour_1, p_odour_2]`` pair per block of ``block_trials`` trials).
The broadcast modulator of a trial's plasticity is its reward prediction error on accepted
trials, ``choice · (reward − expected)`` (0 when the odour is refused), the expectation a
running mean of the rewards of accepted trials (``baseline_rate`` per trial), so a rule
``dw ∝ pre · modulator`` learns to accept the better odour of each block. The task keeps
every trial's choice (:meth:`record`); :func:`metaplastic.analysis.simulate.simulate` records it
with the modulator as ``rewards`` and each trial's reward as ``outcomes``
(:meth:`outcomes`). As a meta-learning task its loss is minus the mean
reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError
from metaplastic.network import NetState, Network
from metaplastic.tasks.base import Task

Array = jax.Array


class OdourInstance(NamedTuple):
    odours: Array  # (T,) 0 or 1
    p_reward: Array  # (T, 2) reward probability of each odour at each trial


class OdourState(NamedTuple):
    t: Array
    key: Array
    choices: Array  # (T,)
    rewards: Array  # (T,)
    expected: Array  # the running mean reward of accepted trials


@dataclass(frozen=True)
class OdourChoiceTask(Task):
    """Two odours, accept or refuse, probabilistic reward in blocks; see the module."""

    blocks: tuple = ((0.2, 0.8), (0.8, 0.2), (0.2, 0.8))
    block_trials: int = 80
    baseline_rate: float = 0.1
    n_in = 2
    n_out = 1
    score = "reward"

    def __post_init__(self):
        try:
            blocks = tuple(tuple(float(p) for p in b) for b in self.blocks)
        except (TypeError, ValueError):
            blocks = ()
        if not blocks or any(len(b) != 2 or not all(0 <= p <= 1 for p in b) for b in blocks):
            raise ConfigError(f"blocks must be a list of [p_odour_1, p_odour_2] reward "
                              f"probabilities in [0, 1], got {self.blocks!r}")
        if not isinstance(self.block_trials, int) or self.block_trials < 1:
            raise ConfigError(f"block_trials must be an integer >= 1, got {self.block_trials!r}")
        object.__setattr__(self, "blocks", blocks)
        if not 0.0 <= self.baseline_rate <= 1.0:
            raise ConfigError(f"baseline_rate must be in [0, 1], got {self.baseline_rate}")

    @property
    def n_steps(self) -> int:
        return len(self.blocks) * self.block_trials

    def sample(self, key: Array) -> OdourInstance:
        odours = jax.random.bernoulli(key, 0.5, (self.n_steps,)).astype(jnp.int32)
        p = jnp.asarray(np.repeat(np.asarray(self.blocks, np.float32), self.block_trials,
                                  axis=0))
        return OdourInstance(odours, p)

    def reset(self, instance, key: Array) -> OdourState:
        z = jnp.zeros((self.n_steps,), jnp.float32)
        return OdourState(jnp.zeros((), jnp.int32), jax.random.key_data(key), z, z,
                          jnp.full((), 0.5, jnp.float32))

    def observe(self, instance, env: OdourState):
        t = jnp.minimum(env.t, self.n_steps - 1)
        return jax.nn.one_hot(instance.odours[t], 2), None

    def _trial(self, instance, env: OdourState, y: Array):
        """(choice, reward) of this trial: the same draws for the modulator and the
        transition (keys from the trial number)."""
        t = jnp.minimum(env.t, self.n_steps - 1)
        key = jax.random.fold_in(jax.random.wrap_key_data(env.key), t)
        k_choice, k_reward = jax.random.split(key)
        choice = jax.random.bernoulli(k_choice, jax.nn.sigmoid(y[0])).astype(jnp.float32)
        p = instance.p_reward[t, instance.odours[t]]
        reward = choice * jax.random.bernoulli(k_reward, p).astype(jnp.float32)
        return choice, reward

    def modulator(self, instance, env, y, target):
        choice, reward = self._trial(instance, env, y)
        return choice * (reward - env.expected)

    def transition(self, instance, env: OdourState, y: Array) -> OdourState:
        choice, reward = self._trial(instance, env, y)
        t = jnp.minimum(env.t, self.n_steps - 1)
        expected = env.expected + self.baseline_rate * choice * (reward - env.expected)
        return OdourState(env.t + 1, env.key, env.choices.at[t].set(choice),
                          env.rewards.at[t].set(reward), expected)

    def record(self, instance, env: OdourState) -> dict[str, Array]:
        """What an experiment records of one episode: every trial's choice."""
        return {"choices": env.choices.astype(jnp.int32)}

    def outcomes(self, choices, modulators) -> np.ndarray:
        """Every trial's reward (0 on refused trials), ``(N, T)``, from the recorded
        choices and modulators: on an accepted trial the modulator is ``reward −
        expected``, the expectation following the same running mean as :meth:`transition`
        (rewards are 0 or 1, so rounding undoes float rounding). Recovered after the
        simulation rather than returned by it, so that the simulated recordings stay
        what they were bit for bit."""
        c = np.asarray(choices, np.float32)
        m = np.asarray(modulators, np.float32)
        expected = np.full(c.shape[0], 0.5, np.float32)
        out = np.zeros_like(m)
        for t in range(c.shape[1]):
            reward = c[:, t] * np.round(m[:, t] + expected)
            out[:, t] = reward
            expected = expected + np.float32(self.baseline_rate) * c[:, t] * (reward - expected)
        return out

    def loss(self, instance, state: NetState, env: OdourState, network=None) -> Array:
        return -jnp.mean(env.rewards)

    def metrics(self, instance, state: NetState, env: OdourState,
                network=None) -> dict[str, Array]:
        return {"reward": jnp.mean(env.rewards), "accepted": jnp.mean(env.choices)}

    def check_network(self, network: Network) -> None:
        if network.sizes[0] != 2 or network.sizes[-1] != 1:
            raise ConfigError(f"the odour-choice task needs a network 2 -> ... -> 1 (two "
                              f"odours in, the logit of accepting out); got {network.sizes}")
