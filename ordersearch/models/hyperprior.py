"""The bundled base codec: a small scale hyperprior (Ballé et al. 2018), no context model.

``images_to_latents`` runs images through it (``ordersearch latents``,
``--images``); ``codec/`` adds a schedule's context model and entropy coding.

It turns images into the learned latents whose decoding order ordersearch
optimizes, and gives each latent a hyperprior scale::

    image x ──g_a──> y ──round──> y_int ──────────────────g_s──> x_hat
                     │                                     ^
                     └─|.|─h_a─> z ──round──> z_int ──h_s──> scale = prior
                                              (factorized)    (y ~ N(0, scale^2))

Shapes: x (N, 3, H, W) in [0, 1] with H, W multiples of 64 (``pad`` makes
them so); y (N, M, H/16, W/16); z (N, Nz, H/64, W/64). The ``prior`` handed
to the toolkit is the scale: M channels, channel c for latent channel c.

Why scale only: a mean-scale hyperprior trained without a context model
predicts the means from z and leaves almost no spatial redundancy for a
context model (measured on an earlier version of this codec: a linear
predictor from all 24 window neighbours saved 0.5% on the test photos), so
no order could be told from another. With a scale hyperprior the mean is left
to the spatial context, as in the setting the context models were made for.

Memory: g_a and g_s run tile by tile (``TILE`` latents a side, each tile
with ``MARGIN`` latents of overlap, wider than the transforms' reach), so a
large image costs the memory of a 384x384 one plus its own arrays; an image
of one tile or less is transformed in one piece.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.latents import LatentSet
from ..errors import ImageError, LatentError
from .entropy import FactorizedPrior, bits, gaussian_likelihood

#: Spatial factor the image size must be a multiple of (g_a: 16, h_a: 4 more).
STRIDE = 64
#: latents per side of one tile of g_a / g_s (256 pixels), and the overlap around each, in latents
TILE, MARGIN = 16, 4
WEIGHTS = Path(__file__).parent / "weights" / "base_codec.pt"


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al.), or its inverse."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        # softplus-parametrized so beta > 0 and gamma >= 0; init beta = 1, gamma = 0.1 I
        self.beta = nn.Parameter(torch.full((channels,), math.log(math.e - 1)))
        gamma = torch.full((channels, channels), -10.0)
        gamma.fill_diagonal_(math.log(math.expm1(0.1)))
        self.gamma = nn.Parameter(gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        beta = F.softplus(self.beta) + 1e-6
        gamma = F.softplus(self.gamma).view(c, c, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm


def _conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


@dataclass(frozen=True)
class BaseCodecConfig:
    """Widths: N hidden channels of g_a/g_s, M latent channels, Nz hyper-latent channels."""

    N: int = 96
    M: int = 64
    Nz: int = 64


class BaseCodec(nn.Module):
    """Mean-scale hyperprior image codec (analysis, synthesis, hyper transforms, z prior)."""

    def __init__(self, config: BaseCodecConfig = BaseCodecConfig()):
        super().__init__()
        self.config = config
        n, m, nz = config.N, config.M, config.Nz
        self.g_a = nn.Sequential(_conv(3, n), GDN(n), _conv(n, n), GDN(n), _conv(n, n), GDN(n), _conv(n, m))
        self.g_s = nn.Sequential(_deconv(m, n), GDN(n, True), _deconv(n, n), GDN(n, True),
                                 _deconv(n, n), GDN(n, True), _deconv(n, 3))
        self.h_a = nn.Sequential(_conv(m, nz, 3, 1), nn.LeakyReLU(), _conv(nz, nz), nn.LeakyReLU(), _conv(nz, nz))
        self.h_s = nn.Sequential(_deconv(nz, nz), nn.LeakyReLU(), _deconv(nz, nz), nn.LeakyReLU(),
                                 _conv(nz, m, 3, 1))
        self.z_prior = FactorizedPrior(nz)

    # ---------------------------------------------------------------- inference
    def hyper(self, z_int: torch.Tensor) -> torch.Tensor:
        """Scale of every element of y (the prior features) from the integer hyper latent."""
        return F.softplus(self.h_s(z_int))

    @torch.no_grad()
    def analyze(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer latents ``(y_int, z_int)`` of images x (sides multiples of 64).

        ``x`` in [0, 1], or uint8 in 0..255 and turned into ``dtype`` a tile
        at a time (a large image is never held as floats whole).
        """
        start = (lambda t: t.to(dtype).div(255)) if x.dtype == torch.uint8 else (lambda t: t)
        y = _tiled(self.g_a, x, 16, 1, start, lambda t: t)
        return torch.round(y), torch.round(self.h_a(y.abs()))

    @torch.no_grad()
    def synthesize(self, y_int: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [0, 1] from integer latents."""
        return _tiled(self.g_s, y_int, 1, 16, lambda t: t, lambda t: t.clamp(0, 1))

    @torch.no_grad()
    def synthesize_image(self, y_int: torch.Tensor, height: int, width: int) -> np.ndarray:
        """The 8-bit RGB image (height, width, 3) of one latent (1, M, h, w), rounded a tile at a time."""
        x = _tiled(self.g_s, y_int, 1, 16, lambda t: t, lambda t: torch.round(t.clamp(0, 1) * 255).to(torch.uint8))
        return x[0, :, :height, :width].permute(1, 2, 0).cpu().numpy()

    @torch.no_grad()
    def encode_array(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(y_int, z_int, prior)`` of one RGB uint8 image (H, W, 3), padded to multiples of 64."""
        device = next(self.parameters()).device
        x = pad(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255))
        y, z = self.analyze(x.to(device))
        prior = self.hyper(z)
        return (y[0].cpu().numpy().astype(np.int32), z[0].cpu().numpy().astype(np.int32), prior[0].cpu().numpy())

    @torch.no_grad()
    def operating_point(self, image: np.ndarray) -> tuple[float, float]:
        """(bits per pixel, RGB PSNR in dB of the 8-bit reconstruction) on one uint8 image."""
        y, z, _ = self.encode_array(image)
        device = next(self.parameters()).device
        y_t, z_t = torch.from_numpy(y)[None].float().to(device), torch.from_numpy(z)[None].float().to(device)
        bits_y, bits_z = self.rate_bits(y_t, z_t)
        h, w = image.shape[:2]
        rec = torch.round(self.synthesize(y_t)[0, :, :h, :w] * 255).permute(1, 2, 0).cpu().numpy()
        mse = float(np.mean((rec - image.astype(np.float64)) ** 2))
        return (bits_y + bits_z) / (h * w), 10 * math.log10(255**2 / max(mse, 1e-10))

    @torch.no_grad()
    def rate_bits(self, y_int: torch.Tensor, z_int: torch.Tensor) -> tuple[float, float]:
        """Ideal code lengths (bits of y, bits of z) under the hyperprior alone."""
        scale = self.hyper(z_int)
        return (float(bits(gaussian_likelihood(y_int, torch.zeros_like(scale), scale)).sum()),
                float(bits(self.z_prior.likelihood(z_int)).sum()))

    # ---------------------------------------------------------------- training
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: uniform noise for the likelihoods, straight-through rounding for the decoders."""
        y = self.g_a(x)
        z = self.h_a(y.abs())
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        z_round = z + (torch.round(z) - z).detach()
        scale = self.hyper(z_round)
        mean = torch.zeros_like(scale)
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        y_round = y + (torch.round(y) - y).detach()
        return {
            "x_hat": self.g_s(y_round),
            "bits_y": bits(gaussian_likelihood(y_noisy, mean, scale)).sum(),
            "bits_z": bits(self.z_prior.likelihood(z_noisy)).sum(),
        }

    # ---------------------------------------------------------------- weights
    def save(self, path: str | Path, **info: object) -> None:
        """Store weights as float16 (half the size; the toolkit only ever uses these rounded weights)."""
        state = {k: v.detach().to("cpu", torch.float16) for k, v in self.state_dict().items()}
        torch.save({"config": asdict(self.config), "state": state, "info": info}, path)

    @classmethod
    def load(cls, path: str | Path = WEIGHTS, device: str | torch.device = "cpu") -> BaseCodec:
        """Load stored weights (float32 on ``device``, eval mode)."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(BaseCodecConfig(**blob["config"]))
        model.load_state_dict({k: v.float() for k, v in blob["state"].items()})
        return model.to(device).eval()


