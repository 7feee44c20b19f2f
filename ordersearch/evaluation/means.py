"""The weighted mean over images every rate of the toolkit is, and its standard error.

Below both the record of an evaluation (``record``) and the statistics that
compare records (``statistics``), so neither imports the other's module to
get it.
"""

from __future__ import annotations

import math

import numpy as np


def weighted_mean_se(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted mean and its standard error (unbiased weighted variance; NaN for one value)."""
    w = weights / weights.sum()
    mean = float((w * values).sum())
    if len(values) < 2:
        return mean, math.nan
    var = float((w * (values - mean) ** 2).sum()) / (1 - float((w**2).sum()))
    return mean, math.sqrt(var * float((w**2).sum()))
