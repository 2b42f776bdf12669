"""Misusing the Python API is one message naming the problem (a MetaplasticError), never a
JAX error from deep inside the unroll."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import MetaplasticError
from metaplastic.meta.es import EvolutionStrategy

TASK = mp.tasks.make("pca", n_in=4, n_steps=20)
NET = mp.Network(sizes=(4, 1))
RULE = mp.rules.make("polynomial", eta=0.01)
OBJ = mp.Objective(TASK, NET, RULE, tasks_per_step=2)
GOOD = RULE.init(jax.random.key(0))

THETAS = {  # name: (θ, what the message says)
    "None": (None, "does not fit rule 'polynomial': got None"),
    "a string": ("abc", "got 'abc'"),
    "a number": (3, "got 3"),
    "a list": ([1.0, 2.0], "it has [0], [1]"),
    "another rule's θ": (mp.rules.make("mlp").init(jax.random.key(0), NET.shapes),
                         "it has ['mlp']"),
    "wrong shape": ({"coef": jnp.zeros((2, 2, 2))}, "should be [3, 3, 3] numbers, found [2, 2, 2]"),
    "misspelt entry": ({"coeff": GOOD["coef"]}, "it has ['coeff']"),
    "an extra entry": ({**GOOD, "x": jnp.zeros(2)}, "it has ['x']"),
    "strings inside": ({"coef": np.full((3, 3, 3), "a")}, "must hold numbers"),
}
CALLS = {
    "MetaGradient.run": lambda th: mp.MetaGradient(steps=1, chunk=1).run(
        OBJ, th, key=jax.random.key(1)),
    "EvolutionStrategy.run": lambda th: EvolutionStrategy(steps=1, chunk=1, population=4).run(
        OBJ, th, key=jax.random.key(1)),
    "Objective()": lambda th: OBJ(th, jax.random.key(1)),
    "Objective.value_and_grad": lambda th: OBJ.value_and_grad(th, jax.random.key(1)),
    "Objective.episode": lambda th: OBJ.episode(th, jax.random.key(1)),
    "rule.formula": lambda th: RULE.formula(th),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("theta", THETAS)
def test_theta_that_does_not_fit_the_rule(call, theta):
    value, msg = THETAS[theta]
    with pytest.raises(MetaplasticError, match=None) as e:
        CALLS[call](value)
    assert msg in str(e.value)


def test_integer_theta_is_converted_and_float64_kept():
    as_int = OBJ.conform({"coef": np.zeros((3, 3, 3), int)})
    assert as_int["coef"].dtype == jnp.float32
    assert RULE.formula({"coef": np.zeros((3, 3, 3), np.float64)}) == RULE.formula(GOOD)


OTHER = {  # name: (call, what the message says)
    "θ0 with NaN": (lambda: mp.MetaGradient(steps=1).run(
        OBJ, {"coef": jnp.full((3, 3, 3), jnp.nan)}, key=jax.random.key(1)), "NaN or inf"),
    "an int as key": (lambda: mp.MetaGradient(steps=1).run(OBJ, GOOD, key=3),
                      "key must be one JAX random key"),
    "None as key": (lambda: mp.MetaGradient(steps=1).run(OBJ, GOOD, key=None),
                    "key must be one JAX random key"),
    "a string as objective": (lambda: mp.MetaGradient(steps=1).run(
        "obj", GOOD, key=jax.random.key(1)), "an objective is an Objective"),
    "a task name instead of a task": (lambda: mp.Objective("pca", NET, RULE),
                                      "task 'Objective.task' (str) lacks sample"),
    "no rule": (lambda: mp.Objective(TASK, NET, None), "rule 'Objective.rule' (NoneType)"),
    "a number as network": (lambda: mp.Objective(TASK, 3, RULE), "must be a Network"),
    "sizes as a string": (lambda: mp.Network(sizes="10"), "must be a list of layer sizes"),
    "fractional size": (lambda: mp.Network(sizes=(4, 1.5)), "must be a list of layer sizes"),
    "steps as a string": (lambda: mp.MetaGradient(steps="3"),
                          "MetaGradient.steps must be an integer, got '3'"),
    "lr as a string": (lambda: mp.MetaGradient(lr="x"), "MetaGradient.lr must be a number"),
    "negative clip": (lambda: mp.MetaGradient(clip=-1.0), "clip"),
    "fractional population": (lambda: EvolutionStrategy(population=4.5),
                              "population must be an integer"),
    "tasks_per_step as float": (lambda: mp.Objective(TASK, NET, RULE, tasks_per_step=2.5),
                                "tasks_per_step must be an integer"),
    "unknown rule option": (lambda: mp.rules.make("polynomial", etaa=1), "unknown option"),
}


@pytest.mark.parametrize("case", OTHER)
def test_other_misuse(case):
    call, msg = OTHER[case]
    with pytest.raises(MetaplasticError) as e:
        call()
    assert msg in str(e.value)
