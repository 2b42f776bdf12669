"""The first chunk's program compiled in the background (driver.precompile) is the one the
run uses: compiled once, in the background thread, and the run's numbers are unchanged;
with keep-best, so is the validation program, one for every validation batch."""

import logging
import re
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import streams
from metaplastic.meta import driver
from metaplastic.meta.guard import Guard


class _Compiles(logging.Handler):
    """Each XLA compilation (or persistent-cache load) JAX logs: the program's name and
    the thread it happened in. JAX's log line names the program in every version we
    support; its monitoring event names it only in later ones (not in 0.5)."""

    FINISHED = re.compile(r"Finished XLA compilation of (\S+) in ")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = self.FINISHED.match(record.getMessage())
        if found:
            self.seen.append((found.group(1), record.threadName))


def _compiles_of_chunks(fn, name="jit(run_chunk)", order=None):
    """``fn()``, and the threads in which the program ``name`` was compiled meanwhile
    (``order``: every compilation's (name, thread) appended, in turn)."""
    logger, handler = logging.getLogger("jax._src.dispatch"), _Compiles()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        out = fn()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    if order is not None:
        order.extend(handler.seen)
    return out, [thread for program, thread in handler.seen if program == name]


@pytest.mark.xla_defaults  # chunks of 2 and of 1, the same bits
def test_the_run_uses_the_program_compiled_in_the_background(small_pca):
    _, _, rule, objective = small_pca
    # a configuration no other test compiles (its own program)
    outer = mp.MetaGradient(steps=2, lr=0.0123, chunk=2)
    theta0, key = rule.init(jax.random.key(0)), jax.random.key(5)

    def both():
        driver.precompile(outer, objective, theta0, key)
        return outer.run(objective, theta0, key=key)

    result, seen = _compiles_of_chunks(both)
    assert seen == ["metaplastic-precompile"]  # once, and not in the main thread
    program = driver.chunk_fn(outer, objective)
    assert program not in driver._compiling  # waited for and forgotten
    # the same numbers as a run of an equal configuration compiled in the main thread
    twin = mp.MetaGradient(steps=2, lr=0.0123, chunk=1)  # another program
    again, seen_again = _compiles_of_chunks(lambda: twin.run(objective, theta0, key=key))
    assert seen_again == [threading.main_thread().name]
    np.testing.assert_array_equal(np.asarray(result.theta["coef"]),
                                  np.asarray(again.theta["coef"]))


def test_the_validation_program_compiles_once_after_the_chunk(small_pca):
    """keep-best: one validation program for every batch (the batch index an argument),
    compiled in the background after the chunk's program (XLA's compiler already uses
    most of two cores: beside it, it slowed the chunk's); the run's validation value is
    the mean of the batches' values, as when the batches were unrolled into one program
    (to one ulp)."""
    _, _, rule, objective = small_pca
    outer = mp.MetaGradient(steps=2, lr=0.0321, chunk=2)  # a program of its own
    guard = Guard(keep_best=True, validation_batches=3)
    theta0, key = rule.init(jax.random.key(0)), jax.random.key(6)
    driver._validator.cache_clear()  # this objective's validator compiled here, not before

    def both():
        driver.precompile(outer, objective, theta0, key, guard)
        return outer.run(objective, theta0, key=key, guard=guard)

    order = []
    result, seen = _compiles_of_chunks(both, name="jit(value)", order=order)
    assert seen == ["metaplastic-precompile"]  # once for 3 batches, not in the main thread
    background = [name for name, thread in order if thread == "metaplastic-precompile"
                  and name in ("jit(run_chunk)", "jit(value)")]
    assert background == ["jit(run_chunk)", "jit(value)"]  # one after the other
    assert int(result.state.guard.best_step) >= 0

    def unrolled(theta, k):
        k = jax.random.fold_in(k, streams.VALIDATION)
        vals = [objective(theta, jax.random.fold_in(k, b))[0] for b in range(3)]
        return jnp.mean(jnp.stack(vals))

    theta = result.state.guard.best_theta
    want = float(jax.jit(unrolled)(theta, key))
    got = driver.validate(objective, theta, key, 3)
    assert got == want or abs(got - want) <= abs(np.spacing(np.float32(want)))
    assert got == float(result.state.guard.best_value)


@pytest.mark.xla_defaults  # two lowerings of one program, the same bits
def test_the_validation_program_gives_the_values_of_jaxs_threefry_loop(small_pca):
    """The validation program lowers threefry unrolled (compiled sooner): its values are
    bitwise those of the same program with JAX's loop, at several θ and batches."""
    from metaplastic import xla

    _, _, rule, objective = small_pca
    key = jax.random.key(8)
    rolled = xla.jit(driver.validation_value(objective), threefry="rolled")
    unrolled = driver.validator(objective)
    for s in range(3):
        theta = rule.init(jax.random.key(s))
        theta = jax.tree.map(lambda x, s=s: x + 0.01 * s, theta)
        for b in range(2):
            batch = jnp.asarray(b, jnp.int32)
            np.testing.assert_array_equal(np.asarray(unrolled(theta, key, batch)),
                                          np.asarray(rolled(theta, key, batch)))
    args = (theta, key, jnp.asarray(0, jnp.int32))  # and they are two lowerings
    loops = [f.lower(*args).compile().as_text().count(" while(") for f in (unrolled, rolled)]
    assert loops[0] < loops[1]
