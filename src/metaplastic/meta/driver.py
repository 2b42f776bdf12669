"""The one driver every outer loop runs under: chunks, progress, divergence, records.

Meta-steps run in jitted chunks of ``outer.chunk`` steps (one ``lax.scan``) between
progress callbacks, so the Python loop costs nothing per step and nothing is recompiled
between chunks. A chunk that runs past ``outer.steps`` leaves the state unchanged for the
extra steps (they are marked inactive and not recorded).

The run's whole state is a :class:`RunState` — a pytree of arrays (the step count, the
divergence streak, the outer loop's own state) — so a run resumes from it exactly
(``run(..., state=result.state)``).

Non-finite values: the outer loop keeps its own state where a step was not finite and
reports ``diverged``; with ``on_nan = "stop"``, or after ``max_nan_skips`` meta-steps in a
row with diverging tasks, the run stops with a :class:`~metaplastic.errors.NonFiniteError`
that carries the partial result. With ``on_nan = "rollback"`` such a streak is undone as
a blow-up is (back to the state before it began, the step size cut; the run stops once
``max_rollbacks`` are spent): a θ from which some tasks diverge is often where one step
too large led, and the meta-gradient of the other tasks does not lead back out of it.
The chunks since a streak began are held back (not reported, not checkpointed) until it
ends or is undone. Finite blow-ups (beyond bounds relative to the run's
start), rollbacks and keep-best θ: the :class:`~metaplastic.meta.guard.Guard`.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metaplastic import capabilities as cap
from metaplastic import streams, xla
from metaplastic.errors import ConfigError, NonFiniteError
from metaplastic.interrupts import deferred
from metaplastic.meta.guard import DEFAULT_GUARD, Guard, GuardState
from metaplastic.meta.segments import Truncated, as_objective, select
from metaplastic.progress import reporting

Array = jax.Array

#: θ is logged at every meta-step (for the coefficient plot) only when it is this small
THETA_LOG_MAX = 256


class RunState(NamedTuple):
    step: Array  # meta-steps done
    nan_streak: Array  # meta-steps in a row with diverging tasks
    stopped: Array  # set by a diverging step when on_nan == "stop"
    outer: Any  # the outer loop's own state
    guard: GuardState  # the safeguards' (meta.guard): start values, rollbacks, best θ


@dataclass
class MetaResult:
    theta: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    state: RunState | None = None
    #: why this run stopped early (several seeds in one program: meta.seeds)
    error: Exception | None = None
    #: the rollbacks taken in this call (meta.guard): one dict per rollback
    rollbacks: list[dict[str, Any]] = field(default_factory=list)


def objective_at(objective: Any, length: int) -> Any:
    """The objective as the outer loop sees it with truncation ``length`` (0: whole)."""
    objective = as_objective(objective)
    return Truncated(objective, length) if length else objective


def init(outer: Any, objective: Any, theta0: Any, key: Array) -> RunState:
    """The state before the first meta-step."""
    zero = jnp.zeros((), jnp.int32)
    obj = objective_at(objective, outer.truncation_at(0))
    return strong(RunState(zero, zero, jnp.zeros((), bool), outer.init(obj, theta0, key),
                           Guard().init(theta0)))


def result_theta(outer: Any, state: RunState, guard: Guard) -> Any:
    """The run's θ: with ``keep_best``, the best validated so far (once there is one);
    otherwise the current one."""
    if guard.keep_best and int(state.guard.best_step) >= 0:
        return state.guard.best_theta
    return outer.theta(state.outer)


def strong(tree: Any) -> Any:
    """Every array leaf without JAX's weak type, as a chunk returns it: the first and the
    later chunks (and a state loaded from a file) then share one compiled program."""
    def fix(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x
        return jnp.asarray(x, dtype=jnp.result_type(x))

    return jax.tree.map(fix, tree)


def theta_record(theta: Any) -> dict[str, Array]:
    flat = ravel_pytree(theta)[0]
    return {"theta": flat} if flat.size <= THETA_LOG_MAX else {}


def rollback_key(key: Array, rollbacks: Array) -> Array:
    """The meta-training key after ``rollbacks`` rollbacks (the key itself before any)."""
    folded = jax.random.fold_in(key, streams.ROLLBACK + rollbacks)
    return jax.random.wrap_key_data(jnp.where(rollbacks > 0, jax.random.key_data(folded),
                                              jax.random.key_data(key)))


def scaled(outer: Any, before: Any, after: Any, scale: Array) -> Any:
    """``after`` with its θ step from ``before`` multiplied by ``scale`` (outer loops that
    can set θ; bitwise ``after`` at scale 1)."""
    if not isinstance(outer, cap.SetsTheta):
        return after
    old, new = outer.theta(before), outer.theta(after)
    theta = jax.tree.map(lambda a, b: jnp.where(scale == 1, b, a + scale * (b - a)), old, new)
    return outer.with_theta(after, theta)


def step_fn(outer: Any, objective: Any, guard: Guard = DEFAULT_GUARD) -> Callable:
    """``(state, key, total) -> (state, metrics)``: one meta-step under the driver's rules
    (not jitted): inactive past ``total`` steps or once stopped; ``blowup`` by ``guard``."""
    stop_on_nan = cap.on_nan(outer) == "stop"
    length = objective.length if isinstance(objective, cap.HasLength) else 0
    sign = cap.sign(outer)

    def step(s: RunState, key: Array, total: Array):
        key = rollback_key(key, s.guard.rollbacks)
        new, m = outer.step(objective, s.outer, key, s.step)
        new = scaled(outer, s.outer, new, s.guard.scale)
        active = (s.step < total) & ~s.stopped
        bad = m["diverged"]
        g, blowup = guard.step(s.guard, m, active, sign)
        state = RunState(
            s.step + active,
            jnp.where(active, jnp.where(bad, s.nan_streak + 1, 0), s.nan_streak),
            s.stopped | (active & bad & stop_on_nan),
            select(active, new, s.outer), g)
        metrics = {**m, "step": s.step + 1, "active": active, "diverged": active & bad,
                   "skipped": active & m["skipped"], "blowup": blowup,
                   **theta_record(outer.theta(new))}
        if length:
            metrics["truncation"] = jnp.asarray(length)
        return state, metrics

    return step


def chunk_fn(outer: Any, objective: Any, length: int | None = None,
             seeds: str = "", guard: Guard = DEFAULT_GUARD) -> Callable:
    """Jitted ``(state, key, total) -> (state, stacked metrics)`` of ``outer.chunk`` steps
    (segments of ``length`` inner steps; default: the length in force at step 0). With
    ``seeds`` (``"loop"`` or ``"vmap"``: :mod:`metaplastic.meta.seeds`), state and key
    carry a leading axis of independent runs.

    Shared between runs of equal (hashable) outer loops and objectives, so that running
    the same configuration again — or resuming it — compiles nothing."""
    length = outer.truncation_at(0) if length is None else length
    try:
        return _cached_chunk_fn(outer, objective, length, seeds, guard)
    except TypeError:  # an unhashable piece: compile for this run only
        return _chunk_fn(outer, objective, length, seeds, guard)


def _chunk_fn(outer: Any, objective: Any, length: int, seeds: str = "",
              guard: Guard = DEFAULT_GUARD) -> Callable:
    obj = objective_at(objective, length)
    step = step_fn(outer, obj, guard)

    def run_chunk(state, key, total):
        return jax.lax.scan(lambda s, _: step(s, key, total), state, None, length=outer.chunk)

    mode = cap.threefry(outer)  # threefry's lowering (metaplastic.xla)
    if seeds == "loop":
        return xla.jit(lambda st, k, total: jax.lax.map(
            lambda a: run_chunk(a[0], a[1], total), (st, k)), threefry=mode)
    if seeds == "vmap":
        return xla.jit(jax.vmap(run_chunk, in_axes=(0, 0, None)), threefry=mode)
    return xla.jit(run_chunk, threefry=mode)


_cached_chunk_fn = functools.lru_cache(maxsize=16)(_chunk_fn)

#: programs being compiled in the background (:func:`precompile`): each one's event is
#: set when its compilation has ended
_compiling: dict[Callable, threading.Event] = {}


def precompile(outer: Any, objective: Any, theta0: Any, key: Array,
               guard: Guard = DEFAULT_GUARD) -> None:
    """Start compiling the first chunk's program of ``run(outer, objective, theta0,
    key=key, guard=guard)`` in a background thread, and with ``guard.keep_best`` the
    validation program after it in the same thread, while the caller does other work (a
    run's constraint checks: small programs of their own). XLA's CPU compiler already
    keeps about 1.7 cores busy, so the validation program, first needed after the first
    chunk, is compiled after the chunk's program instead of beside it (beside it, it
    slowed the chunk's). ``run`` waits for each program instead of compiling it a second
    time.
    Nothing is started for a program that cannot be shared (an unhashable piece: ``run``
    compiles its own) or in a multi-process run.

    The threads are not daemons: a process that ends early (a failed check, Ctrl-C) waits
    for the compilation to end first, because XLA aborts the interpreter's exit while a
    compilation is running."""
    from metaplastic import devices

    if devices.replicated() is not None:
        return
    for done in [f for f, e in _compiling.items() if e.is_set()]:
        del _compiling[done]  # runs that ended before their first chunk (a failed check)
    try:
        fn = _cached_chunk_fn(outer, objective, outer.truncation_at(0), "", guard)
    except TypeError:
        return

    jobs = [(fn, lambda: _first_chunk_compiled(fn, outer, objective, theta0, key))]
    if guard.keep_best:  # the validation program, compiled after the chunk's
        val = validator(objective)

        def compile_validator() -> None:
            state = init(outer, objective, check_theta0(objective, theta0), key)
            val.lower(outer.theta(state.outer), key, jnp.asarray(0, jnp.int32)).compile()

        jobs.append((val, compile_validator))
    _in_background(jobs)


def first_chunk_memory(outer: Any, objective: Any, theta0: Any, key: Array,
                       guard: Guard = DEFAULT_GUARD) -> int | None:
    """Bytes the first chunk's program of ``run(outer, objective, theta0, key=key,
    guard=guard)`` holds at once by XLA's memory analysis (arguments, outputs and
    temporaries, less what outputs reuse of arguments), or None where the backend has no
    analysis, or where the run would not share the program (an unhashable piece, a
    multi-process run: measuring it would compile it twice). The program is the one the
    run executes: compiled by :func:`precompile` in the background (waited for here) or
    now, and then not compiled again."""
    from metaplastic import devices

    if devices.replicated() is not None:
        return None
    try:
        fn = _compiled(_cached_chunk_fn(outer, objective, outer.truncation_at(0), "", guard))
    except TypeError:
        return None
    analysis = _first_chunk_compiled(fn, outer, objective, theta0, key).memory_analysis()
    if analysis is None:
        return None
    return int(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
               + analysis.output_size_in_bytes - analysis.alias_size_in_bytes)


def _first_chunk_compiled(fn: Callable, outer: Any, objective: Any, theta0: Any,
                          key: Array) -> Any:
    """``fn`` (a chunk program) compiled for the run's first chunk (shared with the run:
    its call then compiles nothing)."""
    state = init(outer, objective, check_theta0(objective, theta0), key)
    return fn.lower(state, key, jnp.asarray(outer.steps, jnp.int32)).compile()


def _in_background(jobs: list[tuple[Callable, Callable[[], None]]]) -> None:
    """Run each ``compile_fn`` (which compiles its ``fn``) in turn, in one thread;
    :func:`_compiled` waits for a program's own compilation only. A failure is left for
    the run, which compiles ``fn`` again and reports the error."""
    jobs = [(fn, compile_fn) for fn, compile_fn in jobs if fn not in _compiling]
    if not jobs:
        return
    ended = {fn: threading.Event() for fn, _ in jobs}

    def target() -> None:
        for fn, compile_fn in jobs:
            try:
                if not threading.main_thread().is_alive():
                    continue  # the process is exiting (Ctrl-C, a failed check): no more
                compile_fn()
            except Exception:  # noqa: BLE001  the run compiles it again and reports it
                pass
            finally:
                ended[fn].set()

    _compiling.update(ended)
    threading.Thread(target=target, name="metaplastic-precompile").start()


def compiling_in_background() -> bool:
    """Whether a program started by :func:`precompile` is still being compiled (a
    process that exits now waits for it)."""
    return any(not ended.is_set() for ended in _compiling.values())


def _compiled(fn: Callable) -> Callable:
    """``fn``, once a background compilation of it (:func:`precompile`) has ended."""
    ended = _compiling.get(fn)
    if ended is not None:
        ended.wait()
        _compiling.pop(fn, None)
    return fn


def records_of(metrics: dict[str, Array]) -> list[dict[str, Any]]:
    """Stacked chunk metrics -> one plain-Python dict per active meta-step."""
    m = jax.device_get(metrics)
    out = []
    for i in np.flatnonzero(m["active"]):
        rec = {}
        for k, v in m.items():
            if k == "active":
                continue
            x = v[i]
            rec[k] = x.tolist() if np.ndim(x) else x.item()
        out.append(rec)
    return out


def run(outer: Any, objective: Any, theta0: Any, *, key: Array,
        progress: Callable[[list[dict]], None] | bool | None = None,
        state: RunState | None = None,
        checkpoint: Callable[[RunState], None] | None = None,
        guard: Guard = DEFAULT_GUARD) -> MetaResult:
    """Run ``outer`` on ``objective`` from ``theta0`` (or resume from ``state``) until
    ``outer.steps`` meta-steps are done, under ``guard``'s safeguards
    (:mod:`metaplastic.meta.guard`). ``progress(records)``, then ``checkpoint(state)``,
    follow every chunk; ``progress=None`` draws a bar on a terminal, ``False`` is silent
    (:mod:`metaplastic.progress`).

    An exception that stops the run (NaN/inf, Ctrl-C, any error) carries ``.result``: θ,
    history and state after the last whole chunk, never the starting θ by mistake."""
    objective = as_objective(objective)
    outer.check(objective)
    key = as_key(key)
    given = progress if callable(progress) else None  # a callable gets the records
    with reporting(False if given else progress, "meta-training") as report:
        if report is not None:  # no callable, a terminal attached: a bar

            def given(records):
                last = records[-1]
                loss = last.get("task_loss")
                report(int(last["step"]), outer.steps, f"meta-loss {loss:.4g}"
                       if isinstance(loss, int | float) else "")
        return _run(outer, objective, theta0, key, given, state, checkpoint, guard)


def _run(outer, objective, theta0, key, progress, state, checkpoint, guard) -> MetaResult:
    if state is None:
        theta0 = check_theta0(objective, theta0)
    state = init(outer, objective, theta0, key) if state is None else state
    result = MetaResult(result_theta(outer, state, guard), [], state)
    try:
        host_loop(outer, objective, key, state, [result],
                  None if progress is None else lambda i, records: progress(records),
                  None if checkpoint is None else lambda i, one: checkpoint(one),
                  guard=guard)
        return result
    except (Exception, KeyboardInterrupt) as e:  # Ctrl-C, SIGTERM, out of memory, ...
        if e.__dict__.get("result") is None:  # the state after the last whole chunk
            try:
                e.result = result
            except AttributeError:  # an exception type that takes no attributes
                pass
        raise


def as_key(key: Any) -> Array:
    """``key`` if it is a JAX random key (``jax.random.key(seed)`` or the older raw
    ``PRNGKey``); otherwise one ConfigError."""
    try:
        typed = jnp.issubdtype(jnp.result_type(key), jax.dtypes.prng_key)
        raw = (not typed and jnp.result_type(key) == jnp.uint32
               and jnp.shape(key) in ((2,), (4,)))
    except TypeError:
        typed = raw = False
    if not (typed and jnp.shape(key) == ()) and not raw:
        raise ConfigError(f"key must be one JAX random key, e.g. jax.random.key(0); got "
                          f"{repr(key)[:60]}")
    return key


def check_theta0(objective: Any, theta0: Any) -> Any:
    """θ0 checked against the objective's rule (when it has one: ``conform``) and for
    NaN/inf, before anything is compiled."""
    if isinstance(objective, cap.Conforms):
        theta0 = objective.conform(theta0, what="θ0")
    try:
        leaves = jax.tree.leaves(theta0)
        finite = all(bool(np.all(np.isfinite(np.asarray(x)))) for x in leaves)
    except TypeError:
        raise ConfigError(f"θ0 must be a pytree of arrays, got {repr(theta0)[:60]}") from None
    if theta0 is None or not leaves:
        raise ConfigError(f"θ0 has no numbers to search: {repr(theta0)[:60]}")
    if not finite:
        raise ConfigError("θ0 has NaN or inf values")
    return theta0


def stack(trees: list[Any]) -> Any:
    """Trees of equal structure -> one tree with a leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, i: int) -> Any:
    """Entry ``i`` of a tree with a leading axis."""
    return jax.tree.map(lambda x: x[i], tree)


