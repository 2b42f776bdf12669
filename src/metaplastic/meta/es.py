"""Evolution strategies as the outer loop, through evosax (any of its algorithms by name).

``EvolutionStrategy(strategy="cma_es", population=32, ...).run(objective, theta0, key=k)``
searches θ with no backpropagation: each generation asks the strategy for a population
of θ, evaluates all of them in one vmapped call on the *same* fresh tasks (common random
numbers), and tells the strategy their fitness. Generations run in jitted chunks of
``chunk`` between progress callbacks.

Direction: evosax **minimises**. ``direction`` says what the function handed to ``run``
wants — ``"minimize"`` for an :class:`~metaplastic.meta.Objective` (a loss; the default) or
``"maximize"`` for, e.g., a return — and the sign is applied here, once; tests fail if it
is flipped.

Divergence: a member whose inner learning produced NaN/inf gets the worst finite fitness
of its generation (and is counted in ``diverged``); a generation where every member
diverged leaves the strategy unchanged.

Salimans et al. 2017 (OpenAI-ES); Hansen 2016 (CMA-ES); Sehnke et al. 2010 (PGPE);
Schaul et al. 2011 (SNES); Lange 2023 (evosax).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metaplastic import xla
from metaplastic.errors import ConfigError, unknown_name
from metaplastic.meta.gradient import OPTIMIZERS, MetaResult, _theta_record, records_of

Array = jax.Array

#: short names for the strategies the issue tracker asks for; any evosax name also works
ALIASES = {"open_es": "Open_ES", "openai_es": "Open_ES", "cma_es": "CMA_ES", "pgpe": "PGPE",
           "snes": "SNES", "sep_cma_es": "Sep_CMA_ES", "xnes": "xNES", "simple_es": "SimpleES",
           "pes": "PersistentES", "persistent_es": "PersistentES"}
SHAPING = ("default", "centered_rank", "standardize", "normalize", "none")
DIRECTIONS = ("minimize", "maximize")


def _evosax_algorithms() -> dict[str, type]:
    from evosax.algorithms import algorithms

    return dict(algorithms)


def strategy_names() -> list[str]:
    """Every accepted strategy name: our short names and evosax's own."""
    return sorted(set(ALIASES) | set(_evosax_algorithms()))


def strategy_class(name: str) -> type:
    algos = _evosax_algorithms()
    cls = algos.get(ALIASES.get(name, name))
    if cls is None:
        raise unknown_name("ES strategy", name, strategy_names())
    return cls


def _shaping_fn(name: str):
    from evosax.core import fitness_shaping as fs

    return {"centered_rank": fs.centered_rank_fitness_shaping_fn,
            "standardize": fs.standardize_fitness_shaping_fn,
            "normalize": fs.normalize_fitness_shaping_fn,
            "none": fs.identity_fitness_shaping_fn}[name]


def _with_metrics(fn: Callable) -> Callable:
    """Accept ``fn(theta, key)`` returning a value or a ``(value, metrics)`` pair."""

    def wrapped(theta, key):
        out = fn(theta, key)
        return out if isinstance(out, tuple) else (out, {})

    return wrapped


def _finite(values: Array, sign: float) -> tuple[Array, Array]:
    """evosax fitness (minimised) from the user's values; a non-finite member gets the
    generation's worst finite fitness. Returns ``(fitness, ok)``."""
    fit = sign * values
    ok = jnp.isfinite(fit)
    worst = jnp.max(jnp.where(ok, fit, -jnp.inf))
    return jnp.where(ok, fit, worst), ok


def _metrics(state, active, value, fit, ok, sign, mean, aux, **extra) -> dict[str, Array]:
    any_bad = ~jnp.all(ok)
    return {
        "step": state.step + 1, "active": active, "loss": value,
        "pop_best": sign * jnp.min(jnp.where(ok, fit, jnp.inf)),
        "pop_mean": sign * jnp.mean(jnp.where(ok, fit, jnp.nan)),
        "diverged": active & any_bad, "skipped": active & ~jnp.any(ok),
        "nonfinite": jnp.mean(~ok), "grad_norm": jnp.nan,
        **extra, **_theta_record(mean), **aux,
    }


def _streak(state, active, ok) -> Array:
    """Generations in a row with a non-finite member."""
    return jnp.where(active, jnp.where(~jnp.all(ok), state.nan_streak + 1, 0),
                     state.nan_streak)


class ESState(NamedTuple):
    es_state: Any
    step: Array  # generations done
    nan_streak: Array
    inner: Any = None  # truncated unrolls: every member's inner problems in progress
    inner_step: Any = None  # truncated unrolls: steps of the current inner problems done


