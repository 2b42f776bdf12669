"""Safeguards of meta-training, for every outer loop: what divergence is, and what the
driver (:mod:`metaplastic.meta.driver`) does about it.

**Divergence, one definition** (meta-training here, evaluation in
:mod:`metaplastic.experiments.evaluate` through :func:`episode_diverged`):

* non-finite numbers: NaN/inf in a task's loss or meta-gradient (the outer loop drops
  such tasks and counts them: ``diverged`` in the metrics; see ``on_nan``), or
* a **blow-up that stays finite**, beyond bounds relative to the run's own start (the
  first meta-step's value of each quantity, or its first positive value where that was 0;
  for an episode, its initial weights):

  - the meta-loss above ``start + loss_bound · max(|start|, 1)``
    (towards worse: maximising loops compare the other way),
  - the meta-gradient's norm above ``grad_bound · start``,
  - the weights' magnitude after inner learning (``w_max``: the largest |w| of a task's
    network, averaged over the step's tasks) above ``weight_bound · start``, where the
    start is the larger of the first meta-step's ``w_max`` and its initial weights'
    (``w0_max``, where the objective reports it), as for an episode.

  Every meta-step record says ``blowup`` (true/false).

**What the driver does** (the :class:`Guard`'s options, ``[meta]`` keys):

* **rollback**: a chunk with a blown-up meta-step is undone — the run goes back to its
  state after the last good chunk, its step size is multiplied by ``rollback_lr`` (outer
  loops that can set θ: :class:`~metaplastic.capabilities.SetsTheta`) and its
  meta-training key is folded with the rollback count (other tasks from there on). After
  ``max_rollbacks`` rollbacks the next blow-up stops the run: ``status: diverged``, exit
  status 3, θ of the last good chunk saved. Rollbacks are counted in ``summary.json``.
* **keep-best θ** (``keep_best``): after every good chunk θ is scored on fixed
  *validation* tasks drawn from the meta-training distribution (the objective itself, on
  keys of the run's own ``VALIDATION`` stream: never an evaluation column), and the run's
  θ (``theta.npz``) is the best scored; the summary says from which meta-step.

The other safeguards act inside the objective and the network: ``meta.task_loss_clip``
(:class:`~metaplastic.meta.objective.Objective`), ``meta.part_clip``
(:class:`~metaplastic.meta.mixture.Mixture`) and ``network.update_bound_w`` /
``update_bound_init`` (bounded rule outputs, :class:`~metaplastic.network.Network`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic._fields import check_fields
from metaplastic.errors import ConfigError

Array = jax.Array

#: the quantities bounded relative to the run's start, in the order of ``GuardState.ref``
BOUNDED = ("loss", "grad_norm", "w_max")


class GuardState(NamedTuple):
    """What the safeguards carry in a run's state (saved in checkpoints)."""

    ref: Array  # the run's start value of each of BOUNDED (NaN: not seen yet)
    scale: Array  # the step-size factor (rollback_lr ** rollbacks)
    rollbacks: Array  # rollbacks taken
    best_value: Array  # the best validation value so far (+inf: none)
    best_step: Array  # the meta-step of that θ (-1: none)
    best_theta: Any  # that θ


