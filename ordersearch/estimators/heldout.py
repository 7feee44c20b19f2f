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
Newton's method (no SGD noise: the same data gives the same table; the many
windows whose latent is 0 are thinned to a quarter and weighted 4), and
f(C) is the mean code length on one fixed sample of **val** windows shared
by every set, so differences between sets are paired. All sets of a batch
are fitted at once: their features are shared, each set's parameters are
masked columns of one matrix. The parameters are shared across channels; a
channel's own statistics enter through the prior scale.

Why Newton: differences between orders are a few thousandths of a bit, so
every set's fit must be converged well below that (L-BFGS with the 40
iterations the 4x4 table could afford left 3x3 sets up to 0.0008 bits from
their 80-iteration values). The code length is a function of two linear
predictors (mean and log-scale), so its Hessian is a weighted sum of the
features' products with per-window 2x2 curvatures: three matrix products
per iteration for a whole batch of sets. From the smaller set's fit a few
Levenberg-Marquardt-damped Newton steps converge (quadratically) to a
decrement below ``tolerance``. The problem is not convex in the log-scale,
so the fit is a local optimum, the same one every time for the same data.
Windows within ``border`` of an edge can be left out (Gaussian fields
against their infinite-field oracle); on a one-channel field the table is
then the oracle's within 1% (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data.latents import LatentSet, Splits
from ..errors import OrdersearchError
from ..models.entropy import SCALE_BOUND
from ..schedule import check_kernel, context_window_masks
from .base import CostEstimator
from .windows import Windows

if TYPE_CHECKING:
    from ..evaluation.evaluator import Evaluator

