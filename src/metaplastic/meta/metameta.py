"""Meta-meta training: the learned ES's selection network φ, trained by backpropagation
through unrolled generations.

:class:`SelectionObjective` unrolls ``generations`` generations of the learned ES
(:mod:`metaplastic.meta.selection`) on fresh instances of differentiable training
problems and returns the mean over generations and problems of the normalised fitness of
the search mean, ``log((f(m_t) − f*) / (f(m_0) − f*))`` (``f*`` = 0 where the optimum is
unknown). Its gradient with respect to φ flows through the recombination (the members'
z-scored fitness and their positions) and through the fitness of every later generation;
each generation is recomputed in the backward pass (``jax.checkpoint``), so memory grows
with the number of generations only by their small carried state. It has the
whole-episode objective interface, so the ordinary :class:`~metaplastic.meta.MetaGradient`
loop and driver train φ (chunks, NaN skips, checkpoints, resume).

Training problems (none of them a held-out rule search): rotated ill-conditioned
quadratics (optionally with additive evaluation noise), shifted Rosenbrock, shifted
Rastrigin (multimodal), and a plasticity family — a linear student learning a random
linear teacher online with a six-term local rule, fresh tasks every generation (a noisy
fitness, like real rule searches), whose best rules are delta rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError
from metaplastic.meta import selection
from metaplastic.meta.objective import WholeEpisodes
from metaplastic.meta.population import finite_fitness
from metaplastic.meta.segments import select

Array = jax.Array


def _log_uniform(key: Array, lo: float, hi: float, shape=()) -> Array:
    return jnp.exp(jax.random.uniform(key, shape, minval=np.log(lo), maxval=np.log(hi)))


@dataclass(frozen=True)
class Quadratic:
    """``f(x) = mean_k λ_k (Q (x − c))_k²``: a random rotation ``Q``, eigenvalues
    log-uniform up to ``condition`` (mean 1). What the search sees may be perturbed like a
    rule search's fitness: additive Gaussian noise of up to ``noise`` × f(m_0); the
    centre moved by ``jitter`` × N(0, I) at every generation, the same for every member
    (fresh tasks: common random numbers); values below ``floor`` × f(m_0) reported as
    that floor (a plateau, like a return at its cap); values above ``ceiling`` × f(m_0)
    reported as that ceiling (a plateau far from the optimum, like episodes that fail at
    once: the search starts on it); NaN where the value exceeds ``cliff`` × f(m_0) (like
    inner learning that diverges). The meta-meta loss uses the true ``f``."""

    dim: int
    condition: float = 100.0
    noise: float = 0.0
    jitter: float = 0.0
    floor: float = 0.0
    ceiling: float = 0.0
    cliff: float = 0.0
    rotate: bool = True
    name = "quadratic"

    def sample(self, key: Array) -> dict:
        kq, kl, kc, kn = jax.random.split(key, 4)
        q = (jnp.linalg.qr(jax.random.normal(kq, (self.dim, self.dim)))[0] if self.rotate
             else jnp.eye(self.dim))
        lam = _log_uniform(kl, 1.0, self.condition, (self.dim,))
        return {"q": q, "lam": lam / jnp.sum(lam) * self.dim,
                "c": jax.random.normal(kc, (self.dim,)),
                "noise": jax.random.uniform(kn, (), maxval=self.noise)}

    def value(self, p: dict, x: Array) -> Array:
        return jnp.mean(p["lam"] * (p["q"] @ (x - p["c"])) ** 2)

    def noisy(self, p: dict, x: Array, key: Array, scale: Array) -> Array:
        k_noise, k_jitter = jax.random.split(key)
        shift = self.jitter * jax.random.normal(k_jitter, (self.dim,))
        f = self.value(p, x - shift) + p["noise"] * scale * jax.random.normal(k_noise)
        f = jnp.maximum(f, self.floor * scale)
        f = jnp.minimum(f, self.ceiling * scale) if self.ceiling else f
        if self.cliff:  # beyond it, "learning diverges": NaN
            f = jnp.where(f > self.cliff * scale, jnp.nan, f)
        return f

    def start(self, key: Array, p: dict) -> Array:
        return p["c"] + jax.random.normal(key, (self.dim,))


@dataclass(frozen=True)
class Rosenbrock:
    """Shifted Rosenbrock, ``Σ 100 (u_{k+1} − u_k²)² + (1 − u_k)²`` at ``u = x − c + 1``."""

    dim: int
    name = "rosenbrock"

    def sample(self, key: Array) -> dict:
        return {"c": 0.5 * jax.random.normal(key, (self.dim,))}

    def value(self, p: dict, x: Array) -> Array:
        u = x - p["c"] + 1.0
        return jnp.mean(100 * (u[1:] - u[:-1] ** 2) ** 2 + (1 - u[:-1]) ** 2)

    def noisy(self, p, x, key, scale):
        return self.value(p, x)

    def start(self, key: Array, p: dict) -> Array:
        return p["c"] + 0.5 * jax.random.normal(key, (self.dim,))


@dataclass(frozen=True)
class Rastrigin:
    """Shifted Rastrigin (multimodal): ``mean (x−c)² + A (1 − cos 2π(x−c))``, A in [0, 2]."""

    dim: int
    name = "rastrigin"

    def sample(self, key: Array) -> dict:
        kc, ka = jax.random.split(key)
        return {"c": jax.random.normal(kc, (self.dim,)),
                "a": jax.random.uniform(ka, (), maxval=2.0)}

    def value(self, p: dict, x: Array) -> Array:
        u = x - p["c"]
        return jnp.mean(u ** 2 + p["a"] * (1 - jnp.cos(2 * jnp.pi * u)))

    def noisy(self, p, x, key, scale):
        return self.value(p, x)

    def start(self, key: Array, p: dict) -> Array:
        return p["c"] + 2.0 * jax.random.normal(key, (self.dim,))


@dataclass(frozen=True)
class DeltaRule:
    """A plasticity search: θ (6 numbers) weights the local terms
    ``[pre·err, pre·post, post²·w, w, err, pre]`` of ``Δw_ij = η Σ θ_k term_k`` for a
    linear student ``post = W pre`` learning a random linear teacher online for
    ``inner_steps`` steps from ``W = 0``; the fitness is the student's normalised error on
    fresh inputs, over ``tasks`` fresh teachers per evaluation (a noisy fitness)."""

    n_in: int = 6
    n_out: int = 3
    inner_steps: int = 20
    tasks: int = 4
    eta: float = 0.1
    dim = 6
    name = "delta-rule"

    def sample(self, key: Array) -> dict:
        return {"key": jax.random.key_data(key)}

    def _loss(self, theta: Array, key: Array) -> Array:
        kt, kx, kq = jax.random.split(key, 3)
        teacher = jax.random.normal(kt, (self.n_out, self.n_in)) / np.sqrt(self.n_in)
        xs = jax.random.normal(kx, (self.inner_steps, self.n_in))

        def step(w, x):
            post = w @ x
            err = teacher @ x - post
            terms = (jnp.outer(err, x), jnp.outer(post, x), (post ** 2)[:, None] * w, w,
                     jnp.broadcast_to(err[:, None], w.shape),
                     jnp.broadcast_to(x[None, :], w.shape))
            dw = self.eta * sum(c * t for c, t in zip(theta, terms, strict=True))
            return jnp.clip(w + dw, -10.0, 10.0), None

        w, _ = jax.lax.scan(step, jnp.zeros((self.n_out, self.n_in)), xs)
        xq = jax.random.normal(kq, (16, self.n_in))
        err = jnp.mean(jnp.sum((xq @ (w - teacher).T) ** 2, -1))
        return err / jnp.mean(jnp.sum((xq @ teacher.T) ** 2, -1))

    def fresh(self, theta: Array, key: Array) -> Array:
        keys = jax.random.split(key, self.tasks)
        return jnp.mean(jax.vmap(lambda k: self._loss(theta, k))(keys))

    def value(self, p: dict, x: Array) -> Array:
        return self.fresh(x, jax.random.wrap_key_data(p["key"]))

    def noisy(self, p, x, key, scale):
        return self.fresh(x, key)

    def start(self, key: Array, p: dict) -> Array:
        return 0.3 * jax.random.normal(key, (self.dim,))


#: problem families by name (``selection-meta``'s ``problems`` table)
PROBLEMS = {"quadratic": Quadratic, "rosenbrock": Rosenbrock, "rastrigin": Rastrigin,
            "delta-rule": DeltaRule}


def make_problem(spec: dict) -> tuple[Any, int, int]:
    """``(problem, population, instances)`` from a table ``{name, population, instances,
    ...problem options}``."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"a training problem is a table with a 'name' (one of "
                          f"{', '.join(PROBLEMS)}), got {spec!r}")
    opts = dict(spec)
    name = opts.pop("name")
    if name not in PROBLEMS:
        raise ConfigError(f"unknown training problem {name!r}; valid: {', '.join(PROBLEMS)}")
    pop, inst = int(opts.pop("population", 16)), int(opts.pop("instances", 4))
    if pop < 2 or pop % 2 or inst < 1:
        raise ConfigError(f"problem {name!r}: population must be even and >= 2, instances "
                          f">= 1; got {pop}, {inst}")
    try:
        return PROBLEMS[name](**opts), pop, inst
    except TypeError as e:
        raise ConfigError(f"problem {name!r}: {e}") from None