@dataclass(frozen=True)
class EvolutionStrategy:
    """An evosax strategy searching θ; ``steps`` generations of ``population`` members."""

    strategy: str = "open_es"
    population: int = 64
    steps: int = 100
    sigma: float = 0.1
    lr: float = 0.05  # for strategies that take an optax optimiser (OpenAI-ES, PGPE, SNES)
    optimizer: str = "adam"
    antithetic: bool = True  # where the strategy supports it
    fitness_shaping: str = "default"  # the strategy's own, or one of SHAPING
    direction: str = "minimize"
    max_nan_skips: int = 20
    chunk: int = 10
    #: truncated unrolls: one generation per ``truncation`` inner steps, each member keeping
    #: its own inner problems (0: whole episodes). With ``strategy="pes"`` (Persistent ES,
    #: Vicol et al. 2021) the estimate is unbiased across truncations; with any other
    #: strategy it is truncated ES (biased towards short horizons).
    truncation: int = 0
    #: evaluate the population in sequential vmapped batches of this many members (0: all
    #: at once) — keeps the working set of per-synapse rules in cache; same results
    population_batch: int = 0
    #: split the population across devices when there are several
    shard: bool = True

    def __post_init__(self):
        strategy_class(self.strategy)
        if self.population_batch < 0:
            raise ConfigError(f"population_batch must be >= 0, got {self.population_batch}")
        if self.truncation < 0:
            raise ConfigError(f"truncation must be >= 0 (0: whole episodes), "
                              f"got {self.truncation}")
        if self.persistent and not self.truncation:
            raise ConfigError("strategy 'pes' (Persistent ES) needs truncation > 0: it "
                              "estimates gradients across truncated unrolls")
        if self.fitness_shaping not in SHAPING:
            raise ConfigError(f"unknown fitness_shaping {self.fitness_shaping!r}; "
                              f"valid: {', '.join(SHAPING)}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction must be 'minimize' or 'maximize', got "
                              f"{self.direction!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; "
                              f"valid: {', '.join(OPTIMIZERS)}")
        for name in ("population", "steps", "chunk", "max_nan_skips"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.population < 2:
            raise ConfigError("an ES population needs at least 2 members")
        if not self.sigma > 0:
            raise ConfigError(f"sigma must be positive, got {self.sigma}")

    @property
    def persistent(self) -> bool:
        return strategy_class(self.strategy).__name__ == "PersistentES"

    @property
    def sign(self) -> float:
        """Multiplies the user's function into evosax's (minimised) fitness."""
        return 1.0 if self.direction == "minimize" else -1.0

    def make(self, theta0: Any, n_steps: int | None = None):
        """The evosax algorithm and its params for solutions shaped like ``theta0``
        (``n_steps``: the inner problem's length, for Persistent ES)."""
        cls = strategy_class(self.strategy)
        accepted = inspect.signature(cls.__init__).parameters
        kw: dict[str, Any] = {}
        if "use_antithetic_sampling" in accepted:
            kw["use_antithetic_sampling"] = self.antithetic
        if "optimizer" in accepted:
            kw["optimizer"] = OPTIMIZERS[self.optimizer](self.lr)
        if "std_schedule" in accepted:
            kw["std_schedule"] = optax.constant_schedule(self.sigma)
        if self.fitness_shaping != "default" and "fitness_shaping_fn" in accepted:
            kw["fitness_shaping_fn"] = _shaping_fn(self.fitness_shaping)
        pop = self.population
        if kw.get("use_antithetic_sampling") and pop % 2:
            raise ConfigError(f"antithetic sampling needs an even population, got {pop}")
        es = cls(pop, theta0, **kw)
        params = es.default_params
        if hasattr(params, "std_init"):
            params = params.replace(std_init=self.sigma)
        if self.persistent:
            params = params.replace(T=n_steps, K=self.truncation)
        return es, params

    def check_truncation(self, n_steps: int) -> None:
        if self.truncation and n_steps % self.truncation:
            raise ConfigError(f"truncation {self.truncation} must divide the inner "
                              f"problem's {n_steps} steps")

    def chunk_fn(self, fitness: Callable, theta0: Any) -> tuple[Callable, Callable]:
        """``(init(key) -> ESState, run_chunk(state, key, total) -> (state, metrics))``.

        ``fitness(theta, key) -> (value, metrics)`` is what ``direction`` refers to.
        """
        fitness_obj = fitness
        n_steps = None
        if self.truncation:
            if not hasattr(fitness, "segment"):
                raise ConfigError("truncated ES needs an Objective (start/segment), not a "
                                  "plain function")
            n_steps = fitness.n_steps
            self.check_truncation(n_steps)
        es, params = self.make(theta0, n_steps)
        sign = self.sign
        fitness = _with_metrics(fitness)

        def init(key):
            zero = jnp.zeros((), jnp.int32)
            if not self.truncation:
                return ESState(es.init(key, theta0, params), zero, zero)
            pop = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.population, *jnp.shape(x))),
                               theta0)
            inner = jax.vmap(lambda th: fitness_obj.start(th, key))(pop)
            return ESState(es.init(key, theta0, params), zero, zero, inner, zero)

        def generation(state: ESState, key, total):
            k_ask, k_eval, k_tell = jax.random.split(jax.random.fold_in(key, state.step), 3)
            pop, es_state = es.ask(k_ask, state.es_state, params)
            values = self.evaluate(fitness, pop, k_eval)
            fit, ok = _finite(values, sign)
            told, _ = es.tell(k_tell, pop, fit, es_state, params)
            active = state.step < total
            keep = active & jnp.any(ok)
            es_state = jax.tree.map(lambda a, b: jnp.where(keep, a, b), told, state.es_state)
            mean = es.get_mean(es_state)
            value, aux = fitness(mean, k_eval)
            new = ESState(es_state, state.step + active, _streak(state, active, ok))
            return new, _metrics(state, active, value, fit, ok, sign, mean, aux)

        step = generation
        if self.truncation:
            step = self._truncated_generation(fitness_obj, theta0, es, params)

        def run_chunk(state, key, total):
            return jax.lax.scan(lambda s, _: step(s, key, total), state, None,
                                length=self.chunk)

        return init, xla.jit(run_chunk)

    def evaluate(self, fitness: Callable, pop: Any, key: Array) -> Array:
        """Every member's fitness value on the same key (common random numbers).

        With several devices (and a population they divide) the members are split across
        them (``shard_map``), each device evaluating its share — in batches of
        ``population_batch`` if set. Same values as on one device.
        """
        n_dev = jax.device_count()
        if self.shard and n_dev > 1 and self.population % n_dev == 0:
            mesh = jax.sharding.Mesh(np.array(jax.devices()), ("members",))
            spec = jax.sharding.PartitionSpec("members")
            local = functools.partial(self._evaluate_here, fitness,
                                      size=self.population // n_dev)
            return jax.shard_map(local, mesh=mesh, in_specs=(spec, jax.sharding.PartitionSpec()),
                                 out_specs=spec, check_vma=False)(pop, key)
        return self._evaluate_here(fitness, pop, key, size=self.population)

    def _evaluate_here(self, fitness: Callable, pop: Any, key: Array, *, size: int) -> Array:
        if self.population_batch and self.population_batch < size:
            return jax.lax.map(lambda th: fitness(th, key)[0], pop,
                               batch_size=self.population_batch)
        return jax.vmap(fitness, in_axes=(0, None))(pop, key)[0]

    def _truncated_generation(self, objective: Any, theta0: Any, es, params):
        """A generation on one segment of ``truncation`` inner steps per member.

        Every member keeps its own inner problems between generations (the same tasks for
        all members: common random numbers); fresh tasks start when they finish.
        """
        sign, length, n = self.sign, self.truncation, objective.n_steps

        def generation(state: ESState, key, total):
            k_ask, k_eval = jax.random.split(jax.random.fold_in(key, state.step))
            k_tell = jax.random.fold_in(k_eval, 1)
            pop, es_state = es.ask(k_ask, state.es_state, params)
            first = state.inner_step == 0
            fresh = jax.vmap(lambda th: objective.start(th, k_eval))(pop)
            inner = jax.tree.map(lambda a, b: jnp.where(first, a, b), fresh, state.inner)
            values, _, new_inner = jax.vmap(
                lambda th, inn: objective.segment(th, inn, length, first))(pop, inner)
            fit, ok = _finite(values, sign)
            told, _ = es.tell(k_tell, pop, fit, es_state, params)
            active = state.step < total
            keep = active & jnp.any(ok)

            def pick(new, old):
                return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)

            es_state = pick(told, state.es_state)
            mean = es.get_mean(es_state)
            value, aux = objective(mean, k_eval)  # the mean on whole episodes, for the log
            new = ESState(es_state, state.step + active, _streak(state, active, ok),
                          pick(new_inner, state.inner),
                          jnp.where(keep, (state.inner_step + length) % n, state.inner_step))
            return new, _metrics(state, active, value, fit, ok, sign, mean, aux,
                                 truncation=jnp.asarray(length))

        return generation

    def run(self, fitness: Callable, theta0: Any, *, key: Array,
            progress: Callable[[list[dict]], None] | None = None) -> MetaResult:
        """Evolve θ from ``theta0`` for ``steps`` generations; returns the final mean θ."""
        from metaplastic.meta.gradient import check_divergence

        init, run_chunk = self.chunk_fn(fitness, theta0)
        es, _ = self.make(theta0, getattr(fitness, "n_steps", None) if self.truncation else None)
        k_init, k_run = jax.random.split(key)
        state = init(k_init)
        total = jnp.asarray(self.steps, jnp.int32)
        result = MetaResult(theta0, [], state)
        while int(state.step) < self.steps:
            state, metrics = run_chunk(state, k_run, total)
            records = records_of(metrics)
            result.theta, result.state = es.get_mean(state.es_state), state
            result.history.extend(records)
            if progress is not None:
                progress(records)
            check_divergence(records, int(state.nan_streak), self.max_nan_skips, False,
                             result)
        return result
