"""A finished run's inner learning, recorded for the figures: ``episode.npz``.

After meta-training, the rule runs on a few fresh tasks (keys from a stream that neither
training nor evaluation uses) with the learned θ, the starting θ and, when the run names
one, the reference rule. What is recorded:

* ``curve.<rule>.<metric>`` (tasks, records): the task's metrics every ``curve_every``
  steps of inner learning (``curve_steps``): the inner-loop learning curves;
* ``w_before.<l>`` / ``w_after.<l>``: layer ``l``'s weights before and after learning on
  the first task (learned θ);
* ``abcd.<l>.<coef>``: per-synapse ABCD coefficients of layer ``l`` (ABCD rules);
* spiking networks: ``spikes.<rule>.<l>`` (steps, neurons) uint8, the 0/1 spikes of layer
  ``l`` (0 = the encoded input) through the first task, ``target_rate`` / ``phase_steps``
  when the task has them, and the STDP window ``window_dt`` / ``window.<rule>``: the summed
  Δw of one synapse for a presynaptic spike at step 0 and a postsynaptic one at Δt, at a
  fixed weight (``window_w``), without feedback or modulator, for the learned θ, the start
  and pair STDP.

:mod:`metaplastic.report.learning` draws the figures from this file alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import streams, xla
from metaplastic.capabilities import HasLayerStatistics
from metaplastic.experiments.build import build_rule
from metaplastic.experiments.config import RunConfig
from metaplastic.inner import initial_carry, trace, unroll
from metaplastic.meta.objective import Objective
from metaplastic.signals import LocalSignals

N_TASKS = 8
N_RECORDS = 50  # points on each learning curve
MAX_SPIKE_ENTRIES = 20_000_000  # steps x neurons recorded per rule, at most
WINDOW = 40  # the STDP window: Δt in [-WINDOW, WINDOW] steps


def _rules(cfg: RunConfig, pieces, theta, theta0) -> list[tuple[str, Any, Any]]:
    """(label, rule, θ) of every rule recorded: learned, start and the reference."""
    out = [("learned", pieces.rule, theta), ("start", pieces.rule, theta0)]
    if cfg.reference:
        ref = build_rule(cfg, cfg.reference)
        out.append((cfg.reference, ref, ref.init(jax.random.key(0), pieces.network.shapes)))
    return out


def _shared(make: Callable[..., Callable], *pieces) -> Callable:
    """``make(*pieces)`` compiled once per equal pieces (the learned and the starting θ,
    and every seed of a run, share a program); built afresh for unhashable pieces."""
    try:
        return _cached(make, *pieces)
    except TypeError:
        return make(*pieces)


@functools.lru_cache(maxsize=32)
def _cached(make: Callable[..., Callable], *pieces) -> Callable:
    return make(*pieces)


def _curves_fn(task, network, rule, every: int) -> Callable:
    objective = Objective(task, network, rule)
    return xla.once(lambda theta, keys: jax.vmap(
        lambda k: objective.episode(theta, k, record_every=every)[2])(keys))


def _weights_fn(task, network, rule) -> Callable:
    """(weights before, weights after) one inner episode of the task drawn with ``key``."""
    def run(theta, key):
        k_task, k_net = jax.random.split(key)
        instance = task.sample(k_task)
        before = initial_carry(network, rule, theta, task, instance, k_net)[0].weights
        return before, unroll(network, rule, theta, task, instance, key=k_net).state.weights
    # JAX's threefry loop: unrolled, this one program compiled in 2.2x the time (the
    # ``oja`` demo: 1.45-1.49 s against 0.64-0.67 s, docs/benchmarks.md)
    return xla.once(run, threefry="rolled")


def _curves(task, network, rule, theta, keys, every: int) -> dict[str, np.ndarray]:
    run = _shared(_curves_fn, task, network, rule, every)
    return {k: np.asarray(v, dtype=np.float32) for k, v in run(theta, keys).items()}


def _spikes(task, network, rule, theta, key) -> tuple[np.ndarray, ...]:
    """The 0/1 spikes of every layer (input first) through one task, (steps, neurons)."""

    def spikes(signals):
        return tuple(s.astype(jnp.uint8) for s in (signals[0].pre, *(s.post for s in signals)))

    @xla.once
    def run(theta, key):
        k_task, k_net = jax.random.split(key)
        return trace(network, rule, theta, task, task.sample(k_task), k_net, spikes)[2]

    return tuple(np.asarray(s) for s in run(theta, key))


def stdp_window(rule, theta, decay: float, w: float, window: int = WINDOW,
                layer: int = 0) -> np.ndarray:
    """Δw(Δt) for Δt in ``[-window, window]``: one synapse's weight change summed over
    ``3 * window`` steps, a presynaptic spike at step ``window`` and a postsynaptic one
    ``Δt`` steps later; traces ``trace <- decay * trace + spike`` as in
    :class:`~metaplastic.spiking.SpikingNetwork`; the weight held at ``w``; no feedback,
    no modulator. Rules with per-synapse θ use the first synapse's."""
    theta_l = rule.layer_theta(theta, layer)
    theta_l = jax.tree.map(lambda a: a.reshape(-1)[:1].reshape((1, 1)) if jnp.ndim(a) == 2
                           else a, theta_l)
    n = 3 * window
    t = jnp.arange(n)

    def one(dt):
        pre = (t == window).astype(jnp.float32)
        post = (t == window + dt).astype(jnp.float32)

        def body(c, s):
            tr_pre, tr_post, state, total = c
            tr_pre, tr_post = decay * tr_pre + s[0], decay * tr_post + s[1]
            z = jnp.zeros((1,))
            sig = LocalSignals(pre=s[0][None], post=s[1][None], w=jnp.full((1, 1), w),
                               e_pre=z, e_post=z, modulator=jnp.zeros(()),
                               pre_trace=tr_pre[None], post_trace=tr_post[None])
            dw, state = rule.update(theta_l, sig, state)
            return (tr_pre, tr_post, state, total + dw[0, 0]), None

        c0 = (jnp.zeros(()), jnp.zeros(()), rule.init_state((1, 1)), jnp.zeros(()))
        return jax.lax.scan(body, c0, jnp.stack([pre, post], axis=1))[0][3]

    return np.asarray(xla.once(jax.vmap(one))(jnp.arange(-window, window + 1)))


