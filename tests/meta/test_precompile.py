"""The first chunk's program compiled in the background (driver.precompile) is the one the
run uses: compiled once, in the background thread, and the run's numbers are unchanged."""

import threading

import jax
import numpy as np

import metaplastic as mp
from metaplastic.meta import driver


def _compiles_of_chunks(fn):
    seen = []

    def on(event, duration, **kw):
        if (event == "/jax/core/compile/backend_compile_duration"
                and kw.get("fun_name") == "jit(run_chunk)"):
            seen.append(threading.current_thread().name)

    jax.monitoring.register_event_duration_secs_listener(on)
    try:
        out = fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(on)
    return out, seen


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
