"""What a meta-step needs in memory, estimated before anything is compiled or run.

A size typed by mistake (``task.n_in = 1000000``: a 4 TB mixing matrix per task,
``meta.tasks_per_step = 100000000``) used to run for a minute and end in an abort or an
out-of-memory error, with a run directory marked finished. :func:`estimate` adds up, from
shapes alone (``jax.eval_shape``: nothing is allocated), the inner problems that live at
once — each task's instance and network state, times the tasks per step, times the
population members evaluated together — and, for gradients by backprop through the
unroll, the network state stored at every step. It is a lower bound: the compiled
program needs this much at least. :func:`check_fits` refuses a run whose lower bound
exceeds the machine's memory, with a message naming the sizes.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import numpy as np

from metaplastic import capabilities as cap
from metaplastic.errors import ConfigError


class Estimate(NamedTuple):
    total: int  # bytes, a lower bound
    parts: dict[str, int]  # what it is made of (bytes)


def nbytes(tree: Any) -> int:
    """Bytes of a pytree of arrays or ``ShapeDtypeStruct``s."""
    return int(sum(np.prod(x.shape, dtype=np.float64) * _itemsize(x.dtype)
                   for x in jax.tree.leaves(tree) if hasattr(x, "shape")))


def _itemsize(dtype: Any) -> int:
    if jax.numpy.issubdtype(dtype, jax.dtypes.prng_key):
        return 8  # a threefry key: two 32-bit words
    return np.dtype(dtype).itemsize


def problem_bytes(objective: Any, theta: Any) -> tuple[int, int]:
    """(bytes of one task's instance, bytes of its network state) from shapes only; (0, 0)
    for an objective without ``start`` (a plain function)."""
    if not isinstance(objective, cap.Starts):
        return 0, 0
    instances, _, carries = jax.eval_shape(objective.start, theta, jax.random.key(0))
    n = objective.tasks_per_step
    return nbytes(instances) // n, nbytes(carries) // n


def estimate(outer: Any, objective: Any, theta: Any) -> Estimate:
    """A lower bound on the memory one meta-step of ``outer`` on ``objective`` needs (the
    sum over a mixture's parts, which one step runs together)."""
    members = cap.members_at_once(outer)
    parts = {"task instances": 0, "network states": 0}
    for part in cap.parts(objective):
        instance, carry = problem_bytes(part, theta)
        at_once = cap.tasks_per_step(part) * members
        parts["task instances"] += instance * at_once
        parts["network states"] += carry * at_once
        unrolled = isinstance(part, cap.Unrolled)
        if cap.differentiates(outer):
            length = outer.truncation or (part.n_steps if unrolled else 0) or 0
            if unrolled and part.grad_mode == "forward":  # a tangent per number
                key, extra = "tangents", carry * at_once * nbytes_count(theta)
            elif not (unrolled and part.checkpoint):
                key, extra = "stored unroll", carry * at_once * length
            else:
                key, extra = "", 0
            if extra:
                parts[key] = parts.get(key, 0) + extra
    return Estimate(int(sum(parts.values())), parts)


def nbytes_count(theta: Any) -> int:
    """How many numbers θ has."""
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(theta)))


def available() -> tuple[int, str]:
    """(bytes, what) of memory the first device can use: its own memory on GPUs/TPUs, the
    machine's RAM on the CPU."""
    device = jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.device_kind} memory"
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0, "memory"
    return int(ram), "RAM"


#: the environment variable that sets :func:`budget` (bytes, or e.g. "2GiB", "500MiB")
BUDGET_VARIABLE = "METAPLASTIC_MEMORY_BUDGET"
_UNITS = {"": 1, "B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
          "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def budget() -> tuple[int, str]:
    """(bytes, what) one program of a run may hold before the run economises (e.g.
    ``meta.checkpoint = "auto"`` recomputes the unroll instead of storing it): half of
    :func:`available`, or ``$METAPLASTIC_MEMORY_BUDGET``; 0 where neither is known."""
    text = os.environ.get(BUDGET_VARIABLE, "").strip()
    if text:
        unit = text.lstrip("0123456789.eE+- ")
        number, unit = text[:len(text) - len(unit)], unit.strip().upper()
        try:
            value = float(number) * _UNITS[unit]
        except (ValueError, KeyError):
            raise ConfigError(f"{BUDGET_VARIABLE} must be a size such as 2GiB, 500MiB or "
                              f"a number of bytes, got {text!r}") from None
        if not value > 0:
            raise ConfigError(f"{BUDGET_VARIABLE} must be positive, got {text!r}")
        return int(value), f"{BUDGET_VARIABLE}={text}"
    have, what = available()
    return have // 2, f"half the {gib(have)} of {what}"


def gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**26 else f"{n / 2**20:.3g} MiB"


def check_fits(outer: Any, objective: Any, theta: Any, limit: int | None = None,
               copies: int = 1) -> Estimate:
    """The estimate, or a ConfigError when ``copies`` of it (seeds side by side:
    ``--seeds-vmap``) exceed ``limit`` (default: the memory of the machine,
    :func:`available`)."""
    est = estimate(outer, objective, theta)
    what = "memory"
    if limit is None:
        limit, what = available()
    if limit and est.total * copies > limit:
        parts = ", ".join(f"{k} {gib(v)}" for k, v in est.parts.items() if v)
        side = (f"; {copies} seeds side by side need {gib(est.total * copies)} (without "
                f"--seeds-vmap the seeds take turns and need one run's memory)"
                if copies > 1 else "")
        raise ConfigError(
            f"this run needs at least {gib(est.total)} for one meta-step ({parts}){side} but "
            f"the machine has {gib(limit)} of {what}: make the task or network smaller, or "
            f"use fewer tasks per step (meta.tasks_per_step), meta.checkpoint = true, "
            f"truncation or meta.population_batch")
    return est


def eval_batch(objective: Any, theta: Any, n_tasks: int, limit: int | None = None) -> int:
    """How many tasks an evaluation runs at once: all of them when they fit in half the
    machine's memory, fewer otherwise (a ConfigError when not even one fits)."""
    per_task = max(max(sum(problem_bytes(p, theta))
                       for p in cap.parts(objective)), 1)
    if limit is None:
        limit = available()[0]
    if not limit:
        return n_tasks
    fit = (limit // 2) // per_task
    if fit < 1:
        raise ConfigError(f"one task needs at least {gib(per_task)} (its instance and "
                          f"network state) but the machine has {gib(limit)}: make the "
                          f"task or network smaller")
    return int(min(n_tasks, fit))
