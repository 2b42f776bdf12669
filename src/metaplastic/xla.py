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

Random numbers: JAX lowers its threefry hash (every ``jax.random`` draw, split and
fold-in) on the CPU as a loop over the hash's rounds, and XLA compiles each such loop into
several small kernels of its own: most of the kernels of a meta-step program (76 of 219 in
``oja``'s). With ``METAPLASTIC_THREEFRY=unrolled`` the library lowers it on the CPU as JAX
lowers it for other backends (:func:`threefry_lowering`; for calls of fewer than
:data:`UNROLL_BELOW` outputs, and not in population loops: :func:`rolled_threefry`), one
straight-line computation that fuses with its neighbours: the same random bits (tested),
``oja``'s meta-step program compiled in 0.56 of the time (docs/benchmarks.md). It is not
the default: the other fusions round some neighbouring arithmetic differently, and a
meta-training run, chaotic, then ends elsewhere (``stdp-pca`` seed 0: 0.791 instead of
the published 0.724), so the published numbers rest on JAX's own lowering. Set, it
applies to every program the process lowers for the CPU afterwards, the user's own
included.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import jax

from metaplastic import devices

CPU_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


def _on_this_backend(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` (XLA's CPU options, all of them) on the CPU; none elsewhere."""
    return dict(options) if jax.default_backend() == "cpu" else {}


def compiler_options() -> dict[str, Any]:
    """The XLA options the library compiles its loops with on the current backend."""
    return _on_this_backend(CPU_OPTIONS)


#: for programs compiled only to read XLA's analysis of them (memory), never run: LLVM's
#: optimisation of machine code, most of a CPU compilation, is skipped; buffer assignment,
#: which the analysis reports, happens before it and is unchanged
ANALYSIS_OPTIONS = {"xla_backend_optimization_level": 0}


def compile_for_analysis(lowered: Any) -> Any:
    """``lowered.compile()`` for a program that is analysed and never run: on the CPU with
    :data:`ANALYSIS_OPTIONS` (the same memory analysis, measured in 0.6–0.75 of the
    time); elsewhere as it is."""
    return lowered.compile(compiler_options=_on_this_backend(ANALYSIS_OPTIONS))


#: for programs run once or a few times per process (a held-out evaluation, the recorded
#: episode, a check): LLVM's optimisation of machine code at level 1 instead of XLA's
#: default 2. Measured on 17 presets' held-out evaluation programs (docs/benchmarks.md):
#: compiled in 0.34–0.64 of the time (median 0.55; the 0.4 s programs of ``infer-*``
#: unchanged), run at 0.84–1.19× the speed; per-task results bitwise the same on 12, and
#: on the others LLVM's vectorisation rounds some sums differently: the means moved by at
#: most 2.3e-6 of their 95% CI. Meta-training's programs, run thousands of times and
#: chaotic (a last-digit change ends elsewhere), keep the default
ONCE_OPTIONS = {"xla_backend_optimization_level": 1}


class _Once:
    """``jax.jit(fn, **kwargs)`` with :data:`ONCE_OPTIONS` on the CPU, created at the first
    call or ``lower`` (so that defining one at import touches no device)."""

    def __init__(self, fn: Callable, kwargs: dict[str, Any]):
        self.fn, self.kwargs, self._jitted = fn, kwargs, None

    @property
    def jitted(self) -> Callable:
        if self._jitted is None:
            self._jitted = jax.jit(self.fn, compiler_options=_on_this_backend(ONCE_OPTIONS),
                                   **self.kwargs)
        return self._jitted

    def __call__(self, *args, **kwargs):
        return self.jitted(*args, **kwargs)

    def clear_cache(self) -> None:  # (nothing to clear before the first call)
        if self._jitted is not None:
            self._jitted.clear_cache()

    def __getattr__(self, name: str):  # the rest of the jitted function's interface: lower, ...
        if name in ("fn", "kwargs", "_jitted"):  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.jitted, name)


def once(fn: Callable | None = None, **kwargs) -> Any:
    """``jax.jit`` for a program that runs once or a few times (:data:`ONCE_OPTIONS`);
    usable as a decorator, also as ``@partial(once, static_argnums=0)``."""
    if fn is None:
        return partial(once, **kwargs)
    return _Once(fn, kwargs)


def jit(fn: Callable, unrolled_random: bool = True, **kwargs) -> Callable:
    """``jax.jit(fn, **kwargs)`` with :func:`compiler_options` (decided at the call, so
    importing the library still touches no device); in a multi-process run its results
    are whole on every process (:func:`metaplastic.devices.replicated`).
    ``unrolled_random=False``: lowered with JAX's own threefry loop (:func:`rolled_threefry`),
    for programs whose large random draws XLA would otherwise fuse into slow kernels."""
    whole = devices.replicated()
    if whole is not None:
        kwargs.setdefault("out_shardings", whole)
    jitted = jax.jit(fn, compiler_options=compiler_options(), **kwargs)
    return jitted if unrolled_random else _RolledRandom(jitted)


#: set while a program is lowered with JAX's own threefry loop (:func:`rolled_threefry`)
_ROLLED = contextvars.ContextVar("metaplastic_threefry_rolled", default=False)


@contextlib.contextmanager
def rolled_threefry(rolled: bool = True):
    """Within: programs lowered for the CPU use JAX's own threefry loop (the same bits).
    An evolution strategy's population noise, unrolled, is fused by XLA into the
    antithetic concatenation as one slow kernel (``cartpole-hebbian``: 0.42 → 0.59 s per
    10 generations), so population loops are lowered this way."""
    token = _ROLLED.set(rolled)
    try:
        yield
    finally:
        _ROLLED.reset(token)


class _RolledRandom:
    """A jitted function whose calls and ``lower`` run within :func:`rolled_threefry`
    (lowering happens at the first call, in the caller's thread)."""

    def __init__(self, jitted: Callable):
        self.jitted = jitted

    def __call__(self, *args, **kwargs):
        with rolled_threefry():
            return self.jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        with rolled_threefry():
            return self.jitted.lower(*args, **kwargs)

    def __getattr__(self, name: str):  # the rest of the jitted function's interface
        jitted = self.__dict__.get("jitted")
        if jitted is None:
            raise AttributeError(name)
        return getattr(jitted, name)


#: threefry calls of at least this many outputs keep JAX's loop: XLA fuses a large
#: straight-line hash into its consumers (the ES noise of ``hml-cartpole``, 200 × 44,160,
#: into its antithetic concatenation: 15 ms rolled, 257 ms unrolled per generation)
UNROLL_BELOW = 1 << 18


def threefry_lowering(unrolled: bool = True) -> bool:
    """Lower JAX's threefry hash on the CPU unrolled (see the module) for calls of fewer
    than :data:`UNROLL_BELOW` outputs, or with ``unrolled=False`` as JAX does (a loop over
    the hash's rounds) for all.

    Returns whether that lowering is now registered: False where this JAX version lacks
    the (private) pieces it needs, which leaves JAX as it was."""
    lowering = primitive = None
    for where in ("jax._src.random.threefry2x32", "jax._src.prng"):
        try:
            module = __import__(where, fromlist=["_"])
        except ImportError:
            continue
        lowering = getattr(module, "_threefry2x32_lowering", None)
        primitive = getattr(module, "threefry2x32_p", None)
        if lowering is not None and primitive is not None:
            break
    try:
        from jax._src.interpreters import mlir

        if lowering is None or primitive is None or \
                "use_rolled_loops" not in inspect.signature(lowering).parameters:
            return False
        rolled, straight = (mlir.lower_fun(partial(lowering, use_rolled_loops=r),
                                           multiple_results=True) for r in (True, False))

        def rule(ctx, *args):
            try:
                size = math.prod(int(d) for d in ctx.avals_out[0].shape)
            except (TypeError, ValueError):  # a symbolic shape: JAX's own
                size = UNROLL_BELOW
            fast = unrolled and size < UNROLL_BELOW and not _ROLLED.get()
            return (straight if fast else rolled)(ctx, *args)

        mlir.register_lowering(primitive, rule, platform="cpu")
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    return True


#: whether this process lowers threefry unrolled on the CPU (:func:`threefry_lowering`:
#: with ``METAPLASTIC_THREEFRY=unrolled``; otherwise JAX's own lowering, untouched)
THREEFRY_UNROLLED = os.environ.get("METAPLASTIC_THREEFRY", "") == "unrolled" \
    and threefry_lowering(True)
