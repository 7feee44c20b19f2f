"""K x K windows of a latent set, drawn at random positions: what the held-out and the shared estimators fit on.

The images are padded once (zeros outside, as a decoder sees them) and
flattened; a window is gathered by flat index, so drawing many costs no
copies of the images.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.latents import LatentSet
from ..errors import OrdersearchError
from ..models.entropy import SCALE_BOUND


class Windows:
    """KxK windows of a latent set (zeros outside images), gathered by flat index without copying images."""

    def __init__(self, latents: LatentSet, kernel: int, prior_scale: bool):
        h = kernel // 2
        self.kernel, self.channels = kernel, latents.channels
        flats, self.bases, self.widths, self.shapes = [], [], [], []
        offset = 0
        for i, y in enumerate(latents.y):
            u = y.astype(np.float32)
            if prior_scale:
                u = u / np.maximum(latents.prior[i], SCALE_BOUND)
            padded = np.pad(u, ((0, 0), (h, h), (h, h)))
            flats.append(padded.reshape(len(u), -1))
            self.bases.append(offset)
            self.widths.append(padded.shape[2])
            self.shapes.append(y.shape[1:])
            offset += padded.shape[1] * padded.shape[2]
        self.u = torch.from_numpy(np.concatenate(flats, axis=1))  # (C, total)
        self.y = [torch.from_numpy(y.astype(np.float32)) for y in latents.y]
        self.prior = None if latents.prior is None else [torch.from_numpy(p) for p in latents.prior]
        d = np.arange(kernel)
        self._dr, self._dc = np.repeat(d, kernel), np.tile(d, kernel)

    def sample(self, count: int, rng: np.random.Generator, border: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``count`` random latent positions (image, row, col) at least ``border`` from an edge."""
        inner = np.array([(h - 2 * border) * (w - 2 * border) for h, w in self.shapes], dtype=float).clip(0)
        if inner.sum() == 0:
            raise OrdersearchError(f"no latent is more than {border} from an edge")
        img = rng.choice(len(self.shapes), size=count, p=inner / inner.sum())
        shapes = np.array(self.shapes)[img]
        return (img, rng.integers(border, shapes[:, 0] - border), rng.integers(border, shapes[:, 1] - border))

    def gather(self, img: np.ndarray, r: np.ndarray, c: np.ndarray
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Windows (B, C, K*K), centre latents (B, C) and centre priors (B, P) at the given positions."""
        width = np.array(self.widths)[img]
        base = np.array(self.bases)[img] + r * width + c
        idx = base[:, None] + self._dr[None, :] * width[:, None] + self._dc[None, :]
        windows = self.u[:, torch.from_numpy(idx)].permute(1, 0, 2)
        centre = torch.stack([self.y[i][:, a, b] for i, a, b in zip(img, r, c)])
        prior = None if self.prior is None else torch.stack([self.prior[i][:, a, b] for i, a, b in zip(img, r, c)])
        return windows, centre, prior
