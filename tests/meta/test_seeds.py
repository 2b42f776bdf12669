"""Several seeds as one program (meta.seeds): each seed's θ, history and divergence are
those of its own run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.errors import ConfigError, NonFiniteError
from metaplastic.meta import MetaGradient, driver
from metaplastic.meta.seeds import run_seeds

OUTER = MetaGradient(steps=6, chunk=3, lr=3e-2)


@pytest.fixture(scope="module")
def problem():
    task = mp.tasks.make("pca", n_in=3, n_steps=50)
    net = mp.Network(sizes=(3, 1))
    rule = mp.rules.make("polynomial", eta=0.03)
    objective = mp.Objective(task, net, rule, tasks_per_step=2)
    thetas = [rule.init(jax.random.key(s), net.shapes) for s in range(3)]
    thetas = [{"coef": t["coef"] + 0.01 * (s + 1)} for s, t in enumerate(thetas)]
    keys = [jax.random.key(10 + s) for s in range(3)]
    return objective, thetas, keys


@pytest.fixture(scope="module")
def separate(problem):
    objective, thetas, keys = problem
    return [OUTER.run(objective, t, key=k) for t, k in zip(thetas, keys, strict=True)]


@pytest.mark.xla_defaults  # chunked and seed-by-seed programs, the same bits
def test_seeds_in_turn_equal_separate_runs_bitwise(problem, separate):
    objective, thetas, keys = problem
    seen = []
    results = run_seeds(OUTER, objective, thetas, keys,
                        progress=lambda i, records: seen.append((i, len(records))))
    for r, s in zip(results, separate, strict=True):
        np.testing.assert_array_equal(r.theta["coef"], s.theta["coef"])
        assert [h["loss"] for h in r.history] == [h["loss"] for h in s.history]
        assert int(r.state.step) == 6 and r.error is None
    assert not np.allclose(results[0].theta["coef"], results[1].theta["coef"])
    assert sorted(seen) == [(i, 3) for i in range(3) for _ in range(2)]


def test_seeds_side_by_side_agree_within_rounding(problem, separate):
    objective, thetas, keys = problem
    results = run_seeds(OUTER, objective, thetas, keys, batching="vmap")
    for r, s in zip(results, separate, strict=True):
        a, b = np.asarray(r.theta["coef"]), np.asarray(s.theta["coef"])
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_a_diverging_seed_stops_alone(problem):
    objective, thetas, keys = problem
    blown = [thetas[0], {"coef": jnp.full_like(thetas[1]["coef"], 50.0)}]
    outer = MetaGradient(steps=6, chunk=3, lr=3e-2, on_nan="stop")
    saved = {}
    results = run_seeds(outer, objective, blown, keys[:2],
                        checkpoint=lambda i, state: saved.__setitem__(i, int(state.step)))
    assert results[0].error is None and int(results[0].state.step) == 6
    assert isinstance(results[1].error, NonFiniteError)
    assert int(results[1].state.step) < 6 and np.all(np.isfinite(results[1].theta["coef"]))
    assert saved == {0: 6, 1: int(results[1].state.step)}


@pytest.mark.xla_defaults  # chunked and seed-by-seed programs, the same bits
def test_resumes_from_per_seed_states(problem, separate):
    """A seed's state (e.g. from its checkpoint) continues as its own run would."""
    objective, thetas, keys = problem
    half = MetaGradient(steps=3, chunk=3, lr=3e-2)
    states = [r.state for r in run_seeds(half, objective, thetas, keys)]
    states = [driver.state_from_arrays(s, driver.state_arrays(s)) for s in states]
    results = run_seeds(OUTER, objective, thetas, keys, states=states)
    for r, s in zip(results, separate, strict=True):
        np.testing.assert_array_equal(r.theta["coef"], s.theta["coef"])


def test_bad_seed_lists_are_one_message(problem):
    objective, thetas, keys = problem
    with pytest.raises(ConfigError, match="one θ0 per key"):
        run_seeds(OUTER, objective, thetas, keys[:2])
    with pytest.raises(ConfigError, match="batching"):
        run_seeds(OUTER, objective, thetas, keys, batching="parallel")
