"""Outer loops that search rule parameters θ, all optimising a shared :class:`Objective`."""

from metaplastic.meta.gradient import OPTIMIZERS, MetaGradient, MetaResult, MetaState
from metaplastic.meta.objective import Objective, l1_norm

__all__ = ["OPTIMIZERS", "MetaGradient", "MetaResult", "MetaState", "Objective", "l1_norm"]
