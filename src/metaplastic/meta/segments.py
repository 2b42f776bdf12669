"""The objective as outer loops see it: whole episodes, or truncated segments.

An outer loop asks its objective for ``init_inner(theta, key) -> inner``,
``step_value(theta, key, inner) -> (value, metrics, inner)`` and (for gradients)
``step_grad(theta, key, inner) -> (value, metrics, grads, inner)``. A whole-episode
:class:`~metaplastic.meta.objective.Objective` has no inner state (``()``);
:class:`Truncated` wraps anything with ``start``/``segment`` (an Objective, or a user's
own problem) into segments of ``length`` inner steps — truncation is this wrapper, not a
second copy of each loop; :class:`FunctionObjective` wraps a plain function (values only,
for evolution strategies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from metaplastic import capabilities as cap
from metaplastic.errors import ConfigError, GradientRequested

Array = jax.Array


def select(keep: Array, new: Any, old: Any) -> Any:
    """``new`` where ``keep`` else ``old``, leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)


def all_finite(tree: Any) -> Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.isfinite(ravel_pytree(leaves)[0])) if leaves else jnp.asarray(True)


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
    if isinstance(fn, cap.Stepped | cap.Segmented):
        return fn
    if not callable(fn):
        raise ConfigError(f"an objective is an Objective (or has init_inner, step_value, "
                          f"step_grad: see docs/extending.md) or a function θ, key -> loss; "
                          f"got {repr(fn)[:60]}")
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


@jax.custom_jvp
def _refuse(x: Array) -> Array:
    return x


@_refuse.defjvp
def _refuse_jvp(primals, tangents):
    raise GradientRequested("the objective was differentiated with respect to θ, but it "
                            "was wrapped to refuse differentiation (RefusesGradients)")


def refuse_gradients(theta: Any) -> Any:
    """θ unchanged, but any derivative taken through it (forward or reverse mode) raises
    :class:`~metaplastic.errors.GradientRequested` while tracing."""
    return jax.tree.map(_refuse, theta)


class RefusesGradients:
    """``objective`` whose every entry point raises if it is differentiated with respect
    to θ (``step_grad``/``value_and_grad`` raise when called; the values-only entry points
    raise when anything takes a derivative through them) — proof that an outer loop uses
    nothing but values. Everything else (sizes,
    ``start``/``segment``, metrics) is the wrapped objective's."""

    def __init__(self, objective: Any):
        self._objective = as_objective(objective)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._objective, name)

    def __call__(self, theta: Any, key: Array):
        return self._objective(refuse_gradients(theta), key)

    def init_inner(self, theta: Any, key: Array) -> Any:
        return self._objective.init_inner(refuse_gradients(theta), key)

    def step_value(self, theta: Any, key: Array, inner: Any = ()):
        return self._objective.step_value(refuse_gradients(theta), key, inner)

    def step_grad(self, theta: Any, key: Array, inner: Any = ()):
        raise GradientRequested("an outer loop asked the objective for its gradient "
                                "(step_grad), but it was wrapped to refuse differentiation")

    value_and_grad = step_grad

    def start(self, theta: Any, key: Array):
        return self._objective.start(refuse_gradients(theta), key)

    def segment(self, theta: Any, *args: Any):
        return self._objective.segment(refuse_gradients(theta), *args)
