"""Task families and their registry: ``make(name, **kw)``.

* ``pca`` — online principal component analysis with random covariances.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from metaplastic._fields import coerce_kwargs
from metaplastic.errors import unknown_name
from metaplastic.tasks.base import Task
from metaplastic.tasks.pca import PCAInstance, PCATask

REGISTRY: dict[str, Callable[..., Task]] = {"pca": PCATask}


def options(name: str) -> list[str]:
    if name not in REGISTRY:
        raise unknown_name("task", name, REGISTRY)
    return [f.name for f in dataclasses.fields(REGISTRY[name]) if f.init]


def make(name: str, **kw) -> Task:
    """Build a registered task; unknown names or options raise a ConfigError."""
    options(name)
    return REGISTRY[name](**coerce_kwargs(REGISTRY[name], kw, f"task {name!r}"))


__all__ = ["REGISTRY", "PCAInstance", "PCATask", "Task", "make", "options"]
