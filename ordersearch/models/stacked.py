"""K multistage context models of one patch size trained as one: stacked weights, grouped convolutions.

Each model keeps its own schedule, masks, weights and batches; stacking only
changes how the work is laid out. Model k reads channel group k of every
convolution (``groups=K``), so one kernel launch per patch position serves
all K models instead of K::

    models 0..K-1, batch b:  y_k (B, C, H, W)  ->  (B, K*C, H, W)
    position p:              conv(groups=K, weight = stack_k(W_k[p] * mask_k[p]), stride n)
                             ->  context (B, K*ctx, H, W)
    entropy network:         three grouped 1x1 convolutions over [prior_k, context_k]
    loss:                    sum_k mean bits_k  (disjoint parameters: each model gets its own gradient)

AdamW is elementwise, so a stacked step is the K separate steps, up to
floating-point summation order (tested against one-at-a-time training).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OrdersearchError
from .entropy import bits
from .multistage import MultistageContextModel, inner

__all__ = ["ModelStack", "StackedContextModels"]


class ModelStack(nn.Module):
    """What every layout of K multistage models as one module shares: one patch size, shape and config; a
    template model; dim 0 of every tensor of its state is the model."""

    def __init__(self, models: list[MultistageContextModel]):
        super().__init__()
        if not models:
            raise OrdersearchError("nothing to stack: no models given")
        first = models[0]
        shape = (first.schedule.patch, first.channels, first.prior_channels, first.config)
        for m in models:
            if (m.schedule.patch, m.channels, m.prior_channels, m.config) != shape:
                raise OrdersearchError("stacked models need one patch size, channel count and model config")
        self._template = [first]  # in a list: not a submodule, its weights are not among the stack's
        self.k = len(models)

    @property
    def template(self) -> MultistageContextModel:
        """The first model: the shape, config and likelihood function of every model of the stack."""
        return self._template[0]


class StackedContextModels(ModelStack):
    """K ``MultistageContextModel``s of equal shape and patch size as one module (dim 0 of every tensor is k)."""

    def __init__(self, models: list[MultistageContextModel]):
        super().__init__(models)
        self.register_buffer("masks", torch.stack([m.masks for m in models]))  # (K, P, 1, 1, k, k)
        # (K, P, ctx, C+1, k, k): each model's context weights, the outside channel last
        self.weight = nn.Parameter(torch.stack([m.reads().detach() for m in models]))
        if not models[0].config.outside:  # the official code's model: the outside channel's weights stay zero
            reads_y = torch.ones(self.weight.shape[3], 1, 1, dtype=self.weight.dtype, device=self.weight.device)
            reads_y[-1] = 0
            self.weight.register_hook(lambda grad: grad * reads_y)
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in models]))  # (K, P, ctx)
        convs = [entropy_convs(m) for m in models]
        self.ep_weight = nn.ParameterList(
            [nn.Parameter(torch.stack([c[i].weight.detach() for c in convs])) for i in range(len(convs[0]))])
        self.ep_bias = nn.ParameterList(
            [nn.Parameter(torch.stack([c[i].bias.detach() for c in convs])) for i in range(len(convs[0]))])
        # a position whose mask is empty in every model reads nothing: its context is the bias alone
        self._reads = [bool(self.masks[:, p].any()) for p in range(self.masks.shape[1])]

    def forward(self, y: torch.Tensor, prior: torch.Tensor | None = None, border: int = 0,
                outside: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihoods (K, B, C, H', W') of ``y`` (K, B, C, H, W): model k on batch k.

        ``border`` and ``outside`` (K, B, 1, H, W) as in ``MultistageContextModel.forward``.
        """
        t = self.template
        kk, b = y.shape[:2]
        if kk != self.k:
            raise OrdersearchError(f"expected a batch per model ({self.k}), got {kk}")
        t._check(y.flatten(0, 1), None if prior is None else prior.flatten(0, 1))
        n = t.schedule.patch
        y_pad, y, prior = t._window(y, prior, border, outside)
        height, width = y.shape[3:]
        grouped = y_pad.transpose(0, 1).reshape(b, -1, *y_pad.shape[3:])  # (B, K*C, H+2h, W+2h)
        ctx_channels = self.bias.shape[2]
        ctx = y.new_zeros(b, self.k * ctx_channels, height, width)
        kernels = (self.weight * self.masks).unbind(1)  # per position: (K, ctx, C, k, k)
        biases = self.bias.unbind(1)
        for index, (r, c) in enumerate(t._positions):
            r, c = (r - border) % n, (c - border) % n
            if r >= height or c >= width:
                continue
            bias = biases[index].reshape(-1)
            if not self._reads[index]:
                hs, ws = -(-(height - r) // n), -(-(width - c) // n)
                ctx[:, :, r::n, c::n] = bias.view(1, -1, 1, 1).expand(b, -1, hs, ws)
                continue
            out = F.conv2d(grouped[:, :, r:, c:], kernels[index].flatten(0, 1), bias, stride=n, groups=self.k)
            ctx[:, :, r::n, c::n] = out[:, :, :-(-(height - r) // n), :-(-(width - c) // n)]
        x = ctx.view(b, self.k, ctx_channels, height, width)
        if prior is not None:
            x = torch.cat([prior.transpose(0, 1), x], dim=2)
        x = x.reshape(b, -1, height, width)
        last = len(self.ep_weight) - 1
        for i, (w, bias) in enumerate(zip(self.ep_weight, self.ep_bias)):
            x = F.conv2d(x, w.flatten(0, 1), bias.reshape(-1), groups=self.k)
            if i < last:
                x = F.leaky_relu(x)
        params = x.view(b, self.k, -1, height, width).transpose(0, 1).flatten(0, 1)
        flat_prior = None if prior is None else prior.flatten(0, 1)
        lik = t._likelihood_from_params(y.flatten(0, 1), flat_prior, params)
        return lik.view(self.k, b, *lik.shape[1:])

    def scored_bits(self, y: torch.Tensor, prior: torch.Tensor | None = None, border: int = 0, keep: int = 0,
                    outside: torch.Tensor | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Bits (K, elements) of ``y`` (K, B, C, H, W), the outer ``keep`` rows and columns of the scored part left
        out, each multiplied by its ``weight`` (K, B, 1, H', W') if given (``PackedContextModels``' interface)."""
        b = bits(self(y, prior, border, outside))
        return inner(b if weight is None else b * weight, keep).flatten(1)

    def unstacked(self, models: list[MultistageContextModel]) -> list[MultistageContextModel]:
        """``models`` (the ones stacked) with this module's current weights copied back into them."""
        with torch.no_grad():
            for k, m in enumerate(models):
                m.weight.copy_(self.weight[k, :, :, :-1])
                m.edge.copy_(self.weight[k, :, :, -1:])
                m.bias.copy_(self.bias[k])
                for conv, w, bias in zip(entropy_convs(m), self.ep_weight, self.ep_bias):
                    conv.weight.copy_(w[k])
                    conv.bias.copy_(bias[k])
        return models


def entropy_convs(model: MultistageContextModel) -> list[nn.Conv2d]:
    """The 1x1 convolutions of a model's entropy-parameters network, in order."""
    return [layer for layer in model.entropy_parameters if isinstance(layer, nn.Conv2d)]