def restack(tree: Any, i: int, one: Any) -> Any:
    """``tree`` (with a leading axis) with entry ``i`` replaced by ``one``."""
    return jax.tree.map(lambda x, y: x.at[i].set(y), tree, one)


def validation_value(objective: Any) -> Callable:
    """``(θ, key, batch) -> value`` of one validation batch (not compiled)."""
    def value(theta, key, batch):
        key = jax.random.fold_in(jax.random.fold_in(key, streams.VALIDATION), batch)
        return objective(theta, key)[0]

    return value


@functools.lru_cache(maxsize=8)
def _validator(objective: Any) -> Callable:
    """Jitted :func:`validation_value`: one program whatever the number of batches (the
    batch index is an argument, not unrolled into it). Threefry unrolled: the same values
    to the bit as JAX's loop (tested; checked on mixture-fewshot: a whole run's kept θ and
    validation losses, and 8 values at 4 θ), compiled in 0.70 of the time."""
    return xla.jit(validation_value(objective), threefry="unrolled")


def validator(objective: Any) -> Callable:
    """:func:`_validator`, shared between runs of an equal (hashable) objective."""
    try:
        return _validator(objective)
    except TypeError:  # an unhashable objective
        return _validator.__wrapped__(objective)


def validate(objective: Any, theta: Any, key: Array, batches: int) -> float:
    """θ's score on the run's fixed validation tasks (``batches`` batches of the
    objective's own tasks, keys of the ``VALIDATION`` stream: the meta-training
    distribution, never an evaluation column): the mean of the batches' values."""
    fn = _compiled(validator(objective))
    vals = [fn(theta, key, jnp.asarray(b, jnp.int32)) for b in range(batches)]
    return float(np.mean(np.asarray(jax.device_get(vals), np.float32), dtype=np.float32))


