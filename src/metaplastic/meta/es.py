"""Evolution strategies as the outer loop, through evosax (any of its algorithms by name).

``EvolutionStrategy(strategy="cma_es", population=32, ...).run(objective, theta0, key=k)``
searches θ with no backpropagation: each generation asks the strategy for a population
of θ, evaluates all of them in one vmapped call on the *same* fresh tasks (common random
numbers), and tells the strategy their fitness. It is an outer loop of the shared
protocol (:mod:`metaplastic.meta.outer`), run by the shared driver; with ``truncation``
every member keeps its own inner problems between generations (the objective is wrapped
in :class:`~metaplastic.meta.segments.Truncated`; the generation is the same).

Direction: evosax **minimises**. ``direction`` says what the function handed to ``run``
wants — ``"minimize"`` for an :class:`~metaplastic.meta.Objective` (a loss; the default) or
``"maximize"`` for, e.g., a return — and the sign is applied here, once; tests fail if it
is flipped.

Divergence: a member whose inner learning produced NaN/inf gets the worst finite fitness
of its generation (counted in ``pop_nonfinite``); a generation where every member
diverged leaves the strategy unchanged. Such a generation, one whose mean θ diverges, or
one where more than ``max_diverged_share`` of the members diverged (default 1: only all)
counts as ``diverged`` towards ``max_nan_skips``.

Salimans et al. 2017 (OpenAI-ES); Hansen 2016 (CMA-ES); Sehnke et al. 2010 (PGPE);
Schaul et al. 2011 (SNES); Lange 2023 (evosax).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metaplastic import capabilities as cap
from metaplastic.errors import ConfigError, unknown_name
from metaplastic.meta.gradient import OPTIMIZERS
from metaplastic.meta.outer import OuterLoop
from metaplastic.meta.population import PopulationEvaluation, searched
from metaplastic.meta.segments import as_objective, select

Array = jax.Array

#: short names for common strategies; evosax's own names of the algorithms in
#: :func:`strategy_names` work too
ALIASES = {"open_es": "Open_ES", "openai_es": "Open_ES", "cma_es": "CMA_ES", "pgpe": "PGPE",
           "snes": "SNES", "sep_cma_es": "Sep_CMA_ES", "xnes": "xNES", "simple_es": "SimpleES",
           "pes": "PersistentES", "persistent_es": "PersistentES"}
SHAPING = ("default", "centered_rank", "standardize", "normalize", "none")


#: distribution-based evosax algorithms that fail inside a jitted generation with the
#: evosax version we test (tests/meta/test_outer_protocol.py runs every other accepted name)
UNSUPPORTED = {"LM_MA_ES": "needs concrete values inside its update",
               "CMAAnchoredLES": "converts traced values to numpy inside its update"}


def _evosax_algorithms() -> dict[str, type]:
    """evosax's search-distribution algorithms that run with only a population size and a
    solution template — the ask/tell shape this outer loop drives. Population-based ones
    (genetic algorithms, PSO, diffusion evolution) keep a population state of their own
    and are not offered."""
    from evosax.algorithms import algorithms
    from evosax.algorithms.distribution_based.base import DistributionBasedAlgorithm

    out = {}
    for name, cls in algorithms.items():
        if not issubclass(cls, DistributionBasedAlgorithm) or name in UNSUPPORTED:
            continue
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        required = [p.name for p in params if p.default is p.empty
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if set(required) <= {"population_size", "solution"}:
            out[name] = cls
    return out


def strategy_names(one_per_strategy: bool = False) -> list[str]:
    """Every accepted strategy name: our short names and the evosax algorithms this outer
    loop can drive; ``one_per_strategy``: one spelling per algorithm (our short name where
    it has one, else evosax's class name)."""
    algorithms = _evosax_algorithms()
    if not one_per_strategy:
        return sorted(set(ALIASES) | set(algorithms))
    short: dict[str, str] = {}
    for alias, target in ALIASES.items():  # the first alias of each algorithm
        short.setdefault(target, alias)
    return sorted({short.get(name, name) for name in algorithms})


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


class ESState(NamedTuple):
    es_state: Any  # evosax's state
    mean: Any  # the search distribution's mean θ
    inner: Any = ()  # truncated unrolls: every member's inner problems in progress


@dataclass(frozen=True)
class EvolutionStrategy(PopulationEvaluation, OuterLoop):
    """An evosax strategy searching θ; ``steps`` generations of ``population`` members."""

    strategy: str = "open_es"
    population: int = 64
    lr: float = 0.05  # for strategies that take an optax optimiser (OpenAI-ES, PGPE, SNES)
    optimizer: str = "adam"
    fitness_shaping: str = "default"  # the strategy's own, or one of SHAPING
    # truncation (PopulationEvaluation): with ``strategy="pes"`` (Persistent ES, Vicol et
    # al. 2021) the estimate is unbiased across truncations; with any other strategy it is
    # truncated ES (biased towards short horizons)
    kind = "evolutionary"  # for metaplastic check (meta.outer.measure_kind)

    def __post_init__(self):
        strategy_class(self.strategy)
        super().__post_init__()
        if self.persistent and not self.truncation:
            raise ConfigError("strategy 'pes' (Persistent ES) needs truncation > 0: it "
                              "estimates gradients across truncated unrolls")
        if self.fitness_shaping not in SHAPING:
            raise ConfigError(f"unknown fitness_shaping {self.fitness_shaping!r}; "
                              f"valid: {', '.join(SHAPING)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; "
                              f"valid: {', '.join(OPTIMIZERS)}")
        if self.antithetic and self.population % 2 and "use_antithetic_sampling" in \
                inspect.signature(strategy_class(self.strategy).__init__).parameters:
            raise ConfigError(f"antithetic sampling needs an even population, got "
                              f"{self.population} (or set antithetic = false)")

    @property
    def persistent(self) -> bool:
        return strategy_class(self.strategy).__name__ == "PersistentES"

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
        es = cls(self.population, theta0, **kw)
        params = es.default_params
        if hasattr(params, "std_init"):
            params = params.replace(std_init=self.sigma)
        if self.persistent:
            params = params.replace(T=n_steps, K=self.truncation)
        return es, params

    def init(self, objective: Any, theta0: Any, key: Array) -> ESState:
        k_init, _ = jax.random.split(key)
        space = searched(objective, theta0)  # without the entries that do not act
        start = space.vector(theta0)
        es, params = self.make(start, objective.n_steps if self.truncation else None)
        es_state = es.init(k_init, start, params)
        mean = space.theta(es.get_mean(es_state), theta0)
        return self.restart(objective, ESState(es_state, mean), k_init)

    def theta(self, state: ESState) -> Any:
        return state.mean

    def restart(self, objective: Any, state: ESState, key: Array) -> ESState:
        """Fresh inner problems for every member (the same tasks: common random numbers)."""
        return state._replace(inner=self.restart_members(objective, state.mean, key))

    def check(self, objective: Any) -> None:
        if self.persistent and not isinstance(objective, cap.Segmented):
            raise ConfigError("strategy 'pes' needs an Objective (start/segment/n_steps)")
        super().check(objective)

    def step(self, objective: Any, state: ESState, key: Array, t: Array):
        """One generation: ask, evaluate every member on the same tasks, tell."""
        space = searched(objective, state.mean)
        es, params = self.make(space.vector(state.mean),
                               objective.n_steps if self.truncation else None)
        _, k_run = jax.random.split(key)
        k_ask, k_eval, k_tell = jax.random.split(jax.random.fold_in(k_run, t), 3)
        pop, asked = es.ask(k_ask, state.es_state, params)
        members = pop if space.index is None else \
            jax.vmap(lambda v: space.theta(v, state.mean))(pop)
        fit, ok, inner = self.evaluate_generation(objective, members, k_eval, state.inner)
        told, _ = es.tell(k_tell, pop, fit, asked, params)
        keep = jnp.any(ok)  # a generation where every member diverged changes nothing
        es_state = select(keep, told, state.es_state)
        mean = space.theta(es.get_mean(es_state), state.mean)
        value, aux = objective(mean, k_eval)  # the mean on whole episodes, for the log
        return self.generation(state, ESState(es_state, mean), keep, inner, fit, ok, value,
                               aux)

    def evaluate(self, objective: Any, pop: Any, key: Array) -> Array:
        """Every member's value (whole episodes) on the same key (common random numbers)."""
        return self.evaluate_step(as_objective(objective), pop, key, ())[0]
