"""The evaluation record: one dedicated measurement, as stored and as reported."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from torch import nn

from ..schedule import Position, Schedule
from .means import weighted_mean_se


@dataclass
class Evaluation:
    """One dedicated measurement of a schedule (or of one context set) on the test split."""

    estimator: str
    patch: int
    stages: list[list[int]] | None
    context: list[Position] | None
    seed: int
    bits_per_latent: float
    bpp: float | None
    image_bits: list[float]
    image_elements: list[int]
    per_position: list[list[float]]
    per_stage: list[float]
    curve: list[tuple[int, float, float]]
    steps: int
    best_step: int
    seconds: float
    config: dict
    data: str
    device: str = "cpu"
    #: the val split's numbers: what every choice is made on (the test numbers above are only reported)
    val_bits_per_latent: float | None = None
    val_image_bits: list[float] | None = None
    val_image_elements: list[int] | None = None
    #: of each test image, the bits and latents of its edge (within kernel // 2 of the latent's border, where
    #: part of the context window lies past the image); None in evaluations stored before they were measured
    edge_image_bits: list[float] | None = None
    edge_image_elements: list[int] | None = None
    #: the same of each val image (``--choose-on interior`` chooses on the val interior)
    val_edge_image_bits: list[float] | None = None
    val_edge_image_elements: list[int] | None = None
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def schedule(self) -> Schedule | None:
        return None if self.stages is None else Schedule.from_grid(self.stages)

    def split_bits(self, split: str) -> tuple[list[float], list[int]]:
        """(bits, latent elements) of every image of the ``test`` or ``val`` split, or of their ``-interior`` or
        ``-edge`` (``test-edge``, ``val-interior``, ...; see ``edge_image_bits``)."""
        if split == "test":
            return self.image_bits, self.image_elements
        if split == "val" and self.val_image_bits is not None:
            return self.val_image_bits, self.val_image_elements
        if split == "test-edge" and self.edge_image_bits is not None:
            return self.edge_image_bits, self.edge_image_elements
        if split == "test-interior" and self.edge_image_bits is not None:
            return ([a - b for a, b in zip(self.image_bits, self.edge_image_bits)],
                    [a - b for a, b in zip(self.image_elements, self.edge_image_elements)])
        if split == "val-edge" and self.val_edge_image_bits is not None:
            return self.val_edge_image_bits, self.val_edge_image_elements
        if split == "val-interior" and self.val_edge_image_bits is not None and self.val_image_bits is not None:
            return ([a - b for a, b in zip(self.val_image_bits, self.val_edge_image_bits)],
                    [a - b for a, b in zip(self.val_image_elements, self.val_edge_image_elements)])
        raise ValueError(f"this evaluation has no per-image bits of the {split!r} split")

    def rate(self, split: str = "test") -> float:
        """Bits per latent element over the whole split."""
        bits, elements = self.split_bits(split)
        return float(np.sum(bits) / np.sum(elements))

    @property
    def image_rates(self) -> np.ndarray:
        """Bits per latent element of each test image."""
        return np.asarray(self.image_bits) / np.asarray(self.image_elements)

    def ci95(self) -> float:
        """Half-width of a 95% interval of ``bits_per_latent`` over test images (this seed only)."""
        from scipy.stats import t

        _, se = weighted_mean_se(self.image_rates, np.asarray(self.image_elements, dtype=float))
        return float(t.ppf(0.975, len(self.image_bits) - 1)) * se if len(self.image_bits) > 1 else math.nan

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("model")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        context = None if d["context"] is None else [tuple(p) for p in d["context"]]
        return cls(**{**d, "curve": [tuple(c) for c in d["curve"]], "context": context})

    def __str__(self) -> str:
        what = "context " + str(sorted(self.context)) if self.context is not None else f"{self.patch}x{self.patch} schedule"
        return (f"{what}: {self.bits_per_latent:.4f} +- {self.ci95():.4f} bits/latent (test, 95% over images, "
                f"seed {self.seed}, {self.steps} steps, {self.seconds:.0f}s)")
