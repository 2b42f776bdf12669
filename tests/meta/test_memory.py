"""Memory estimated from shapes before anything runs; evaluation in batches when the
tasks do not fit at once."""

import jax
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError
from metaplastic.experiments.evaluate import evaluate
from metaplastic.meta import memory
from metaplastic.meta.es import EvolutionStrategy

TASK = mp.tasks.make("pca", n_in=4, n_steps=30)
NET = mp.Network(sizes=(4, 1))
RULE = mp.rules.make("polynomial", eta=0.01)
OBJ = mp.Objective(TASK, NET, RULE, tasks_per_step=3)
THETA = RULE.init(jax.random.key(0))


def test_the_estimate_counts_what_lives_at_once():
    instance, carry = memory.problem_bytes(OBJ, THETA)
    assert instance >= 4 * 4 * 4 and carry >= 4 * 4  # the mixing matrix; the weights
    grad = memory.estimate(mp.MetaGradient(), OBJ, THETA)
    assert grad.parts["stored unroll"] == carry * 3 * 30  # every step of every task
    ckpt = memory.estimate(mp.MetaGradient(), mp.Objective(TASK, NET, RULE, tasks_per_step=3,
                                                           checkpoint=True), THETA)
    assert "stored unroll" not in ckpt.parts and ckpt.total < grad.total
    es = memory.estimate(EvolutionStrategy(population=8), OBJ, THETA)
    assert es.parts["network states"] == carry * 3 * 8 and "stored unroll" not in es.parts
    batched = memory.estimate(EvolutionStrategy(population=8, population_batch=2), OBJ, THETA)
    assert batched.parts["network states"] == carry * 3 * 2


def test_a_run_that_cannot_fit_is_refused_naming_the_sizes():
    est = memory.check_fits(mp.MetaGradient(), OBJ, THETA)  # this machine: fits
    with pytest.raises(ConfigError, match=r"needs at least .* stored unroll"):
        memory.check_fits(mp.MetaGradient(), OBJ, THETA, limit=est.total - 1)


def test_evaluation_in_batches_gives_the_same_tasks():
    key = jax.random.key(5)
    whole = evaluate(OBJ, THETA, key=key, n_tasks=7)
    batched = evaluate(OBJ, THETA, key=key, n_tasks=7, batch=3)  # 3 + 3 + 1 (padded)
    assert whole.keys() == batched.keys()
    for k in whole:
        np.testing.assert_allclose(batched[k], whole[k], rtol=1e-6, atol=1e-7)
    instance, carry = memory.problem_bytes(OBJ, THETA)
    assert memory.eval_batch(OBJ, THETA, 1000, limit=2 * 10 * (instance + carry)) == 10


def test_seeds_side_by_side_need_their_copies():
    est = memory.check_fits(mp.MetaGradient(), OBJ, THETA, limit=None)
    limit = est.total * 3
    memory.check_fits(mp.MetaGradient(), OBJ, THETA, limit=limit, copies=3)
    with pytest.raises(ConfigError, match="4 seeds side by side"):
        memory.check_fits(mp.MetaGradient(), OBJ, THETA, limit=limit, copies=4)
