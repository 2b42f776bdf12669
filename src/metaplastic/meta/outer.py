"""The outer-loop protocol: what every outer loop implements.

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
``max_nan_skips``; optional: ``on_nan``, ``truncation``, ``truncation_schedule``. The
objective a loop sees is described in :mod:`metaplastic.meta.segments`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from metaplastic import capabilities as cap
from metaplastic.errors import ConfigError
from metaplastic.meta import driver
from metaplastic.meta.guard import DEFAULT_GUARD, Guard

Array = jax.Array


class OuterLoop:
    """Base class of outer loops: the protocol (see the module docstring) and defaults."""

    steps: int
    chunk: int
    max_nan_skips: int
    on_nan: str = "skip"
    truncation: int = 0
    truncation_schedule: tuple = ()
    #: True when a step differentiates through the unroll (memory: the stored unroll)
    differentiates: bool = False

    def members_at_once(self) -> int:
        """How many candidate θ are evaluated together in one program (memory estimates:
        :mod:`metaplastic.meta.memory`); 1 for loops that follow one θ."""
        return 1

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
        if not isinstance(objective, cap.Segmented):
            raise ConfigError("truncated unrolls need an Objective (start/segment/n_steps); "
                              "mixtures and plain functions take whole episodes")
        n = objective.n_steps
        bad = sorted(v for v in lengths if n % v)
        if bad:
            raise ConfigError(f"truncation lengths {bad} must divide the inner problem's "
                              f"{n} steps")

    def run(self, objective: Any, theta0: Any, *, key: Array,
            progress: Callable[[list[dict]], None] | bool | None = None,
            state: Any = None, checkpoint: Callable[[Any], None] | None = None,
            guard: Guard = DEFAULT_GUARD):
        """Optimise θ from ``theta0`` (or resume from a driver ``state``) for ``steps``
        meta-steps under ``guard``'s safeguards (:mod:`metaplastic.meta.guard`);
        ``progress(records)`` and ``checkpoint(state)`` follow every chunk. Without a
        ``progress`` callable a bar is drawn when a terminal is attached (``False``:
        silent; :mod:`metaplastic.progress`)."""
        return driver.run(self, objective, theta0, key=key, progress=progress, state=state,
                          checkpoint=checkpoint, guard=guard)


#: what each kind of outer loop means, for ``metaplastic check``
SEARCH_KINDS = {"gradient": "differentiates the objective through the unrolled learning",
         "evolutionary": "uses only fitness values; its update rule was designed by hand",
         "learned-evolutionary": "uses only fitness values; its selection network was "
                                 "trained by backpropagation beforehand, offline"}


def measure_kind(outer: OuterLoop, objective: Any, theta0: Any, key: Array) -> tuple[str, str]:
    """The outer loop's kind and the evidence: one meta-step is traced (not run) on the
    objective wrapped to refuse differentiation; a loop that takes a derivative of the
    objective is ``gradient`` whatever it declares."""
    from metaplastic.errors import GradientRequested
    from metaplastic.meta.segments import RefusesGradients

    wrapped = RefusesGradients(objective)
    try:
        jax.eval_shape(lambda k: outer.step(wrapped, outer.init(wrapped, theta0, k), k,
                                            jax.numpy.zeros((), "int32")), key)
    except GradientRequested:
        return "gradient", ("one meta-step traced on the objective wrapped to refuse "
                            "differentiation: it asked for a derivative")
    kind = cap.outer_kind(outer)
    return kind, ("one meta-step traced on the objective wrapped to refuse "
                  "differentiation: no derivative of the objective was taken")