def search_curve(phi: dict, problem: Any, params: dict, key: Array, *, population: int,
                 generations: int, sigma_range: tuple[float, float],
                 remat: bool = True, sigma_floor: float = 0.0) -> tuple[Array, Array]:
    """The learned ES on one problem instance: ``(f(m_t) for t = 1..G, f(m_0))``; with
    ``remat`` every generation is recomputed in the backward pass (``jax.checkpoint``):
    only the carried mean and search state are stored per generation."""
    k_start, k_sigma, k_run = jax.random.split(key, 3)
    m0 = problem.start(k_start, params)
    f0 = problem.value(params, m0)
    search = selection.init_search(problem.dim, _log_uniform(k_sigma, *sigma_range))

    def generation(carry, k):
        m, s = carry
        k_eps, k_fit = jax.random.split(k)
        eps = selection.perturbations(k_eps, population, problem.dim)
        x = m + jnp.exp(s.log_sigma) * eps
        fit = jax.vmap(lambda xi: problem.noisy(params, xi, k_fit, f0))(x)
        # as deployed: diverged members get the worst finite fitness; a generation where
        # every member diverged changes nothing
        fit, ok = finite_fitness(fit, 1.0)
        fit = jnp.where(jnp.any(ok), fit, 0.0)
        new_m, new_s, _ = selection.update(phi, s, m, eps, fit,
                                           s.t.astype(jnp.float32) / generations,
                                           sigma_floor)
        m, s = select(jnp.any(ok), (new_m, new_s), (m, s))
        return (m, s), problem.value(params, m)

    body = jax.checkpoint(generation) if remat else generation
    _, curve = jax.lax.scan(body, (m0, search), jax.random.split(k_run, generations))
    return curve, f0


