"""Meta-gradient outer loop: backpropagation through the unrolled inner learning.

``MetaGradient(...).run(objective, theta0, key=...)`` minimises ``objective(theta, key)``
with an optax optimiser (optional global-norm gradient clipping). Steps run in jitted
chunks of ``chunk`` steps (one ``lax.scan``) between progress callbacks, so the Python
loop costs nothing per step and nothing is recompiled between chunks.

Non-finite values: a task whose inner learning blew up (NaN or inf loss or gradient) is
dropped from that step's meta-gradient and counted (``nonfinite``, ``diverged`` in the
metrics); if every task blew up, the step is skipped — θ and the optimiser state keep
their last finite values. θ never becomes NaN. With ``on_nan="stop"``, or after
``max_nan_skips`` meta-steps in a row with diverging tasks, the run stops with a
:class:`~metaplastic.errors.NonFiniteError` that carries the partial result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from metaplastic import xla
from metaplastic.errors import ConfigError, NonFiniteError

Array = jax.Array
OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd, "adamw": optax.adamw, "rmsprop": optax.rmsprop}


class MetaState(NamedTuple):
    theta: Any
    opt_state: Any
    step: Array  # meta-steps taken (including skipped ones)
    nan_streak: Array  # non-finite steps in a row
    stopped: Array  # set by a non-finite step when on_nan == "stop"
    inner: Any = None  # truncated unrolls: the inner problems in progress
    inner_step: Any = None  # truncated unrolls: steps of the current inner problems done


@dataclass
class MetaResult:
    theta: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    state: MetaState | None = None


@dataclass(frozen=True)
class MetaGradient:
    """Gradient descent on θ through the unrolled inner loop."""

    steps: int = 600
    lr: float = 3e-3
    schedule: str = "constant"  # or "cosine": decays lr to lr/10 over `steps`
    optimizer: str = "adam"
    clip: float | None = 1.0  # global gradient-norm clip; None or 0 disables
    on_nan: str = "skip"  # "skip" diverged tasks (and all-diverged steps), or "stop" the run
    max_nan_skips: int = 20
    chunk: int = 25
    #: truncated unrolls: meta-update every ``truncation`` inner steps (0: whole episodes)
    truncation: int = 0
    #: ``((from_step, length), ...)``: the truncation length from meta-step ``from_step`` on
    truncation_schedule: tuple = ()

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.on_nan not in ("skip", "stop"):
            raise ConfigError(f"on_nan must be 'skip' or 'stop', got {self.on_nan!r}")
        for name in ("steps", "chunk", "max_nan_skips"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.truncation < 0:
            raise ConfigError(f"truncation must be >= 0 (0: whole episodes), "
                              f"got {self.truncation}")
        sched = []
        for entry in self.truncation_schedule:
            try:
                start, length = (int(v) for v in entry)
            except (TypeError, ValueError):
                raise ConfigError(f"truncation_schedule entries are [from_step, length] "
                                  f"pairs, got {entry!r}") from None
            if start % self.chunk or length < 1:
                raise ConfigError(f"truncation_schedule entry {[start, length]}: from_step "
                                  f"must be a multiple of chunk ({self.chunk}) and length >= 1")
            sched.append((start, length))
        object.__setattr__(self, "truncation_schedule", tuple(sorted(sched)))

    @property
    def truncated(self) -> bool:
        return bool(self.truncation or self.truncation_schedule)

    def truncation_at(self, step: int) -> int:
        """The truncation length in force at meta-step ``step`` (0: whole episodes)."""
        length = self.truncation
        for start, value in self.truncation_schedule:
            if step >= start:
                length = value
        return length

    def check_truncation(self, n_steps: int) -> None:
        lengths = {self.truncation} | {v for _, v in self.truncation_schedule}
        bad = sorted(v for v in lengths if v and n_steps % v)
        if bad:
            raise ConfigError(f"truncation lengths {bad} must divide the inner problem's "
                              f"{n_steps} steps")

    def transform(self) -> optax.GradientTransformation:
        lr = self.lr
        if self.schedule == "cosine":
            lr = optax.cosine_decay_schedule(self.lr, self.steps, alpha=0.1)
        opt = OPTIMIZERS[self.optimizer](lr)
        return optax.chain(optax.clip_by_global_norm(self.clip), opt) if self.clip else opt

    def init(self, theta: Any) -> MetaState:
        zero = jnp.zeros((), jnp.int32)
        return MetaState(theta, self.transform().init(theta), zero, zero, jnp.zeros((), bool))

    def _apply(self, tx, state: MetaState, loss, aux, grads, total):
        """The update shared by whole-episode and truncated steps: θ moves only on an
        active step with a finite loss and gradient. Returns (state, metrics, active,
        finite)."""
        finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(ravel_pytree(grads)[0]))
        any_bad = aux["nonfinite"] > 0
        active = (state.step < total) & ~state.stopped
        updates, opt_state = tx.update(grads, state.opt_state, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        keep = active & finite

        def pick(new, old):
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)

        new = state._replace(
            theta=pick(theta, state.theta), opt_state=pick(opt_state, state.opt_state),
            step=state.step + active,
            nan_streak=jnp.where(active, jnp.where(any_bad, state.nan_streak + 1, 0),
                                 state.nan_streak),
            stopped=state.stopped | (active & any_bad & (self.on_nan == "stop")),
        )
        metrics = {"step": state.step + 1, "active": active, "loss": loss,
                   "grad_norm": optax.tree.norm(grads), "skipped": active & ~finite,
                   "diverged": active & any_bad, **_theta_record(new.theta), **aux}
        return new, metrics, active, finite

    def step_fn(self, objective: Callable) -> Callable:
        """``(state, key, total_steps) -> (state, metrics)``: one meta-step (not jitted)."""
        tx = self.transform()

        def step(state: MetaState, key: Array, total: Array):
            loss, aux, grads = objective.value_and_grad(
                state.theta, jax.random.fold_in(key, state.step)
            )
            return self._apply(tx, state, loss, aux, grads, total)[:2]

        return step

    def truncated_step_fn(self, objective: Any, length: int) -> Callable:
        """One meta-step on a segment of ``length`` inner steps (truncated backprop).

        The inner problems persist across meta-steps; fresh ones start (from the key of the
        meta-step) when the previous ones finished, or when a segment was not finite.
        """
        tx = self.transform()
        n = objective.n_steps

        def step(state: MetaState, key: Array, total: Array):
            first = state.inner_step == 0
            fresh = objective.start(state.theta, jax.random.fold_in(key, state.step))
            inner = jax.tree.map(lambda a, b: jnp.where(first, a, b), fresh, state.inner)

            def f(t):
                loss, aux, new_inner = objective.segment(t, inner, length, first)
                return loss, (aux, new_inner)

            (loss, (aux, new_inner)), grads = jax.value_and_grad(f, has_aux=True)(state.theta)
            new, metrics, active, finite = self._apply(tx, state, loss, aux, grads, total)
            done = jnp.where(finite, (state.inner_step + length) % n, 0)
            new = new._replace(
                inner=jax.tree.map(lambda a, b: jnp.where(active, a, b), new_inner,
                                   state.inner),
                inner_step=jnp.where(active, done, state.inner_step))
            return new, {**metrics, "truncation": jnp.asarray(length)}

        return step

    def chunk_fn(self, objective: Callable, length: int = 0) -> Callable:
        """Jitted ``(state, key, total_steps) -> (state, stacked metrics)`` of ``chunk`` steps
        (segments of ``length`` inner steps when truncated)."""
        step = self.truncated_step_fn(objective, length) if length else self.step_fn(objective)

        def run_chunk(state, key, total):
            return jax.lax.scan(lambda s, _: step(s, key, total), state, None, length=self.chunk)

        return xla.jit(run_chunk)

    def run(
        self,
        objective: Callable,
        theta: Any,
        *,
        key: Array,
        progress: Callable[[list[dict[str, Any]]], None] | None = None,
        state: MetaState | None = None,
    ) -> MetaResult:
        """Meta-train from ``theta`` (or resume from ``state``) for ``steps`` steps in total.

        ``progress(records)`` is called after every chunk with one dict per meta-step.
        """
        state = self.init(theta) if state is None else state
        if self.truncated:
            self.check_truncation(objective.n_steps)
        chunks: dict[int, Callable] = {}
        result = MetaResult(state.theta, [], state)
        total = jnp.asarray(self.steps, jnp.int32)
        length = None
        while int(state.step) < self.steps and not bool(state.stopped):
            now = self.truncation_at(int(state.step)) if self.truncated else 0
            if now and (now != length or state.inner is None):
                # a new truncation length starts fresh inner problems
                inner = objective.start(state.theta, jax.random.fold_in(key, int(state.step)))
                state = state._replace(inner=inner, inner_step=jnp.zeros((), jnp.int32))
            length = now
            if now not in chunks:
                chunks[now] = self.chunk_fn(objective, now)
            state, metrics = chunks[now](state, key, total)
            records = records_of(metrics)
            result.theta, result.state = state.theta, state
            result.history.extend(records)
            if progress is not None:
                progress(records)
            self._check_finite(state, records, result)
        return result

    def _check_finite(self, state: MetaState, records, result: MetaResult) -> None:
        check_divergence(records, int(state.nan_streak), self.max_nan_skips,
                         bool(state.stopped), result)


def check_divergence(records, streak: int, max_streak: int, stopped: bool,
                     result: MetaResult) -> None:
    """Raise NonFiniteError (carrying ``result``) if the run must stop on NaN/inf."""
    bad = [r for r in records if r["diverged"]]
    if not bad or not (stopped or streak >= max_streak):
        return
    first = bad[0]
    why = "on_nan = 'stop'" if stopped else (
        f"{streak} meta-steps in a row with diverging tasks")
    err = NonFiniteError(
        f"inner learning produced NaN/inf at meta-step {first['step']} "
        f"({100 * first['nonfinite']:.0f}% of its tasks; {why}). θ was kept at its "
        f"last finite value. Try a smaller rule learning rate (eta), a smaller "
        f"meta learning rate (lr), gradient clipping (clip), or fewer inner steps."
    )
    err.result = result
    raise err


#: θ is logged at every meta-step (for the coefficient plot) only when it is this small
THETA_LOG_MAX = 256


def _theta_record(theta) -> dict[str, Array]:
    flat = ravel_pytree(theta)[0]
    return {"theta": flat} if flat.size <= THETA_LOG_MAX else {}


def records_of(metrics: dict[str, Array]) -> list[dict[str, Any]]:
    """Stacked chunk metrics -> one plain-Python dict per active meta-step."""
    m = jax.device_get(metrics)
    out = []
    for i in np.flatnonzero(m["active"]):
        rec = {}
        for k, v in m.items():
            if k == "active":
                continue
            x = v[i]
            rec[k] = x.tolist() if np.ndim(x) else x.item()
        out.append(rec)
    return out
