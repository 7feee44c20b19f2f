"""The shared order-agnostic scorer ("supernet"): one model that rates any context set.

A dedicated model learns one masked convolution per patch position. The
shared scorer instead reads the KxK window around a latent together with the
window's decoded mask ``m`` (1 where a neighbour is decoded)::

    window u (C x K x K)  --(u * m, m)-->  context MLP  --+
                                                          +--> entropy net --> N(mean, scale) of the centre
    prior features at the centre  -------------------------+

Trained on random windows with a random context set each
(``estimators.shared``), one forward pass scores f(C) for any C. Like the
dedicated model it reads ``u = y / prior scale`` and predicts means in units
of the scale when the prior is a scale (``ModelConfig.prior_scale``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..schedule import check_kernel
from .entropy import SCALE_BOUND, gaussian_likelihood


class SharedScorer(nn.Module):
    """The order-agnostic context model: likelihood of a window's centre given any decoded mask."""

    def __init__(self, channels: int, prior_channels: int, kernel: int = 5, hidden: int | None = None,
                 prior_scale: bool = False):
        super().__init__()
        k = check_kernel(kernel)
        self.channels, self.prior_channels, self.kernel, self.prior_scale = channels, prior_channels, k, prior_scale
        hidden = hidden or max(64, 2 * channels)
        self.first = nn.Linear((channels + 1) * k * k, hidden)
        self.context = nn.Sequential(nn.LeakyReLU(), nn.Linear(hidden, hidden))
        # a gate from the mask alone: lets the linear prediction's weights depend on which neighbours are decoded
        self.gate = nn.Linear(k * k, hidden)
        width = prior_channels + hidden
        inner = max(32, width * 3 // 4)
        self.entropy_parameters = nn.Sequential(
            nn.Linear(width, inner), nn.LeakyReLU(),
            nn.Linear(inner, inner * 3 // 4), nn.LeakyReLU(),
            nn.Linear(inner * 3 // 4, 2 * channels))

    def _features(self, pre: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.context(pre) + pre * 2 * torch.sigmoid(self.gate(masks))

    def first_layer_terms(self, windows: torch.Tensor) -> torch.Tensor:
        """(K*K, B, H): what each window offset adds to the first layer when it is decoded."""
        b, c, k2 = windows.shape
        w = self.first.weight.view(-1, c + 1, k2)  # (H, C+1, K2): [u * m, m] per offset
        return torch.einsum("hcd,bcd->dbh", w[:, :c], windows) + w[:, c].T[:, None, :]

    def _likelihood(self, terms: torch.Tensor, masks: torch.Tensor, centre: torch.Tensor,
                    prior: torch.Tensor | None) -> torch.Tensor:
        """Likelihoods (S, B, C) of the centres for S masks (S, K*K) from precomputed first-layer terms."""
        pre = torch.einsum("sd,dbh->sbh", masks, terms) + self.first.bias
        feats = self._features(pre, masks[:, None, :])
        if prior is not None:
            feats = torch.cat([prior.expand(masks.shape[0], *prior.shape), feats], dim=-1)
        mean, raw = self.entropy_parameters(feats).chunk(2, dim=-1)
        if self.prior_scale:
            mean = mean * prior.clamp_min(SCALE_BOUND)
        return gaussian_likelihood(centre, mean, F.softplus(raw))

    def forward(self, windows: torch.Tensor, masks: torch.Tensor, centre: torch.Tensor,
                prior: torch.Tensor | None) -> torch.Tensor:
        """Likelihood (B, C) of each window's centre given its own mask (B, K*K)."""
        b, c, k2 = windows.shape
        x = torch.cat([windows * masks[:, None, :], masks[:, None, :]], dim=1).reshape(b, -1)
        feats = self._features(self.first(x), masks)
        if prior is not None:
            feats = torch.cat([prior, feats], dim=-1)
        mean, raw = self.entropy_parameters(feats).chunk(2, dim=-1)
        if self.prior_scale:
            mean = mean * prior.clamp_min(SCALE_BOUND)
        return gaussian_likelihood(centre, mean, F.softplus(raw))