def record(cfg: RunConfig, pieces, theta, theta0) -> dict[str, np.ndarray]:
    """Everything listed in the module docstring, as numpy arrays by name."""
    task, network = pieces.task, pieces.network
    keys = jax.random.split(streams.stream_key(cfg.seed, streams.EPISODE),
                            N_TASKS)
    every = max(1, task.n_steps // N_RECORDS)
    out: dict[str, np.ndarray] = {"curve_steps": every * np.arange(1, task.n_steps // every + 1),
                                  "score": np.asarray(str(task.score))}
    start = cfg.rule.get("start") if isinstance(cfg.rule, dict) else None
    if isinstance(start, str) and start != "zeros":  # the starting rule, for the legends
        out["start_name"] = np.asarray(start)
    compared = _rules(cfg, pieces, theta, theta0)
    for label, rule, th in compared:
        for metric, v in _curves(task, network, rule, th, keys, every).items():
            out[f"curve.{label}.{metric}"] = v
    before, after = _shared(_weights_fn, task, network, pieces.rule)(theta, keys[0])
    for l, (a, b) in enumerate(zip(before, after, strict=True)):
        out[f"w_before.{l}"] = np.asarray(a, dtype=np.float32)
        out[f"w_after.{l}"] = np.asarray(b, dtype=np.float32)
    if isinstance(pieces.rule, HasLayerStatistics):  # per-synapse coefficients (abcd)
        for l, layer in enumerate(pieces.rule.layer_tables(theta)):
            for name, v in layer.items():
                out[f"abcd.{l}.{name}"] = np.asarray(v, dtype=np.float32)
    if network.spiking:
        out.update(_spiking(cfg, pieces, compared, keys[0], before))
    return out


def _spiking(cfg: RunConfig, pieces, compared, key, weights) -> dict[str, np.ndarray]:
    task, network = pieces.task, pieces.network
    out: dict[str, np.ndarray] = {}
    if task.n_steps * sum(network.sizes) <= MAX_SPIKE_ENTRIES:
        for label, rule, th in compared[:2]:
            for l, s in enumerate(_spikes(task, network, rule, th, key)):
                out[f"spikes.{label}.{l}"] = s
    for name in ("target", "phase_steps"):
        if isinstance(getattr(task, name, None), int | float):
            out["target_rate" if name == "target" else name] = np.asarray(getattr(task, name))
    w = float(np.mean(np.abs(np.asarray(weights[0])))) or 0.1
    out["window_dt"], out["window_w"] = np.arange(-WINDOW, WINDOW + 1), np.asarray(w)
    stdp = build_rule(cfg, "stdp")
    windows = [(label, rule, th) for label, rule, th in compared[:2]]
    windows.append(("pair STDP", stdp, stdp.init(jax.random.key(0), network.shapes)))
    for label, rule, th in windows:
        out[f"window.{label}"] = stdp_window(rule, th, network.trace_decay, w)
    return out


def save(path: str | Path, recorded: dict[str, np.ndarray]) -> Path:
    """Write ``episode.npz`` (no object arrays: loads with ``allow_pickle=False``)."""
    path = Path(path)
    np.savez(path, **recorded)
    return path


def after_learning(cfg: RunConfig, pieces, theta, seed: int, steps: int | None = None):
    """For export: one inner episode with the learned θ on a task drawn with ``seed``,
    then the network after learning run again on that task with its weights frozen.
    Returns ``(weights after learning, spikes of every layer (input first) of the frozen
    run, (steps, neurons) each)``."""
    task, network = pieces.task, pieces.network
    k_task, k_net = jax.random.split(streams.stream_key(seed, streams.EPISODE))
    instance = task.sample(k_task)
    weights = unroll(network, pieces.rule, theta, task, instance, key=k_net).state.weights
    steps = task.n_steps if steps is None else steps

    @xla.once
    def frozen(weights):
        state = network.init(k_net, weights)
        env = task.reset(instance, jax.random.fold_in(k_net, 1))

        def body(carry, _):
            state, env = carry
            x, _ = task.observe(instance, env)
            act, state = network.run(state, x)
            env = task.transition(instance, env, act.rates[-1])
            return (state, env), tuple(r.astype(jnp.uint8) for r in act.rates)

        return jax.lax.scan(body, (state, env), None, length=steps)[1]

    spikes = frozen(weights)
    return (tuple(np.asarray(w, dtype=np.float32) for w in weights),
            tuple(np.asarray(s) for s in spikes))