def _tiled(transform: nn.Module, x: torch.Tensor, per_in: int, per_out: int, start, finish) -> torch.Tensor:
    """``finish(transform(start(x)))``, computed tile by tile over the latent grid.

    ``per_in`` / ``per_out``: elements of x / of the result per latent
    (g_a: 16 pixels -> 1 latent; g_s: 1 -> 16). Each tile is transformed with
    MARGIN latents of its neighbours around it and only its centre kept, so
    the result is the whole-image one up to floating-point rounding.
    """
    lh, lw = x.shape[-2] // per_in, x.shape[-1] // per_in
    if lh <= TILE and lw <= TILE:
        return finish(transform(start(x)))
    out = None
    for r0 in range(0, lh, TILE):
        for c0 in range(0, lw, TILE):
            r1, c1 = min(r0 + TILE, lh), min(c0 + TILE, lw)
            a0, a1, b0, b1 = max(r0 - MARGIN, 0), min(r1 + MARGIN, lh), max(c0 - MARGIN, 0), min(c1 + MARGIN, lw)
            t = finish(transform(start(x[..., a0 * per_in:a1 * per_in, b0 * per_in:b1 * per_in])))
            if out is None:
                out = t.new_empty(*t.shape[:2], lh * per_out, lw * per_out)
            out[..., r0 * per_out:r1 * per_out, c0 * per_out:c1 * per_out] = \
                t[..., (r0 - a0) * per_out:(r1 - a0) * per_out, (c0 - b0) * per_out:(c1 - b0) * per_out]
    return out


