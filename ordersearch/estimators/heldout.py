"""The held-out code-length estimator: per context set a small model fitted deterministically, scored on val.

For every context set C (its window mask D: the offsets d with d mod n in C)
a discretized-Gaussian model of a latent y given its decoded neighbours::

    x_d   = y_d / s_d                       the neighbour at d, same channel, in units of its hyperprior scale
    p_d   = sum_c' W_d[c', c] x_d[c']       all channels of the neighbour at d: their least-squares
                                            prediction of y / s_0 (W_d fitted once on train, per offset)
    mean  = s_0 * (b + sum_{d in D} w_d x_d + w'_d p_d)
    log sigma = log s_0 + a + c log s_0 + sum_{d in D} v_d |x_d| + v'_d |p_d|
    bits  = -log2( Phi((y + 1/2 - mean) / sigma) - Phi((y - 1/2 - mean) / sigma) )

so both the mean and the scale depend on the decoded neighbours (their own
channel and, through p_d, every channel), their magnitudes and the prior
scale (s = 1 without a prior). The 4 |window| + 3 parameters of a set (those
outside D held at zero) are fitted on one fixed sample of train windows by
L-BFGS (no SGD noise: the same data gives the same table; the many windows whose latent is
0 are thinned to a quarter and weighted 4), and f(C) is the
mean code length on one fixed sample of **val** windows shared by every
set, so differences between sets are paired. All sets of a batch are fitted
at once: their features are shared, each set's parameters are masked
columns of one matrix. The parameters are shared across channels; a
channel's own statistics enter through the prior scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..data.latents import LatentSet, Splits
from ..errors import OrdersearchError
from ..models.entropy import SCALE_BOUND
from ..schedule import check_kernel, context_window_masks
from .base import CostEstimator

_SQRT_HALF, _LOG2_E = 0.5 ** 0.5, 1 / math.log(2)


#: float32: the fit is elementwise-bound (two erfc per window and set); float64 costs twice the time
DTYPE = torch.float32


@dataclass(frozen=True)
class HeldoutConfig:
    """Sample sizes and optimiser budget of the held-out estimator."""

    train_windows: int = 32768
    #: train windows whose latent is 0 (most of them) kept with this probability, weighted by its inverse:
    #: the same expected loss at a fraction of the fitting cost
    zero_keep: float = 0.25
    val_windows: int = 32768
    sets_per_batch: int = 256
    #: most L-BFGS iterations per batch of sets started from scratch, and per batch started from smaller
    #: sets' fits (fewer are run once an iteration gains less than 1e-6 bits per set)
    max_iter: int = 60
    warm_iter: int = 40
    seed: int = 0


def _normalized(latents: LatentSet, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Entry i's y and its scale (1 without prior), float64."""
    y = latents.y[i].astype(np.float64)
    s = np.ones_like(y) if latents.prior is None else np.maximum(latents.prior[i].astype(np.float64), SCALE_BOUND)
    return y, s


def _offsets(kernel: int) -> list[tuple[int, int]]:
    h = kernel // 2
    return [(a, b) for a in range(-h, h + 1) for b in range(-h, h + 1)]


def _shifted(u: np.ndarray, dr: int, dc: int, h: int) -> np.ndarray:
    """u moved so that position (r, c) holds u[r + dr, c + dc] (zeros outside)."""
    padded = np.pad(u, ((0, 0), (h, h), (h, h)))
    return padded[:, h + dr:h + dr + u.shape[1], h + dc:h + dc + u.shape[2]]


def cross_channel_predictors(latents: LatentSet, kernel: int, ridge: float = 1.0) -> np.ndarray:
    """(K*K, C, C): for each window offset d, the least-squares prediction of a latent (in units of its scale)
    from all channels of its neighbour at d (in theirs): the information other channels carry, per offset."""
    h, offsets = kernel // 2, _offsets(kernel)
    c = latents.channels
    uu, uy = np.zeros((len(offsets), c, c)), np.zeros((len(offsets), c, c))
    for i in range(len(latents.y)):
        y, s = _normalized(latents, i)
        u = y / s
        target = u.reshape(c, -1)
        for k, (dr, dc) in enumerate(offsets):
            if (dr, dc) == (0, 0):
                continue
            src = _shifted(u, dr, dc, h).reshape(c, -1)
            uu[k] += src @ src.T
            uy[k] += src @ target.T
    w = np.zeros_like(uu)
    for k, (dr, dc) in enumerate(offsets):
        if (dr, dc) != (0, 0):
            w[k] = np.linalg.solve(uu[k] + ridge * np.eye(c), uy[k])  # (source, target)
    return w


