"""The learned evolution strategy: an evolutionary search whose selection was found by
backpropagation.

``LearnedES(population=16, sigma=0.1, steps=300).run(objective, theta0, key=k)`` searches
θ like any evolution strategy — a Gaussian search distribution, a population per
generation evaluated on the same fresh tasks (common random numbers), selection and
variation — and sees nothing but the members' fitness values: it never differentiates
the objective (``metaplastic check`` reports this, and a test runs it on an objective that
raises when differentiated). Every decision of a generation is made by the selection
network φ (:mod:`metaplastic.meta.selection`): which members to recombine and with what
weights, how far to move the mean, how to change the per-dimension scale. φ itself was
meta-trained by backpropagation through unrolled generations on analytic and plasticity
problems (:mod:`metaplastic.meta.metameta`, preset ``selection-meta``); the package ships
one (``phi = ""``), and ``phi = "path/to/phi.npz"`` uses another.

Divergence: a member whose inner learning produced NaN/inf gets the generation's worst
finite fitness (as in :mod:`metaplastic.meta.es`); a generation where every member
diverged, or whose new mean diverges, changes nothing (it counts towards
``max_nan_skips``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from metaplastic.errors import ConfigError
from metaplastic.meta import selection
from metaplastic.meta.outer import OuterLoop
from metaplastic.meta.population import PopulationEvaluation, searched
from metaplastic.meta.segments import select

Array = jax.Array


class LearnedESState(NamedTuple):
    mean: Any  # the search distribution's mean θ (a pytree like θ)
    search: selection.SearchState  # per-dimension scale and evolution paths
    inner: Any = ()  # truncated unrolls: every member's inner problems in progress


@dataclass(frozen=True)
class LearnedES(PopulationEvaluation, OuterLoop):
    """An evolution strategy whose selection and variation are a trained network φ."""

    #: the selection network: "" for the shipped one, or a .npz file of φ
    phi: str = ""
    #: > 0: no dimension's scale falls below this share of ``sigma`` (0: φ alone decides)
    sigma_floor: float = 0.0
    #: the kind of search, for ``metaplastic check``
    kind = "learned-evolutionary"

    def __post_init__(self):
        super().__post_init__()
        if self.antithetic and self.population % 2:
            raise ConfigError(f"antithetic sampling needs an even population, got "
                              f"{self.population} (or set antithetic = false)")
        if not 0 <= self.sigma_floor < 1:
            raise ConfigError(f"sigma_floor is a share of sigma in [0, 1), got "
                              f"{self.sigma_floor}")
        selection.load_phi(self.phi or None)  # a clear error now, not inside the run

    def selection_network(self) -> dict[str, Array]:
        return selection.load_phi(self.phi or None)

    def init(self, objective: Any, theta0: Any, key: Array) -> LearnedESState:
        # the entries of θ that act (a polynomial's excluded terms are not searched)
        space = searched(objective, theta0)
        flat = ravel_pytree(theta0)[0] if space.index is None else space.vector(theta0)
        search = selection.init_search(flat.shape[0], self.sigma)
        k_init, _ = jax.random.split(key)
        return self.restart(objective, LearnedESState(theta0, search), k_init)

    def theta(self, state: LearnedESState) -> Any:
        return state.mean

    def with_theta(self, state: LearnedESState, theta: Any) -> LearnedESState:
        return state._replace(mean=theta)

    def restart(self, objective: Any, state: LearnedESState, key: Array) -> LearnedESState:
        return state._replace(inner=self.restart_members(objective, state.mean, key))

    def step(self, objective: Any, state: LearnedESState, key: Array, t: Array):
        """One generation: sample, evaluate (values only), select and vary by φ."""
        phi = self.selection_network()
        flat, unravel = ravel_pytree(state.mean)
        space = searched(objective, state.mean)
        if space.index is not None:  # search the entries that act; the others stay
            flat = space.vector(state.mean)

            def unravel(v, like=state.mean):
                return space.theta(v, like)
        _, k_run = jax.random.split(key)
        k_ask, k_eval = jax.random.split(jax.random.fold_in(k_run, t))
        eps = selection.perturbations(k_ask, self.population, flat.shape[0], self.antithetic)
        members = flat + jnp.exp(state.search.log_sigma) * eps
        fit, ok, inner = self.evaluate_generation(objective, jax.vmap(unravel)(members),
                                                  k_eval, state.inner)
        progress = state.search.t.astype(jnp.float32) / self.steps
        new_flat, search, info = selection.update(phi, state.search, flat, eps, fit, progress,
                                                   self.sigma_floor)
        # the new mean on whole episodes (for the log); a step whose mean diverges is
        # not taken (the mean and the search state stay)
        value, aux = objective(unravel(new_flat), k_eval)
        keep = jnp.any(ok) & jnp.all(jnp.isfinite(new_flat)) & jnp.isfinite(value)
        mean = unravel(jnp.where(keep, new_flat, flat))
        search = select(keep, search, state.search)
        # the log shows the mean kept: the old one's value when the step was not taken
        value, aux = jax.lax.cond(keep, lambda: (value, aux),
                                  lambda: objective(state.mean, k_eval))
        return self.generation(state, LearnedESState(mean, search), keep, inner, fit, ok,
                               value, aux, **{f"es_{k}": v for k, v in info.items()})