def host_loop(outer: Any, objective: Any, key: Array, state: RunState,
              results: list[MetaResult], progress: Callable[[int, list], None] | None,
              checkpoint: Callable[[int, RunState], None] | None, seeds: str = "",
              guard: Guard = DEFAULT_GUARD) -> RunState:
    """The one host loop: chunks until every run is done or stopped, with the records,
    θ and state of each run kept in ``results`` after every whole chunk (then
    ``progress(i, records)`` and ``checkpoint(i, state)``), truncation lengths switched
    between chunks, divergence checked, ``guard``'s rollbacks and keep-best θ applied.
    One run (``seeds = ""``), or several runs whose state and key carry a leading axis
    (``seeds = "loop"`` or ``"vmap"``: :mod:`metaplastic.meta.seeds`): a run that diverges
    then stops alone (its error in ``result.error``); one run alone raises its
    NonFiniteError."""
    many = bool(seeds)
    get = unstack if many else (lambda tree, i: tree)
    put = restack if many else (lambda tree, i, one: one)
    sign = cap.sign(outer)
    total = jnp.asarray(outer.steps, jnp.int32)
    nan_rollback = cap.on_nan(outer) == "rollback"
    held: dict[int, tuple[RunState, list[dict[str, Any]]]] = {}

    def running(s: RunState) -> np.ndarray:  # on the host: no program compiled
        step, stopped = jax.device_get((s.step, s.stopped))
        return np.atleast_1d((step < outer.steps) & ~stopped)

    chunks: dict[int, Callable] = {}
    length = outer.truncation_at(int(np.max(jax.device_get(state.step))))
    while running(state).any():
        live = running(state)
        at = int(np.max(np.where(live, np.atleast_1d(jax.device_get(state.step)), 0)))
        now = outer.truncation_at(at)
        if now != length:  # a new truncation length starts fresh inner problems
            obj = objective_at(objective, now)
            fresh = [outer.restart(obj, get(state.outer, i), jax.random.fold_in(get(key, i), at))
                     for i in range(len(results))]
            state = state._replace(outer=stack(fresh) if many else fresh[0])
        length = now
        if now not in chunks:
            chunks[now] = _compiled(chunk_fn(outer, objective, now, seeds=seeds, guard=guard))
        before = state
        state, metrics = chunks[now](state, key, total)
        errors: dict[int, NonFiniteError] = {}
        with deferred():  # θ, metrics and checkpoints of a chunk agree, even on Ctrl-C
            for i, r in enumerate(results):
                if not live[i]:
                    continue
                records, one = records_of(get(metrics, i)), get(state, i)
                # on_nan = "rollback": the chunks since a streak of diverging steps began
                # are held back (not reported, not checkpointed) until it ends (then
                # committed together) or reaches max_nan_skips (then undone from where it
                # began, however many chunks back)
                start, earlier = held.pop(i, (get(before, i), []))
                records = earlier + records
                blown = [rec for rec in records if rec.get("blowup")]
                why = None
                streak = int(one.nan_streak)
                undoable = nan_rollback and int(start.nan_streak) == 0  # began after start
                if not blown and undoable and streak >= outer.max_nan_skips:
                    began = _streak_start(records, streak)
                    blown = [rec for rec in records if rec["step"] >= began]
                    why = (f"{_what_diverged(blown[0])}, {streak} meta-steps in a row "
                           f"(meta.max_nan_skips = {outer.max_nan_skips})")
                if blown:  # undo the chunk(s): roll back, or stop once rollbacks are spent
                    one, err = _blown_up(guard, start, one, blown[0], records,
                                         sign, r, progress, i, why)
                    state = put(state, i, one)
                    if err is not None:
                        errors[i] = err
                    elif checkpoint is not None:
                        checkpoint(i, one)
                    continue
                if undoable and 0 < streak and int(one.step) < outer.steps and \
                        outer.truncation_at(int(one.step)) == now:  # (no rollback across
                    held[i] = (start, records)  # a new truncation length's fresh problems)
                    continue
                if guard.keep_best:
                    one = _keep_best(guard, outer, objective, one, get(key, i), sign)
                    state = put(state, i, one)
                # the chunk's metrics first: a write that fails there (a full disk: the
                # metrics are the largest file) leaves the result at the last saved chunk
                if progress is not None:
                    progress(i, records)
                r.theta, r.state = result_theta(outer, one, guard), one
                r.history.extend(records)
                if checkpoint is not None:
                    checkpoint(i, one)
                try:
                    check_divergence(records, int(one.nan_streak), outer.max_nan_skips,
                                     bool(one.stopped), r)
                except NonFiniteError as err:
                    errors[i] = err
        if errors and not many:
            raise errors[0]
        for i, err in errors.items():  # those runs stop; the others go on
            results[i].error = err
        if errors:
            state = state._replace(stopped=state.stopped.at[jnp.array(list(errors))].set(True))
    return state


