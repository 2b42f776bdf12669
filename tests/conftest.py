"""Shared, session-scoped pieces so that each jitted function compiles once per test run,
and JAX's persistent compilation cache (outside the clone) so that a program compiled by
one test — or one xdist worker, or an earlier run — is not compiled again."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Tests compile some 2,400 small programs (about 90% of the suite's time) and run each
# briefly, so they compile them cheaply:
# - XLA's backend (LLVM) optimisation level 0 instead of its default compiles them about
#   45% faster and runs them slower (the suite: 191 s at level 1, 169 s at level 0,
#   measured back to back);
# - XLA's CPU fusion emitters off (fusions emitted by the older, cheaper path): three
#   compile-heavy test files with nothing cached took 0.59× the time (49 and 52 s against
#   83 and 86 s, alternating; 2026-12-07). It rounds some fused arithmetic differently
#   (a loss moved in its fifth digit), so no test may compare a number computed here
#   with one published from a run at XLA's defaults, and differently compiled programs
#   no longer give the same bits: the tests that assert they do are marked
#   `xla_defaults` and run in a call of their own at XLA's defaults (Makefile).
# Floating-point semantics are otherwise unchanged (no fast math), and no test times
# anything. METAPLASTIC_TEST_XLA_OPT=default keeps XLA's defaults (make test-slow does, for
# the long reproductions). Must precede JAX's backend start.
# name: (value, the first jaxlib that knows the flag: an unknown one stops XLA at start)
TEST_XLA_FLAGS = {"xla_backend_optimization_level": ("0", (0, 0, 0)),
                  "xla_cpu_use_fusion_emitters": ("false", (0, 5, 3))}


def _jaxlib_version() -> tuple[int, ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = re.match(r"(\d+)\.(\d+)\.(\d+)", version("jaxlib"))
    except PackageNotFoundError:
        return (0, 0, 0)
    return tuple(int(g) for g in found.groups()) if found else (0, 0, 0)


if os.environ.get("METAPLASTIC_TEST_XLA_OPT", "0") != "default":
    flags, jaxlib = os.environ.get("XLA_FLAGS", ""), _jaxlib_version()
    for name, (value, since) in TEST_XLA_FLAGS.items():
        if name not in flags and jaxlib >= since:
            flags = f"{flags} --{name}={value}".strip()
    os.environ["XLA_FLAGS"] = flags

import jax  # noqa: E402
import pytest  # noqa: E402

import metaplastic as mp  # noqa: E402

#: METAPLASTIC_TEST_CACHE=off disables it (e.g. to time the suite with nothing cached)
CACHE = os.environ.get("METAPLASTIC_TEST_CACHE",
                       str(Path.home() / ".cache" / "metaplastic" / "jax-tests"))


def pytest_configure(config):
    if CACHE.lower() in ("", "0", "off", "none"):
        return
    try:
        Path(CACHE).mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def small_pca():
    """A small PCA problem: task, network, polynomial rule, objective."""
    task = mp.tasks.make("pca", n_in=4, n_steps=600, scale_range=[0.5, 2.0])
    net = mp.Network(sizes=(4, 1))
    rule = mp.rules.make("polynomial", eta=0.03)
    objective = mp.Objective(task, net, rule, tasks_per_step=4, l1=1e-3)
    return task, net, rule, objective


@pytest.fixture(scope="session")
def oja_theta(small_pca):
    _, _, rule, _ = small_pca
    return {"coef": jax.numpy.asarray(rule.coefficients("oja"))}
