"""Task families and their registry: ``make(name, **kw)``.

* ``pca`` — online principal component analysis with random covariances;
* ``gym`` — an episode of any gymnax environment (``env`` option), with the aliases
  ``cartpole``, ``acrobot``, ``pendulum`` and ``mountaincar`` (continuous);
* ``fewshot`` — online N-way K-shot classification with meta-training / held-out classes;
* ``homeostasis`` — hold a target firing rate while the input statistics change.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from metaplastic._fields import coerce_kwargs
from metaplastic.errors import ConfigError, unknown_name
from metaplastic.tasks.base import Task
from metaplastic.tasks.fewshot import FewShotTask
from metaplastic.tasks.gym import GymTask
from metaplastic.tasks.homeostasis import HomeostasisTask
from metaplastic.tasks.pca import PCAInstance, PCATask

_GYM_ALIASES = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1", "pendulum": "Pendulum-v1",
                "mountaincar": "MountainCarContinuous-v0"}
_BASE = {"pca": PCATask, "gym": GymTask, "fewshot": FewShotTask,
         "homeostasis": HomeostasisTask}
REGISTRY: dict[str, Callable[..., Task]] = dict(_BASE) | {
    alias: functools.partial(GymTask, env=env) for alias, env in _GYM_ALIASES.items()}
_CLASS = dict(_BASE) | {
    alias: GymTask for alias in _GYM_ALIASES}


def options(name: str) -> list[str]:
    if name not in REGISTRY:
        raise unknown_name("task", name, REGISTRY)
    fields = [f.name for f in dataclasses.fields(_CLASS[name]) if f.init]
    return [f for f in fields if not (name in _GYM_ALIASES and f == "env")]


def make(name: str, **kw) -> Task:
    """Build a registered task; unknown names or options raise a ConfigError."""
    valid = options(name)
    kw = coerce_kwargs(_CLASS[name], kw, f"task {name!r}")
    if set(kw) - set(valid):
        raise ConfigError(f"task {name!r} takes no option(s) {sorted(set(kw) - set(valid))}")
    return REGISTRY[name](**kw)


__all__ = ["REGISTRY", "FewShotTask", "GymTask", "HomeostasisTask", "PCAInstance", "PCATask",
           "Task", "make", "options"]