def _streak_start(records: list[dict[str, Any]], streak: int) -> int:
    """The meta-step at which the streak of ``streak`` diverging steps that ends the
    (active) ``records`` began."""
    return int(records[-1]["step"]) - streak + 1


def _blown_up(guard: Guard, before: RunState, after: RunState, first: dict,
              records: list[dict], sign: float, result: MetaResult,
              progress: Callable[[int, list], None] | None,
              i: int, nan: str | None = None) -> tuple[RunState, NonFiniteError | None]:
    """A chunk of one run with a blown-up meta-step — or, with ``nan`` (what diverged, in
    words), a streak of diverging steps under ``on_nan = "rollback"`` — : ``(state,
    None)`` rolled back to ``before`` with the step size cut, or — rollbacks spent —
    ``(before stopped, error)`` with the chunk's records (flagged) kept in the history."""
    ref = np.asarray(jax.device_get(after.guard.ref)).tolist()
    what = nan or guard.describe(first, ref, sign)
    taken = int(before.guard.rollbacks)
    if taken < guard.max_rollbacks:
        g = before.guard
        one = before._replace(guard=g._replace(
            ref=after.guard.ref, scale=(g.scale * guard.rollback_lr).astype(g.scale.dtype),
            rollbacks=g.rollbacks + 1))
        result.rollbacks.append({"rollback": taken + 1, "at_step": int(first["step"]),
                                 "back_to_step": int(before.step), "why": what,
                                 "step_size_scale": float(one.guard.scale)})
        result.state = one
        return one, None
    result.history.extend(records)
    if progress is not None:
        progress(i, records)
    stopped = before._replace(stopped=jnp.ones_like(before.stopped),
                              guard=before.guard._replace(ref=after.guard.ref))
    result.state = stopped
    spent = (f", after {taken} rollback(s) (meta.max_rollbacks = {guard.max_rollbacks})"
             if guard.max_rollbacks else " (meta.max_rollbacks = 0: no rollback)")
    if nan:
        message = (f"inner learning produced NaN/inf from meta-step {first['step']} on: {what}"
                   f"{spent}. θ was kept at meta-step {int(before.step)}, where the last chunk "
                   f"that did not end inside a streak ended. "
                   f"Try a smaller meta learning rate (lr), a smaller rule learning rate "
                   f"(eta), gradient clipping (clip), or more rollbacks (meta.max_rollbacks).")
    else:
        message = (f"meta-training blew up at meta-step {first['step']}: {what}{spent}. θ was "
                   f"kept at meta-step {int(before.step)}, the last chunk within the bounds. "
                   f"Try a smaller meta learning rate (lr), meta.task_loss_clip, bounded rule "
                   f"outputs (network.update_bound_w), or looser bounds (meta.loss_bound, "
                   f"meta.grad_bound, meta.weight_bound) if this growth is expected.")
    err = NonFiniteError(message)
    err.result = result
    return stopped, err


