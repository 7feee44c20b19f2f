"""Base codec + context model as one module, for fine-tuning the whole codec with a schedule.

One training pass (batch of crops x in [0, 1])::

    x --g_a--> y --h_a--> z
                          z~ = z + U(-1/2, 1/2) -> bits of z under the factorized prior
                          z^ = round(z) (straight through) --h_s--> scale of every y
    y^ = round(y) (straight through)
       -> context of every position from the y^ its stage has decoded (the schedule's masks)
       -> bits of y + U(-1/2, 1/2) under (context, scale)
    y^ --g_s--> x^
    loss = (bits of y + bits of z) / pixels + lambda * 255^2 * MSE(x, x^)

With ``noise=False`` the same pass rounds for real: what an encoder spends.

With an any-order context model (``ANY_ORDER``) every example of the batch
is decoded by a schedule of its own: ``masks`` (B, n*n, K, K), the window
masks of those schedules, go to the context model with y^.
"""

from __future__ import annotations

import torch
from torch import nn

from ..schedule import Schedule
from .entropy import bits
from .any_order import AnyOrderContextModel
from .hyperprior import BaseCodec, BaseCodecConfig
from .multistage import ModelConfig, MultistageContextModel
from .serial import SerialContextModel

SERIAL = "serial"  # the serial raster context model, in place of a schedule
ANY_ORDER = "any-order"  # one context model for every schedule of a patch size, in place of a schedule


def _ste_round(t: torch.Tensor) -> torch.Tensor:
    return t + (torch.round(t) - t).detach()


class JointModel(nn.Module):
    """Base codec + context model as one module: the rate-distortion pass of the module docstring."""

    def __init__(self, base: BaseCodec, context: MultistageContextModel, context_lr_scale: float = 1.0):
        super().__init__()
        self.base, self.context = base, context
        self.context_lr_scale = context_lr_scale

    def optimizer_groups(self) -> list[dict]:
        """The training loop's parameter groups: the context model at its own learning-rate scale."""
        return [{"params": list(self.base.parameters())},
                {"params": list(self.context.parameters()), "scale": self.context_lr_scale}]

    def forward(self, x: torch.Tensor, noise: bool = True, generator: torch.Generator | None = None,
                masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(bits of y, bits of z, reconstruction) of images ``x`` (N, 3, H, W), sides multiples of 64.

        ``generator``: where the training noise comes from (default torch's global stream); ``masks``: each
        image's schedule, for an any-order context model.
        """
        b = self.base
        y = b.g_a(x)
        z = b.h_a(y.abs())
        z_hat = _ste_round(z) if noise else torch.round(z)
        scale = b.hyper(z_hat)
        y_hat = _ste_round(y) if noise else torch.round(y)
        scored = y + torch.empty_like(y).uniform_(-0.5, 0.5, generator=generator) if noise else y_hat
        z_scored = z + torch.empty_like(z).uniform_(-0.5, 0.5, generator=generator) if noise else z_hat
        extra = {} if masks is None else {"masks": masks}
        bits_y = bits(self.context(y_hat, scale, scored=scored, **extra)).sum()
        bits_z = bits(b.z_prior.likelihood(z_scored)).sum()
        return bits_y, bits_z, b.g_s(y_hat)

    def loss(self, x: torch.Tensor, lmbda: float, noise: bool = True, generator: torch.Generator | None = None,
             masks: torch.Tensor | None = None) -> tuple[torch.Tensor, float, float]:
        """(rate-distortion loss, bits per pixel, MSE on the 0..1 scale)."""
        bits_y, bits_z, x_hat = self(x, noise, generator, masks)
        bpp = (bits_y + bits_z) / (x.shape[0] * x.shape[2] * x.shape[3])
        mse = torch.mean(((x_hat if noise else x_hat.clamp(0, 1)) - x) ** 2)
        return bpp + lmbda * 255**2 * mse, float(bpp.detach()), float(mse.detach())


def context_model(schedule: Schedule | str, base: BaseCodecConfig, kernel: int = 5,
                  patch: int = 4) -> MultistageContextModel:
    """A zero-initialized context model for ``schedule`` (or ``SERIAL``, or ``ANY_ORDER`` of ``patch``) on the
    base codec's latents."""
    config = ModelConfig(kernel=kernel, prior_scale=True)
    if schedule == SERIAL:
        return SerialContextModel(base.M, base.M, config)
    if schedule == ANY_ORDER:
        return AnyOrderContextModel(patch, base.M, base.M, config)
    return MultistageContextModel(schedule, base.M, base.M, config)
