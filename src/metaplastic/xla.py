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
``oja``'s). Lowered unrolled (:func:`threefry_lowering`), as JAX lowers it for other
backends, it is one straight-line computation that fuses with its neighbours: the same
random bits (tested), ``oja``'s meta-step program compiled in 0.56 of the time
(docs/benchmarks.md). It is a choice per program (:data:`THREEFRY_MODES`, :func:`jit`'s
and :func:`once`'s ``threefry``): programs run once (:func:`once`) take it by default;
a meta-training run takes it where its config says ``meta.threefry = "unrolled"``
(``oja`` does) — not by default, because the other fusions round some neighbouring
arithmetic differently and a meta-training run, chaotic, then ends elsewhere
(``stdp-pca`` seed 0: 0.791 instead of the published 0.724): the published numbers of the
other presets rest on JAX's own lowering. Population loops keep JAX's loop (their noise,
fused unrolled, is slow), and so do draws of :data:`UNROLL_BELOW` outputs or more.
``METAPLASTIC_THREEFRY=unrolled`` (or ``rolled``) sets the process's default for every
program that does not choose, the user's own included.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import os
from collections.abc import Callable
from functools import partial, wraps
from typing import Any

import jax

from metaplastic import devices
from metaplastic.errors import ConfigError

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
    call or ``lower`` (so that defining one at import touches no device); called and
    lowered with threefry lowered as ``threefry`` says (:func:`threefry_mode`)."""

    def __init__(self, fn: Callable, kwargs: dict[str, Any], threefry: str = "unrolled"):
        self.fn, self.kwargs, self._jitted = fn, kwargs, None
        self.threefry = checked_mode(threefry)

    @property
    def jitted(self) -> Callable:
        if self._jitted is None:
            self._jitted = _jit_in_mode(self.fn, self.threefry,
                                        _on_this_backend(ONCE_OPTIONS), self.kwargs)
        return self._jitted

    def __call__(self, *args, **kwargs):
        return self.jitted(*args, **kwargs)

    def clear_cache(self) -> None:  # (nothing to clear before the first call)
        if self._jitted is not None:
            self._jitted.clear_cache()

    def __getattr__(self, name: str):  # the rest of the jitted function's interface: lower, ...
        if name in ("fn", "kwargs", "_jitted", "threefry"):  # not set yet (a copy)
            raise AttributeError(name)
        return getattr(self.jitted, name)


def once(fn: Callable | None = None, threefry: str = "unrolled", **kwargs) -> Any:
    """``jax.jit`` for a program that runs once or a few times (:data:`ONCE_OPTIONS`,
    threefry unrolled: measured in docs/benchmarks.md); usable as a decorator, also as
    ``@partial(once, static_argnums=0)``."""
    if fn is None:
        return partial(once, threefry=threefry, **kwargs)
    return _Once(fn, kwargs, threefry)


def jit(fn: Callable, threefry: str = "", **kwargs) -> Callable:
    """``jax.jit(fn, **kwargs)`` with :func:`compiler_options` (decided at the call, so
    importing the library still touches no device); in a multi-process run its results
    are whole on every process (:func:`metaplastic.devices.replicated`). ``threefry``:
    how its random numbers are lowered on the CPU (:data:`THREEFRY_MODES`; "": the
    process's default)."""
    whole = devices.replicated()
    if whole is not None:
        kwargs.setdefault("out_shardings", whole)
    if not checked_mode(threefry):
        return jax.jit(fn, compiler_options=compiler_options(), **kwargs)
    return _jit_in_mode(fn, threefry, compiler_options(), kwargs)


def _jit_in_mode(fn: Callable, mode: str, options: dict[str, Any],
                 kwargs: dict[str, Any]) -> Callable:
    """``fn`` jitted with XLA ``options``, lowered and called in threefry ``mode``."""
    return _InMode(jax.jit(in_mode(fn, mode), compiler_options=options, **kwargs), mode)


#: how a program's threefry hash is lowered on the CPU: "rolled" (JAX's own loop over the
#: hash's rounds) or "unrolled" (straight-line code; the same bits); "" in a config or
#: :func:`jit`: the process's default (:data:`DEFAULT_MODE`)
THREEFRY_MODES = ("rolled", "unrolled")


def checked_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`THREEFRY_MODES` or "", else a ConfigError."""
    if mode not in ("", *THREEFRY_MODES):
        raise ConfigError(f"threefry must be one of {', '.join(THREEFRY_MODES)} (or '' for "
                          f"the process's default), got {mode!r}")
    return mode


#: the lowering of the program being lowered (:func:`threefry_mode`); "": the default
_MODE = contextvars.ContextVar("metaplastic_threefry", default="")


@contextlib.contextmanager
def threefry_mode(mode: str):
    """Within: programs lowered for the CPU lower threefry as ``mode`` says (one of
    :data:`THREEFRY_MODES`; "" leaves the surrounding choice). "unrolled" registers the
    library's lowering rule on first use (where this JAX version allows it; otherwise
    JAX's own stays, the same bits)."""
    if mode == "unrolled":
        _registered()
    token = _MODE.set(mode or _MODE.get())
    try:
        yield
    finally:
        _MODE.reset(token)


def in_mode(fn: Callable, mode: str) -> Callable:
    """``fn`` as a function of its own for programs lowered in threefry ``mode``: one object
    per (``fn``, mode), kept on ``fn`` where it takes attributes (a fresh one each time
    where it does not: a bound method). JAX caches a function's traces and lowerings by the
    function, and the lowering depends on the mode, which JAX does not see: without this,
    ``fn`` jitted for one mode after another reused the other's lowering."""
    if not mode:
        return fn
    try:
        table = fn.__dict__.setdefault("_metaplastic_threefry", {})
    except AttributeError:
        table = {}
    if mode not in table:
        @wraps(fn)
        def moded(*args, **kwargs):
            return fn(*args, **kwargs)

        moded.__dict__.pop("_metaplastic_threefry", None)  # (wraps copied the table)
        table[mode] = moded
    return table[mode]


class _InMode:
    """A jitted function whose calls and ``lower`` run within :func:`threefry_mode`
    (lowering happens at the first call, in the caller's thread)."""

    def __init__(self, jitted: Callable, mode: str):
        self.jitted, self.threefry = jitted, mode

    def __call__(self, *args, **kwargs):
        with threefry_mode(self.threefry):
            return self.jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        with threefry_mode(self.threefry):
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
    """Register the library's lowering of JAX's threefry hash on the CPU: unrolled (see
    the module) for calls of fewer than :data:`UNROLL_BELOW` outputs in programs lowered
    in "unrolled" mode (:func:`threefry_mode`), and, where no program chose, as the
    process's default says; JAX's loop over the hash's rounds otherwise. ``unrolled``:
    the process's default (:data:`DEFAULT_MODE`).

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
            fast = size < UNROLL_BELOW and (_MODE.get() or DEFAULT_MODE) == "unrolled"
            return (straight if fast else rolled)(ctx, *args)

        mlir.register_lowering(primitive, rule, platform="cpu")
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    global DEFAULT_MODE
    DEFAULT_MODE = "unrolled" if unrolled else "rolled"
    return True


#: the lowering of programs that do not choose one (:func:`threefry_mode`):
#: ``METAPLASTIC_THREEFRY=unrolled`` makes it "unrolled"; otherwise JAX's own
DEFAULT_MODE = "rolled"
_REGISTERED: list[bool] = []


def _registered() -> bool:
    """Whether the library's lowering rule is registered (registering it, with the
    process's default unchanged, on the first call)."""
    if not _REGISTERED:
        _REGISTERED.append(threefry_lowering(DEFAULT_MODE == "unrolled"))
    return _REGISTERED[0]


#: whether this process lowers threefry unrolled by default (``METAPLASTIC_THREEFRY``)
THREEFRY_UNROLLED = os.environ.get("METAPLASTIC_THREEFRY", "") == "unrolled" \
    and threefry_lowering(True)
if THREEFRY_UNROLLED:
    _REGISTERED.append(True)
