"""The one confidence interval the library reports: mean ± half-width of the two-sided
95% Student-t interval over the finite values (normal quantile beyond 31 values)."""

from __future__ import annotations

import math

import numpy as np

# two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(n: int) -> float:
    """The factor of the standard error for ``n`` values (NaN below 2)."""
    if n < 2:
        return math.nan
    return _T975[n - 2] if n - 1 <= len(_T975) else 1.96


def mean_ci(values) -> tuple[float, float, int]:
    """(mean, half-width of the 95% CI, n) over the finite values."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), float(t95(n) * v.std(ddof=1) / math.sqrt(n)), n
