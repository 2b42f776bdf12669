import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError
from metaplastic.experiments import build, config, presets

TARGET = jnp.array([3.0, -1.0, 0.5])


def _sq(theta, key):
    return jnp.sum((theta["x"] - TARGET) ** 2)


@pytest.mark.parametrize("strategy", ["open_es", "cma_es", "pgpe", "snes"])
def test_es_converges_on_a_quadratic(strategy):
    es = mp.meta.EvolutionStrategy(strategy=strategy, population=16, steps=150, sigma=0.5,
                                   lr=0.1, chunk=50)
    res = es.run(_sq, {"x": jnp.zeros(3)}, key=jax.random.key(0))
    np.testing.assert_allclose(res.theta["x"], TARGET, atol=0.05)
    assert len(res.history) == 150 and res.history[-1]["loss"] < 1e-2


def test_direction_is_honoured():
    # maximising -(x - t)^2 finds t; minimising it runs away: the sign is applied once
    neg = lambda th, k: -_sq(th, k)  # noqa: E731
    kw = dict(strategy="open_es", population=16, steps=100, sigma=0.5, lr=0.1, chunk=50)
    up = mp.meta.EvolutionStrategy(direction="maximize", **kw).run(
        neg, {"x": jnp.zeros(3)}, key=jax.random.key(1))
    down = mp.meta.EvolutionStrategy(direction="minimize", **kw).run(
        neg, {"x": jnp.zeros(3)}, key=jax.random.key(1))
    assert float(jnp.linalg.norm(up.theta["x"] - TARGET)) < 0.1
    assert float(jnp.linalg.norm(down.theta["x"] - TARGET)) > 5.0
    # recorded values are in the user's units (a return stays positive when maximised)
    assert up.history[-1]["pop_best"] <= 0 and -0.05 < up.history[-1]["loss"] <= 0


def test_diverging_members_get_the_worst_fitness():
    def f(theta, key):
        x = theta["x"]
        return jnp.where(x[0] < -1.0, jnp.nan, jnp.sum((x - TARGET) ** 2))

    # members diverge in several generations; that is exploration, not a diverging run:
    # even max_nan_skips = 1 does not stop it while the mean stays finite
    es = mp.meta.EvolutionStrategy(strategy="open_es", population=16, steps=120, sigma=1.0,
                                   lr=0.1, chunk=40, max_nan_skips=1)
    res = es.run(f, {"x": jnp.zeros(3)}, key=jax.random.key(2))
    assert sum(r["pop_nonfinite"] > 0 for r in res.history) >= 3
    assert all(r["pop_nonfinite"] < 1 for r in res.history)  # never the whole generation
    assert not any(r["diverged"] for r in res.history)
    np.testing.assert_allclose(res.theta["x"], TARGET, atol=0.2)


def test_a_share_of_diverging_members_can_stop_the_run():
    def f(theta, key):  # every member with x[0] > 0 diverges: about half of them
        x = theta["x"]
        return jnp.where(x[0] > 0.0, jnp.nan, jnp.sum((x - TARGET) ** 2))

    es = mp.meta.EvolutionStrategy(strategy="open_es", population=16, steps=20, sigma=1.0,
                                   chunk=1, max_nan_skips=2, max_diverged_share=0.25)
    with pytest.raises(mp.NonFiniteError, match=r"\d+% of the population diverged; 2 meta"):
        es.run(f, {"x": jnp.zeros(3)}, key=jax.random.key(2))


def test_a_generation_where_every_member_diverges_counts_towards_the_stop():
    es = mp.meta.EvolutionStrategy(strategy="open_es", population=4, steps=10, chunk=1,
                                   max_nan_skips=3)
    with pytest.raises(mp.NonFiniteError, match="3 meta-steps in a row") as info:
        es.run(lambda th, k: jnp.nan * jnp.sum(th["x"]), {"x": jnp.zeros(2)},
               key=jax.random.key(0))
    assert all(r["diverged"] and r["skipped"] for r in info.value.result.history)


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_es_improves_a_rule_through_the_same_objective(small_pca):
    _, _, rule, objective = small_pca
    es = mp.meta.EvolutionStrategy(strategy="cma_es", population=8, steps=40, sigma=0.1,
                                   chunk=20)
    res = es.run(objective, rule.init(jax.random.key(0)), key=jax.random.key(3))
    first = np.mean([r["task_loss"] for r in res.history[:5]])
    last = np.mean([r["task_loss"] for r in res.history[-5:]])
    assert last < 0.5 * first
    assert len(res.history[-1]["theta"]) == 27


def test_switching_outer_loop_is_one_config_key():
    cfg = config.override(presets.get("oja"), ["meta.outer=es", "meta.strategy=pgpe"])
    p = build(cfg)
    assert isinstance(p.outer, mp.meta.EvolutionStrategy) and p.outer.strategy == "pgpe"
    assert isinstance(build(presets.get("oja")).outer, mp.MetaGradient)
    assert p.objective == build(presets.get("oja")).objective


@pytest.mark.parametrize("kw, msg", [
    ({"strategy": "cmaes"}, "valid ES strategys: .*cma_es"),
    ({"population": 1}, "at least 2"),
    ({"direction": "up"}, "direction"),
    ({"fitness_shaping": "rank"}, "fitness_shaping"),
    ({"sigma": 0.0}, "sigma"),
])
def test_bad_es_config(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        mp.meta.EvolutionStrategy(**kw)


def test_antithetic_needs_an_even_population():
    with pytest.raises(ConfigError, match="even population"):
        mp.meta.EvolutionStrategy(strategy="open_es", population=7)
    mp.meta.EvolutionStrategy(strategy="open_es", population=7, antithetic=False)


@pytest.mark.parametrize("outer", [
    mp.meta.EvolutionStrategy(strategy="cma_es", population=8, steps=6, sigma=0.1, chunk=3),
    mp.meta.EvolutionStrategy(strategy="open_es", population=8, steps=6, sigma=0.1, chunk=3),
    mp.meta.LearnedES(population=8, steps=6, sigma=0.1, chunk=3),
], ids=["cma_es", "open_es", "learned-es"])
def test_a_population_searches_only_the_terms_that_act(small_pca, outer):
    """Excluded polynomial terms do not act: every population loop leaves them out of its
    search (8 of the 27 searched here) and they keep their start in the mean; the
    others move."""
    from metaplastic.meta.population import searched

    task, net, _, _ = small_pca
    keep = ["pre*post", "post^2*w", "pre", "post", "w", "pre*w", "post*w", "1"]
    rule = mp.rules.make("polynomial", eta=0.03)
    excluded = [n for n in rule.term_names if n not in keep]
    rule = mp.rules.make("polynomial", eta=0.03, exclude=excluded)
    objective = mp.Objective(task, net, rule, tasks_per_step=2)
    theta0 = {"coef": jnp.full((3, 3, 3), 0.01)}  # held entries: not zero, to see them stay
    space = searched(objective, theta0)
    assert space.index is not None and space.index.size == len(keep)
    res = outer.run(objective, theta0, key=jax.random.key(3))
    coef = np.ravel(np.asarray(res.theta["coef"]))
    free = np.asarray(rule.free_terms)
    np.testing.assert_array_equal(coef[~free], np.float32(0.01))
    assert np.all(coef[free] != np.float32(0.01))
    # a rule without exclusions: θ searched whole, as evosax takes it
    assert searched(mp.Objective(task, net, mp.rules.make("polynomial"), tasks_per_step=2),
                    theta0).index is None
