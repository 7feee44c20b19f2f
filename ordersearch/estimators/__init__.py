"""Estimators of f(C), the rate of a latent given its relative context set, behind one protocol.

===================  =======================================================
``oracle``           exact, for Gaussian random fields (``GaussianOracle``)
``linear-gaussian``  moments of the train latents, Gaussian conditioning
``heldout``          a small model per set fitted by L-BFGS on train, code length on val
``shared``           one order-agnostic network trained over random sets
``any-order``        the any-order context model verification starts from (or a codec's)
``dedicated-set``    one trained model per context set (lazy, expensive)
===================  =======================================================

``fit_estimator(name, evaluator, patch)`` fits one by name on the
evaluator's data (the registry ``ESTIMATORS``: name -> class, each with
``fit(evaluator, patch, seed)``); each answers ``costs(codes, patch)`` and
``cost_table(patch)`` and says which split it scored on (the class's
``split``, known before fitting).
"""

from __future__ import annotations

from ..errors import OrdersearchError
from ..evaluation.evaluator import Evaluator
from .any_order import AnyOrderEstimator
from .base import CostEstimator
from .dedicated import DedicatedSetEstimator
from .heldout import HeldoutConfig, HeldoutEstimator
from .linear_gaussian import LinearGaussianEstimator, binned_gaussian_entropy
from .oracle import GaussianOracle
from .shared import SharedConfig, SharedEstimator, Windows, fit_shared

#: name -> class: the estimators ``run`` and ``search`` can fill a cost table with
ESTIMATORS: dict[str, type[CostEstimator]] = {
    cls.name: cls for cls in (LinearGaussianEstimator, HeldoutEstimator, SharedEstimator, AnyOrderEstimator,
                                      DedicatedSetEstimator)}


def fit_estimator(name: str, evaluator: Evaluator, patch: int, seed: int = 0) -> CostEstimator:
    """The estimator ``name`` fitted on the evaluator's data for ``patch`` (window: the evaluator's kernel)."""
    if name not in ESTIMATORS:
        raise OrdersearchError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name].fit(evaluator, patch, seed)


__all__ = [
    "AnyOrderEstimator",
    "CostEstimator",
    "DedicatedSetEstimator",
    "ESTIMATORS",
    "GaussianOracle",
    "HeldoutConfig",
    "HeldoutEstimator",
    "LinearGaussianEstimator",
    "SharedConfig",
    "SharedEstimator",
    "Windows",
    "binned_gaussian_entropy",
    "fit_estimator",
    "fit_shared",
]
