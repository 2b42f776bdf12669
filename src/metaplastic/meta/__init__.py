"""Outer loops that search rule parameters θ, all optimising a shared :class:`Objective`.

Every outer loop implements one protocol (:mod:`metaplastic.meta.outer`) and runs under
one driver (:mod:`metaplastic.meta.driver`); the registered ones (``meta.outer`` in a
config) are ``gradient``, ``es`` and ``learned-es`` (an evolution strategy whose
selection network was trained by backpropagation).
"""

from metaplastic.meta.driver import MetaResult, RunState
from metaplastic.meta.es import ESState, EvolutionStrategy, strategy_names
from metaplastic.meta.gradient import OPTIMIZERS, GradientState, MetaGradient
from metaplastic.meta.learned import LearnedES, LearnedESState
from metaplastic.meta.mixture import Mixture
from metaplastic.meta.objective import Objective, l1_norm
from metaplastic.meta.outer import OuterLoop
from metaplastic.meta.segments import Truncated
from metaplastic.registry import register

register("outer", "gradient", MetaGradient)
register("outer", "es", EvolutionStrategy, fixed={"direction": "minimize"})
register("outer", "learned-es", LearnedES, fixed={"direction": "minimize"})

__all__ = ["OPTIMIZERS", "ESState", "EvolutionStrategy", "GradientState", "LearnedES",
           "LearnedESState", "MetaGradient",
           "MetaResult", "Mixture", "Objective", "OuterLoop", "RunState", "Truncated", "l1_norm",
           "strategy_names"]
