"""One multistage context model for every schedule of an n x n patch, trained over random schedules.

The architecture is the dedicated model's (``MultistageContextModel``): per
patch position a KxK convolution over y and the outside channel, one shared
entropy network. What differs is the mask: a dedicated model's masks are
fixed by its schedule; here every training example draws its own schedule
(a random permutation, or a random grouping of one into 2 .. n*n - 1
stages), and each position's window is masked by what that schedule has
decoded around it. The model is told which neighbours are decoded, as
order-agnostic autoregressive models are told their order: the mask is an
input of every position's features (weights ``decoded``), and it scales
each offset's weights (``reweight``: a linear predictor's coefficient of a
neighbour depends on which others it has)::

    example b, schedule s_b, position p:
        ctx_b,p = conv(y, W_p * M_p(s_b) * (1 + G_p M_p(s_b))) + <D_p, M_p(s_b)> + bias_p
        M_p(s) (K, K): 1 at the window offsets decoded before p under s

For a fixed schedule both mask terms are constants per position, so
``dedicated(schedule)`` is an exact ``MultistageContextModel`` of that
schedule (the factors folded into its weights, the sum into its bias): the
same likelihoods, and the start of the schedule's dedicated training
(``Evaluator``, ``TrainConfig.start``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OrdersearchError
from ..schedule import Schedule, decoded_offsets
from .multistage import ModelConfig, MultistageContextModel, inner

__all__ = ["AnyOrderContextModel", "SetTerms", "random_stage_grids", "window_masks"]


def random_stage_grids(patch: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, n, n) stage grids: half random permutations, half random groupings of one into 2 .. n*n - 1 stages.

    A grouping cuts a random permutation at ``stages - 1`` random places
    (``stages`` uniform).
    """
    cells = patch * patch
    grids = np.empty((count, cells), dtype=np.int64)
    for i in range(count):
        order = rng.permutation(cells)
        stage = np.arange(cells)
        if cells > 2 and rng.random() < 0.5:
            stages = int(rng.integers(2, cells))
            cuts = np.zeros(cells, dtype=np.int64)
            cuts[1 + rng.choice(cells - 1, stages - 1, replace=False)] = 1
            stage = np.cumsum(cuts)
        grids[i, order] = stage
    return grids.reshape(count, patch, patch)


def window_masks(grids: np.ndarray, kernel: int) -> np.ndarray:
    """(count, n*n, K, K) float32: ``Schedule.masks`` of every stage grid in ``grids`` (count, n, n), at once."""
    count, n, _ = grids.shape
    return decoded_offsets(grids, kernel).reshape(count, n * n, kernel, kernel).astype(np.float32)


class SetTerms(NamedTuple):
    """``AnyOrderContextModel.terms`` of a batch: per position (row, column, rows, columns, terms) or None, and
    the scored y and prior."""

    per: list
    y: torch.Tensor
    prior: torch.Tensor | None


