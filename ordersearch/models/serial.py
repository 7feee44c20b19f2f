"""The serial autoregressive baseline: one causal KxK masked convolution, decoded one latent at a time.

The usual context model of Minnen et al. (2018) as CompressAI ships it: every
latent sees the window positions before it in raster order (a type-A mask)::

    K = 5:   x x x x x
             x x x x x
             x x o . .      o: the latent decoded now, x: its context
             . . . . .
             . . . . .

Training and measuring use the parallel pass of ``MultistageContextModel``
(a 1x1 "schedule" whose one convolution carries the causal mask), so its
rates compare directly with any schedule's. Decoding is H x W stages:
``gaussian_at`` computes one latent's parameters from only its window, as
a decoder must (CompressAI's ``_decompress_ar`` does the same with a
cropped convolution).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..schedule import Schedule
from .entropy import SCALE_BOUND
from .multistage import ModelConfig, MultistageContextModel


def causal_mask(kernel: int) -> np.ndarray:
    """(K, K) mask of the window positions decoded before the centre in raster order."""
    mask = np.zeros((kernel, kernel), dtype=bool)
    h = kernel // 2
    mask[:h] = True
    mask[h, :h] = True
    return mask


class SerialContextModel(MultistageContextModel):
    """Serial raster autoregressive context model with the multistage model's entropy network."""

    def __init__(self, channels: int, prior_channels: int = 0, config: ModelConfig = ModelConfig()):
        super().__init__(Schedule.named("single", 1), channels, prior_channels, config)
        self.masks.copy_(torch.from_numpy(causal_mask(config.kernel)).float().view_as(self.masks))

    def decoder_weights(self) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The weights ``gaussian_at`` uses: causal taps of the latents and the outside channel
        (ctx, (C + 1) * taps), context bias, entropy layers as matrices."""
        taps = torch.from_numpy(causal_mask(self.config.kernel).ravel())
        w = self.reads()[0].flatten(2)[:, :, taps].flatten(1)
        layers = [(m.weight[:, :, 0, 0], m.bias) for m in self.entropy_parameters if isinstance(m, torch.nn.Conv2d)]
        return w, self.bias[0], layers

    def gaussian_at(self, weights: tuple, window: torch.Tensor, prior: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, scale) of one latent's C channels from its (C + 1, K, K) window.

        ``window`` holds what ``_scaled`` gives (y, or y / prior scale), zeros
        where nothing is decoded yet, and then the outside channel (1 past the
        image); only its causal taps are read, so the encoder (which has
        everything) and the decoder compute the same numbers.
        """
        w, bias, layers = weights
        k = self.config.kernel
        causal = torch.cat([window[:, :k // 2].flatten(1), window[:, k // 2, :k // 2]], dim=1)
        h = w @ causal.flatten() + bias
        if prior is not None:
            h = torch.cat([prior, h])
        for i, (a, b) in enumerate(layers):
            h = a @ h + b
            if i < len(layers) - 1:
                h = F.leaky_relu(h)
        mean, raw = h.chunk(2)
        if self.config.prior_scale and prior is not None:
            mean = mean * prior.clamp_min(SCALE_BOUND)
        return mean, F.softplus(raw).clamp_min(SCALE_BOUND)
