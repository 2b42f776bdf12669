"""The inner loop: a network learning online under a local rule, as one ``lax.scan``.

Each step: the task gives an input (and target), the network runs forward, feedback
errors reach each layer through the feedback pathway, every layer's synapses are updated
by ``rule.update(theta, signals, state)`` (while the task is active), and the task reacts
to the network's output (an environment step). Only the current weights and rule state are
carried — no activation history — so memory is constant in the number of steps (the
backward pass of a meta-gradient stores one carry per step unless ``checkpoint=True``
recomputes them). Metrics are recorded every ``record_every`` steps through a nested scan,
so recording does not grow with the unroll either beyond ``n_steps / record_every`` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metaplastic import capabilities as cap
from metaplastic import precision, streams
from metaplastic.network import NetState, Network
from metaplastic.rules import feedback
from metaplastic.rules.base import Rule
from metaplastic.tasks.base import Task

Array = jax.Array


class Unrolled(NamedTuple):
    state: NetState  # the network after learning
    rule_state: Any
    env: Any  # the task's final state (e.g. accumulated return)
    records: dict[str, Array]  # task metrics every `record_every` steps, (n_records,)
    w0_max: Array  # the largest |w| of the weights before learning


def weight_max(weights: Any) -> Array:
    """The largest |w| over every layer's weights (divergence bounds: meta.guard)."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(w)).astype(jnp.float32)
                              for w in jax.tree.leaves(weights)]))


def make_step_detail(network: Network, rule: Rule, theta: Any, task: Task, instance: Any,
                     reference: Network | None = None):
    """``carry -> (carry, signals, dws, live)``: one step, also returning every layer's
    :class:`LocalSignals` and weight change (what ``metaplastic explain`` samples). With a
    ``reference`` network (the same weights, another feedback pathway, e.g. symmetric:
    backprop's errors), the step also returns the signals it would give
    (``(carry, signals, dws, live, reference_signals)``; :mod:`.analysis.alignment`)."""

    theta = precision.store(theta, cap.precision(rule))  # read every step
    fb_coef = cap.feedback_params(rule, theta)  # plastic feedback's rule, or None

    def step(carry):
        state, rule_state, env = carry
        x, target = task.observe(instance, env)
        act, state = network.run(state, x)
        e_out = task.output_error(act.rates[-1], target)
        live = task.learns(instance, env)
        weights, new_rule_state, dws = [], [], []
        modulator = task.modulator(instance, env, act.rates[-1], target)
        signals = network.signals(state, act, e_out, modulator)
        for l, (s, rs) in enumerate(zip(signals, rule_state, strict=True)):
            dw, rs = rule.update(precision.compute(rule.layer_theta(theta, l)), s, rs)
            dw_applied = dw * network.update_scale(l) if network.update_fan_in else dw
            dw_applied = network.bound_update(l, s.w, dw_applied)
            if network.learns(l):
                w = network.constrain(l, s.w + jnp.where(live, dw_applied, 0.0), live)
            else:  # a fixed layer
                w = s.w
            weights.append(network.store(w))
            new_rule_state.append(rs)
            dws.append(dw)
        if fb_coef is not None:  # plastic feedback: every feedback synapse by its rule
            errs = network.errors(state, act, e_out)
            state = state._replace(feedback=tuple(
                b + jnp.where(live, network.feedback_eta * feedback.update(
                    fb_coef, src, act.rates[l + 1], b), 0.0)
                for l, (b, src) in enumerate(zip(state.feedback,
                                                 network.feedback_sources(errs), strict=True))))
        if isinstance(task, cap.ObservesLayers):  # recordings of hidden neurons too
            env = task.transition_layers(instance, env, act.rates)
        else:
            env = task.transition(instance, env, act.rates[-1])
        carry = (state._replace(weights=tuple(weights)), tuple(new_rule_state), env)
        if reference is not None:
            ref = reference.signals(state, act, e_out, modulator)
            return carry, tuple(signals), tuple(dws), live, tuple(ref)
        return carry, tuple(signals), tuple(dws), live

    return step


def make_step(network: Network, rule: Rule, theta: Any, task: Task, instance: Any):
    """The scan body ``(state, rule_state, env) -> (state, rule_state, env)`` of one step.

    The task's state ``env`` (a step counter, an environment) lives in the carry, so
    nothing in the compiled unroll grows with its length.
    """
    detail = make_step_detail(network, rule, theta, task, instance)

    def step(carry, _):
        return detail(carry)[0], None

    return step


def neuron_params(rule: Rule, theta: Any) -> Any:
    """Learned neurons' parameters within θ (rules that have them), else ()."""
    return cap.neuron_params(rule, theta)


def initial_carry(network: Network, rule: Rule, theta: Any, task: Task, instance: Any,
                  key: Array):
    """``(state, rule_state, env)`` before the first step: weights drawn with ``key``,
    unless the rule's θ holds them (static weights) or the task gives them (recordings)."""
    weights = rule.initial_weights(theta)
    if weights is not None and task.fits_start:  # a start per instance: the task picks
        weights = task.start_of(instance, weights)
    if weights is None and isinstance(task, cap.HasInitialWeights):
        weights = task.initial_weights(instance)
    state = network.init(key, weights, neuron_params(rule, theta))
    rule_state = tuple(rule.init_state(w.shape) for w in state.weights)
    return state, rule_state, task.reset(instance, jax.random.fold_in(key, streams.ENV))


