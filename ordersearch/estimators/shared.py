"""The shared order-agnostic scorer as an estimator: one model trained over random context sets.

``fit_shared`` trains ``models.shared.SharedScorer`` on random train windows,
each with a context set drawn uniformly from all sets of the patch, through
the one training loop (``evaluation.training``), early-stopped on fixed
validation windows x fixed sets. The estimator then scores every context
set on one fixed sample of windows (the same windows for every set, so
differences between sets are paired) of the val split: a whole 4x4 table
(32,768 sets) is a batched evaluation, and no table reads the test split.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data.latents import Splits
from ..device import resolve_device
from ..errors import OrdersearchError
from ..evaluation.config import LoopConfig
from ..evaluation.training import train_loop
from ..models.entropy import bits
from ..models.multistage import prior_is_scale
from ..models.shared import SharedScorer
from ..schedule import check_kernel, context_window_masks
from .base import CostEstimator
from .windows import Windows

if TYPE_CHECKING:
    from ..evaluation.evaluator import Evaluator


@dataclass(frozen=True)
class SharedConfig(LoopConfig):
    """Shape and training protocol of the shared scorer (the optimiser's knobs: ``LoopConfig``).

    ``windows`` windows of ``batch`` per step for at most ``max_steps`` steps,
    each with a context set drawn uniformly from all sets of the patch;
    validation every ``eval_every`` steps on ``val_windows`` fixed validation
    windows x ``val_sets`` fixed sets; the best validation state is kept;
    ``table_windows`` windows score the cost table.
    """

    lr: float = 2e-3
    max_steps: int = 3000
    eval_every: int = 250
    kernel: int = 5
    hidden: int | None = None  # context features, default max(64, 2 C)
    batch: int = 1024
    val_windows: int = 4096
    val_sets: int = 32
    table_windows: int = 4096
    prior_scale: bool | None = None
    #: validation and table windows come from latents this far from an edge (kernel // 2 to compare with
    #: the infinite-field Gaussian oracle; 0 for real images)
    score_border: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class SharedEstimator(CostEstimator):
    """A trained shared scorer plus fixed windows of one split: f(C) for any set of its patch."""

    name = "shared"
    #: trained on train, early-stopped and scored on fixed val windows (``fit_shared``)
    split = "val"

    def __init__(self, model: SharedScorer, windows: Windows, positions: tuple[np.ndarray, ...], patch: int,
                 curve: list[tuple[int, float, float]], seconds: float, source: str = ""):
        self.model, self.windows, self.positions, self.patch = model.eval(), windows, positions, patch
        self.kernel, self.source = model.kernel, source
        self.curve, self.seconds = curve, seconds
        with torch.no_grad():
            w, self._centre, self._prior = windows.gather(*positions)
            self._terms = model.first_layer_terms(w)

    @classmethod
    def fit(cls, evaluator: Evaluator, patch: int, seed: int = 0) -> SharedEstimator:
        """Trained on the evaluator's data, device and window (``fit_shared``)."""
        return fit_shared(evaluator.splits, patch, SharedConfig(kernel=evaluator.kernel), seed, evaluator.device,
                          evaluator.progress)

    @torch.no_grad()
    def costs(self, codes: np.ndarray, patch: int, chunk: int = 16) -> np.ndarray:
        """Mean bits per latent element on the fixed windows for each context-set code."""
        if patch != self.patch:
            raise OrdersearchError(f"the shared scorer was trained for {self.patch}x{self.patch} context sets, "
                                   f"not {patch}x{patch}")
        masks = torch.from_numpy(context_window_masks(np.asarray(codes), patch, self.kernel)).float()
        masks = masks.reshape(len(masks), -1)
        out = []
        for start in range(0, len(masks), chunk):
            like = self.model._likelihood(self._terms, masks[start:start + chunk], self._centre, self._prior)
            out.append(bits(like).mean(dim=(1, 2)))
        return torch.cat(out).double().numpy() if out else np.zeros(0)


def fit_shared(splits: Splits, patch: int, config: SharedConfig = SharedConfig(), seed: int = 0,
               device: str | torch.device = "auto", progress: bool = True) -> SharedEstimator:
    """Train the shared scorer on the train split over random context sets of ``patch``, early-stop on val."""
    splits.check(1, 1)  # splits not empty, channels agree
    train_set, val_set, _ = splits
    scale = prior_is_scale(train_set.channels, train_set.prior) if config.prior_scale is None else config.prior_scale
    k = check_kernel(config.kernel)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train, val = (Windows(s, k, scale) for s in (train_set, val_set))
    model = SharedScorer(train_set.channels, train_set.prior_channels, k, config.hidden, scale).to(dev)
    sets = 2 ** (patch * patch - 1)
    all_masks = torch.from_numpy(context_window_masks(np.arange(0, 2 ** (patch * patch), 2), patch, k)).float()
    all_masks = all_masks.reshape(sets, -1)
    val_sets = all_masks[np.unique(np.concatenate([[0, sets - 1], rng.integers(0, sets, config.val_sets)]))].to(dev)
    with torch.no_grad():
        vw, vc, vp = (None if t is None else t.to(dev) for t in val.gather(*val.sample(config.val_windows, rng,
                                                                                      config.score_border)))

    def batch_loss() -> torch.Tensor:
        w, c, p = train.gather(*train.sample(config.batch, rng))
        m = all_masks[torch.from_numpy(rng.integers(0, sets, config.batch))]
        return bits(model(w.to(dev), m.to(dev), c.to(dev), None if p is None else p.to(dev))).mean()

    def validate() -> float:
        return float(bits(model._likelihood(model.first_layer_terms(vw), val_sets, vc, vp)).mean())

    start = time.time()
    trained = train_loop(model, batch_loss, validate, config, progress, f"train shared scorer {patch}x{patch}")
    # the table is scored on a fresh sample of val windows: no cost table reads the test split
    positions = val.sample(config.table_windows, np.random.default_rng(seed + 1), config.score_border)
    return SharedEstimator(trained.model.cpu(), val, positions, patch, trained.curve, time.time() - start,
                           source=f"{train_set.name}, seed {seed}")
