"""metaplastic: meta-learn biologically plausible learning rules in JAX.

Compose a task, a network, a rule and an outer loop::

    import jax
    import metaplastic as mp

    task = mp.tasks.make("pca", n_in=10, n_steps=1000)
    net = mp.Network(sizes=(10, 1))
    rule = mp.rules.make("polynomial", eta=0.01)
    objective = mp.Objective(task, net, rule, tasks_per_step=8, l1=1e-3)
    theta0 = rule.init(jax.random.key(0))
    result = mp.MetaGradient(steps=600, lr=1e-2).run(objective, theta0, key=jax.random.key(1))
    print(rule.formula(result.theta))
"""

from metaplastic import _startup

_startup.install()  # the command line: a stop while loading is said, not a traceback

from metaplastic import neurons, registry, rules, tasks
from metaplastic import xla as _xla  # noqa: F401  (METAPLASTIC_THREEFRY=unrolled)
from metaplastic._version import __version__
from metaplastic.errors import ConfigError, MetaplasticError, NonFiniteError, ShapeError
from metaplastic.inner import unroll
from metaplastic.meta import MetaGradient, MetaResult, Mixture, Objective
from metaplastic.network import Network
from metaplastic.registry import (
    make,
    register,
    register_neuron,
    register_outer,
    register_rule,
    register_task,
)
from metaplastic.signals import LocalSignals, per_synapse

__all__ = [
    "ConfigError",
    "__version__",
    "LocalSignals",
    "MetaGradient",
    "MetaResult",
    "MetaplasticError",
    "Mixture",
    "Network",
    "NonFiniteError",
    "Objective",
    "ShapeError",
    "make",
    "neurons",
    "per_synapse",
    "register",
    "register_neuron",
    "register_outer",
    "register_rule",
    "register_task",
    "registry",
    "rules",
    "tasks",
    "unroll",
]