def advance(network: Network, rule: Rule, theta: Any, task: Task, instance: Any, carry,
            length: int, *, checkpoint: bool = False):
    """Run ``length`` steps from ``carry`` (a truncated unroll's segment); returns the carry."""
    return _runner(network, rule, theta, task, instance, checkpoint)(carry, length)


def _runner(network: Network, rule: Rule, theta: Any, task: Task, instance: Any,
            checkpoint: bool):
    """``(carry, length) -> carry``: ``length`` steps as one scan. Fixed feedback
    (everything but plastic feedback) is a constant of the scan, not part of its carry:
    a checkpointed backward pass stores the carry of every step, and the feedback
    matrices would be stored with it (45 MB over 250 steps of 784-170-130-100-70-47)."""
    step = make_step(network, rule, theta, task, instance)
    plastic = cap.feedback_params(rule, theta) is not None

    def run(carry, length: int):
        fb = carry[0].feedback
        if plastic or not jax.tree.leaves(fb):
            body = jax.checkpoint(step) if checkpoint else step
            return jax.lax.scan(body, carry, None, length=length)[0]

        def body(c, x):
            new, y = step((c[0]._replace(feedback=fb), *c[1:]), x)
            return (new[0]._replace(feedback=()), *new[1:]), y

        body = jax.checkpoint(body) if checkpoint else body
        out = jax.lax.scan(body, (carry[0]._replace(feedback=()), *carry[1:]), None,
                           length=length)[0]
        return (out[0]._replace(feedback=fb), *out[1:])

    return run


def trace(network: Network, rule: Rule, theta: Any, task: Task, instance: Any, key: Array,
          what, tick: Callable[[Array], Any] | None = None,
          every: int = 1) -> tuple[Any, Any, Any]:
    """One inner episode of ``task.n_steps`` steps with ``what(signals)`` of every step
    stacked (for figures and simulated recordings): ``(carry before, carry after,
    records)``. Keeps the per-step records, so for recording, not for long meta-training.
    ``tick``: called on the host with the number of steps done, every ``every`` steps
    (progress from inside the compiled loop; it changes nothing computed)."""
    start = initial_carry(network, rule, theta, task, instance, key)
    step = make_step_detail(network, rule, theta, task, instance)

    def body(carry, t):
        carry, signals, _, _ = step(carry)
        if tick is not None:
            done = t + 1
            jax.lax.cond((done % every == 0) | (done == task.n_steps),
                         lambda: jax.debug.callback(tick, done), lambda: None)
        return carry, what(signals)

    xs = None if tick is None else jnp.arange(task.n_steps)
    end, records = jax.lax.scan(body, start, xs, length=task.n_steps)
    return start, end, records


def unroll(
    network: Network,
    rule: Rule,
    theta: Any,
    task: Task,
    instance: Any,
    *,
    key: Array,
    record_every: int | None = None,
    checkpoint: bool = False,
    early_exit: int = 0,
) -> Unrolled:
    """Run ``task.n_steps`` steps of online learning from weights drawn with ``key``.

    ``early_exit > 0`` runs the steps in chunks of that many and stops after the chunk in
    which the task became inactive (an episode that ended): the weights and the task's
    state no longer change after that, so losses and metrics are those of the full
    length, at the cost of the steps actually lived (rounded up to a chunk). The loop is a
    ``while_loop``: for evaluation, not for reverse-mode gradients; no records.
    """
    run = _runner(network, rule, theta, task, instance, checkpoint)
    n = task.n_steps
    carry = initial_carry(network, rule, theta, task, instance, key)
    w0_max = weight_max(carry[0].weights)

    records: dict[str, Array] = {}
    if early_exit and not record_every:
        chunks, rest = divmod(n, early_exit)

        def alive(c):
            i, carry = c
            return (i < chunks) & task.active(instance, carry[2])

        _, carry = jax.lax.while_loop(alive, lambda c: (c[0] + 1, run(c[1], early_exit)),
                                      (jnp.zeros((), jnp.int32), carry))
        if rest:  # the remainder, only while still active
            carry = jax.lax.cond(task.active(instance, carry[2]), lambda c: run(c, rest),
                                 lambda c: c, carry)
        return Unrolled(carry[0], carry[1], carry[2], records, w0_max)
    done = 0
    if record_every:
        chunks = n // record_every

        def chunk(carry, _):
            carry = run(carry, record_every)
            return carry, task.metrics(instance, carry[0], carry[2], network)

        carry, records = jax.lax.scan(chunk, carry, None, length=chunks)
        done = chunks * record_every
    if done < n:
        carry = run(carry, n - done)
    return Unrolled(carry[0], carry[1], carry[2], records, w0_max)
