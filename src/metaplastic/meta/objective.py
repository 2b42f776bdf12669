"""The meta-objective: how well a rule makes a network learn, over a batch of tasks.

``Objective(task, network, rule)(theta, key)`` samples ``tasks_per_step`` task instances,
runs the inner loop on each (vmapped), and returns the mean task loss plus an L1 penalty
on θ (sparse rules, as in Confavreux et al. 2020), with named metrics. Every outer loop —
meta-gradients, evolution strategies — optimises this same function.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from metaplastic import capabilities as cap
from metaplastic import devices
from metaplastic._fields import check_fields
from metaplastic.errors import ConfigError
from metaplastic.inner import advance, initial_carry, unroll, weight_max
from metaplastic.network import Network
from metaplastic.registry import check_protocol
from metaplastic.rules.base import Rule, conform
from metaplastic.rules.base import theta_like as rule_theta_like
from metaplastic.tasks.base import Task

Array = jax.Array


GRAD_MODES = ("reverse", "forward")


def l1_norm(theta: Any) -> Array:
    return sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(theta))


class WholeEpisodes:
    """The outer-loop interface of an objective over whole episodes (no inner state
    between meta-steps), from its ``__call__`` and ``value_and_grad``."""

    def init_inner(self, theta: Any, key: Array) -> tuple:
        return ()

    def step_value(self, theta: Any, key: Array, inner: Any = ()):
        value, aux = self(theta, key)
        return value, aux, inner

    def step_grad(self, theta: Any, key: Array, inner: Any = ()):
        value, aux, grads = self.value_and_grad(theta, key)
        return value, aux, grads, inner


@dataclass(frozen=True)
class Objective(WholeEpisodes):
    """Mean meta-loss of ``rule`` with parameters θ on ``tasks_per_step`` fresh tasks."""

    task: Task
    network: Network
    rule: Rule
    tasks_per_step: int = 8
    l1: float = 0.0
    checkpoint: bool = False
    #: evaluation without gradients (``__call__``, e.g. ES): run episodes in chunks of this
    #: many steps and stop once every task has ended (0: always ``n_steps``)
    early_exit: int = 0
    #: how meta-gradients are taken: "reverse" (backprop through the unroll: memory grows
    #: with its length unless ``checkpoint``) or "forward" (forward-mode, one tangent per
    #: number in θ carried along the unroll: memory independent of its length; faster
    #: when θ has few numbers, e.g. a term pool or a polynomial). Same gradient.
    grad_mode: str = "reverse"
    #: > 0: a task whose loss L exceeds this counts as ``c · (1 + ln(L / c))`` (its
    #: gradient scaled by c / L: direction kept, size normalised), so that one exploding
    #: task cannot dominate a meta-step; the metrics' ``task_loss`` stays unclipped. 0: off
    task_loss_clip: float = 0.0

    def __post_init__(self):
        check_fields(self)
        for kind in ("task", "rule"):
            check_protocol(kind, f"Objective.{kind}", type(getattr(self, kind)))
        if not isinstance(self.network, cap.HasShapes):
            raise ConfigError(f"Objective.network must be a Network, got {self.network!r}")
        if self.tasks_per_step < 1:
            raise ConfigError(f"tasks_per_step must be >= 1, got {self.tasks_per_step}")
        if self.l1 < 0:
            raise ConfigError(f"l1 must be >= 0, got {self.l1}")
        if self.grad_mode not in GRAD_MODES:
            raise ConfigError(f"grad_mode must be one of {', '.join(GRAD_MODES)}, "
                              f"got {self.grad_mode!r}")
        if not self.task_loss_clip >= 0:
            raise ConfigError(f"task_loss_clip must be >= 0 (0: off), got "
                              f"{self.task_loss_clip}")
        if self.early_exit < 0:
            raise ConfigError(f"early_exit must be >= 0 steps, got {self.early_exit}")
        self.task.check_network(self.network)

    @functools.cached_property
    def theta_like(self) -> Any:
        """The structure, shapes and dtypes of the rule's θ for this network
        (``jax.ShapeDtypeStruct`` leaves; nothing computed)."""
        return rule_theta_like(self.rule, self.network.shapes)

    def conform(self, theta: Any, what: str = "θ") -> Any:
        """``theta`` checked against the rule's θ (entries, shapes, numbers) and cast to its
        dtypes: θ of another rule, ``None`` or a string is one ShapeError, not a JAX error
        from deep inside the unroll. Shapes only, so free inside jit."""
        return conform(self.rule, theta, what=what, like=self.theta_like)

    def episode(self, theta: Any, key: Array, record_every: int | None = None,
                early_exit: int = 0, instance_id: Array | None = None):
        """One task: (loss, metrics after learning, records during learning); drawn with
        ``key``, or the task's instance ``instance_id`` (see ``Task.instance_ids``)."""
        theta = self.conform(theta)
        k_task, k_net = jax.random.split(key)
        instance = (self.task.sample(k_task) if instance_id is None
                    else self.task.instance(instance_id))
        out = unroll(
            self.network, self.rule, theta, self.task, instance,
            key=k_net, record_every=record_every, checkpoint=self.checkpoint,
            early_exit=early_exit,
        )
        return (
            self.task.loss(instance, out.state, out.env, self.network),
            {**self.task.metrics(instance, out.state, out.env, self.network),
             "w_max": jax.lax.stop_gradient(weight_max(out.state.weights)),
             "w0_max": jax.lax.stop_gradient(out.w0_max)},
            out.records,
        )

    # --- truncated unrolls: the inner problem in segments ----------------------------------
    @property
    def n_steps(self) -> int:
        """Length of the inner problem (steps of online learning)."""
        return self.task.n_steps

    def start(self, theta: Any, key: Array):
        """The state of ``tasks_per_step`` fresh inner problems before their first step:
        ``(instances, keys, carries)``, batched over tasks (``keys`` draw the initial
        weights). Same keys as :meth:`episode`."""
        theta = self.conform(theta)

        def one(k):
            k_task, k_net = jax.random.split(k)
            instance = self.task.sample(k_task)
            carry = initial_carry(self.network, self.rule, theta, self.task, instance, k_net)
            return instance, k_net, carry

        return jax.vmap(one)(jax.random.split(key, self.tasks_per_step))

    def segment(self, theta: Any, inner, length: int, first: Array | bool = False):
        """``length`` more steps of every inner problem in ``inner`` (from :meth:`start`).

        Returns ``(loss, metrics, inner)``: the mean task loss at the segment's end (+ L1),
        metrics (``nonfinite``: the fraction of tasks whose loss is not finite) and the
        advanced state. Gradients do not flow into the incoming state (truncation), except
        where ``first``: there the initial weights are rebuilt from ``theta``, so that one
        segment of the full length is exactly the whole episode.
        """
        theta = self.conform(theta)
        instances, keys, carries = inner
        carries = jax.lax.stop_gradient(carries)

        def one(instance, carry, k, theta, first):
            fresh = initial_carry(self.network, self.rule, theta, self.task, instance, k)
            carry = jax.tree.map(lambda a, b: jnp.where(first, a, b), fresh, carry)
            carry = advance(self.network, self.rule, theta, self.task, instance, carry,
                            length, checkpoint=self.checkpoint)
            state, _, env = carry
            return (self.task.loss(instance, state, env, self.network),
                    {**self.task.metrics(instance, state, env, self.network),
                     "w_max": jax.lax.stop_gradient(weight_max(state.weights))}, carry)

        losses, metrics, carries = devices.spread(
            lambda b, s: jax.vmap(lambda *a: one(*a, *s))(*b), (instances, carries, keys),
            (theta, first), size=self.tasks_per_step)
        finite = jnp.isfinite(losses)
        aux = self._aux(theta, losses, metrics, finite)
        return jnp.mean(self._clipped(losses)) + aux["l1"], aux, (instances, keys, carries)

    def _clipped(self, losses: Array) -> Array:
        """The task losses as they count towards the meta-loss (``task_loss_clip``)."""
        return clip_losses(losses, self.task_loss_clip)

    def _episodes(self, theta: Any, key: Array):
        keys = jax.random.split(key, self.tasks_per_step)
        losses, metrics, _ = map_tasks(
            lambda k, t: self.episode(t, k, early_exit=self.early_exit), keys, theta)
        return losses, metrics

    def _l1(self, theta: Any) -> Array:
        """|θ|_1 over the rule's sparse part (``rule.sparse_part``: e.g. the synapses'
        coefficients without learned neurons' parameters), all of θ otherwise."""
        return l1_norm(cap.sparse_part(self.rule, theta))

    def _aux(self, theta, losses, metrics, finite) -> dict[str, Array]:
        return {
            "task_loss": _masked_mean(losses, finite),
            **_quartiles(losses, finite),
            "l1": self.l1 * self._l1(theta),
            "nonfinite": jnp.mean(~finite),
            **{k: _masked_mean(v, finite) for k, v in metrics.items()},
        }

    def __call__(self, theta: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        """(mean task loss + L1 penalty, metrics). NaN if any task's learning blew up."""
        theta = self.conform(theta)
        losses, metrics = self._episodes(theta, key)
        aux = self._aux(theta, losses, metrics, jnp.isfinite(losses))
        return jnp.mean(self._clipped(losses)) + aux["l1"], aux

    def value_and_grad(self, theta: Any, key: Array):
        """(loss, metrics, dloss/dθ) over the tasks whose inner learning stayed finite.

        Gradients are taken per task, so a task whose weights overflowed is dropped from
        the mean (and counted in ``metrics["nonfinite"]``) instead of turning the whole
        meta-gradient into NaN. If every task blew up, loss and gradient are NaN.
        """
        theta = self.conform(theta)
        keys = jax.random.split(key, self.tasks_per_step)
        (losses, grads), metrics = devices.gather(_value_grad_metrics(self, theta, keys),
                                                  self.tasks_per_step)
        finite = jnp.isfinite(losses) & _all_finite_per_task(grads)
        aux = self._aux(theta, losses, metrics, finite)
        n_ok = jnp.sum(finite)
        if self.task_loss_clip:  # each task's gradient scaled as its loss is clipped
            c = self.task_loss_clip
            factor = jnp.where(losses > c, c / jnp.where(losses > c, losses, 1.0), 1.0)
            grads = jax.tree.map(lambda g: g * _expand(factor, g), grads)
        mean_grad = jax.tree.map(
            lambda g: jnp.sum(jnp.where(_expand(finite, g), g, 0.0), axis=0) / n_ok, grads)
        l1_grad = jax.grad(lambda t: self.l1 * self._l1(t))(theta)
        total = (_masked_mean(self._clipped(losses), finite) if self.task_loss_clip
                 else aux["task_loss"]) + aux["l1"]
        return total, aux, jax.tree.map(jnp.add, mean_grad, l1_grad)


def _value_grad_metrics(objective: Objective, theta, keys):
    """Per-task (loss, dloss/dθ) and metrics in one vmapped pass."""

    def one(k, theta):
        def f(t):
            loss, metrics, _ = objective.episode(t, k)
            return loss, metrics

        if objective.grad_mode == "forward":
            def loss_and_aux(t):
                loss, metrics = f(t)
                return loss, (loss, metrics)

            g, (loss, metrics) = jax.jacfwd(loss_and_aux, has_aux=True)(theta)
            return loss, g, metrics
        (loss, metrics), g = jax.value_and_grad(f, has_aux=True)(theta)
        return loss, g, metrics

    losses, grads, metrics = map_tasks(one, keys, theta)
    return (losses, grads), metrics


def map_tasks(fn, keys: Array, *shared: Any):
    """``vmap(fn)(keys, *shared)`` over the keys only, the tasks split across devices
    (:mod:`metaplastic.devices`: traced values ``fn`` needs go in ``shared``, not in its
    closure),
    except that one task is run unbatched (then given its batch axis): XLA's CPU code for
    a batch of one — matrix-vector products turned into batched matrix products — made a
    meta-gradient 2.5x slower than the plain computation."""
    if keys.shape[0] == 1:
        return jax.tree.map(lambda x: jnp.expand_dims(x, 0), fn(keys[0], *shared))
    return devices.spread(lambda k, s: jax.vmap(lambda kk: fn(kk, *s))(k), keys, shared,
                          size=keys.shape[0])


def clip_losses(losses: Array, c: float) -> Array:
    """``losses`` with every value above ``c`` > 0 replaced by ``c · (1 + ln(L / c))``
    (continuous, slope c / L); unchanged when ``c`` is 0."""
    if not c:
        return losses
    safe = jnp.where(losses > c, losses, c)
    return jnp.where(losses > c, c * (1.0 + jnp.log(safe / c)), losses)


def _expand(mask: Array, like: Array) -> Array:
    return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


def _all_finite_per_task(grads) -> Array:
    leaves = [jnp.all(jnp.isfinite(g.reshape(g.shape[0], -1)), axis=1)
              for g in jax.tree.leaves(grads)]
    return jnp.all(jnp.stack(leaves), axis=0)


def _quartiles(losses: Array, finite: Array) -> dict[str, Array]:
    """The spread of the task losses across this step's tasks (finite ones): quartiles."""
    kept = jax.lax.stop_gradient(jnp.where(finite, losses, jnp.nan))
    q = jnp.nanpercentile(kept, jnp.array([25.0, 75.0]))
    return {"task_loss_q25": q[0], "task_loss_q75": q[1]}


def _masked_mean(x: Array, mask: Array) -> Array:
    """Mean of x where mask holds; NaN when nothing does."""
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.sum(mask)