def _keep_best(guard: Guard, outer: Any, objective: Any, one: RunState, key: Array,
               sign: float) -> RunState:
    """``one`` with its best θ updated after scoring its θ on the validation tasks."""
    theta = outer.theta(one.outer)
    value = validate(objective, theta, key, guard.validation_batches)
    g = one.guard
    first = int(g.best_step) < 0
    if math.isfinite(value) and (first or sign * value < sign * float(g.best_value)):
        g = g._replace(best_value=jnp.asarray(value, g.best_value.dtype),
                       best_step=jnp.asarray(one.step, g.best_step.dtype),
                       best_theta=jax.tree.map(jnp.asarray, theta))
    return one._replace(guard=g)


def state_arrays(state: RunState) -> dict[str, np.ndarray]:
    """The run state as named plain arrays (``leaf_0``, ...; PRNG keys as their raw data):
    what a checkpoint ``.npz`` holds. :func:`state_from_arrays` inverts it exactly."""
    out = {}
    for i, leaf in enumerate(jax.tree.leaves(state)):
        if jnp.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f"leaf_{i}"] = np.asarray(leaf)
    return out


def state_from_arrays(like: RunState, arrays: dict[str, np.ndarray]) -> RunState:
    """A run state shaped like ``like`` (e.g. :func:`init`'s) from :func:`state_arrays`.
    A state saved before the guard existed (its arrays are the first ones) takes the
    guard's state from ``like``."""
    leaves, tree = jax.tree.flatten(like)
    n_guard = len(jax.tree.leaves(like.guard))
    if len(arrays) == len(leaves) - n_guard:  # saved before meta.guard: fresh guard state
        arrays = {**arrays, **{f"leaf_{len(arrays) + j}": np.asarray(leaf) for j, leaf
                               in enumerate(jax.tree.leaves(like.guard))}}
    if len(arrays) != len(leaves):
        raise ValueError(f"a saved state has {len(arrays)} arrays, this run's has "
                         f"{len(leaves)}")
    out = []
    for i, ref in enumerate(leaves):
        a = arrays[f"leaf_{i}"]
        if jnp.issubdtype(jnp.result_type(ref), jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(jnp.asarray(a)))
            continue
        if a.shape != jnp.shape(ref) or a.dtype != jnp.result_type(ref):
            raise ValueError(f"saved state array {i} is {a.dtype}{list(a.shape)}, this run "
                             f"needs {jnp.result_type(ref)}{list(jnp.shape(ref))}")
        out.append(jnp.asarray(a))
    return strong(jax.tree.unflatten(tree, out))


