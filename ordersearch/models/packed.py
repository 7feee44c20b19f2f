"""K multistage context models trained as one, computing only the decoded offsets of every window.

The dense form (``MultistageContextModel``, the paper's per-step masked
convolutions) multiplies every position's whole KxK window by its mask: at
4x4 with a 5x5 window, 208 of the 400 position-offsets are masked out, and
their weights still cost optimiser work. Here each model keeps, per patch
position, only the weights of the offsets its mask lets through, and a
training pass works on rows (one row per scored latent) instead of images::

    y_k (B, C+1, H+2h, W+2h), channels last (the outside channel last)
    position p, model k:   rows = gather(y_k, sub-lattice of p x decoded offsets of p)   (B*h_p*w_p, A_kp*(C+1))
                           ctx  = rows @ W_kp^T + b_kp                                  (B*h_p*w_p, ctx)
    all positions:         ctx_k = cat_p ctx   (N, ctx),   prior_k likewise (N, C)
    entropy network:       three batched matmuls over [prior_k, ctx_k] for all k at once (K, N, .)
    loss:                  mean bits of each model (disjoint parameters)

The likelihoods are the dense model's (same function of the same weights);
only the summation order differs. Each position's weights are one parameter
(K, ctx, A_p*C), A_p the most offsets any model decodes there. The dense
models are rebuilt with ``unstacked``. Same interface as
``StackedContextModels`` (the layout a GPU trains fastest); this one is the
CPU's: one 4x4 model trains 1.9x faster than the dense one
(benchmarks/bench_verify.py), and stacking several saves nothing there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OrdersearchError
from .entropy import bits
from .multistage import MultistageContextModel
from .stacked import ModelStack, entropy_convs

__all__ = ["PackedContextModels"]


class PackedContextModels(ModelStack):
    """K ``MultistageContextModel``s of one patch size and shape, their context weights packed (see module doc)."""

    def __init__(self, models: list[MultistageContextModel]):
        super().__init__(models)
        first = models[0]
        kernel = first.config.kernel
        # per model and position: the kernel offsets (flat a * kernel + b) its mask lets through
        self._offsets = [[torch.flatten(m.masks[p, 0, 0]).nonzero().flatten().cpu() for p in range(m.masks.shape[0])]
                         for m in models]
        # every offset reads the latent's C channels and the outside channel (``MultistageContextModel``)
        ctx, channels = first.bias.shape[1], first.channels + 1
        # per position one parameter (K, ctx, A*(C+1)), A its most decoded offsets over the models (a model
        # with fewer uses the first columns): models along dim 0 as in every tensor of a stack; separate
        # parameters, so a pass takes views of them and no gradient is copied between the positions
        self._width = [max(len(o[p]) for o in self._offsets) * channels for p in range(len(self._offsets[0]))]
        blocks = []
        for p, width in enumerate(self._width):
            block = torch.zeros(self.k, ctx, width, dtype=first.weight.dtype, device=first.weight.device)
            for k, (m, offsets) in enumerate(zip(models, self._offsets)):
                w = m.reads().detach()[p].flatten(2)[:, :, offsets[p].to(m.weight.device)]  # (ctx, C+1, A)
                block[k, :, :w.shape[1] * w.shape[2]] = w.permute(0, 2, 1).reshape(ctx, -1)  # channels last
            blocks.append(nn.Parameter(block))
            if not first.config.outside:  # the official code's model: the outside channel's weights stay zero
                reads_y = (torch.arange(width, device=block.device) % channels != channels - 1).to(block.dtype)
                blocks[-1].register_hook(lambda grad, keep=reads_y: grad * keep)
        self._slot = [i for i, width in enumerate(self._width) if width]  # positions someone reads
        self.context = nn.ParameterList([blocks[p] for p in self._slot])
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in models]))  # (K, P, ctx)
        convs = [entropy_convs(m) for m in models]
        # entropy network as matrices (K, in, out): a 1x1 convolution on a row is a product with its transpose
        self.ep_weight = nn.ParameterList([nn.Parameter(torch.stack([c[i].weight.detach()[:, :, 0, 0].t()
                                                                     for c in convs]).contiguous())
                                           for i in range(len(convs[0]))])
        self.ep_bias = nn.ParameterList([nn.Parameter(torch.stack([c[i].bias.detach()[None] for c in convs]))
                                         for i in range(len(convs[0]))])
        self._kernel = kernel
        self._index: dict[tuple, list] = {}

    def _split(self) -> list[list[torch.Tensor | None]]:
        """Every model's per-position weight matrices (ctx, A*C), views of the parameters; None: reads nothing."""
        per_position: list[list[torch.Tensor] | None] = [None] * len(self._width)
        for slot, param in zip(self._slot, self.context):
            # one model: a view (no gradient copy); several: one unbind per pass
            per_position[slot] = [param.squeeze(0)] if self.k == 1 else list(param.unbind(0))
        channels = self.template.channels + 1
        return [[None if per_position[p] is None or not len(offsets[p]) else
                 per_position[p][k][:, :len(offsets[p]) * channels] for p in range(len(offsets))]
                for k, offsets in enumerate(self._offsets)]

    def _plan(self, batch: int, padded: tuple[int, int], scored: tuple[int, int], border: int, keep: int,
              device: torch.device) -> tuple[list, torch.Tensor]:
        """Where every row comes from, for one input shape (cached).

        Per position that has scored latents: (position index, rows, per model
        the gather index of its decoded offsets in the flat padded input, or
        None when it reads nothing); and the index of every scored row in the
        flat scored input, positions in the same order. Latents within
        ``keep`` of the scored part's edge are left out of both.
        """
        key = (batch, padded, scored, border, keep, str(device))
        if key in self._index:
            return self._index[key]
        t, n, kernel = self.template, self.template.schedule.patch, self._kernel
        (hp, wp), (hs, ws) = padded, scored
        plan, order = [], []
        for index, (r, c) in enumerate(t._positions):
            r, c = (r - border) % n, (c - border) % n  # the patch grid stays where the full tensor puts it
            rows = torch.arange(r, hs, n)
            cols = torch.arange(c, ws, n)
            rows, cols = rows[(rows >= keep) & (rows < hs - keep)], cols[(cols >= keep) & (cols < ws - keep)]
            if not len(rows) or not len(cols):
                continue
            # row (i, j) of batch entry b: its window's top-left corner in the padded input, its own place in y
            top_left = ((torch.arange(batch)[:, None, None] * hp + rows[None, :, None]) * wp + cols[None, None, :])
            own = ((torch.arange(batch)[:, None, None] * hs + rows[None, :, None]) * ws + cols[None, None, :])
            gathers = []
            for offsets in self._offsets:
                off = (offsets[index] // kernel) * wp + offsets[index] % kernel
                gathers.append((top_left.flatten()[:, None] + off[None, :]).flatten().to(device) if len(off) else None)
            plan.append((index, top_left.numel(), gathers))
            order.append(own.flatten())
        self._index[key] = plan, torch.cat(order).to(device)
        return self._index[key]

    def scored_bits(self, y: torch.Tensor, prior: torch.Tensor | None = None, border: int = 0, keep: int = 0,
                    outside: torch.Tensor | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Bits (K, elements) of ``y`` (K, B, C, H, W): model k on batch k, in no particular order.

        ``border`` and ``outside`` (K, B, 1, H, W) as in
        ``MultistageContextModel.forward``; ``keep``: the latents within
        ``keep`` of the scored part's edge are left out (a score border);
        ``weight`` (K, B, 1, H', W'): each scored latent's bits multiplied by
        its weight (a training crop's sampling weights).
        """
        t = self.template
        kk, b = y.shape[:2]
        if kk != self.k:
            raise OrdersearchError(f"expected a batch per model ({self.k}), got {kk}")
        t._check(y.flatten(0, 1), None if prior is None else prior.flatten(0, 1))
        y_pad, y, prior = t._window(y, prior, border, outside)
        plan, order = self._plan(b, tuple(y_pad.shape[3:]), tuple(y.shape[3:]), border, keep, y.device)

        def rows_of(v: torch.Tensor) -> torch.Tensor:  # (K, B, C, H, W) -> (K, B*H*W, C): one row per latent
            return v.permute(0, 1, 3, 4, 2).reshape(kk, -1, v.shape[2])

        flat = rows_of(y_pad)
        weights = self._split()
        ctx = []
        for k in range(kk):
            parts = []
            for index, count, gathers in plan:
                bias = self.bias[k, index]
                if gathers[k] is None:  # nothing decoded around it: the context is the bias alone
                    parts.append(bias.expand(count, -1))
                else:
                    parts.append(torch.addmm(bias, flat[k].index_select(0, gathers[k]).view(count, -1),
                                             weights[k][index].t()))
            ctx.append(torch.cat(parts))
        x = ctx[0].unsqueeze(0) if kk == 1 else torch.stack(ctx)  # (K, N, ctx), rows in plan order
        rows_y = rows_of(y).index_select(1, order)
        rows_prior = None if prior is None else rows_of(prior).index_select(1, order)
        # the first layer reads [prior, context]: two products instead of a concatenated copy
        w0, b0 = self.ep_weight[0], self.ep_bias[0]
        if rows_prior is None:
            x = torch.baddbmm(b0, x, w0)
        else:
            p = rows_prior.shape[2]
            x = torch.baddbmm(torch.baddbmm(b0, rows_prior, w0[:, :p]), x, w0[:, p:])
        for wt, bias in zip(self.ep_weight[1:], self.ep_bias[1:]):
            x = torch.baddbmm(bias, F.leaky_relu(x), wt)
        n_rows = x.shape[1]

        def image(v: torch.Tensor) -> torch.Tensor:  # rows as 1x1 images for the model's likelihood function
            return v.reshape(kk * n_rows, -1, 1, 1)

        lik = t._likelihood_from_params(image(rows_y), None if rows_prior is None else image(rows_prior), image(x))
        out = bits(lik).view(kk, n_rows, -1)
        if weight is not None:
            out = out * rows_of(weight).index_select(1, order)
        return out.view(kk, -1)

    def unstacked(self, models: list[MultistageContextModel]) -> list[MultistageContextModel]:
        """``models`` (the ones packed) with this module's current weights copied back into them."""
        with torch.no_grad():
            weights = self._split()
            for k, m in enumerate(models):
                m.weight.zero_()
                m.edge.zero_()
                for p, off in enumerate(self._offsets[k]):
                    w = weights[k][p]
                    if w is None:
                        continue
                    ctx, channels = w.shape[0], m.channels
                    read = w.view(ctx, -1, channels + 1).permute(0, 2, 1)  # (ctx, C+1, A)
                    at = off.to(m.weight.device)
                    m.weight[p].view(ctx, channels, -1)[:, :, at] = read[:, :channels]
                    m.edge[p].view(ctx, 1, -1)[:, :, at] = read[:, channels:]
                m.bias.copy_(self.bias[k])
                for conv, wt, bias in zip(entropy_convs(m), self.ep_weight, self.ep_bias):
                    conv.weight.copy_(wt[k].t()[:, :, None, None])
                    conv.bias.copy_(bias[k, 0])
        return models