def image_tensor(image: np.ndarray, multiple: int = STRIDE) -> torch.Tensor:
    """One RGB uint8 image (H, W, 3) as a uint8 tensor (1, 3, H', W'), edge-padded to multiples of ``multiple``
    (the values ``pad`` gives, without a float copy of the whole image)."""
    h, w = image.shape[:2]
    padded = np.pad(np.asarray(image, dtype=np.uint8), ((0, -h % multiple), (0, -w % multiple), (0, 0)), mode="edge")
    return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None]


def pad(x: torch.Tensor, multiple: int = STRIDE) -> torch.Tensor:
    """Pad (N, C, H, W) on the bottom/right by edge replication to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def images_to_latents(paths: Iterable[str | os.PathLike], codec: BaseCodec | None = None, device: str | torch.device = "cpu",
                      name: str = "images", progress: bool = True) -> tuple[LatentSet, list[str]]:
    """Run every image through the base codec.

    Returns the latent set (``y``, ``prior`` = the hyperprior's scales,
    ``image_sizes``) and one message per image that was skipped (unreadable
    or too small); the others are still processed.
    """
    from tqdm.auto import tqdm

    from ..data.images import read_image

    codec = codec or BaseCodec.load(device=device)
    ys, priors, sizes, skipped = [], [], [], []
    paths = list(paths)
    for path in tqdm(paths, desc="images -> latents", unit="img", disable=not progress or None):
        try:
            image = read_image(path)
        except ImageError as e:
            skipped.append(str(e))
            continue
        y, _, prior = codec.encode_array(image)
        ys.append(y)
        priors.append(prior)
        sizes.append(image.shape[:2])
    if not ys:
        raise LatentError("no usable images: " + "; ".join(skipped))
    return LatentSet.create(ys, priors, np.array(sizes), name=name), skipped