@dataclass(frozen=True)
class SelectionObjective(WholeEpisodes):
    """The meta-meta loss of φ: mean normalised log-fitness of the search mean over
    ``generations`` generations, over every training problem's fresh instances."""

    problems: tuple = ({"name": "quadratic", "dim": 8},)
    generations: int = 40
    sigma_range: tuple = (0.03, 1.0)  # initial scale, log-uniform (problems at scale ~1)
    #: the normalised fitness is floored here before the log: precision beyond it is
    #: worth nothing to a rule search (and would reward collapsing the scale)
    floor: float = 1e-3
    remat: bool = True  # recompute generations in the backward pass (bounded memory)
    #: how the generations' normalised log-fitness is averaged: "uniform" (every
    #: generation alike: anytime performance) or "late" (generation t weighs ∝ t: what a
    #: search ends with counts most, as a rule search's final mean is what it returns)
    weighting: str = "uniform"
    #: the learned ES's ``sigma_floor`` in the unrolled searches (deploy φ with the same)
    sigma_floor: float = 0.0

    def __post_init__(self):
        if not 0 <= self.sigma_floor < 1:
            raise ConfigError(f"sigma_floor is a share of the initial scale in [0, 1), got "
                              f"{self.sigma_floor}")
        if self.weighting not in ("uniform", "late"):
            raise ConfigError(f"weighting must be 'uniform' or 'late', got {self.weighting!r}")
        if self.generations < 1:
            raise ConfigError(f"generations must be >= 1, got {self.generations}")
        if not self.problems:
            raise ConfigError("selection-meta needs at least one training problem")
        lo, hi = self.sigma_range
        if not 0 < lo <= hi:
            raise ConfigError(f"sigma_range must be 0 < lo <= hi, got {self.sigma_range}")
        object.__setattr__(self, "_made", tuple(make_problem(p) for p in self.problems))

    def labels(self) -> list[str]:
        return [f"{p.name}{p.dim}/N{pop}" for p, pop, _ in self._made]

    def family_losses(self, phi: dict, key: Array) -> list[Array]:
        out = []
        for i, (problem, pop, inst) in enumerate(self._made):
            k_params, k_run = jax.random.split(jax.random.fold_in(key, i))
            params = jax.vmap(problem.sample)(jax.random.split(k_params, inst))

            def one(p, k, problem=problem, pop=pop):
                curve, f0 = search_curve(phi, problem, p, k, population=pop,
                                         generations=self.generations,
                                         sigma_range=tuple(self.sigma_range),
                                         remat=self.remat,
                                         sigma_floor=self.sigma_floor)
                logs = jnp.log(jnp.maximum(curve / f0, self.floor))
                if self.weighting == "late":
                    w = jnp.arange(1, self.generations + 1, dtype=logs.dtype)
                    return jnp.sum(w * logs) / jnp.sum(w)
                return jnp.mean(logs)

            out.append(jax.vmap(one)(params, jax.random.split(k_run, inst)))
        return out

    def __call__(self, phi: dict, key: Array) -> tuple[Array, dict]:
        losses = self.family_losses(phi, key)
        flat = jnp.concatenate(losses)
        value = jnp.mean(jnp.stack([jnp.mean(v) for v in losses]))  # families weigh alike
        aux = {"task_loss": value, "nonfinite": jnp.mean(~jnp.isfinite(flat))}
        aux |= {f"task_loss[{lab}]": jnp.mean(v) for lab, v in zip(self.labels(), losses,
                                                                   strict=True)}
        return value, aux

    def value_and_grad(self, phi: dict, key: Array):
        (value, aux), grads = jax.value_and_grad(self.__call__, has_aux=True)(phi, key)
        return value, aux, grads
