"""Your own rule and task, with everything a built-in one gets (see docs/extending.md).

A rule is a frozen dataclass with ``init`` and ``synapse`` (one synapse's dw from its
local signals); a task is a frozen dataclass with ``sample``, ``observe``,
``output_error``, ``loss`` and ``metrics``. Nothing else is needed: name them in a
config as ``"custom_rule:DeltaTerms"`` / ``"custom_rule:LinearRegression"`` (this file is
importable as ``custom_rule`` from the directory it is in), or register them::

    cd examples
    metaplastic run custom_rule.toml        # run directory, eval table, plots, check
    python custom_rule.py                   # the same, registered from Python

The rule learns the coefficients of three local terms for a layer that sees its output
error ``e_post``: the delta rule ``-e_post*pre``, Hebb's ``post*pre`` and decay ``w``. The
task is online linear regression: a random teacher matrix per task, one example per step.
Meta-training finds the delta rule (the first coefficient grows, the others stay small).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

import metaplastic as mp
from metaplastic.rules import Rule
from metaplastic.tasks import Task

TERMS = ("delta", "hebb", "decay")


@dataclass(frozen=True)
class DeltaTerms(Rule):
    """dw = eta * (c0 * (-e_post * pre) + c1 * post * pre + c2 * w)."""

    eta: float = 0.1
    family = "delta-terms"
    linear_in_theta = True  # dw(a * theta) = a * dw(theta): eta can be tuned by scaling θ
    term_names = list(TERMS)  # names the coefficient plot uses

    def init(self, key, shapes=None):
        return {"coef": jnp.zeros(3)}

    def synapse(self, theta, s):
        c = theta["coef"]
        return self.eta * (-c[0] * s.e_post * s.pre + c[1] * s.post * s.pre + c[2] * s.w)

    def formula(self, theta):
        c = theta["coef"]
        return "dw = eta * (" + " ".join(
            f"{float(v):+.3g} {t}" for v, t in zip(c, TERMS, strict=True)) + ")"


class Teacher(NamedTuple):
    a: jax.Array  # (n_out, n_in) the map to learn
    key: jax.Array  # the example stream
    test_x: jax.Array  # (test, n_in) held-back inputs the loss is measured on


@dataclass(frozen=True)
class LinearRegression(Task):
    """Learn y = A x online, one Gaussian x per step; the loss is the test error after."""

    n_in: int = 4
    n_out: int = 2
    n_steps: int = 100
    test: int = 32
    score = "test_mse"
    maximise_score = False

    def sample(self, key):
        k_a, k_x, k_test = jax.random.split(key, 3)
        a = jax.random.normal(k_a, (self.n_out, self.n_in)) / jnp.sqrt(self.n_in)
        return Teacher(a, k_x, jax.random.normal(k_test, (self.test, self.n_in)))

    def observe(self, instance, t):
        x = jax.random.normal(jax.random.fold_in(instance.key, t), (self.n_in,))
        return x, instance.a @ x

    def output_error(self, y, target):
        return y - target

    def metrics(self, instance, state, env=None, network=None):
        x = instance.test_x
        err = x @ state.weights[-1].T - x @ instance.a.T
        return {"test_mse": jnp.mean(err**2)}

    def loss(self, instance, state, env=None, network=None):
        return self.metrics(instance, state)["test_mse"]


if __name__ == "__main__":
    from metaplastic.cli import main

    mp.register_rule("delta-terms", DeltaTerms)
    mp.register_task("linear-regression", LinearRegression)
    # registered names work like built-in ones; the run directory records the classes as
    # "custom_rule:DeltaTerms" so that `metaplastic eval RUN` re-imports them
    sys.exit(main(["run", "custom_rule.toml", "--set", 'rule.name="delta-terms"',
                   "--set", 'task.name="linear-regression"', *sys.argv[1:]]))