class AnyOrderContextModel(MultistageContextModel):
    """The dedicated model's architecture with a mask per example (see the module docstring).

    Its context weights are kept per position for the window offsets some
    schedule decodes only (``context``, (n*n, ctx, (C+1)*U), channel-major):
    an offset on the latent's own patch position is never decoded before it.
    """

    def __init__(self, patch: int, channels: int, prior_channels: int = 0, config: ModelConfig = ModelConfig()):
        super().__init__(Schedule.named("single", patch), channels, prior_channels, config)
        n, k, ctx = patch, config.kernel, self.bias.shape[1]
        del self.weight, self.edge  # held as ``context`` (``reads`` rebuilds them)
        d = torch.arange(k) - k // 2
        own = (d[:, None] % n == 0) & (d[None, :] % n == 0)
        self.register_buffer("usable", torch.flatten(~own).nonzero().flatten(), persistent=False)
        width = len(self.usable)
        self.context = nn.Parameter(torch.zeros(n * n, ctx, (channels + 1) * width))
        if not config.outside:  # the official code's model: the outside channel's weights stay zero
            keep = (torch.arange((channels + 1) * width) < channels * width).float()
            self.context.register_hook(lambda grad: grad * keep.to(grad.device))
        # what each position's features learn from how many (and which) neighbours are decoded
        self.decoded = nn.Parameter(torch.zeros(n * n, ctx, k, k))
        # how much each offset's weights count given which other offsets are decoded: a linear predictor's
        # coefficient of a neighbour depends on the others it has (a factor 1 + G_p m per offset)
        self.reweight = nn.Parameter(torch.zeros(n * n, width, width))

    def reads(self) -> torch.Tensor:
        """(n*n, ctx, C + 1, K, K): every position's context weights, the outside channel last (zero at the
        offsets on the position itself)."""
        n2, ctx, _ = self.context.shape
        k = self.config.kernel
        full = self.context.new_zeros(n2, ctx, self.channels + 1, k * k)
        full[..., self.usable] = self.context.view(n2, ctx, self.channels + 1, -1)
        return full.view(n2, ctx, self.channels + 1, k, k)

    def forward(self, y: torch.Tensor, prior: torch.Tensor | None = None, border: int = 0,
                scored: torch.Tensor | None = None, outside: torch.Tensor | None = None,
                masks: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihoods as ``MultistageContextModel.forward``, example b decoded by the schedule of ``masks[b]``.

        ``masks`` (B, n*n, K, K): ``window_masks`` of each example's schedule
        (required: the model has no schedule of its own).
        """
        self._check(y, prior)
        n, kernel = self.schedule.patch, self.config.kernel
        batch = y.shape[0]
        if masks is None or tuple(masks.shape) != (batch, n * n, kernel, kernel):
            raise OrdersearchError("an any-order model needs one mask per example, shape "
                                   f"{(batch, n * n, kernel, kernel)}")
        y_pad, y, prior = self._window(y, prior, border, outside)
        if scored is not None:
            y = inner(scored, border)
        ctx = y.new_zeros(batch, self.bias.shape[1], *y.shape[2:])
        width = y_pad.shape[1]
        # per position; unbound once (indexing a stack per position makes autograd fill a gradient of the
        # whole stack each time)
        reads = self.context.unbind(0)
        # per example a constant per position: the mask term and the bias
        constant = (torch.einsum("pokl,bpkl->bpo", self.decoded, masks) + self.bias).unbind(1)
        masks = masks.flatten(2)[:, :, self.usable]  # (B, n*n, U)
        # per example and position, each offset's factor: its mask times 1 + G_p m
        masks = (masks * (1 + torch.einsum("puv,bpv->bpu", self.reweight, masks))).unbind(1)
        for index, (r, c) in enumerate(self._positions):
            r, c = (r - border) % n, (c - border) % n  # the patch grid stays where the full tensor puts it
            if r >= y.shape[2] or c >= y.shape[3]:
                continue
            h, w = -(-(y.shape[2] - r) // n), -(-(y.shape[3] - c) // n)
            # the windows of the position's sub-lattice as columns, without the offsets no schedule decodes,
            # each example's undecoded offsets zeroed: one product with the weights (a grouped convolution with
            # weights per example is 8x slower on a CPU)
            x = y_pad[:, :, r:, c:]
            rows, cols = (x.shape[2] - kernel) // n + 1, (x.shape[3] - kernel) // n + 1
            windows = F.unfold(x, kernel, stride=n).view(batch, width, kernel * kernel, -1)[:, :, self.usable]
            windows = (windows * masks[index][:, None, :, None]).flatten(1, 2)  # (B, (C+1)*U, L), scaled
            out = torch.matmul(reads[index], windows).view(batch, -1, rows, cols)[:, :, :h, :w]  # (B, ctx, h, w)
            ctx[:, :, r::n, c::n] = out + constant[index][:, :, None, None]
        return self._likelihood(y, prior, ctx)

    def terms(self, y: torch.Tensor, prior: torch.Tensor | None = None, border: int = 0,
              outside: torch.Tensor | None = None) -> SetTerms:
        """What ``forward`` computes before it knows a mask, for ``same_set``: each position's context weights
        applied to each window offset some schedule decodes, kept apart (the mask only scales them)."""
        self._check(y, prior)
        n, kernel = self.schedule.patch, self.config.kernel
        batch, ctx = y.shape[0], self.bias.shape[1]
        y_pad, y, prior = self._window(y, prior, border, outside)
        width, used = y_pad.shape[1], len(self.usable)
        per: list[tuple[int, int, int, int, torch.Tensor] | None] = []
        for index, (r, c) in enumerate(self._positions):
            r, c = (r - border) % n, (c - border) % n  # as ``forward`` places them
            if r >= y.shape[2] or c >= y.shape[3]:
                per.append(None)
                continue
            h, w = -(-(y.shape[2] - r) // n), -(-(y.shape[3] - c) // n)
            x = y_pad[:, :, r:, c:]
            rows, cols = (x.shape[2] - kernel) // n + 1, (x.shape[3] - kernel) // n + 1
            windows = F.unfold(x, kernel, stride=n).view(batch, width, kernel * kernel, -1)[:, :, self.usable]
            weights = self.context[index].view(ctx, width, used)
            # (U, B, ctx, rows, cols): offset u's part of the position's features, its mask factor left out
            t = torch.einsum("ocu,bcul->ubol", weights, windows).reshape(used, batch, ctx, rows, cols)
            per.append((r, c, h, w, t[..., :h, :w]))
        return SetTerms(per, y, prior)

    def same_set(self, terms: SetTerms, masks: torch.Tensor) -> torch.Tensor:
        """Likelihoods (S, B, C, H, W) of the ``terms``' B examples with every position decoded after the same
        relative context set, one per window mask of ``masks`` (S, K, K) (``schedule.context_window_masks``):
        ``forward`` with those masks at every position, without its convolutions (f(C) of a whole table)."""
        n, ctx = self.schedule.patch, self.bias.shape[1]
        sets, batch = masks.shape[0], terms.y.shape[0]
        flat = masks.flatten(1)[:, self.usable]  # (S, U)
        features = terms.y.new_zeros(sets, batch, ctx, *terms.y.shape[2:])
        for index, item in enumerate(terms.per):
            if item is None:
                continue
            r, c, _, _, t = item
            factor = flat * (1 + flat @ self.reweight[index].T)  # as ``forward``: mask x (1 + G_p m)
            constant = torch.einsum("okl,skl->so", self.decoded[index], masks) + self.bias[index]
            out = torch.einsum("su,ubohw->sbohw", factor, t)
            features[:, :, :, r::n, c::n] = out + constant[:, None, :, None, None]
        y = terms.y.expand(sets, *terms.y.shape).flatten(0, 1)
        prior = None if terms.prior is None else terms.prior.expand(sets, *terms.prior.shape).flatten(0, 1)
        like = self._likelihood(y, prior, features.flatten(0, 1))
        return like.view(sets, batch, *like.shape[1:])

    def dedicated(self, schedule: Schedule) -> MultistageContextModel:
        """The dedicated model of ``schedule`` that this model is for it: the same likelihoods, a model to train on."""
        n = self.schedule.patch
        if schedule.patch != n:
            raise OrdersearchError(f"a {schedule.patch}x{schedule.patch} schedule for a {n}x{n} any-order model")
        model = MultistageContextModel(schedule, self.channels, self.prior_channels, self.config).to(self.bias.device)
        masks = model.masks.view(n * n, *model.masks.shape[-2:])
        with torch.no_grad():
            # the dedicated model multiplies its weights by its 0/1 masks itself: fold the factors into them
            n2, k = n * n, self.config.kernel
            factors = self.context.new_ones(n2, k * k)
            factors[:, self.usable] = 1 + torch.einsum("puv,pv->pu", self.reweight, masks.flatten(1)[:, self.usable])
            reads = self.reads() * factors.view(n2, 1, 1, k, k)
            state = {k: v.detach().clone() for k, v in self.state_dict().items()
                     if k not in ("masks", "decoded", "context", "reweight")}
            state.update(weight=reads[:, :, :-1].clone(), edge=reads[:, :, -1:].clone(), masks=model.masks,
                         bias=self.bias + torch.einsum("pokl,pkl->po", self.decoded, masks))
            model.load_state_dict(state)
        return model