def sample_windows(latents: LatentSet, kernel: int, count: int, rng: np.random.Generator,
                   predictors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` random latents of the set (uniform over elements): centre y, its scale, and (count, 2 K*K)
    features: the neighbours in units of their scale (same channel), then each offset's cross-channel
    prediction of the centre (``cross_channel_predictors``); zeros outside the latent."""
    offsets = _offsets(kernel)
    k2 = len(offsets)
    sizes = np.array([a.size for a in latents.y], dtype=np.float64)
    entries = rng.choice(len(latents.y), size=count, p=sizes / sizes.sum())
    y0, s0, x = np.empty(count), np.empty(count), np.zeros((count, 2 * k2))
    for i in np.unique(entries):
        rows = np.flatnonzero(entries == i)
        y, s = _normalized(latents, i)
        u = y / s
        c, hh, ww = y.shape
        ch, r, col = rng.integers(c, size=len(rows)), rng.integers(hh, size=len(rows)), rng.integers(ww, size=len(rows))
        y0[rows], s0[rows] = y[ch, r, col], s[ch, r, col]
        for k, (dr, dc) in enumerate(offsets):
            if (dr, dc) == (0, 0):
                continue
            rr, cc = r + dr, col + dc
            inside = (rr >= 0) & (rr < hh) & (cc >= 0) & (cc < ww)
            vec = np.zeros((c, len(rows)))  # every channel of the neighbour at d
            vec[:, inside] = u[:, rr[inside], cc[inside]]
            x[rows, k] = vec[ch, np.arange(len(rows))]
            x[rows, k2 + k] = np.einsum("sn,sn->n", predictors[k][:, ch], vec)
    return y0, s0, x


class HeldoutEstimator(CostEstimator):
    """f(C) as held-out code length of a small per-set model (see the module docstring)."""

    name = "heldout"
    split = "val"

    def __init__(self, train: tuple[np.ndarray, ...], val: tuple[np.ndarray, ...], kernel: int,
                 config: HeldoutConfig = HeldoutConfig(), progress: bool = False):
        self.kernel = check_kernel(kernel)
        self.config = config
        self.progress = progress
        y0 = train[0]
        keep = (y0 != 0) | (np.random.default_rng(config.seed).random(len(y0)) < config.zero_keep)
        weight = np.where(y0[keep] != 0, 1.0, 1.0 / config.zero_keep)
        self._train = [torch.from_numpy(a[keep]).to(DTYPE) for a in train]
        self._weight = torch.from_numpy(weight / weight.sum()).to(DTYPE)[:, None]
        self._val = [torch.from_numpy(a).to(DTYPE) for a in val]
        self._tables: dict[int, np.ndarray] = {}

    @classmethod
    def from_splits(cls, splits: Splits, kernel: int, config: HeldoutConfig = HeldoutConfig(),
                    progress: bool = False) -> HeldoutEstimator:
        """Fitted on ``splits.train``, scored on ``splits.val`` (fixed samples drawn from ``config.seed``)."""
        rng = np.random.default_rng(config.seed)
        k = check_kernel(kernel)
        for part in (splits.train, splits.val):
            if part.prior is not None and part.prior_channels != part.channels:
                raise OrdersearchError(f"the heldout estimator reads the prior as one scale per channel "
                                       f"({part.channels} channels), got {part.prior_channels}")
        predictors = cross_channel_predictors(splits.train, k)
        return cls(sample_windows(splits.train, k, config.train_windows, rng, predictors),
                   sample_windows(splits.val, k, config.val_windows, rng, predictors), k, config, progress)

    # ---------------------------------------------------------------- the model
    @staticmethod
    def _bits(params: torch.Tensor, masks: torch.Tensor, data: list[torch.Tensor]) -> torch.Tensor:
        """(N, B) code lengths of the N windows under the B sets' models; params (B, 2 F + 3), F features."""
        y0, s0, x = data
        f = x.shape[1]
        masks = masks.repeat(1, f // masks.shape[1])  # a set's mask covers each feature block
        w, v = params[:, :f] * masks, params[:, f:2 * f] * masks
        b, a, c = params[:, 2 * f], params[:, 2 * f + 1], params[:, 2 * f + 2]
        log_s0 = torch.log(s0)[:, None]
        mean = s0[:, None] * (b + x @ w.T)
        sigma = torch.exp(log_s0 * (1 + c) + a + x.abs() @ v.T).clamp_min(SCALE_BOUND)
        # the bin [y - 1/2, y + 1/2] mirrored to the upper side of the mean, where its probability
        # Phi(-lo) - Phi(-hi) = (erfc(lo / sqrt 2) - erfc(hi / sqrt 2)) / 2 does not cancel far out
        centre = (y0[:, None] - mean) / sigma
        half = 0.5 / sigma
        near = centre.abs() - half
        p = 0.5 * (torch.erfc(near * _SQRT_HALF) - torch.erfc((near + 2 * half) * _SQRT_HALF))
        return -torch.log(p.clamp_min(1e-12)) * _LOG2_E

    def _fit(self, masks: torch.Tensor, start: torch.Tensor | None = None, iterations: int | None = None
             ) -> torch.Tensor:
        """(B, 2 F + 3) fitted parameters of each set, from ``start`` (default zeros: the prior alone)."""
        f = self._train[2].shape[1]
        params = torch.zeros(masks.shape[0], 2 * f + 3, dtype=DTYPE) if start is None else start.expand(
            masks.shape[0], -1).clone()
        params.requires_grad_(True)
        # stops when an iteration gains less than 1e-6 bits per set (float32 resolves about that much)
        opt = torch.optim.LBFGS([params], lr=1, max_iter=iterations or self.config.max_iter, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-7,
                                tolerance_change=1e-6 * len(masks))

        def closure():
            opt.zero_grad()
            # the weighted mean code length of each set; independent sets, so their sum
            loss = (self._bits(params, masks, self._train) * self._weight).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return params.detach()

    def costs(self, codes: np.ndarray, patch: int) -> np.ndarray:
        """f(C) of the given codes, from the patch's whole table (computed once: every set's fit starts from
        a smaller set's, so a set's number does not depend on which others were asked for)."""
        if patch not in self._tables:
            self._tables[patch] = self.cost_table(patch)
        return self._tables[patch][np.asarray(codes)]

    def cost_table(self, patch: int, kernel: int | None = None, progress: bool = False) -> np.ndarray:
        """Every set of the patch, smallest sets first: each set's fit starts from that of the set without its
        lowest position (fitted already), so a few L-BFGS iterations finish it."""
        from tqdm.auto import tqdm

        if kernel is not None and kernel != self.kernel:
            raise OrdersearchError(f"the heldout estimator was fitted for a {self.kernel}x{self.kernel} window, "
                                   f"not {kernel}x{kernel}")
        if patch in self._tables:
            return self._tables[patch].copy()
        codes = np.arange(0, 2 ** (patch * patch), 2)
        sizes = np.array([bin(int(c)).count("1") for c in codes])
        rank = np.argsort(sizes, kind="stable")
        order, sizes = codes[rank], sizes[rank]
        masks = torch.from_numpy(context_window_masks(order, patch, self.kernel).reshape(len(order), -1)).to(DTYPE)
        fitted: dict[int, torch.Tensor] = {}
        table = np.full(2 ** (patch * patch), np.nan)
        prior_only = self._fit(torch.zeros(1, masks.shape[1], dtype=DTYPE))
        step = self.config.sets_per_batch
        by_size = [np.flatnonzero(sizes == k) for k in range(sizes.max() + 1)]
        batches = [idx[i:i + step] for idx in by_size for i in range(0, len(idx), step)]
        for idx in tqdm(batches, desc=f"heldout cost table {patch}x{patch} ({len(codes)} sets)", leave=False,
                        disable=not (self.progress or progress) or len(batches) < 2 or None):
            batch = order[idx]
            start = torch.stack([fitted.get(int(c & (c - 1)), prior_only[0]) for c in batch])
            params = self._fit(masks[idx], start, self.config.warm_iter if len(fitted) else None)
            with torch.no_grad():
                table[batch] = self._bits(params, masks[idx], self._val).mean(0).numpy()
            fitted.update(zip(map(int, batch), params))
        self._tables[patch] = table
        return table.copy()
