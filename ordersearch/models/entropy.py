"""Likelihoods of integer latents: discretized Gaussian and a learned factorized density.

Both return the probability mass of the unit bin around each integer value,
``P(v) = F(v + 1/2) - F(v - 1/2)``, so ``-log2 P`` is the ideal code length in
bits. Rates are bits per latent element unless a name says otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Smallest Gaussian scale the models use (as in CompressAI); keeps bins finite.
SCALE_BOUND = 0.11
#: Smallest probability a bin is given, so that -log2 P stays finite (~30 bits).
LIKELIHOOD_BOUND = 1e-9


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (1.0 / math.sqrt(2.0)))


def gaussian_likelihood(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mass of the unit bin around ``y`` under N(mean, scale^2).

    Computed in the lower tail (``|y - mean|`` mirrored) so that bins far from
    the mean do not lose their mass to cancellation.
    """
    scale = scale.clamp_min(SCALE_BOUND)
    v = (y - mean).abs()
    upper = _std_normal_cdf((0.5 - v) / scale)
    lower = _std_normal_cdf((-0.5 - v) / scale)
    return (upper - lower).clamp_min(LIKELIHOOD_BOUND)


def gaussian_mixture_likelihood(y: torch.Tensor, means: torch.Tensor, scales: torch.Tensor,
                                logits: torch.Tensor) -> torch.Tensor:
    """Mass of the unit bin around ``y`` under a K-component Gaussian mixture.

    ``means``, ``scales`` and ``logits`` have a mixture axis right after the
    batch axis: shape (N, K, C, H, W) against ``y`` of shape (N, C, H, W).
    """
    weights = torch.softmax(logits, dim=1)
    per = gaussian_likelihood(y.unsqueeze(1), means, scales)
    return (weights * per).sum(dim=1).clamp_min(LIKELIHOOD_BOUND)


def bits(likelihood: torch.Tensor) -> torch.Tensor:
    """Code length in bits of each element, ``-log2 P``."""
    return -torch.log2(likelihood)


class FactorizedPrior(nn.Module):
    """Per-channel learned density of Ballé et al. (2018), for the hyper latent z.

    The cumulative is a small monotone network per channel (filters 3-3-3,
    softplus-positive matrices, tanh gates); its value at ``v +- 1/2`` gives
    the bin mass. Used on integer inputs at test time and on noisy ones in
    training.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        # x: (C, 1, L)
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """Bin mass of every element of ``z`` (N, C, H, W)."""
        n, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits_cumulative(v - 0.5)
        upper = self._logits_cumulative(v + 0.5)
        # mirror to the side where the sigmoids do not saturate
        sign = -torch.sign(lower + upper).detach()
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return p.reshape(c, n, h, w).permute(1, 0, 2, 3).clamp_min(LIKELIHOOD_BOUND)