_SQRT_HALF, _LOG2_E, _INV_SQRT_2PI = 0.5 ** 0.5, 1 / math.log(2), 1 / math.sqrt(2 * math.pi)


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
    #: sets fitted at once (memory: about sets x train windows x 2 |window| floats for the curvatures)
    sets_per_batch: int = 64
    #: Newton iterations at most per set; a set stops once its Newton decrement (the gain the next step
    #: promises) is below ``tolerance`` bits
    max_iter: int = 30
    tolerance: float = 1e-8
    #: latents this close to an edge are not sampled: 0 for real images (their edges are real), kernel // 2 to
    #: compare with the infinite-field Gaussian oracle (as ``TrainConfig.score_border``)
    border: int = 0
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
                   predictors: np.ndarray, border: int = 0, chunk: int = 4096
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` random latents of the set (uniform over elements at least ``border`` from an edge): centre y,
    its scale, and (count, 2 K*K) features: the neighbours in units of their scale (same channel), then each
    offset's cross-channel prediction of the centre (``cross_channel_predictors``); zeros outside the latent
    and at the centre itself."""
    windows = Windows(latents, kernel, prior_scale=latents.prior is not None)
    img, r, col = windows.sample(count, rng, border)
    ch = rng.integers(latents.channels, size=count)
    k2, centre = kernel * kernel, kernel * kernel // 2
    cross = torch.from_numpy(predictors).float()  # (K*K, source, target)
    y0, s0, x = np.empty(count), np.ones(count), np.zeros((count, 2 * k2))
    for start in range(0, count, chunk):  # (chunk, C, K*K) windows at a time: all channels of a window are read
        part = slice(start, start + chunk)
        w, y, prior = windows.gather(img[part], r[part], col[part])
        own = torch.from_numpy(ch[part])
        rows = torch.arange(len(own))
        y0[part] = y[rows, own].double().numpy()
        if prior is not None:
            s0[part] = prior[rows, own].double().clamp_min(SCALE_BOUND).numpy()
        x[part, :k2] = w[rows, own].double().numpy()
        x[part, k2:] = torch.einsum("ksb,bsk->bk", cross[:, :, own], w).double().numpy()
    x[:, [centre, k2 + centre]] = 0.0  # the latent itself is never its own context
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
    def fit(cls, evaluator: Evaluator, patch: int, seed: int = 0) -> HeldoutEstimator:
        """Fitted on the evaluator's train split, scored on its val split, samples drawn from ``seed``."""
        return cls.from_splits(evaluator.splits, evaluator.kernel, HeldoutConfig(seed=seed), evaluator.progress)

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
        return cls(sample_windows(splits.train, k, config.train_windows, rng, predictors, config.border),
                   sample_windows(splits.val, k, config.val_windows, rng, predictors, config.border), k, config,
                   progress)

    # ---------------------------------------------------------------- the model
    @staticmethod
    def _bits(params: torch.Tensor, masks: torch.Tensor, data: list[torch.Tensor]) -> torch.Tensor:
        """(N, B) code lengths of the N windows under the B sets' models; params (B, 2 F + 3), F features."""
        y0, s0, x = data
        f = x.shape[1]
        m = masks.repeat(1, f // masks.shape[1])  # a set's mask covers each feature block
        params = torch.cat([params[:, :f] * m, params[:, f:2 * f] * m, params[:, 2 * f:]], 1)
        return -torch.log(_bin(params, y0, s0, x, f)[-1].clamp_min(1e-12)) * _LOG2_E

    def _curvature_features(self) -> tuple[torch.Tensor, ...]:
        """The train windows' feature products that every set's Hessian is a weighted sum of (computed once).

        The mean is linear in z_m = [s0 x, s0] (parameters w, b), the log-scale in
        z_s = [|x|, 1, log s0] (v, a, c); the Hessian of set k is
        sum_n (L_mm z_m z_m^T + L_ml (z_m z_s^T + z_s z_m^T) + L_ll z_s z_s^T)[n, k],
        so with the products z_i z_j of each window stored as columns it is one
        matrix product per block for all sets at once.
        """
        if not hasattr(self, "_products"):
            y0, s0, x = self._train
            f = x.shape[1]
            ones = torch.ones(len(y0), 1, dtype=DTYPE)
            z_m = torch.cat([s0[:, None] * x, s0[:, None]], 1)
            z_s = torch.cat([x.abs(), ones, torch.log(s0)[:, None]], 1)
            upper_m, upper_s = torch.triu_indices(f + 1, f + 1), torch.triu_indices(f + 2, f + 2)
            at_m = torch.tensor([*range(f), 2 * f])  # where the mean's parameters sit in a set's vector
            at_s = torch.tensor([*range(f, 2 * f), 2 * f + 1, 2 * f + 2])
            # where each Hessian entry (i, j) of a set's vector finds its value among the blocks' columns
            size = 2 * f + 3
            where = torch.zeros(size, size, dtype=torch.long)
            column = 0
            for (r, c) in ((at_m[upper_m[0]], at_m[upper_m[1]]), (at_s[upper_s[0]], at_s[upper_s[1]]),
                           (at_m[:, None].expand(f + 1, f + 2).flatten(), at_s[None, :].expand(f + 1, f + 2).flatten())):
                where[r, c] = where[c, r] = torch.arange(column, column + len(r))
                column += len(r)
            self._products = (z_m, z_s, z_m[:, upper_m[0]] * z_m[:, upper_m[1]],
                              z_s[:, upper_s[0]] * z_s[:, upper_s[1]],
                              (z_m[:, :, None] * z_s[:, None, :]).flatten(1), where.flatten(), at_m, at_s)
        return self._products

    def _fit(self, masks: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 2 F + 3) fitted parameters of each set, from ``start`` (default zeros: the prior alone)."""
        y0, s0, x = self._train
        f = x.shape[1]
        z_m, z_s, mm, ss, ms, where, at_m, at_s = self._curvature_features()
        m = masks.repeat(1, f // masks.shape[1])  # a set's mask covers each feature block
        free = torch.cat([m, m, torch.ones(len(masks), 3, dtype=DTYPE)], 1) > 0  # [w, v, b, a, c]
        params = torch.zeros(len(masks), 2 * f + 3, dtype=DTYPE) if start is None else start.clone()
        params *= free
        weight = self._weight  # (N, 1), sums to 1
        loss = self._loss(params, masks)
        active = torch.ones(len(masks), dtype=torch.bool)
        damping = torch.zeros(len(masks), dtype=torch.float64)
        eye = torch.eye(2 * f + 3, dtype=torch.float64)
        for _ in range(self.config.max_iter):
            idx = active.nonzero().flatten()
            if not len(idx):
                break
            p, fr = params[idx], free[idx]
            l_m, l_l, l_mm, l_ml, l_ll = (weight * d for d in _derivatives(p, y0, s0, x, f))
            grad = torch.zeros(len(idx), 2 * f + 3, dtype=DTYPE)
            grad[:, at_m], grad[:, at_s] = (z_m.T @ l_m).T, (z_s.T @ l_l).T
            blocks = torch.cat([l_mm.T @ mm, l_ll.T @ ss, l_ml.T @ ms], 1).double()  # (B, pairs)
            hess = blocks[:, where].view(len(idx), 2 * f + 3, 2 * f + 3)
            grad = grad.double() * fr
            # fixed parameters: identity rows (no step)
            hess = hess.double() * (fr[:, :, None] & fr[:, None, :]) + eye * (~fr[:, :, None])
            size = hess.diagonal(dim1=1, dim2=2).abs().mean(1).clamp_min(1e-12)
            # Levenberg-Marquardt: a step that does not lower the loss is retried with more damping
            # (H + lambda I: towards a short gradient step); damping shrinks again after a success
            lam = damping[idx]
            trial_loss = torch.full((len(idx),), math.inf, dtype=torch.float64)
            # converged: the gain a full Newton step promises (the Newton decrement) is below the tolerance
            newton = -_damped_solve(hess, grad)
            converged = -(grad * newton).sum(1) * _LOG2_E < self.config.tolerance
            pending = ~converged
            step = newton.clone()  # an undamped set's trial is the Newton step itself
            for _ in range(12):
                j = pending.nonzero().flatten()
                if not len(j):
                    break
                d = j[lam[j] > 0]
                if len(d):
                    step[d] = -_damped_solve(hess[d] + (lam[d] * size[d])[:, None, None] * eye, grad[d])
                trial_loss[j] = self._loss(p[j] + step[j].to(DTYPE), masks[idx[j]])
                better = trial_loss[j] < loss[idx[j]]
                pending[j[better]] = False
                lam[j[~better]] = torch.where(lam[j[~better]] == 0, 1e-4, lam[j[~better]] * 10)
            moved = ~converged & ~pending
            params[idx[moved]] = p[moved] + step[moved].to(DTYPE)
            gain = loss[idx] - trial_loss  # bits
            loss[idx[moved]] = trial_loss[moved]
            damping[idx] = torch.where(moved, lam / 10, lam)
            damping[damping < 1e-8] = 0
            # done: converged, or no step lowers the loss any more, or an undamped step gained less than the
            # tolerance (Newton converges quadratically: the next one would gain about its square)
            active[idx[~moved | ((gain < self.config.tolerance) & (lam == 0))]] = False
        return params

    def _loss(self, params: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(B,) weighted mean train code length (bits) of each set, float64."""
        return (self._bits(params, masks, self._train) * self._weight).double().sum(0)

    def costs(self, codes: np.ndarray, patch: int) -> np.ndarray:
        """f(C) of the given codes, from the patch's whole table (computed once: every set's fit starts from
        a smaller set's, so a set's number does not depend on which others were asked for)."""
        if patch not in self._tables:
            self._tables[patch] = self.cost_table(patch)
        return self._tables[patch][np.asarray(codes)]

    def cost_table(self, patch: int, kernel: int | None = None, progress: bool = False) -> np.ndarray:
        """Every set of the patch, smallest sets first: each set's fit starts from that of the set without its
        lowest position (fitted already), so a few Newton iterations finish it."""
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
            params = self._fit(masks[idx], start)
            with torch.no_grad():
                table[batch] = self._bits(params, masks[idx], self._val).mean(0).numpy()
            fitted.update(zip(map(int, batch), params))
        self._tables[patch] = table
        return table.copy()


def _bin(params: torch.Tensor, y0: torch.Tensor, s0: torch.Tensor, x: torch.Tensor, f: int
         ) -> tuple[torch.Tensor, ...]:
    """Every window (N) under every set's parameters (B): (centre, sigma, scale not clamped, u, t, bin mass).

    The bin [y - 1/2, y + 1/2] is mirrored to the upper side of the mean, where its mass
    Q(u) - Q(t) = (erfc(u / sqrt 2) - erfc(t / sqrt 2)) / 2, with u = |c| - h, t = |c| + h, c = (y - mean) / sigma
    and h = 1 / (2 sigma), does not cancel far out.
    """
    w, v = params[:, :f], params[:, f:2 * f]
    b, a, c = params[:, 2 * f], params[:, 2 * f + 1], params[:, 2 * f + 2]
    log_s0 = torch.log(s0)[:, None]
    mean = s0[:, None] * (b + x @ w.T)
    sigma = torch.exp(log_s0 * (1 + c) + a + x.abs() @ v.T)
    free = sigma > SCALE_BOUND  # where the scale is clamped, the log-scale has no effect
    sigma = sigma.clamp_min(SCALE_BOUND)
    centre = (y0[:, None] - mean) / sigma
    half = 0.5 / sigma
    u = centre.abs() - half
    t = u + 2 * half
    return centre, sigma, free, u, t, 0.5 * (torch.erfc(u * _SQRT_HALF) - torch.erfc(t * _SQRT_HALF))


def _derivatives(params: torch.Tensor, y0: torch.Tensor, s0: torch.Tensor, x: torch.Tensor, f: int
                 ) -> tuple[torch.Tensor, ...]:
    """First and second derivatives (N, B) of each window's code length (nats) in the mean and the log-scale:
    (L_m, L_l, L_mm, L_ml, L_ll).

    With c = (y - m) / sigma, h = 1 / (2 sigma), u = |c| - h, t = |c| + h, the bin's mass is
    p = Q(u) - Q(t) (Q the upper normal tail); its derivatives follow from phi' = -x phi.
    """
    centre, sigma, free, u, t, p = _bin(params, y0, s0, x, f)
    p = p.clamp_min(1e-12)
    phi_u = torch.exp(-0.5 * u * u) * _INV_SQRT_2PI
    phi_t = torch.exp(-0.5 * t * t) * _INV_SQRT_2PI
    alpha = -torch.sign(centre) / sigma  # d|c| / dm
    p_m = alpha * (phi_t - phi_u)
    p_l = u * phi_u - t * phi_t
    p_mm = alpha * alpha * p_l
    p_ml = alpha * ((1 - u * u) * phi_u - (1 - t * t) * phi_t)
    p_ll = u * phi_u * (u * u - 1) - t * phi_t * (t * t - 1)
    l_m, l_l = -p_m / p, -p_l / p
    l_mm = -p_mm / p + l_m * l_m
    l_ml = -p_ml / p + l_m * l_l
    l_ll = -p_ll / p + l_l * l_l
    return l_m, l_l * free, l_mm, l_ml * free, l_ll * free


def _damped_solve(hess: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """H^-1 g for every set, H made positive definite where it is not (Levenberg: H + lambda I, lambda raised
    until the Cholesky factorization succeeds), so that the step is a descent direction."""
    eye = torch.eye(hess.shape[-1], dtype=hess.dtype)
    lam = torch.zeros(len(hess), dtype=hess.dtype)
    scale = hess.diagonal(dim1=1, dim2=2).abs().mean(1).clamp_min(1e-12)
    for _ in range(12):
        factor, info = torch.linalg.cholesky_ex(hess + lam[:, None, None] * eye)
        bad = info != 0
        if not bad.any():
            break
        lam[bad] = torch.where(lam[bad] == 0, 1e-3 * scale[bad], lam[bad] * 10)
    return torch.cholesky_solve(grad.unsqueeze(-1), factor).squeeze(-1)
