"""How the library compiles its long loops: ``jax.jit`` plus XLA options chosen for them.

On the CPU, XLA's default copy insertion keeps a whole copy of a weight matrix per step in
an unrolled learning loop whenever the old matrix is still read after the new one has been
written in place — as forward-mode meta-gradients do (the tangent update reads the old
weights). Region-based copy insertion sees that the reads can come first and drops the
copy: one pass over every synapse less per step (about 10% of a Shervani-Tabar & Rosenbaum
meta-episode, measured in docs/benchmarks.md), with identical results. Other backends get
no options.

In a multi-process run (:mod:`metaplastic.devices`) every process runs the same
programs and gets their whole results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from metaplastic import devices

CPU_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


def compiler_options() -> dict[str, Any]:
    """The XLA options the library compiles its loops with on the current backend."""
    return dict(CPU_OPTIONS) if jax.default_backend() == "cpu" else {}


def jit(fn: Callable, **kwargs) -> Callable:
    """``jax.jit(fn, **kwargs)`` with :func:`compiler_options` (decided at the call, so
    importing the library still touches no device); in a multi-process run its results
    are whole on every process (:func:`metaplastic.devices.replicated`)."""
    whole = devices.replicated()
    if whole is not None:
        kwargs.setdefault("out_shardings", whole)
    return jax.jit(fn, compiler_options=compiler_options(), **kwargs)
