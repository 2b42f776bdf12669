"""How well an inferred rule explains recordings, and how sure the inference is (after
Mehta et al., NeurIPS 2023, "Model-based inference of synaptic plasticity rules").

For a fit to a ``recorded`` task (:mod:`metaplastic.tasks.recorded`):

* :func:`per_trajectory` scores every trajectory of a split exactly once (its loss and
  the task's metrics: activity R², choice NLL);
* :func:`deviance_explained` — for choices: ``1 − Σ NLL(rule) / Σ NLL(null)`` over every
  recorded choice, the null model being the same network without plasticity;
* :func:`trajectory_r2` — where the truth is known (simulated recordings): R² of the
  weight *changes* along each trajectory, ``1 − Σ (w − w*)² / Σ (w* − w*_0)²`` over
  steps, synapses of the plastic layers and trajectories (``w*``: the true rule's
  weights on the same replay; the recorded initial weights are common to both, so they
  do not count), and R² of the output activity against the truth's;
* :func:`refit` — the whole fit (the run's outer loop, optimiser, schedule and steps)
  repeated on other sets of trajectories, every repetition in one program (``vmap``):
  bootstrap resamples of the training trajectories give a confidence interval for every
  coefficient (:func:`bootstrap_pools`, :func:`percentile_ci`), and folds give the
  cross-validated likelihood along an L1 path (:func:`fold_pools`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import capabilities as cap
from metaplastic.errors import ConfigError
from metaplastic.inner import trace, unroll
from metaplastic.meta import driver
from metaplastic.tasks.recorded import RecordedTask

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class PooledTask(RecordedTask):
    """A recorded task that draws its trajectories from ``pool[:size]`` (index arrays that
    may be traced: one compiled fit serves every resample). Draws as
    :meth:`RecordedTask.sample` does, so the pool of the training split gives the run's
    own fit."""

    pool: Any = None
    size: Any = None

    def sample(self, key: Array):
        return self.instance(self.pool[jax.random.randint(key, (), 0, self.size)])


def pooled(task: RecordedTask, pool: Array, size: Array) -> PooledTask:
    fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(RecordedTask)
              if f.init}
    return PooledTask(**fields, pool=pool, size=size)


@dataclasses.dataclass(frozen=True)
class Frozen:
    """``rule`` without plasticity — the null model: the same network, initial weights and
    neurons (θ's other parts still apply), every weight update zero."""

    rule: Any

    def __getattr__(self, name: str) -> Any:
        if name == "rule":  # not yet set (copying): no recursion
            raise AttributeError(name)
        return getattr(self.rule, name)

    def update(self, theta: Any, signals: Any, state: Any):
        return jnp.zeros_like(signals.w), state


def check_recorded(objective: Any) -> RecordedTask:
    task = objective.task if isinstance(objective, cap.HasTask) else None
    if not isinstance(task, RecordedTask):
        raise ConfigError("rule recovery is for runs of the task 'recorded' (fits to "
                          f"recordings); this run's task is {type(task).__name__}")
    return task


def per_trajectory(objective: Any, theta: Any, indices, key: Array,
                   network: Any = None, rule: Any = None) -> dict[str, np.ndarray]:
    """Loss and metrics of every trajectory in ``indices`` (each once; arrays over them).
    ``network``/``rule``: others than the objective's (e.g. the null model's)."""
    task = check_recorded(objective)
    net = objective.network if network is None else network
    rule = objective.rule if rule is None else rule

    def one(i, k):
        inst = task.instance(i)
        out = unroll(net, rule, theta, task, inst, key=k)
        return {"loss": task.loss(inst, out.state, out.env, net),
                **task.metrics(inst, out.state, out.env, net)}

    idx = jnp.asarray(np.asarray(indices), jnp.int32)
    out = jax.jit(jax.vmap(one))(idx, jax.random.split(key, idx.shape[0]))
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def deviance_explained(nll, nll_null, counts) -> float:
    """``1 − Σ c·NLL / Σ c·NLL_null``: per-trajectory mean NLLs weighted by their number of
    choices ``c`` (the fraction of the null model's deviance the rule explains)."""
    c = np.asarray(counts, np.float64)
    return float(1.0 - np.sum(c * np.asarray(nll)) / np.sum(c * np.asarray(nll_null)))


def trajectory_r2(task: RecordedTask, fitted: tuple, truth: tuple, indices,
                  key: Array) -> dict[str, float]:
    """R² of ``fitted``'s weight changes and output activity against ``truth``'s (each a
    ``(network, rule, θ)``) replayed on the trajectories ``indices``: ``weights`` over the
    plastic layers' changes from the start (see the module), ``activity`` over the
    output layer's activity at every step (for a choice network: the choice logit). NaN
    where the truth leaves nothing to explain (its weights never change, or its activity
    is constant): an R² is undefined there, not a huge negative number; NaN too, with
    ``diverged`` True, where the fitted rule's replay is not finite."""
    def run(piece, inst, k):
        network, rule, theta = piece
        _, _, (ws, y) = trace(network, rule, theta, task, inst, k,
                              lambda s: ([x.w for x in s], s[-1].post))
        return [w for l, w in enumerate(ws) if network.learns(l)], y

    def one(i, k):
        inst = task.instance(i)
        live = (jnp.arange(task.n_steps) < inst.length)[:, None]
        (got, y), (want, y_true) = run(fitted, inst, k), run(truth, inst, k)
        res = sum(jnp.sum(live[..., None] * (a - b) ** 2) for a, b in zip(got, want,
                                                                          strict=True))
        tot = sum(jnp.sum(live[..., None] * (b - b[:1]) ** 2) for b in want)
        return res, tot, jnp.sum(live * (y - y_true) ** 2), live * y_true, live

    idx = jnp.asarray(np.asarray(indices), jnp.int32)
    res, tot, y_res, y_true, live = jax.jit(jax.vmap(one))(
        idx, jax.random.split(key, idx.shape[0]))
    y_true, live = np.asarray(y_true, np.float64), np.asarray(live, bool)
    values = y_true[np.broadcast_to(live, y_true.shape)]
    y_tot = float(np.sum((values - values.mean()) ** 2))
    tot = float(np.sum(np.asarray(tot, np.float64)))

    def r2(residual: float, total: float) -> float:  # NaN: nothing to explain
        return float(1.0 - residual / total) if total > 1e-24 else float("nan")

    res = float(np.sum(np.asarray(res, np.float64)))
    y_res = float(np.sum(np.asarray(y_res, np.float64)))
    diverged = not (math.isfinite(res) and math.isfinite(y_res))
    return {"weights": float("nan") if diverged else r2(res, tot),
            "activity": float("nan") if diverged else r2(y_res, y_tot),
            # NaN for another reason: the fitted rule's replay is not finite
            "diverged": diverged}


def bootstrap_pools(indices, n: int, key: Array) -> np.ndarray:
    """``n`` resamples (with replacement) of the trajectories ``indices``: (n, len)."""
    indices = np.asarray(indices)
    draws = jax.random.randint(key, (n, indices.size), 0, indices.size)
    return indices[np.asarray(draws)]


def distinct_resamples(pools) -> int:
    """How many of the resamples differ as multisets of trajectories (the order within a
    resample changes nothing the fit sees on average)."""
    return len({tuple(sorted(row)) for row in np.asarray(pools).tolist()})


def possible_resamples(n: int) -> int:
    """How many different resamples (multisets of ``n`` from ``n`` trajectories) exist."""
    return math.comb(2 * n - 1, n)


def fold_pools(indices, folds: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """K-fold split of the trajectories ``indices`` for :func:`refit`: ``(pools, sizes,
    held)`` — row ``k < K`` of ``pools`` draws from every trajectory but fold ``k``'s
    (``held[k]``), the last row from all of them (rows padded by repetition; ``sizes``
    say how much of each row counts)."""
    indices = np.asarray(indices)
    if not 2 <= folds <= indices.size:
        raise ConfigError(f"--folds must be in [2, {indices.size}] (the training "
                          f"trajectories), got {folds}")
    held = np.array_split(indices, folds)
    rows = [np.setdiff1d(indices, h) for h in held] + [indices]
    pools = np.stack([np.resize(r, indices.size) for r in rows])
    return pools, np.array([r.size for r in rows]), held


#: meta-steps of refits run between two progress reports (one program for every chunk)
REFIT_CHUNK = 50


def refit(objective: Any, outer: Any, theta0: Any, pools, sizes, key: Array,
          l1: float | None = None,
          progress: Callable[[int, int], None] | None = None) -> tuple[Any, np.ndarray]:
    """The run's fit from ``theta0`` repeated on every row of ``pools`` (trajectory indices
    drawn uniformly from ``pools[b, :sizes[b]]``), all rows side by side in one program.
    Returns θ with a leading axis over rows and the final meta-loss of each (mean of the
    last 10 steps). ``l1``: another L1 strength than the run's. ``progress(done, total)``
    follows every ``REFIT_CHUNK`` meta-steps (the same numbers as one unbroken scan)."""
    task = check_recorded(objective)
    if l1 is not None:
        objective = dataclasses.replace(objective, l1=float(l1))
    total = jnp.asarray(outer.steps, jnp.int32)

    def made(pool, size):
        return dataclasses.replace(objective, task=pooled(task, pool, size))

    def start(pool, size):
        return driver.init(outer, made(pool, size), theta0, key)

    def advance(state, pool, size, length: int):
        step = driver.step_fn(outer, made(pool, size))
        state, m = jax.lax.scan(lambda s, _: step(s, key, total), state, None,
                                length=length)
        return state, m["loss"]

    pools = jnp.asarray(np.asarray(pools), jnp.int32)
    sizes = jnp.asarray(np.asarray(sizes), jnp.int32)
    states = jax.jit(jax.vmap(start))(pools, sizes)
    chunk = jax.jit(jax.vmap(advance, in_axes=(0, 0, 0, None)), static_argnums=3)
    losses, done = [], 0
    while done < outer.steps:
        n = min(REFIT_CHUNK, outer.steps - done)
        states, loss = chunk(states, pools, sizes, n)
        losses.append(loss)
        done += n
        if progress is not None:
            progress(done, outer.steps)
    loss = jnp.concatenate(losses, axis=1)
    thetas = jax.vmap(outer.theta)(states.outer)
    return thetas, np.asarray(jnp.mean(loss[:, -10:], axis=1), np.float64)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the leading axis (bootstrap samples)."""
    lo = (1.0 - level) / 2.0
    return (np.quantile(samples, lo, axis=0), np.quantile(samples, 1.0 - lo, axis=0))
