"""What every population-based outer loop shares: evaluating members, and their fitness.

A population loop (:class:`~metaplastic.meta.es.EvolutionStrategy`,
:class:`~metaplastic.meta.learned.LearnedES`) evaluates all its members on the *same*
tasks (common random numbers), in one vmapped call, split across devices when there are
several (:mod:`metaplastic.devices`) and in sequential batches of ``population_batch``
members if set; with truncated unrolls every member keeps its own inner problems. A
member whose inner learning produced NaN/inf gets the worst finite fitness of its
generation.

The mixin reads three fields of the loop: ``population``, ``population_batch``, ``shard``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from metaplastic import devices
from metaplastic.errors import ConfigError

Array = jax.Array
DIRECTIONS = ("minimize", "maximize")


def finite_fitness(values: Array, sign: float) -> tuple[Array, Array]:
    """Minimised fitness ``sign * values``; a non-finite member gets the generation's worst
    finite fitness. Returns ``(fitness, ok)``."""
    fit = sign * values
    ok = jnp.isfinite(fit)
    worst = jnp.max(jnp.where(ok, fit, -jnp.inf))
    return jnp.where(ok, fit, worst), ok


class PopulationEvaluation:
    """Evaluation of a population of θ (a pytree with a leading member axis), and the
    options every population loop shares (checked by :meth:`check_population_options`)."""

    population: int
    population_batch: int = 0
    shard: bool = True
    direction: str = "minimize"

    def check_population_options(self) -> None:
        """ConfigError for a bad population, steps, chunk, max_nan_skips, sigma,
        direction, max_diverged_share, truncation or population_batch."""
        for name in ("population", "steps", "chunk", "max_nan_skips"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.population < 2:
            raise ConfigError("an ES population needs at least 2 members")
        if not self.sigma > 0:
            raise ConfigError(f"sigma must be positive, got {self.sigma}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction must be 'minimize' or 'maximize', got "
                              f"{self.direction!r}")
        if not 0 <= self.max_diverged_share <= 1:
            raise ConfigError(f"max_diverged_share must be in [0, 1], got "
                              f"{self.max_diverged_share}")
        if self.truncation < 0:
            raise ConfigError(f"truncation must be >= 0 (0: whole episodes), "
                              f"got {self.truncation}")
        if self.population_batch < 0:
            raise ConfigError(f"population_batch must be >= 0, got {self.population_batch}")

    @property
    def sign(self) -> float:
        """Multiplies the user's function into a minimised fitness."""
        return 1.0 if self.direction == "minimize" else -1.0

    def members_at_once(self) -> int:
        """Members evaluated together on one device (split across devices, in batches of
        ``population_batch``)."""
        size = devices.per_device(self.population, self.shard)
        if self.population_batch and self.population_batch < size:
            size = self.population_batch
        return size

    def restart_members(self, objective: Any, mean: Any, key: Array) -> Any:
        """Fresh inner problems for every member (the same tasks: common random numbers)."""
        pop = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.population, *jnp.shape(x))),
                           mean)
        return jax.vmap(lambda th: objective.init_inner(th, key))(pop)

    def evaluate_step(self, objective: Any, pop: Any, key: Array, inner: Any = ()):
        """Every member's value on the same key (common random numbers), and its inner
        problems after the step; members split across devices (:mod:`metaplastic.devices`,
        unless ``shard`` is off). Same values on one device as on several."""
        size = devices.per_device(self.population, self.shard)
        # the population and the fitness whole on every device around the split: the
        # search's own update (recombination, ranking) is then one device's arithmetic
        pop = devices.gather(pop, self.population, self.shard)
        values, inner = devices.spread(
            lambda b, k: self._evaluate_here(objective, b[0], k, b[1], size=size),
            (pop, inner), key, size=self.population, allowed=self.shard)
        return devices.gather(values, self.population, self.shard), inner

    def _evaluate_here(self, objective: Any, pop: Any, key: Array, inner: Any, *, size: int):
        def one(th, inn):
            value, _, inn = objective.step_value(th, key, inn)
            return value, inn

        if self.population_batch and self.population_batch < size:
            return jax.lax.map(lambda a: one(*a), (pop, inner),
                               batch_size=self.population_batch)
        return jax.vmap(one)(pop, inner)
