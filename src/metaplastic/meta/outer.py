"""The outer-loop protocol, and the objective as outer loops see it.

An outer loop is a frozen dataclass (its options) with four pure methods over an explicit
state — a pytree of arrays (a NamedTuple), which saves and loads exactly:

* ``init(objective, theta0, key) -> state``;
* ``step(objective, state, key, t) -> (state, metrics)``: one meta-step (a generation);
  ``key`` is the run's key and ``t`` the number of meta-steps done (fold it in). It keeps
  its own state unchanged where the step was not finite, and returns at least ``loss``,
  ``diverged`` (some task or member produced NaN/inf) and ``skipped`` (nothing moved);
* ``theta(state) -> theta``: the current rule parameters;
* ``restart(objective, state, key) -> state``: fresh inner problems (truncated unrolls).

The shared driver (:mod:`metaplastic.meta.driver`) runs any of them: chunks, progress,
divergence, records, the result. Fields every loop has: ``steps``, ``chunk``,
``max_nan_skips``; optional: ``on_nan``, ``truncation``, ``truncation_schedule``.

The objective an outer loop sees answers ``init_inner(theta, key) -> inner``,
``step_value(theta, key, inner) -> (value, metrics, inner)`` and (for gradients)
``step_grad(theta, key, inner) -> (value, metrics, grads, inner)``. A whole-episode
:class:`~metaplastic.meta.objective.Objective` has no inner state (``()``);
:class:`Truncated` wraps anything with ``start``/``segment`` (an Objective, or a user's
own problem) into segments of ``length`` inner steps — truncation is this wrapper, not a
second copy of each loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from metaplastic.errors import ConfigError

Array = jax.Array


def select(keep: Array, new: Any, old: Any) -> Any:
    """``new`` where ``keep`` else ``old``, leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)


def all_finite(tree: Any) -> Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.isfinite(ravel_pytree(leaves)[0])) if leaves else jnp.asarray(True)


class OuterLoop:
    """Base class of outer loops: the protocol (see the module docstring) and defaults."""

    steps: int
    chunk: int
    max_nan_skips: int
    on_nan: str = "skip"
    truncation: int = 0
    truncation_schedule: tuple = ()

    def init(self, objective: Any, theta0: Any, key: Array) -> Any:
        raise NotImplementedError

    def step(self, objective: Any, state: Any, key: Array, t: Array) -> tuple[Any, dict]:
        raise NotImplementedError

    def theta(self, state: Any) -> Any:
        raise NotImplementedError

    def restart(self, objective: Any, state: Any, key: Array) -> Any:
        """``state`` with fresh inner problems (``state.inner``)."""
        return state._replace(inner=objective.init_inner(self.theta(state), key))

    def truncation_at(self, step: int) -> int:
        """The truncation length in force at meta-step ``step`` (0: whole episodes)."""
        length = self.truncation
        for start, value in self.truncation_schedule:
            if step >= start:
                length = value
        return length

    def check(self, objective: Any) -> None:
        """Raise a ConfigError if this loop cannot optimise ``objective``."""
        lengths = {self.truncation} | {v for _, v in self.truncation_schedule}
        lengths.discard(0)
        if not lengths:
            return
        n = getattr(objective, "n_steps", None)
        if not (hasattr(objective, "start") and hasattr(objective, "segment")) or n is None:
            raise ConfigError("truncated unrolls need an Objective (start/segment/n_steps), "
                              "not a plain function")
        bad = sorted(v for v in lengths if n % v)
        if bad:
            raise ConfigError(f"truncation lengths {bad} must divide the inner problem's "
                              f"{n} steps")

    def run(self, objective: Any, theta0: Any, *, key: Array,
            progress: Callable[[list[dict]], None] | None = None, state: Any = None):
        """Optimise θ from ``theta0`` (or resume from a driver ``state``) for ``steps``
        meta-steps; ``progress(records)`` is called after every chunk."""
        from metaplastic.meta.driver import run

        return run(self, objective, theta0, key=key, progress=progress, state=state)


@dataclass(frozen=True)
class FunctionObjective:
    """A plain ``fn(theta, key) -> value`` or ``-> (value, metrics)`` as an objective
    (no inner state, values only: for evolution strategies)."""

    fn: Callable
    n_steps = None

    def __call__(self, theta: Any, key: Array) -> tuple[Array, dict]:
        out = self.fn(theta, key)
        return out if isinstance(out, tuple) else (out, {})

    def init_inner(self, theta: Any, key: Array) -> Any:
        return ()

    def step_value(self, theta: Any, key: Array, inner: Any):
        value, aux = self(theta, key)
        return value, aux, inner


def as_objective(fn: Any) -> Any:
    """An objective for outer loops: objectives (and problems with ``start``/``segment``,
    for truncated unrolls) pass through, plain functions are wrapped."""
    if hasattr(fn, "step_value") or hasattr(fn, "segment"):
        return fn
    return FunctionObjective(fn)


@dataclass(frozen=True)
class Truncated:
    """``objective`` in segments of ``length`` inner steps (truncated unrolls).

    The inner state is ``(problems, done)``: the inner problems in progress and how many of
    their steps are done. Fresh problems start (from the step's key) when the previous
    ones finished or a segment was not finite. Gradients do not flow into the incoming
    problems, except on a fresh start, where the initial weights come from θ: one segment
    of the full length is exactly the whole episode.
    """

    objective: Any
    length: int

    @property
    def n_steps(self) -> int:
        return self.objective.n_steps

    def __call__(self, theta: Any, key: Array):
        """The whole episode (e.g. to log the ES mean)."""
        return self.objective(theta, key)

    def init_inner(self, theta: Any, key: Array) -> Any:
        return self.objective.start(theta, key), jnp.zeros((), jnp.int32)

    def _problems(self, theta: Any, key: Array, inner: Any):
        problems, done = inner
        first = done == 0
        return select(first, self.objective.start(theta, key), problems), first

    def _done(self, done: Array, ok: Array) -> Array:
        return jnp.where(ok, (done + self.length) % self.n_steps, 0)

    def step_value(self, theta: Any, key: Array, inner: Any):
        problems, first = self._problems(theta, key, inner)
        value, aux, problems = self.objective.segment(theta, problems, self.length, first)
        return value, aux, (problems, self._done(inner[1], jnp.isfinite(value)))

    def step_grad(self, theta: Any, key: Array, inner: Any):
        problems, first = self._problems(theta, key, inner)

        def f(t):
            value, aux, new = self.objective.segment(t, problems, self.length, first)
            return value, (aux, new)

        (value, (aux, new)), grads = jax.value_and_grad(f, has_aux=True)(theta)
        ok = jnp.isfinite(value) & all_finite(grads)
        return value, aux, grads, (new, self._done(inner[1], ok))
