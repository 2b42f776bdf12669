"""Shared, session-scoped pieces so that each jitted function compiles once per test run."""

from __future__ import annotations

import jax
import pytest

import metaplastic as mp


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
