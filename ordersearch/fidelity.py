"""How far a cheap estimator agrees with dedicated training: rank correlation and error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau, spearmanr


@dataclass(frozen=True)
class Agreement:
    """Kendall tau, Spearman rho, mean absolute error (bits/latent) and its relative size, over ``count`` items."""

    tau: float
    rho: float
    mae: float
    relative_mae: float
    count: int

    def __str__(self) -> str:
        return (f"Kendall tau {self.tau:.3f}, Spearman rho {self.rho:.3f}, mean absolute error "
                f"{self.mae:.4f} bits/latent ({100 * self.relative_mae:.1f}%) over {self.count} items")


def agreement(dedicated: Sequence[float], cheap: Sequence[float]) -> Agreement:
    """Agreement of cheap estimates with dedicated rates of the same items (NaN correlations below 3 items)."""
    d, c = np.asarray(dedicated, dtype=float), np.asarray(cheap, dtype=float)
    if d.shape != c.shape:
        raise ValueError(f"{len(d)} dedicated rates but {len(c)} cheap estimates")
    tau = kendalltau(d, c).statistic if len(d) > 2 else float("nan")
    rho = spearmanr(d, c).statistic if len(d) > 2 else float("nan")
    mae = float(np.mean(np.abs(d - c))) if len(d) else float("nan")
    return Agreement(float(tau), float(rho), mae, mae / float(np.mean(d)) if len(d) else float("nan"), len(d))
