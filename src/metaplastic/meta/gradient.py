"""Meta-gradient outer loop: backpropagation through the unrolled inner learning.

``MetaGradient(...).run(objective, theta0, key=...)`` minimises ``objective(theta, key)``
with an optax optimiser (optional global-norm gradient clipping), as an outer loop of the
shared protocol (:mod:`metaplastic.meta.outer`) run by the shared driver
(:mod:`metaplastic.meta.driver`). With ``truncation`` the objective is taken in segments
(:class:`~metaplastic.meta.segments.Truncated`); the step is the same.

Non-finite values: a task whose inner learning blew up (NaN or inf loss or gradient) is
dropped from that step's meta-gradient and counted (``nonfinite``, ``diverged`` in the
metrics); if every task blew up, the step is skipped — θ and the optimiser state keep
their last finite values. θ never becomes NaN. With ``on_nan="stop"``, or after
``max_nan_skips`` meta-steps in a row with diverging tasks, the run stops with a
:class:`~metaplastic.errors.NonFiniteError` that carries the partial result; with
``on_nan="rollback"`` such a streak is undone as a blow-up is (back to before it, the
step size cut: :mod:`metaplastic.meta.driver`), and the run stops only once the
rollbacks are spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metaplastic import xla
from metaplastic._fields import check_fields
from metaplastic.errors import ConfigError
from metaplastic.meta.outer import OuterLoop
from metaplastic.meta.segments import all_finite, select

Array = jax.Array
OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd, "adamw": optax.adamw, "rmsprop": optax.rmsprop}


class GradientState(NamedTuple):
    theta: Any
    opt_state: Any
    inner: Any = ()  # truncated unrolls: the inner problems in progress


@dataclass(frozen=True)
class MetaGradient(OuterLoop):
    """Gradient descent on θ through the unrolled inner loop."""

    steps: int = 600
    lr: float = 3e-3
    schedule: str = "constant"  # or "cosine": decays lr to lr/10 over `steps`
    #: meta-steps over which the step size rises linearly from lr / warmup to lr (then the
    #: schedule, over the remaining steps); 0: none. Adam's first steps move every
    #: coefficient by about lr whatever its gradient: over long unrolls that first move
    #: alone can take θ where inner learning diverges
    warmup: int = 0
    optimizer: str = "adam"
    clip: float | None = 1.0  # global gradient-norm clip; None or 0 disables
    #: "skip" diverged tasks (and all-diverged steps), "stop" the run, or "rollback" a
    #: streak of max_nan_skips diverging steps (:mod:`metaplastic.meta.driver`)
    on_nan: str = "skip"
    max_nan_skips: int = 20
    chunk: int = 25
    #: truncated unrolls: meta-update every ``truncation`` inner steps (0: whole episodes)
    truncation: int = 0
    #: ``((from_step, length), ...)``: the truncation length from meta-step ``from_step`` on
    truncation_schedule: tuple = ()
    #: how the meta-step program's random numbers are lowered on the CPU
    #: (:data:`metaplastic.xla.THREEFRY_MODES`): "unrolled" compiles faster (``oja``'s
    #: meta-step program in about 0.6 of the time) and draws the same numbers, but rounds
    #: some arithmetic beside them differently, so a run takes another path than with
    #: "rolled" (JAX's own); "": the process's default (``METAPLASTIC_THREEFRY``, else
    #: "rolled")
    threefry: str = ""
    differentiates = True  # (a class constant: not an option)
    kind = "gradient"  # for metaplastic check (meta.outer.measure_kind)

    def __post_init__(self):
        check_fields(self)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        xla.checked_mode(self.threefry)
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.on_nan not in ("skip", "stop", "rollback"):
            raise ConfigError(f"on_nan must be 'skip', 'stop' or 'rollback', got "
                              f"{self.on_nan!r}")
        for name in ("steps", "chunk", "max_nan_skips"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup < self.steps:
            raise ConfigError(f"warmup must be a number of meta-steps in [0, steps = "
                              f"{self.steps}), got {self.warmup}")
        if self.clip is not None and not self.clip >= 0:
            raise ConfigError(f"clip (the gradient-norm limit) must be >= 0 (0 or none: no "
                              f"clipping), got {self.clip}")
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

    def transform(self) -> optax.GradientTransformation:
        lr = self.lr
        if self.schedule == "cosine":
            lr = optax.cosine_decay_schedule(self.lr, self.steps - self.warmup, alpha=0.1)
        if self.warmup:
            rise = optax.linear_schedule(self.lr / self.warmup, self.lr, self.warmup)
            lr = optax.join_schedules([rise, lr if callable(lr) else (lambda _: self.lr)],
                                      [self.warmup])
        opt = OPTIMIZERS[self.optimizer](lr)
        return optax.chain(optax.clip_by_global_norm(self.clip), opt) if self.clip else opt

    def init(self, objective: Any, theta0: Any, key: jax.Array) -> GradientState:
        return GradientState(theta0, self.transform().init(theta0),
                             objective.init_inner(theta0, key))

    def theta(self, state: GradientState) -> Any:
        return state.theta

    def with_theta(self, state: GradientState, theta: Any) -> GradientState:
        return state._replace(theta=theta)

    def step(self, objective: Any, state: GradientState, key: jax.Array, t: jax.Array):
        """One meta-step: θ moves only where the loss and the gradient are finite."""
        loss, aux, grads, inner = objective.step_grad(state.theta, jax.random.fold_in(key, t),
                                                      state.inner)
        finite = jnp.isfinite(loss) & all_finite(grads)
        updates, opt_state = self.transform().update(grads, state.opt_state, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        kept = select(finite, GradientState(theta, opt_state, ()),
                      state._replace(inner=()))
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "skipped": ~finite,
                   "diverged": aux["nonfinite"] > 0, **aux}
        return kept._replace(inner=inner), metrics
