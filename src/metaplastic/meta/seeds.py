"""Several seeds of one configuration as one program.

``run_seeds(outer, objective, theta0s, keys)`` runs ``len(keys)`` independent meta-training
runs — the same outer loop and objective, each from its own θ0 and key — as one compiled
program whose state carries a leading seed axis. It compiles once and dispatches once per
chunk for all seeds, instead of once per seed. Two ways to batch the seeds:

* ``"loop"`` (default): ``lax.map`` of the driver's chunk over the seed axis — inside the
  program the seeds take turns, each with exactly the arithmetic of its own run, so every
  seed's θ and metrics equal a separate run's (:func:`metaplastic.meta.driver.run`)
  **bitwise** (tested);
* ``"vmap"``: ``jax.vmap`` of the chunk — the seeds' arrays side by side, which fills a
  device that one small run leaves idle (a GPU); XLA's kernels for the batch may round
  differently in the last bit, and over hundreds of meta-steps such differences grow (4e-4
  relative in θ after 1000 ``oja`` steps on the CPU).

Each seed keeps its own result (θ, history, state), its own checkpoint and its own
divergence: a seed whose inner learning diverges stops (its error in ``result.error``)
while the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from metaplastic.errors import ConfigError
from metaplastic.meta import driver
from metaplastic.meta.guard import DEFAULT_GUARD, Guard
from metaplastic.meta.segments import as_objective

Array = jax.Array
BATCHING = ("loop", "vmap")


stack, unstack = driver.stack, driver.unstack


def run_seeds(outer: Any, objective: Any, theta0s: list[Any], keys: list[Array], *,
              progress: Callable[[int, list[dict]], None] | None = None,
              states: list[driver.RunState] | None = None,
              checkpoint: Callable[[int, driver.RunState], None] | None = None,
              batching: str = "loop", guard: Guard = DEFAULT_GUARD) -> list[driver.MetaResult]:
    """One :class:`~metaplastic.meta.driver.MetaResult` per seed (see the module).

    ``progress(i, records)`` and ``checkpoint(i, state)`` follow every chunk for every seed
    i still running. An exception that stops the whole program (Ctrl-C, SIGTERM, an error)
    carries ``.results``: every seed's result after the last whole chunk."""
    if not keys or len(theta0s) != len(keys):
        raise ConfigError(f"run_seeds needs one θ0 per key and at least one seed; got "
                          f"{len(theta0s)} θ0 and {len(keys)} keys")
    if batching not in BATCHING:
        raise ConfigError(f"batching must be one of {', '.join(BATCHING)}, got {batching!r}")
    objective = as_objective(objective)
    outer.check(objective)
    keys = [driver.as_key(k) for k in keys]
    if states is None:
        states = [driver.init(outer, objective, driver.check_theta0(objective, t), k)
                  for t, k in zip(theta0s, keys, strict=True)]
    results = [driver.MetaResult(driver.result_theta(outer, s, guard), [], s) for s in states]
    try:
        driver.host_loop(outer, objective, stack(keys), stack(states), results, progress,
                         checkpoint, seeds=batching, guard=guard)
    except (Exception, KeyboardInterrupt) as e:
        try:
            e.results = results
        except AttributeError:
            pass
        raise
    return results
