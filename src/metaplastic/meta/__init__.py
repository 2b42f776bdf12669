"""Outer loops that search rule parameters θ, all optimising a shared :class:`Objective`."""

from metaplastic.meta.es import EvolutionStrategy, strategy_names
from metaplastic.meta.gradient import OPTIMIZERS, MetaGradient, MetaResult, MetaState
from metaplastic.meta.objective import Objective, l1_norm

__all__ = ["OPTIMIZERS", "EvolutionStrategy", "MetaGradient", "MetaResult", "MetaState",
           "Objective", "l1_norm", "strategy_names"]