@dataclass(frozen=True)
class Guard:
    """Divergence bounds, rollback and keep-best θ (module docstring)."""

    loss_bound: float = 100.0
    grad_bound: float = 1e4
    weight_bound: float = 1e3
    max_rollbacks: int = 3
    rollback_lr: float = 0.3
    keep_best: bool = False
    #: keep-best: the validation score is the mean over this many fixed batches of the
    #: objective's tasks
    validation_batches: int = 2

    def __post_init__(self):
        check_fields(self)
        for name in ("loss_bound", "grad_bound", "weight_bound"):
            value = getattr(self, name)
            if not (value > 0):
                raise ConfigError(f"meta.{name} must be > 0 (inf: no bound), got {value}")
        if self.max_rollbacks < 0:
            raise ConfigError(f"meta.max_rollbacks must be >= 0 (0: a blow-up stops the "
                              f"run), got {self.max_rollbacks}")
        if not 0 < self.rollback_lr <= 1:
            raise ConfigError(f"meta.rollback_lr must be in (0, 1], got {self.rollback_lr}")
        if self.validation_batches < 1:
            raise ConfigError(f"meta.validation_batches must be >= 1, got "
                              f"{self.validation_batches}")

    def init(self, theta0: Any) -> GuardState:
        return GuardState(jnp.full((len(BOUNDED),), jnp.nan, jnp.float32),
                          jnp.ones((), jnp.float32), jnp.zeros((), jnp.int32),
                          jnp.full((), jnp.inf, jnp.float32), jnp.full((), -1, jnp.int32),
                          jax.tree.map(jnp.asarray, theta0))

    def values(self, metrics: dict[str, Array]) -> Array:
        """The bounded quantities of one meta-step's metrics (NaN where a loop has none)."""
        nan = jnp.full((), jnp.nan, jnp.float32)
        return jnp.stack([jnp.asarray(metrics.get(k, nan), jnp.float32) for k in BOUNDED])

    def limits(self, ref: Array, sign: float) -> Array:
        """The bound of each quantity given its start values ``ref`` (in minimised units
        for the loss: ``sign · loss``)."""
        loss = sign * ref[0] + self.loss_bound * jnp.maximum(jnp.abs(ref[0]), 1.0)
        return jnp.stack([loss, self.grad_bound * ref[1], self.weight_bound * ref[2]])

    def step(self, g: GuardState, metrics: dict[str, Array], active: Array,
             sign: float) -> tuple[GuardState, Array]:
        """(state with the start values recorded, whether this step blew up)."""
        vals = self.values(metrics)
        # the weights' start is their largest magnitude after the first meta-step's inner
        # learning, or before it (``w0_max``, the initial weights) where that is larger: a
        # first θ that shrinks every weight to ~0 (spiking-homeostasis: 2e-5 against initial
        # weights of ~0.5) must not make ordinary weights of later steps a blow-up
        start = vals.at[2].set(jnp.fmax(vals[2], jnp.asarray(
            metrics.get("w0_max", jnp.nan), jnp.float32)))
        # a start of 0 gives no scale for a bound relative to it (weights that all
        # collapsed to 0 in the first meta-step, a zero gradient): the first positive
        # value is the start instead (the loss's bound has its own floor of 1)
        usable = jnp.isfinite(start) & ((start > 0) | (jnp.arange(len(BOUNDED)) == 0))
        ref = jnp.where(jnp.isnan(g.ref) & usable & active, start, g.ref)
        signed = vals.at[0].multiply(sign)
        over = jnp.isfinite(signed) & (signed > self.limits(ref, sign))  # NaN ref: False
        return g._replace(ref=ref), active & jnp.any(over)

    def describe(self, record: dict, ref: Any, sign: float) -> str:
        """Which quantities of a blown-up record are beyond their bounds, in words."""
        limits = self.limits(jnp.asarray(ref, jnp.float32), sign).tolist()
        out = []
        for name, lim, start in zip(BOUNDED, limits, list(ref), strict=True):
            value = record.get(name)
            if value is None or not math.isfinite(start):
                continue
            if (sign * value if name == "loss" else value) > lim:
                bound = {"loss": f"start + {self.loss_bound:g} · max(|start|, 1)",
                         "grad_norm": f"{self.grad_bound:g} × start",
                         "w_max": f"{self.weight_bound:g} × start"}[name]
                out.append(f"{name} {value:.3g} (start {start:.3g}; bound {bound})")
        return ", ".join(out) or "beyond its bounds"


#: the safeguards at their defaults
DEFAULT_GUARD = Guard()


def episode_diverged(loss: Array, w_max: Array, w0_max: Array,
                     weight_bound: float = Guard.weight_bound) -> Array:
    """Whether one inner episode diverged: a non-finite loss or weights, or weights whose
    largest magnitude grew beyond ``weight_bound`` × their initial largest magnitude (the
    same bound as meta-training's, relative to the episode's own start). NumPy arrays
    are judged by NumPy (no program compiled), JAX arrays and tracers by JAX."""
    on_host = all(isinstance(a, np.ndarray | np.generic | int | float)
                  for a in (loss, w_max, w0_max))
    xp = np if on_host else jnp
    return ~xp.isfinite(loss) | ~xp.isfinite(w_max) | (w_max > weight_bound * w0_max)


def guard_fields() -> list[str]:
    """The ``[meta]`` keys of the guard."""
    from dataclasses import fields

    return [f.name for f in fields(Guard)]


__all__ = ["BOUNDED", "DEFAULT_GUARD", "Guard", "GuardState", "episode_diverged", "guard_fields"]