def _what_diverged(record: dict) -> str:
    """What a diverged meta-step's record says went wrong, in words."""
    loss = record.get("loss")
    mean_bad = loss is None or not np.isfinite(loss)
    if "pop_nonfinite" in record:  # evolution strategies
        share = f"{100 * record['pop_nonfinite']:.0f}% of the population diverged"
        return share + ("; so did the mean θ" if mean_bad else "")
    if record.get("nonfinite", 0) > 0:
        return f"{100 * record['nonfinite']:.0f}% of its tasks diverged"
    return "the meta-gradient was not finite"


def check_divergence(records, streak: int, max_streak: int, stopped: bool,
                     result: MetaResult) -> None:
    """Raise NonFiniteError (carrying ``result``) if the run must stop on NaN/inf."""
    bad = [r for r in records if r["diverged"]]
    if not bad or not (stopped or streak >= max_streak):
        return
    first = bad[0]
    if stopped:
        when, why = f"at meta-step {first['step']}", "on_nan = 'stop'"
    else:  # the streak may have begun in an earlier chunk than these records'
        began = _streak_start(records, streak)
        first = next((rec for rec in records if rec["step"] == began), first)
        when, why = f"from meta-step {began} on", f"{streak} meta-steps in a row diverged"
    err = NonFiniteError(
        f"inner learning produced NaN/inf {when} "
        f"({_what_diverged(first)}; {why}). θ was kept at its last finite value. Try a "
        f"smaller rule learning rate (eta), a smaller meta learning rate (lr), gradient "
        f"clipping (clip), or fewer inner steps."
    )
    err.result = result
    raise err
