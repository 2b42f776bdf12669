"""Held-out evaluation: a rule on fresh tasks, as means with 95% confidence intervals.

Evaluation tasks come from a key stream (``streams.stream_key(seed, streams.EVAL)``) that
meta-training never uses, so every evaluated task is one the rule never saw.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import capabilities as cap
from metaplastic import streams, xla
from metaplastic._stats import mean_ci
from metaplastic.errors import ConfigError
from metaplastic.meta.guard import Guard, episode_diverged
from metaplastic.meta.memory import eval_batch
from metaplastic.meta.objective import Objective


def eval_key(seed: int) -> jax.Array:
    return streams.stream_key(seed, streams.EVAL)


@partial(xla.once, static_argnums=0)
def _evaluate(objective: Objective, theta: Any, keys: jax.Array,
              ids: jax.Array | None = None) -> dict:
    def one(k, i):
        loss, metrics, _ = objective.episode(theta, k, instance_id=i)
        return {"loss": loss, **metrics}

    return jax.vmap(one)(keys, ids)


#: more held-out tasks than this per row is a typing mistake (the keys alone would take
#: 80 MB; the 95% CI at this count is already below 0.1% of the spread)
MAX_EVAL_TASKS = 10_000_000


def check_eval_tasks(n: int, where: str) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_EVAL_TASKS:
        raise ConfigError(f"{where} must be an integer in [0, {MAX_EVAL_TASKS:,}], got {n!r}")


def evaluate(objective: Objective, theta: Any, *, key: jax.Array, n_tasks: int,
             batch: int | None = None) -> dict:
    """Per-task loss and metrics (numpy arrays of length ``n_tasks``) after inner learning.

    A task with a finite set of instances (``Task.instance_ids``: recorded trajectories)
    is scored on each instance exactly once instead (``n_tasks`` is then their number).
    Compiled once per distinct (hashable) objective: rules that differ only in their
    starting parameters share one compiled program. Tasks run all at once when they fit
    in memory, otherwise in batches of ``batch`` (default: what fits in half of it; the
    last batch padded, so one program) — same tasks, same keys.
    """
    check_eval_tasks(n_tasks, "n_tasks")
    ids = objective.task.instance_ids()
    if ids is not None:
        ids = jnp.asarray(np.asarray(ids), jnp.int32)
        n_tasks = int(ids.shape[0])
    keys = jax.random.split(key, n_tasks)
    batch = batch or eval_batch(
        objective, objective.theta_like if isinstance(objective, cap.KnowsTheta) else theta,
        n_tasks)
    if batch >= n_tasks:
        out = _evaluate(objective, theta, keys, ids)
        return {k: np.asarray(v) for k, v in out.items()}
    parts = []
    for start in range(0, n_tasks, batch):
        chunk = keys[start:start + batch]
        part = None if ids is None else ids[start:start + batch]
        pad = batch - chunk.shape[0]
        if pad:
            chunk = jnp.concatenate([chunk, keys[:pad]])
            part = None if ids is None else jnp.concatenate([part, ids[:pad]])
        out = _evaluate(objective, theta, chunk, part)
        parts.append({k: np.asarray(v)[:batch - pad] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def release_compiled() -> None:
    """Drop the compiled evaluation programs. Each holds its machine code in memory
    mappings (about a hundred per program on the CPU); an evaluation matrix compiles
    hundreds of programs, and a process may hold only 65,530 mappings (Linux's default
    ``vm.max_map_count``): past it, compilation fails and the process crashes."""
    _evaluate.clear_cache()


def summarise(per_task: dict, weight_bound: float = Guard.weight_bound) -> dict[str, Any]:
    """Mean and CI of every metric over the tasks whose loss is finite, and how many
    tasks diverged — the one definition (:func:`metaplastic.meta.guard.episode_diverged`):
    a non-finite loss, or weights grown beyond ``weight_bound`` (the run's
    ``meta.weight_bound``) relative to their start (such a task's finite scores stay in
    the mean: leaving them out would flatter the rule)."""
    loss = np.asarray(per_task["loss"])
    finite = np.isfinite(loss)
    if "w_max" in per_task and "w0_max" in per_task:
        bad = np.asarray(episode_diverged(loss, per_task["w_max"], per_task["w0_max"],
                                          weight_bound))
    else:
        bad = ~finite
    out: dict[str, Any] = {"tasks": int(finite.size), "diverged": int(bad.sum())}
    for k, v in per_task.items():
        m, ci, _ = mean_ci(np.where(finite, v, np.nan))
        out[k] = {"mean": m, "ci95": ci}
    return out


def coefficient_cosine(a, b) -> float:
    """Cosine similarity of two flattened coefficient arrays."""
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def cosine_to_reference(theta, reference_theta) -> float:
    def leaves(t):
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
    return coefficient_cosine(leaves(theta), leaves(reference_theta))
