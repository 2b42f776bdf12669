"""Analyses of pieces and their learned θ: what a rule does and whether it may.

* :mod:`~metaplastic.analysis.plausibility` — measured constraints (locality, no weight
  transport, online, Dale, spikes only), the ``check`` kind of piece;
* :mod:`~metaplastic.analysis.explain` — a learned rule distilled into a sparse polynomial;
* :mod:`~metaplastic.analysis.export` — a rule written out whole (CSV, JSON, SymPy, LaTeX);
* :mod:`~metaplastic.analysis.neuromorphic` — spiking networks to and from NIR;
* :mod:`~metaplastic.analysis.simulate` — recordings simulated from a known rule;
* :mod:`~metaplastic.analysis.recovery_scores` — a rule fitted to recordings scored on
  every trajectory (null model, weights and activity against the truth).

Run directories are read and written a layer above, in :mod:`metaplastic.experiments`.
"""

from metaplastic.analysis import (
    explain,
    export,
    neuromorphic,
    plausibility,
    recovery_scores,
    simulate,
)

__all__ = ["explain", "export", "neuromorphic", "plausibility", "recovery_scores", "simulate"]
