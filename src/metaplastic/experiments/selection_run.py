"""Meta-meta runs: train the learned ES's selection network φ (preset ``selection-meta``).

``metaplastic run selection-meta`` trains φ with the ordinary meta-gradient outer loop
and driver on a :class:`~metaplastic.meta.metameta.SelectionObjective`, and writes a run
directory::

    config.toml      the configuration (study = "selection-meta"; metaplastic resume works)
    metrics.jsonl    one record per meta-meta step
    phi.npz          the trained selection network (plain arrays; use it with
                     meta.outer = "learned-es", meta.phi = "RUN/phi.npz")
    checkpoint.npz   the driver's state after the last chunk
    summary.json     held-in comparison with φ at initialisation, timing, provenance
    selection.json   what the learned selection does (weights by rank, scale over
                     generations) beside OpenAI-ES's and CMA-ES's, for the plots
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import streams
from metaplastic._fields import coerce_kwargs
from metaplastic._stats import mean_ci
from metaplastic.errors import ConfigError
from metaplastic.experiments.study import Study
from metaplastic.meta import MetaGradient, selection
from metaplastic.meta.metameta import SelectionObjective

KIND = "selection-meta"

#: the training problems of the shipped φ: analytic families of several dimensions and
#: population sizes, noisy and multimodal ones, and a plasticity family (delta rules)
PROBLEMS = (
    {"name": "quadratic", "dim": 2, "population": 8, "instances": 8},
    {"name": "quadratic", "dim": 16, "population": 16, "instances": 4, "noise": 0.1,
     "jitter": 0.3},
    {"name": "quadratic", "dim": 24, "population": 16, "instances": 4, "jitter": 1.0,
     "floor": 0.3},
    {"name": "quadratic", "dim": 12, "population": 16, "instances": 4, "jitter": 0.3,
     "ceiling": 0.7},
    {"name": "quadratic", "dim": 20, "population": 16, "instances": 4, "jitter": 0.5,
     "cliff": 1.5},
    {"name": "quadratic", "dim": 40, "population": 32, "instances": 4, "rotate": False,
     "condition": 1000.0},
    {"name": "rosenbrock", "dim": 6, "population": 16, "instances": 4},
    {"name": "rastrigin", "dim": 10, "population": 16, "instances": 4},
    {"name": "delta-rule", "population": 16, "instances": 4},
    {"name": "delta-rule", "n_in": 10, "n_out": 5, "tasks": 1, "population": 32,
     "instances": 2},
)


@dataclass(frozen=True)
class SelectionConfig:
    """A meta-meta run: φ trained by backprop through ``generations`` generations."""

    name: str = KIND
    seed: int = 0
    problems: tuple = PROBLEMS
    generations: int = 100
    sigma_range: tuple = (0.01, 0.3)
    hidden: int = 16
    #: how the meta-meta loss averages the generations ("uniform" or "late": ∝ t)
    weighting: str = "uniform"
    #: the learned ES's sigma_floor in the unrolled searches (deploy φ with the same)
    sigma_floor: float = 0.0
    meta: dict = field(default_factory=lambda: dict(steps=400, lr=3e-3, schedule="cosine",
                                                    clip=1.0, chunk=25, max_nan_skips=50))
    study: str = KIND

    def __post_init__(self):
        if self.study != KIND:
            raise ConfigError(f"study must be {KIND!r}, got {self.study!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.hidden < 1:
            raise ConfigError(f"hidden must be >= 1, got {self.hidden}")
        object.__setattr__(self, "problems", tuple(dict(p) for p in self.problems))
        object.__setattr__(self, "sigma_range", tuple(float(v) for v in self.sigma_range))
        self.objective()
        self.outer()

    def objective(self) -> SelectionObjective:
        return SelectionObjective(self.problems, self.generations, self.sigma_range,
                                  weighting=self.weighting, sigma_floor=self.sigma_floor)

    def outer(self) -> MetaGradient:
        return MetaGradient(**coerce_kwargs(MetaGradient, dict(self.meta),
                                            f"[meta] of {self.name}"))


def selection_meta() -> SelectionConfig:
    """Train the learned ES's selection network by backprop through 100 unrolled
    generations on ten families of problems (analytic ones, some noisy, jittered, on
    plateaus or with cliffs like a rule search's fitness, and delta-rule plasticity
    searches), 400 meta-meta steps of Adam."""
    return SelectionConfig()


#: meta-meta presets (``metaplastic run NAME``)
PRESETS = {KIND: selection_meta}


def from_dict(d: dict) -> SelectionConfig:
    d = {k: v for k, v in d.items() if (k, v) != ("kind", KIND)}  # written before studies
    names = {f.name for f in dataclasses.fields(SelectionConfig)}
    bad = sorted(set(d) - names)
    if bad:
        raise ConfigError(f"unknown key(s) {bad} in a {KIND} config; valid: {sorted(names)}")
    return SelectionConfig(**d)


def held_in(cfg: SelectionConfig, phi: dict, seeds: int = 8) -> tuple[float, float]:
    """Mean ± 95% CI of the meta-meta loss of ``phi`` over ``seeds`` fresh draws of the
    training problems (keys no training step used)."""
    objective = cfg.objective()
    f = jax.jit(lambda p, k: objective(p, k)[0])
    mean, ci, _ = mean_ci(float(f(phi, jax.random.key(streams.HELD_IN + s))) for s in range(seeds))
    return mean, ci


def describe(phi: dict, populations=(8, 16, 64)) -> dict:
    """What the learned selection does, beside OpenAI-ES's and CMA-ES's: recombination
    weight by fitness rank (for several population sizes), and the mean σ over
    generations on a 10-dimensional sphere from σ0 = 1."""
    out: dict[str, Any] = {"weights": {}}
    for n in populations:
        fitness = jnp.arange(n, dtype=jnp.float32)  # member 0 is the best (minimised)
        w = selection.recombination_weights(phi, fitness)
        ranks = np.arange(n)
        centred = 0.5 - ranks / (n - 1)  # OpenAI-ES: centred ranks (best +0.5), z-normalised
        mu = n // 2
        cma = np.maximum(0, np.log((n + 1) / 2) - np.log(ranks + 1))
        cma[mu:] = 0
        out["weights"][str(n)] = {"learned": np.asarray(w).tolist(),
                                  "openai_es": (centred / np.abs(centred).sum()).tolist(),
                                  "cma_es": (cma / cma.sum()).tolist()}
    from metaplastic.meta.metameta import Quadratic

    sphere = Quadratic(dim=10, condition=1.0, rotate=False)
    params = {"q": jnp.eye(10), "lam": jnp.ones(10), "c": jnp.zeros(10),
              "noise": jnp.zeros(())}
    sigma, fitness = np.mean([_sphere_curve(phi, sphere, params, jax.random.key(s))
                              for s in range(4)], axis=0)
    cma_sigma, cma_fitness = np.mean([_cma_curve(jax.random.key(s)) for s in range(4)],
                                     axis=0)
    out["sphere10"] = {"sigma": sigma.tolist(), "fitness": fitness.tolist(),
                       "cma_es_sigma": cma_sigma.tolist(), "cma_es_fitness": cma_fitness.tolist(),
                       "openai_es_sigma": 1.0}
    return out


def _cma_curve(key, generations: int = 60, population: int = 16, dim: int = 10):
    """(2, generations): evosax CMA-ES's σ and its mean's fitness on the same sphere."""
    from evosax.algorithms import CMA_ES

    k_start, k_run = jax.random.split(key)
    mean = jax.random.normal(k_start, (dim,))
    es = CMA_ES(population, mean)
    params = es.default_params.replace(std_init=1.0)
    state = es.init(k_run, mean, params)
    sig, fit = [], []
    for g in range(generations):
        k_ask, k_tell = jax.random.split(jax.random.fold_in(k_run, g))
        pop, state = es.ask(k_ask, state, params)
        state, _ = es.tell(k_tell, pop, jnp.mean(pop ** 2, axis=1), state, params)
        sig.append(float(state.std))
        fit.append(float(jnp.mean(es.get_mean(state) ** 2)))
    return np.array([sig, fit])


def _sphere_curve(phi, problem, params, key, generations: int = 60, population: int = 16):
    """(2, generations): the geometric-mean σ and the mean's fitness per generation."""
    m = problem.start(key, params)
    s = selection.init_search(problem.dim, 1.0)
    sig, fit = [], []
    for g in range(generations):
        k = jax.random.fold_in(key, g)
        eps = selection.perturbations(k, population, problem.dim)
        f = jax.vmap(lambda x: problem.value(params, x))(m + jnp.exp(s.log_sigma) * eps)
        m, s, info = selection.update(phi, s, m, eps, f, jnp.float32(g / generations))
        sig.append(float(info["sigma"]))
        fit.append(float(problem.value(params, m)))
    return np.array([sig, fit])


