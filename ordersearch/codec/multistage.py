"""Real compression with a schedule: the base codec's transforms + a multistage context model + ANS coding.

Encoding an image (decoding mirrors it, stage by stage)::

    image -> g_a -> y_int ------------------------------------------+
               \\-> h_a -> z_int --(factorized prior, ANS)--> stream 0 |
                           z_int -> h_s -> prior scale               |
    for stage s = 0 .. S-1 (every patch at once):                     v
        (mean, scale) of the stage-s latents from the latents of stages < s and the prior
        -> quantized to a fixed grid -> ANS with a quantized Gaussian -> stream s + 1

The parameters of stage s come from ``MultistageContextModel.gaussian_at_stage``,
the decoder-side computation, in the encoder too (never the parallel
training pass, whose last float bits may differ); means are rounded to
1/256 and scales to a fixed log-spaced table so that tiny float differences
between machines cannot desynchronize the decoder.

The bitstream format is ``codec.bitstream``'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import OrdersearchError
from ..models.context_weights import ContextWeights
from ..models.entropy import bits
from ..models.multistage import ModelConfig, MultistageContextModel, fitted_state
from ..models.hyperprior import STRIDE, BaseCodec, image_tensor
from ..schedule import Schedule
from .bitstream import (MAX_PIXELS, CodecError, Header, decode_exactly, header_size, pack, quantize,
                        read_header, read_streams)

MAX_RANGE = 2**16 - 1  # of |y| and |z| + 1: the header holds each range in 16 bits


@dataclass
class Encoded:
    """A compressed image and its accounting."""

    data: bytes
    header_bytes: int
    z_bits: int
    y_bits_per_stage: list[int]
    estimate_y_bits: float  # -log2 likelihood of y under the context model (the evaluation's number)


class MultistageCodec:
    """Base codec + multistage context model for one schedule; ``compress`` / ``decompress`` real bytes."""

    def __init__(self, schedule: Schedule, model: MultistageContextModel, base: BaseCodec | None = None):
        self.schedule, self.model = schedule, model.eval().double()
        self.base = (base or BaseCodec.load()).double().eval()
        if model.schedule != schedule:
            raise OrdersearchError("the context model was built for another schedule")
        if model.config.mixture != 1:
            raise OrdersearchError("only single-Gaussian context models (mixture=1) can be entropy coded")
        if model.channels != self.base.config.M or model.prior_channels != self.base.config.M:
            raise OrdersearchError(f"the context model has {model.channels} latent / {model.prior_channels} prior "
                                   f"channels but the base codec gives {self.base.config.M} / {self.base.config.M}")
        h = hashlib.sha256()
        for module in (self.model, self.base):
            for k, v in sorted(module.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().double().numpy().tobytes())
        self.identity = h.digest()[:8]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_state(cls, schedule: Schedule, state: dict[str, torch.Tensor], kernel: int | None = None,
                   prior_scale: bool = True) -> MultistageCodec:
        """A codec for ``schedule`` from its context model's state dict (weights of it or of a translate of it).

        ``kernel``: the window the schedule file names, checked against the weights'.
        """
        state = fitted_state(state, schedule)
        k = int(state["masks"].shape[-1])
        if kernel is not None and kernel != k:
            raise OrdersearchError(f"the weights are for a {k}x{k} window but the schedule file says {kernel}")
        base = BaseCodec.load()
        m = base.config.M
        model = MultistageContextModel(schedule, m, m, ModelConfig(kernel=k, prior_scale=prior_scale))
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise OrdersearchError(f"weights do not fit this schedule's context model "
                                   f"({' '.join(str(e).split())[:300]})") from None
        return cls(schedule, model, base)

    @classmethod
    def from_weights(cls, schedule: Schedule, weights: ContextWeights, kernel: int | None = None) -> MultistageCodec:
        """A codec for ``schedule`` from a weights file's content; described weights build the module as it was
        trained (and must be of the base codec's latents: prior = scale, its channel count)."""
        if not weights.described:
            return cls.from_state(schedule, weights.state, kernel)
        c = weights.config
        if kernel is not None and kernel != c.kernel:
            raise OrdersearchError(f"the weights are for a {c.kernel}x{c.kernel} window but the schedule file says "
                                   f"{kernel}")
        base = BaseCodec.load()
        m = base.config.M
        if not c.prior_scale or weights.channels != m or weights.prior_channels != m:
            raise OrdersearchError(f"the weights are of a model of {weights.channels} latent / {weights.prior_channels}"
                                   f" prior channels{'' if c.prior_scale else ' whose prior is not a scale'}; the "
                                   f"bundled base codec's latents need {m} / {m}, prior = scale")
        model = MultistageContextModel(schedule, m, m, c)
        weights.load_into(model)
        return cls(schedule, model, base)

    # ------------------------------------------------------------------ pieces
    def _prior(self, z: torch.Tensor) -> torch.Tensor:
        # rounded to float16 precision, as the built-in latents are: machine-independent
        return self.base.hyper(z).to(torch.float16).double()

    def _z_tables(self, channels: int, rng: int) -> np.ndarray:
        values = torch.arange(-rng, rng + 1, dtype=torch.float64).view(1, 1, 1, -1).expand(1, channels, 1, -1)
        with torch.no_grad():
            pmf = self.base.z_prior.likelihood(values.contiguous())[0, :, 0].numpy()  # (C, 2R+1)
        return pmf

    # ------------------------------------------------------------------ encode / decode
    def compress(self, image: np.ndarray) -> bytes:
        """Bytes of one RGB uint8 image (H, W, 3)."""
        return self.encode(image).data

    @torch.no_grad()
    def encode(self, image: np.ndarray) -> Encoded:
        import constriction

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise OrdersearchError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        if image.shape[0] * image.shape[1] > MAX_PIXELS:
            raise OrdersearchError(f"image of {image.shape[1]}x{image.shape[0]} pixels: the codec takes at most "
                                   f"{MAX_PIXELS}")
        y, z = self.base.analyze(image_tensor(image), torch.float64)
        if min(y.shape[2:]) < self.schedule.patch:
            raise OrdersearchError(f"the image's latent ({y.shape[2]}x{y.shape[3]}) is smaller than the "
                                   f"{self.schedule.patch}x{self.schedule.patch} patch")
        prior = self._prior(z)
        if not (torch.isfinite(y).all() and torch.isfinite(z).all() and torch.isfinite(prior).all()):
            raise CodecError("the codec's transforms give non-finite latents: its weights are broken")
        y_rng, z_rng = int(y.abs().max()) + 1, int(z.abs().max()) + 1
        if max(y_rng, z_rng) > MAX_RANGE:
            raise CodecError(f"latents up to {max(y_rng, z_rng) - 1} in magnitude: the bitstream holds at most "
                             f"{MAX_RANGE - 1} (the codec's weights are not a trained codec's)")
        streams = []
        # z: one categorical per channel
        table = self._z_tables(z.shape[1], z_rng)
        if not np.isfinite(table).all():
            raise CodecError("the codec's z prior gives non-finite probabilities: its weights are broken")
        zs = (z[0].numpy().astype(np.int64) + z_rng).astype(np.int32)
        coder = constriction.stream.stack.AnsCoder()
        for c in reversed(range(len(table))):  # a stack: the last channel first, so channel 0 decodes first
            coder.encode_reverse(zs[c].ravel(), constriction.stream.model.Categorical(table[c], perfect=False))
        streams.append(coder.get_compressed().tobytes())
        streams += self._encode_y(y, prior, y_rng)
        data = pack(self._header(image.shape[:2], y.shape[1:], z.shape[1:], y_rng, z_rng, len(streams)), streams)
        estimate = float(bits(self.model(y, prior)).sum())
        return Encoded(data, header_size(data), 8 * len(streams[0]),
                       [8 * len(b) for b in streams[1:]], estimate)

    def _encode_y(self, y: torch.Tensor, prior: torch.Tensor, y_rng: int) -> list[bytes]:
        """One ANS stream per decoding stage: every latent of the stage, parameters from earlier stages only."""
        import constriction

        stage_map = self.schedule.stage_map(*y.shape[2:])
        gauss = constriction.stream.model.QuantizedGaussian(-y_rng, y_rng)
        streams = []
        for stage in range(self.schedule.num_stages):
            mean, scale = self.model.gaussian_at_stage(y, prior, stage)
            on = stage_map == stage
            m, s = quantize(mean[0][:, on].numpy().ravel(), scale[0][:, on].numpy().ravel())
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(y[0][:, on].numpy().ravel().astype(np.int32), gauss, m, s)
            streams.append(coder.get_compressed().tobytes())
        return streams

    def _decode_y(self, streams: list[np.ndarray], prior: torch.Tensor, shape: tuple[int, int, int],
                  y_rng: int) -> torch.Tensor:
        import constriction

        yc, yh, yw = shape
        y = torch.zeros(1, yc, yh, yw, dtype=torch.float64)
        stage_map = self.schedule.stage_map(yh, yw)
        gauss = constriction.stream.model.QuantizedGaussian(-y_rng, y_rng)
        for stage in range(self.schedule.num_stages):
            mean, scale = self.model.gaussian_at_stage(y, prior, stage)
            on = stage_map == stage
            m, s = quantize(mean[0][:, on].numpy().ravel(), scale[0][:, on].numpy().ravel())
            coder = constriction.stream.stack.AnsCoder(streams[stage])
            values = decode_exactly(coder, gauss, m, s).astype(np.float64)
            y[0][:, torch.from_numpy(on)] = torch.from_numpy(values.reshape(yc, -1))
        return y

    @property
    def y_streams(self) -> int:
        """Streams of y in a bitstream (one per decoding stage)."""
        return self.schedule.num_stages

    def decoding_stages(self, yh: int, yw: int) -> int:
        """Sequential stages to decode a yh x yw latent."""
        return self.schedule.num_stages

    @property
    def _layout(self) -> tuple[int, np.ndarray]:
        """What the header says about the decoding order: patch size and stage grid."""
        return self.schedule.patch, self.schedule.array()

    def _describe(self, n: int, grid: np.ndarray) -> str:
        return "the serial autoregressive model" if n == 0 else f"the {n}x{n} schedule {grid.tolist()}"

    def _header(self, size, yshape, zshape, y_rng, z_rng, count) -> Header:
        n, grid = self._layout
        return Header(n, self.model.config.kernel, grid, tuple(size), tuple(yshape), tuple(zshape), y_rng, z_rng,
                      self.identity, count)

    @torch.no_grad()
    def decompress(self, data: bytes) -> np.ndarray:
        """The RGB uint8 image of a bitstream made by this codec (same schedule and weights)."""
        return self._decode(data)[0]

    @torch.no_grad()
    def _decode(self, data: bytes) -> tuple[np.ndarray, torch.Tensor]:
        import constriction

        header, pos = read_header(data)
        mine = self._layout
        if header.patch != mine[0] or not np.array_equal(header.grid, mine[1]):
            raise CodecError(f"the bitstream was made with another schedule "
                             f"({self._describe(header.patch, header.grid)}), not this codec's ({self._describe(*mine)})")
        if header.identity != self.identity or header.kernel != self.model.config.kernel:
            raise CodecError("the bitstream was made with other model weights (model identity differs)")
        if header.count != self.y_streams + 1:
            raise CodecError(f"corrupted bitstream: {header.count} streams where this codec writes "
                             f"{self.y_streams + 1}")
        (H, W), (yc, yh, yw), (zc, zh, zw) = header.image, header.y_shape, header.z_shape
        if H * W > MAX_PIXELS or not H or not W:
            raise CodecError(f"corrupted bitstream: image of {W}x{H} pixels (this decoder takes 1 to {MAX_PIXELS})")
        streams = read_streams(data, pos, header.count)
        if ((yh, yw) != ((H + STRIDE - 1) // STRIDE * 4, (W + STRIDE - 1) // STRIDE * 4) or yc != self.model.channels
                or (zc, zh, zw) != (self.base.config.Nz, yh // 4, yw // 4) or not 0 < header.y_range < 4096
                or not 0 < header.z_range < 4096):
            raise CodecError("corrupted bitstream: latent shapes or ranges do not match the image size")
        try:
            coder = constriction.stream.stack.AnsCoder(streams[0])
            # one table per channel, never one per symbol: a forged range costs (2 range + 1) x channels floats
            tables = self._z_tables(zc, header.z_range)
            z = np.concatenate([decode_exactly(coder, constriction.stream.model.Categorical(t, perfect=False),
                                               count=zh * zw, last=c == zc - 1) for c, t in enumerate(tables)])
            z = torch.from_numpy((z.astype(np.int64) - header.z_range).reshape(1, zc, zh, zw)).double()
            y = self._decode_y(streams[1:], self._prior(z), (yc, yh, yw), header.y_range)
        except CodecError:
            raise
        except (ValueError, RuntimeError, AssertionError, OrdersearchError) as e:
            raise CodecError(f"corrupted bitstream: entropy decoding failed ({e})") from None
        return self.base.synthesize_image(y, H, W), y

    def reconstruct(self, image: np.ndarray) -> np.ndarray:
        """What decoding must give: the base codec's own reconstruction of ``image``."""
        y, _ = self.base.analyze(image_tensor(image), torch.float64)
        return self.base.synthesize_image(y, *image.shape[:2])
