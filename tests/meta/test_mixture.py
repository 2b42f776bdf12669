"""Meta-objectives over mixtures of problems: exactly the weighted mean of their parts,
every outer loop, clear refusals, and ``[[mixture]]`` in configs."""

import jax
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError
from metaplastic.experiments import build, config
from metaplastic.meta import memory
from metaplastic.meta.es import EvolutionStrategy
from metaplastic.meta.mixture import Mixture

RULE = mp.rules.make("polynomial", eta=0.01)


def _part(n_in: int, n_steps: int = 20, **kw) -> mp.Objective:
    return mp.Objective(mp.tasks.make("pca", n_in=n_in, n_steps=n_steps),
                        mp.Network(sizes=(n_in, 1)), kw.pop("rule", RULE),
                        tasks_per_step=2, **kw)


SMALL, LARGE = _part(3), _part(6, n_steps=30)
MIX = Mixture((SMALL, LARGE), (1.0, 3.0), ("n_in 3", "n_in 6"))
THETA = jax.tree.map(lambda x: x + 0.1, RULE.init(jax.random.key(0)))
KEY = jax.random.key(5)


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_a_mixture_is_the_weighted_mean_of_its_parts():
    value, aux, grads = jax.jit(MIX.value_and_grad)(THETA, KEY)
    parts = [p.value_and_grad(THETA, jax.random.fold_in(KEY, i))
             for i, p in enumerate(MIX.parts)]
    np.testing.assert_allclose(value, 0.25 * parts[0][0] + 0.75 * parts[1][0], rtol=1e-6)
    np.testing.assert_allclose(grads["coef"], 0.25 * parts[0][2]["coef"]
                               + 0.75 * parts[1][2]["coef"], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(aux["task_loss[n_in 6]"], parts[1][1]["task_loss"], rtol=1e-6)
    v2, _ = jax.jit(MIX)(THETA, KEY)
    np.testing.assert_allclose(v2, value, rtol=1e-6)
    assert MIX.tasks_per_step == 4 and MIX.n_steps == 30


@pytest.mark.parametrize("outer", [mp.MetaGradient(steps=3, lr=1e-2, chunk=3),
                                   EvolutionStrategy(population=4, steps=3, chunk=3)],
                         ids=["gradient", "es"])
@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_every_outer_loop_optimises_a_mixture(outer):
    result = outer.run(MIX, THETA, key=KEY)
    assert int(result.state.step) == 3
    assert "task_loss[n_in 3]" in result.history[-1]
    assert not np.allclose(result.theta["coef"], THETA["coef"])


def test_memory_of_a_mixture_is_the_sum_of_its_parts():
    both = memory.estimate(mp.MetaGradient(), MIX, THETA)
    one = [memory.estimate(mp.MetaGradient(), p, THETA) for p in MIX.parts]
    assert both.total == sum(e.total for e in one)


def test_refusals_name_the_problem():
    abcd = mp.rules.make("abcd")
    with pytest.raises(ConfigError, match="θ shaped by the network"):
        Mixture((_part(3, rule=abcd), _part(6, rule=abcd)))
    with pytest.raises(ConfigError, match="share one rule"):
        Mixture((SMALL, _part(3, rule=mp.rules.make("polynomial", eta=0.02))))
    with pytest.raises(ConfigError, match="positive"):
        Mixture((SMALL, LARGE), (1.0, 0.0))
    with pytest.raises(ConfigError, match="share meta.l1"):
        Mixture((SMALL, _part(3, l1=0.1)))
    with pytest.raises(ConfigError, match="non-empty list of Objectives"):
        Mixture(())
    with pytest.raises(ConfigError, match="mixtures and plain functions take whole"):
        mp.MetaGradient(truncation=10).check(MIX)


BASE = config.from_dict({"task": {"name": "pca", "n_in": 3, "n_steps": 20},
                         "rule": {"name": "polynomial"}, "meta": {"steps": 2}})


def _with(entries):
    return config.override(BASE, [f"mixture={entries}"])


def test_config_mixture_builds_parts_with_their_overrides():
    cfg = _with("[{task = {n_in = 5}}, {label = 'tanh', weight = 2, "
                "network = {activation = 'tanh'}}]")
    p = build(cfg)
    assert isinstance(p.objective, Mixture) and p.objective.labels == ("n_in=5", "tanh")
    assert [o.network.sizes for o in p.objective.parts] == [(5, 1), (3, 1)]
    assert [o.network.activation for o in p.objective.parts] == ["linear", "tanh"]
    assert p.objective.weights == (1.0, 2.0)
    # an evaluation variant is one problem, with network changes too
    v = build(cfg, n_in=4, network={"activation": "tanh"})
    assert isinstance(v.objective, mp.Objective) and v.network.sizes == (4, 1)
    assert v.network.activation == "tanh"
    saved = config.from_dict(config.to_dict(cfg))
    assert saved.mixture == cfg.mixture


@pytest.mark.parametrize("entries, msg", [
    ("[{colour = 1}]", "unknown key"),
    ("[{task = {name = 'pca'}}]", "the task's name comes from"),
    ("[{weight = -1}]", "weight must be a positive number"),
    ("[{task = {n_in = 4}}, {task = {n_in = 4}}]", "distinct labels"),
    ("[1]", "must be a table"),
])
def test_bad_mixture_entries(entries, msg):
    with pytest.raises(ConfigError, match=msg):
        _with(entries)


def test_bad_options_inside_an_entry_name_the_entry():
    with pytest.raises(ConfigError, match=r"mixture entry 2 \('x'\): network: unknown"):
        build(_with("[{}, {label = 'x', network = {hiden = [3]}}]"))
    with pytest.raises(ConfigError, match=r"mixture entry 1 \('n_in=-2'\)"):
        build(_with("[{task = {n_in = -2}}]"))
