"""Measuring a trained context model: bits of every latent, per image, per patch position, per stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.latents import LatentSet, Splits
from ..errors import OrdersearchError
from ..models.entropy import bits
from ..models.multistage import inner
from ..schedule import Schedule


@dataclass
class Crops:
    """A batch of training crops: latents with a border of neighbours, where they lie past the image, and the
    weight of each scored latent's bits (see ``OnDevice.crops``)."""

    y: torch.Tensor  # (B, C, size + 2 border, size + 2 border), zeros past the image
    prior: torch.Tensor | None
    outside: torch.Tensor  # (B, 1, size + 2 border, size + 2 border): 1 past the image
    weight: torch.Tensor  # (B, 1, size, size)


class OnDevice:
    """One split's latents on the device, and training crops of them that cover every latent equally."""

    def __init__(self, latents: LatentSet, device: torch.device):
        self.y = [torch.from_numpy(a).float().to(device) for a in latents.y]
        self.prior = None if latents.prior is None else [torch.from_numpy(p).to(device) for p in latents.prior]
        self._padded: dict[int, tuple[list[torch.Tensor], list[torch.Tensor] | None, list[torch.Tensor]]] = {}

    def crops(self, size: int, border: int, count: int, rng: np.random.Generator, slack: int = 0) -> Crops:
        """``count`` random crops of (size + 2 border)^2 (see ``windows``; ``cut``)."""
        return self.cut(self.windows(size, count, rng, slack), size, border, slack)

    def _starts(self, size: int, slack: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The latents crops come from, and per latent the number of crop rows and columns to draw from."""
        shapes = np.array([a.shape[1:] for a in self.y])
        ok = np.flatnonzero((shapes >= size).all(axis=1))
        starts = shapes[ok] - size + 1 + 2 * slack
        return ok, shapes, starts

    def windows(self, size: int, count: int, rng: np.random.Generator, slack: int = 0
                ) -> list[tuple[int, int, int]]:
        """(entry, row, column) of ``count`` random size^2 windows, each row and column from -slack to
        H - size + slack: a window reaches at most ``slack`` rows and columns past the latent.

        With ``slack`` = patch - 1 the patch grid meets the image border at every phase. The latents are
        not drawn equally often (those near the border less); ``cut``'s weights undo that.
        """
        ok, shapes, starts = self._starts(size, slack)
        picks = rng.choice(len(ok), size=count, p=starts.prod(1) / starts.prod(1).sum())
        return [(int(ok[i]), int(rng.integers(starts[i, 0])) - slack, int(rng.integers(starts[i, 1])) - slack)
                for i in picks]

    def cut(self, windows: list[tuple[int, int, int]], size: int, border: int, slack: int = 0) -> Crops:
        """The crops of ``windows`` with ``border`` rows and columns around them, stacked (one copy).

        The weights make the mean weighted bits of a crop an unbiased estimate
        of the mean bits per latent over the whole split, every latent alike
        (edge latents as often as they occur, zero past the image): a latent
        that ``p`` windows of those ``windows`` draws from cover gets weight
        ``size^2 * (all windows) / (p * all latents)``.
        """
        pad = border + slack
        if pad not in self._padded:  # padded once per border, not once per crop
            sides = (pad, pad, pad, pad)
            self._padded[pad] = ([F.pad(a, sides) for a in self.y],
                                 None if self.prior is None else [F.pad(p, sides) for p in self.prior],
                                 [F.pad(torch.ones_like(a[:1]), sides) for a in self.y])
        ys, priors, inside = self._padded[pad]
        ok, shapes, starts = self._starts(size, slack)
        total_windows = float(starts.prod(1).sum())
        total_latents = float(shapes[ok].prod(1).sum())
        side = size + 2 * border
        device = self.y[0].device
        weights = []
        for i, r, c in windows:
            cover_r, cover_c = (_cover(int(shapes[i, k]), start, size, slack) for k, start in ((0, r), (1, c)))
            cover = np.outer(cover_r, cover_c)
            w = np.divide(size * size * total_windows / total_latents, cover, out=np.zeros_like(cover),
                          where=cover > 0)
            weights.append(torch.from_numpy(w).float())
        at = [(i, r + slack, c + slack) for i, r, c in windows]  # rows and columns in the padded latents
        y = torch.stack([ys[i][:, r:r + side, c:c + side] for i, r, c in at])
        prior = None if priors is None else torch.stack([priors[i][:, r:r + side, c:c + side] for i, r, c in at])
        outside = 1 - torch.stack([inside[i][:, r:r + side, c:c + side] for i, r, c in at])
        return Crops(y, prior, outside, torch.stack(weights)[:, None].to(device))

    def bits_map(self, model: nn.Module, i: int, border: int) -> torch.Tensor:
        """Bits of every element of entry i, (C, H, W), or (C, H - 2 border, W - 2 border)."""
        prior = None if self.prior is None else self.prior[i][None]
        return inner(bits(model(self.y[i][None], prior))[0], border)

    def image_bits(self, model: nn.Module, border: int) -> tuple[list[float], list[int]]:
        """Bits and latent elements of every image (``border`` rows and columns not scored)."""
        maps, elements, _, _ = _bits_of(self, model, border, 0)
        return [float(b.sum()) for b in maps], elements

    def mean_bits(self, model: nn.Module, border: int) -> float:
        """Bits per latent element over the whole split."""
        bits_, elements = self.image_bits(model, border)
        return sum(bits_) / sum(elements)


def _cover(length: int, start: int, size: int, slack: int) -> np.ndarray:
    """For the ``size`` rows from ``start``: how many window starts in [-slack, length - size + slack] cover
    each (0 past the latent)."""
    i = np.arange(start, start + size)
    lo, hi = -slack, length - size + slack
    count = np.minimum(i, hi) - np.maximum(lo, i - size + 1) + 1
    return np.where((i >= 0) & (i < length), count, 0).astype(float)


def _bits_of(split: OnDevice, model: nn.Module, border: int, reach: int
             ) -> tuple[list[np.ndarray], list[int], list[float], list[int]]:
    """Per image: bits map (H, W) summed over channels, latent elements, and the bits and elements of its edge
    (the latents whose context window reaches past the latent; none if ``border`` scores only the inside)."""
    maps, elements, edge_bits, edge_elements = [], [], [], []
    with torch.no_grad():
        for i in range(len(split.y)):
            b = split.bits_map(model, i, border).sum(dim=0).cpu().numpy()
            channels = split.y[i].shape[0]
            edge = np.ones(b.shape, dtype=bool) if not border else np.zeros(b.shape, dtype=bool)
            if not border:
                edge[reach:b.shape[0] - reach, reach:b.shape[1] - reach] = False
            maps.append(b)
            elements.append(int(b.size * channels))
            edge_bits.append(float(b[edge].sum()))
            edge_elements.append(int(edge.sum() * channels))
    return maps, elements, edge_bits, edge_elements


def measure(model: nn.Module, splits: Splits, schedule: Schedule, border: int) -> dict:
    """Test-split bits: total, per image (and of its edge: the latents within kernel // 2 of the border), per patch
    position, per stage, bpp (whole images only); val per image (and of its edge)."""
    device = next(model.parameters()).device
    n = schedule.patch
    if border % n:
        raise OrdersearchError(f"score_border {border} must be a multiple of the patch size {n}")
    reach = getattr(getattr(model, "config", None), "kernel", 5) // 2
    maps, image_elements, edge_bits, edge_elements = _bits_of(OnDevice(splits.test, device), model, border, reach)
    pos_bits, pos_count = np.zeros((n, n)), np.zeros((n, n))
    for b, elements in zip(maps, image_elements):
        channels = elements // b.size
        for r in range(n):
            for c in range(n):
                pos_bits[r, c] += b[r::n, c::n].sum()
                pos_count[r, c] += b[r::n, c::n].size * channels
    image_bits_ = [float(b.sum()) for b in maps]
    per_position = pos_bits / pos_count
    grid = schedule.array()
    per_stage = [float(pos_bits[grid == s].sum() / pos_count[grid == s].sum()) for s in range(schedule.num_stages)]
    total = sum(image_bits_)
    sizes = splits.test.image_sizes
    val_maps, val_elements, val_edge, val_edge_elements = _bits_of(OnDevice(splits.val, device), model, border, reach)
    val_bits = [float(b.sum()) for b in val_maps]
    return {
        "bits_per_latent": total / sum(image_elements),
        "bpp": None if sizes is None or border else total / float(np.prod(sizes, axis=1).sum()),
        "image_bits": image_bits_, "image_elements": image_elements,
        "per_position": per_position.tolist(), "per_stage": per_stage,
        "val_bits_per_latent": sum(val_bits) / sum(val_elements), "val_image_bits": val_bits,
        "val_image_elements": val_elements, "edge_image_bits": edge_bits, "edge_image_elements": edge_elements,
        "val_edge_image_bits": val_edge, "val_edge_image_elements": val_edge_elements,
    }
