"""Measuring a trained context model: bits of every latent, per image, per patch position, per stage."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.latents import LatentSet, Splits
from ..errors import OrdersearchError
from ..models.entropy import bits
from ..models.multistage import inner
from ..schedule import Schedule


class OnDevice:
    """One split's latents on the device; training crops come from the zero-padded latents."""

    def __init__(self, latents: LatentSet, device: torch.device):
        self.y = [torch.from_numpy(a).float().to(device) for a in latents.y]
        self.prior = None if latents.prior is None else [torch.from_numpy(p).to(device) for p in latents.prior]
        self._padded: dict[int, tuple[list[torch.Tensor], list[torch.Tensor] | None]] = {}

    def crops(self, size: int, border: int, count: int,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``count`` crops of (size + 2 border)^2 whose inner size^2 lies inside a latent.

        The border around the inner part is the latent's real neighbourhood
        or, at an image edge, zeros: exactly what the model sees at the edges
        of a whole test image, so edge latents are trained for too.
        """
        return self.cut(self.windows(size, count, rng), size, border)

    def windows(self, size: int, count: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
        """(entry, row, column) of ``count`` random size^2 windows inside the latents, by area."""
        shapes = np.array([a.shape[1:] for a in self.y])
        ok = np.flatnonzero((shapes >= size).all(axis=1))
        area = (shapes[ok, 0] - size + 1) * (shapes[ok, 1] - size + 1)
        picks = rng.choice(ok, size=count, p=area / area.sum())
        return [(int(i), int(rng.integers(shapes[i, 0] - size + 1)), int(rng.integers(shapes[i, 1] - size + 1)))
                for i in picks]

    def cut(self, windows: list[tuple[int, int, int]], size: int, border: int
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The crops of ``windows`` with ``border`` rows and columns around them, stacked (one copy)."""
        if border not in self._padded:  # padded once per border, not once per crop
            pad = (border, border, border, border)
            self._padded[border] = ([F.pad(a, pad) for a in self.y],
                                    None if self.prior is None else [F.pad(p, pad) for p in self.prior])
        ys, priors = self._padded[border]
        side = size + 2 * border
        y = torch.stack([ys[i][:, r:r + side, c:c + side] for i, r, c in windows])
        prior = None if priors is None else torch.stack([priors[i][:, r:r + side, c:c + side] for i, r, c in windows])
        return y, prior

    def bits_map(self, model: nn.Module, i: int, border: int) -> torch.Tensor:
        """Bits of every element of entry i, (C, H, W), or (C, H - 2 border, W - 2 border)."""
        prior = None if self.prior is None else self.prior[i][None]
        return inner(bits(model(self.y[i][None], prior))[0], border)

    def image_bits(self, model: nn.Module, border: int) -> tuple[list[float], list[int]]:
        """Bits and latent elements of every image (``border`` rows and columns not scored)."""
        bits_, elements = [], []
        with torch.no_grad():
            for i in range(len(self.y)):
                b = self.bits_map(model, i, border)
                bits_.append(float(b.sum()))
                elements.append(int(b.numel()))
        return bits_, elements

    def mean_bits(self, model: nn.Module, border: int) -> float:
        """Bits per latent element over the whole split."""
        bits_, elements = self.image_bits(model, border)
        return sum(bits_) / sum(elements)


def measure(model: nn.Module, splits: Splits, schedule: Schedule, border: int) -> dict:
    """Test-split bits: total, per image (and of its edge: the latents within kernel // 2 of the border), per patch
    position, per stage, bpp (whole images only); val per image."""
    test = OnDevice(splits.test, next(model.parameters()).device)
    n = schedule.patch
    if border % n:
        raise OrdersearchError(f"score_border {border} must be a multiple of the patch size {n}")
    pos_bits, pos_count = np.zeros((n, n)), np.zeros((n, n))
    image_bits_, image_elements, edge_bits, edge_elements = [], [], [], []
    reach = getattr(getattr(model, "config", None), "kernel", 5) // 2
    with torch.no_grad():
        for i in range(len(test.y)):
            b = test.bits_map(model, i, border).sum(dim=0).cpu().numpy()  # (H, W), summed over channels
            image_bits_.append(float(b.sum()))
            image_elements.append(int(b.size * test.y[i].shape[0]))
            # the edge: latents whose context window reaches past the latent (zeros there); none if border scores
            # only the inside
            edge = np.ones(b.shape, dtype=bool) if not border else np.zeros(b.shape, dtype=bool)
            if not border:
                edge[reach:b.shape[0] - reach, reach:b.shape[1] - reach] = False
            edge_bits.append(float(b[edge].sum()))
            edge_elements.append(int(edge.sum() * test.y[i].shape[0]))
            for r in range(n):
                for c in range(n):
                    pos_bits[r, c] += b[r::n, c::n].sum()
                    pos_count[r, c] += b[r::n, c::n].size * test.y[i].shape[0]
    per_position = pos_bits / pos_count
    grid = schedule.array()
    per_stage = [float(pos_bits[grid == s].sum() / pos_count[grid == s].sum()) for s in range(schedule.num_stages)]
    total = sum(image_bits_)
    sizes = splits.test.image_sizes
    val_bits, val_elements = OnDevice(splits.val, next(model.parameters()).device).image_bits(model, border)
    return {
        "bits_per_latent": total / sum(image_elements),
        "bpp": None if sizes is None or border else total / float(np.prod(sizes, axis=1).sum()),
        "image_bits": image_bits_, "image_elements": image_elements,
        "per_position": per_position.tolist(), "per_stage": per_stage,
        "val_bits_per_latent": sum(val_bits) / sum(val_elements), "val_image_bits": val_bits,
        "val_image_elements": val_elements, "edge_image_bits": edge_bits, "edge_image_elements": edge_elements,
    }