@dataclass(frozen=True)
class SelectionStudy(Study):
    """Meta-meta training of the learned ES's selection network φ (module docstring)."""

    name = KIND
    what = "the learned ES's selection network"
    training = "meta-meta training"
    loss_name = "meta-meta loss"
    theta_file = "phi.npz"
    hint = "use its φ with --set meta.outer=learned-es --set meta.phi=RUN/phi.npz"

    def presets(self):
        return dict(PRESETS)

    def from_dict(self, d: dict) -> SelectionConfig:
        return from_dict(d)

    def to_dict(self, cfg: SelectionConfig) -> dict:
        return dataclasses.asdict(cfg)

    def build(self, cfg: SelectionConfig, evaluation: bool = True) -> Built:
        return Built(cfg.outer(), cfg.objective())

    def init(self, cfg, built, key):
        return selection.init_phi(key, cfg.hidden)

    def save_theta(self, run, theta) -> None:
        selection.save_phi(run.path / "phi.npz", theta)

    def conclude(self, cfg, built, theta, theta0, run) -> dict:
        init_mean, init_ci = held_in(cfg, theta0)
        mean, ci = held_in(cfg, theta)
        run.write_json("selection.json", describe(theta))
        return {"held_in": {"what": "meta-meta loss (mean log normalised fitness of the "
                                    "search mean) on 8 fresh draws of the training problems",
                            "trained": [mean, ci], "initial": [init_mean, init_ci]}}

    def describe(self, summary: dict, run) -> list[str]:
        if "held_in" not in summary:
            return []
        held = summary["held_in"]
        phi = run.path / "phi.npz"
        return [f"held-in meta-meta loss: trained {held['trained'][0]:.3f} ± "
                f"{held['trained'][1]:.3f}, at initialisation {held['initial'][0]:.3f} ± "
                f"{held['initial'][1]:.3f} (lower: faster search)",
                f"selection network: {phi}  (use it: --set meta.outer=learned-es --set "
                f"meta.phi={phi})"]

    def report(self, run) -> list[Path]:
        if not (run.path / "selection.json").is_file():
            return []
        from metaplastic.report.selection_plots import plot_selection

        return [plot_selection(run.path)]


@dataclass(frozen=True)
class Built:
    """What the lifecycle trains: the outer loop and the selection objective."""

    outer: MetaGradient
    objective: SelectionObjective
