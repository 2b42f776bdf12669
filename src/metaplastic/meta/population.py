"""What every population-based outer loop shares: evaluating members, and their fitness.

A population loop (:class:`~metaplastic.meta.es.EvolutionStrategy`,
:class:`~metaplastic.meta.learned.LearnedES`) evaluates all its members on the *same*
tasks (common random numbers), in one vmapped call, split across devices when there are
several (:mod:`metaplastic.devices`) and in sequential batches of ``population_batch``
members if set; with truncated unrolls every member keeps its own inner problems. A
member whose inner learning produced NaN/inf gets the worst finite fitness of its
generation.

Both loops take the options of :class:`PopulationEvaluation` (declared and checked once,
here) and end a generation the same way (:meth:`PopulationEvaluation.generation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metaplastic import capabilities as cap
from metaplastic import devices
from metaplastic._fields import check_fields
from metaplastic.errors import ConfigError
from metaplastic.meta.segments import select

Array = jax.Array
DIRECTIONS = ("minimize", "maximize")


def finite_fitness(values: Array, sign: float) -> tuple[Array, Array]:
    """Minimised fitness ``sign * values``; a non-finite member gets the generation's worst
    finite fitness. Returns ``(fitness, ok)``."""
    fit = sign * values
    ok = jnp.isfinite(fit)
    worst = jnp.max(jnp.where(ok, fit, -jnp.inf))
    return jnp.where(ok, fit, worst), ok


@dataclass(frozen=True)
class Searched:
    """What a population loop varies of θ: every entry (``index`` None: θ itself, as
    evosax takes it), or — where the rule holds some entries (a polynomial's excluded
    terms, :class:`~metaplastic.capabilities.HoldsEntries`) — a vector of the others;
    the held ones keep their values in every member and in the mean."""

    index: Any = None  # positions in θ raveled that are searched

    def vector(self, theta: Any) -> Any:
        """θ as the search sees it."""
        return theta if self.index is None else ravel_pytree(theta)[0][self.index]

    def theta(self, searched: Any, like: Any) -> Any:
        """θ with its searched entries from ``searched`` (the others as in ``like``)."""
        if self.index is None:
            return searched
        flat, unravel = ravel_pytree(like)
        return unravel(flat.at[self.index].set(searched))


def searched(objective: Any, theta: Any) -> Searched:
    """The entries of θ that act for the objective's rule: for a mixture (its parts share
    θ), those that act for any part's rule."""
    masks = [cap.held(p.rule, theta) for p in cap.parts(objective)
             if isinstance(p, cap.HasRule)]
    masks = [m for m in masks if m is not None]
    if not masks:
        return Searched()
    flat = [np.concatenate([np.ravel(np.asarray(x, bool)) for x in jax.tree.leaves(m)])
            for m in masks]
    held_by_all = np.logical_and.reduce(flat)
    return Searched(np.flatnonzero(~held_by_all)) if held_by_all.any() else Searched()


@dataclass(frozen=True)
class PopulationEvaluation:
    """Evaluation of a population of θ (a pytree with a leading member axis), and the
    options every population loop shares (checked by :meth:`check_population_options`)."""

    #: the chunk programs keep JAX's threefry loop (:func:`metaplastic.xla.threefry_mode`):
    #: the population's noise, unrolled, is fused by XLA into the antithetic concatenation
    #: as one slow kernel (``cartpole-hebbian``: 0.42 → 0.59 s per 10 generations)
    threefry: ClassVar[str] = "rolled"
    population: int = 16
    steps: int = 100
    #: the initial scale of the search distribution (every dimension)
    sigma: float = 0.1
    antithetic: bool = True  # mirrored pairs of members (where the strategy supports it)
    direction: str = "minimize"
    max_nan_skips: int = 20
    #: a generation counts as diverged (towards ``max_nan_skips``) when more than this
    #: share of its members diverged, when every member did, or when its mean θ did
    max_diverged_share: float = 1.0
    chunk: int = 10
    #: truncated unrolls: one generation per ``truncation`` inner steps, each member keeping
    #: its own inner problems (0: whole episodes)
    truncation: int = 0
    #: evaluate the population in sequential vmapped batches of this many members (0: all
    #: at once) — keeps the working set of per-synapse rules in cache; same results
    population_batch: int = 0
    #: split the population across devices when there are several
    shard: bool = True

    def __post_init__(self):
        check_fields(self)
        self.check_population_options()

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

    def evaluate_generation(self, objective: Any, pop: Any, key: Array, inner: Any = ()):
        """``(fitness, ok, inner)``: every member's minimised fitness on the same key (a
        diverged member gets the worst finite one), and the inner problems after it."""
        values, inner = self.evaluate_step(objective, pop, key, inner)
        fit, ok = finite_fitness(values, self.sign)
        return fit, ok, inner

    def generation(self, state: Any, new: Any, keep: Array, inner: Any, fit: Array,
                   ok: Array, value: Array, aux: dict, **extra: Array):
        """The end of a generation shared by every population loop: the new state where
        the step is kept (``keep``; the old one otherwise) with the members' inner
        problems, and the generation's record. ``value``/``aux``: the mean θ on whole
        episodes. A generation diverged when more than ``max_diverged_share`` of its
        members did, when it was not kept, or when its mean's value is not finite."""
        sign = self.sign
        too_many = jnp.mean(~ok) > self.max_diverged_share
        metrics = {
            "loss": value, "pop_best": sign * jnp.min(jnp.where(ok, fit, jnp.inf)),
            "pop_mean": sign * jnp.nanmean(jnp.where(ok, fit, jnp.nan)),  # finite members
            "pop_nonfinite": jnp.mean(~ok), "nonfinite": jnp.mean(~ok), "grad_norm": jnp.nan,
            **aux, **extra, "diverged": too_many | ~keep | ~jnp.isfinite(value),
            "skipped": ~keep}
        return new._replace(inner=select(keep, inner, state.inner)), metrics
