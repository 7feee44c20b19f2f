"""Real compression with a schedule: the base codec's transforms + a multistage context model + ANS coding.

Encoding an image (decoding mirrors it, step by step)::

    image -> g_a -> y_int ------------------------------------------+
               \\-> h_a -> z_int --(factorized prior, ANS)--> stream 0 |
                           z_int -> h_s -> prior scale               |
    for step s = 0 .. S-1 (every patch at once):                     v
        (mean, scale) of the step-s latents from the latents of steps < s and the prior
        -> quantized to a fixed grid -> ANS with a quantized Gaussian -> stream s + 1

The parameters of step s come from ``MultistageContextModel.gaussian_at_step``,
the decoder-side computation, in the encoder too (never the parallel
training pass, whose last float bits may differ); means are rounded to
1/256 and scales to a fixed log-spaced table so that tiny float differences
between machines cannot desynchronize the decoder.

Bitstream (all integers big-endian)::

    magic "OSMC" | version u8 | patch u8 | kernel u8 | stages (patch^2 x u8)
    image H, W (u32) | y C, h, w (u16) | z C, h, w (u16) | y range u16 | z range u16
    model identity (8 bytes: hash of the context model and base codec weights)
    streams count u16 | stream lengths (u32 each) | CRC-32 of everything else u32 | streams
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import OrdersearchError
from ..models.entropy import SCALE_BOUND, bits
from ..models.multistage import ModelConfig, MultistageContextModel
from ..schedule import Schedule
from .base import STRIDE, BaseCodec, pad

MAGIC = b"OSMC"
VERSION = 1
_FIXED = struct.Struct(">4sBBB")
_SIZES = struct.Struct(">IIHHHHHHHH8sH")
#: the scale grid: 256 log-spaced values from the scale bound to 256
SCALES = np.exp(np.linspace(np.log(SCALE_BOUND), np.log(256.0), 256))
MEAN_STEP = 1 / 256


class CodecError(OrdersearchError):
    """A bitstream that cannot be decoded (not ours, truncated, corrupted, other schedule or model)."""


def _quantize(mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.clip(np.rint((np.log(scale) - np.log(SCALE_BOUND)) / (np.log(256.0) - np.log(SCALE_BOUND)) * 255),
                  0, 255).astype(int)
    return np.rint(mean / MEAN_STEP) * MEAN_STEP, SCALES[idx]


@dataclass
class Encoded:
    """A compressed image and its accounting."""

    data: bytes
    header_bytes: int
    z_bits: int
    y_bits_per_step: list[int]
    estimate_y_bits: float  # -log2 likelihood of y under the context model (the harness's number)


class Codec:
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
    def from_schedule(cls, schedule: str | Path | Schedule, weights: str | Path | None = None,
                      prior_scale: bool = True, train: bool = False) -> Codec:
        """A codec for a schedule file (or Schedule) with context-model weights from ``weights``.

        ``weights`` is a state dict saved by the evaluation store
        (``<store>/models/<key>.pt``); without it :func:`weights_for` finds the
        schedule file's dedicated model (and trains it with ``train``).
        """
        from ..schedule_io import load_schedule

        meta = None
        if not isinstance(schedule, Schedule):
            path = Path(schedule)
            schedule, meta = load_schedule(path)
            if weights is None:
                weights = weights_for(path, train=train)
        if weights is None:
            raise OrdersearchError("no context-model weights given (weights=...)")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        kernel = int(state["masks"].shape[-1])
        if meta is not None and meta.kernel != kernel:
            raise OrdersearchError(f"the weights are for a {kernel}x{kernel} window but the schedule file says "
                                   f"{meta.kernel}")
        m = BaseCodec.load().config.M
        model = MultistageContextModel(schedule, m, m, ModelConfig(kernel=kernel, prior_scale=prior_scale))
        state = _translated(state, schedule)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise OrdersearchError(f"{weights}: weights do not fit this schedule's context model ({e})") from None
        return cls(schedule, model)

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
        x = pad(torch.from_numpy(np.ascontiguousarray(image).copy()).permute(2, 0, 1)[None].double().div(255))
        y, z = self.base.analyze(x)
        if min(y.shape[2:]) < self.schedule.patch:
            raise OrdersearchError(f"the image's latent ({y.shape[2]}x{y.shape[3]}) is smaller than the "
                                   f"{self.schedule.patch}x{self.schedule.patch} patch")
        prior = self._prior(z)
        y_rng, z_rng = int(y.abs().max()) + 1, int(z.abs().max()) + 1
        streams = []
        # z: one categorical per channel
        table = self._z_tables(z.shape[1], z_rng)
        zs = z[0].numpy().astype(np.int64)
        coder = constriction.stream.stack.AnsCoder()
        probs = np.repeat(table, zs.shape[1] * zs.shape[2], axis=0)
        coder.encode_reverse((zs.reshape(-1) + z_rng).astype(np.int32), constriction.stream.model.Categorical(
            perfect=False), probs)
        streams.append(coder.get_compressed().tobytes())
        streams += self._encode_y(y, prior, y_rng)
        header = self._header(image.shape[:2], y.shape[1:], z.shape[1:], y_rng, z_rng, len(streams))
        lengths = struct.pack(f">{len(streams)}I", *(len(b) for b in streams))
        payload = b"".join(streams)
        data = header + lengths + struct.pack(">I", zlib.crc32(header + lengths + payload)) + payload
        estimate = float(bits(self.model(y, prior)).sum())
        return Encoded(data, len(header) + len(lengths) + 4, 8 * len(streams[0]),
                       [8 * len(b) for b in streams[1:]], estimate)

    def _encode_y(self, y: torch.Tensor, prior: torch.Tensor, y_rng: int) -> list[bytes]:
        """One ANS stream per decoding step: every latent of the step, parameters from earlier steps only."""
        import constriction

        stage_map = self.schedule.stage_map(*y.shape[2:])
        gauss = constriction.stream.model.QuantizedGaussian(-y_rng, y_rng)
        streams = []
        for step in range(self.schedule.num_stages):
            mean, scale = self.model.gaussian_at_step(y, prior, step)
            on = stage_map == step
            m, s = _quantize(mean[0][:, on].numpy().ravel(), scale[0][:, on].numpy().ravel())
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
        for step in range(self.schedule.num_stages):
            mean, scale = self.model.gaussian_at_step(y, prior, step)
            on = stage_map == step
            m, s = _quantize(mean[0][:, on].numpy().ravel(), scale[0][:, on].numpy().ravel())
            coder = constriction.stream.stack.AnsCoder(streams[step])
            values = coder.decode(gauss, m, s).astype(np.float64)
            y[0][:, torch.from_numpy(on)] = torch.from_numpy(values.reshape(yc, -1))
        return y

    @property
    def y_streams(self) -> int:
        """Streams of y in a bitstream (one per decoding step)."""
        return self.schedule.num_stages

    def decoding_steps(self, yh: int, yw: int) -> int:
        """Sequential steps to decode a yh x yw latent."""
        return self.schedule.num_stages

    @property
    def _layout(self) -> tuple[int, np.ndarray]:
        """What the header says about the decoding order: patch size and step grid."""
        return self.schedule.patch, self.schedule.array()

    def _describe(self, n: int, grid: np.ndarray) -> str:
        return "the serial autoregressive model" if n == 0 else f"the {n}x{n} schedule {grid.tolist()}"

    def _header(self, size, yshape, zshape, y_rng, z_rng, count) -> bytes:
        n, grid = self._layout
        return (_FIXED.pack(MAGIC, VERSION, n, self.model.config.kernel) + bytes(int(v) for v in grid.ravel())
                + _SIZES.pack(size[0], size[1], *yshape, *zshape, y_rng, z_rng, self.identity, count))

    @torch.no_grad()
    def decompress(self, data: bytes) -> np.ndarray:
        """The RGB uint8 image of a bitstream made by this codec (same schedule and weights)."""
        return self._decode(data)[0]

    @torch.no_grad()
    def _decode(self, data: bytes) -> tuple[np.ndarray, torch.Tensor]:
        import constriction

        if len(data) < _FIXED.size:
            raise CodecError("not an ordersearch bitstream: empty or too short")
        magic, version, n, kernel = _FIXED.unpack_from(data)
        if magic != MAGIC:
            raise CodecError("not an ordersearch bitstream (bad magic bytes)")
        if version != VERSION:
            raise CodecError(f"bitstream version {version} is not supported (this reader knows {VERSION})")
        pos = _FIXED.size
        if len(data) < pos + n * n + _SIZES.size:
            raise CodecError("truncated bitstream (header)")
        grid = np.frombuffer(data[pos:pos + n * n], dtype=np.uint8).reshape(n, n)
        pos += n * n
        mine = self._layout
        if n != mine[0] or not np.array_equal(grid, mine[1]):
            raise CodecError(f"the bitstream was made with another schedule ({self._describe(n, grid)}), not "
                             f"this codec's ({self._describe(*mine)})")
        H, W, yc, yh, yw, zc, zh, zw, y_rng, z_rng, identity, count = _SIZES.unpack_from(data, pos)
        pos += _SIZES.size
        if identity != self.identity or kernel != self.model.config.kernel:
            raise CodecError("the bitstream was made with other model weights (model identity differs)")
        if count != self.y_streams + 1:
            raise CodecError(f"corrupted bitstream: {count} streams where this codec writes {self.y_streams + 1}")
        if len(data) < pos + 4 * count + 4:
            raise CodecError("truncated bitstream (stream table)")
        lengths = struct.unpack_from(f">{count}I", data, pos)
        pos += 4 * count
        (crc,) = struct.unpack_from(">I", data, pos)
        pos += 4
        payload = data[pos:]
        if len(payload) != sum(lengths):
            raise CodecError(f"truncated or padded bitstream: {len(payload)} payload bytes, "
                             f"header says {sum(lengths)}")
        if zlib.crc32(data[:pos - 4] + payload) != crc:
            raise CodecError("corrupted bitstream (checksum mismatch)")
        if ((yh, yw) != ((H + STRIDE - 1) // STRIDE * 4, (W + STRIDE - 1) // STRIDE * 4) or yc != self.model.channels
                or (zc, zh, zw) != (self.base.config.Nz, yh // 4, yw // 4) or not 0 < y_rng < 4096
                or not 0 < z_rng < 4096):
            raise CodecError("corrupted bitstream: latent shapes or ranges do not match the image size")
        streams, start = [], 0
        for length in lengths:
            if length % 4:
                raise CodecError("corrupted bitstream: a stream is not a whole number of 32-bit words")
            streams.append(np.frombuffer(payload[start:start + length], dtype=np.uint32).copy())
            start += length
        try:
            coder = constriction.stream.stack.AnsCoder(streams[0])
            table = self._z_tables(zc, z_rng)
            probs = np.repeat(table, zh * zw, axis=0)
            z = coder.decode(constriction.stream.model.Categorical(perfect=False), probs).astype(np.int64) - z_rng
            z = torch.from_numpy(z.reshape(1, zc, zh, zw)).double()
            y = self._decode_y(streams[1:], self._prior(z), (yc, yh, yw), y_rng)
        except (ValueError, RuntimeError, AssertionError, OrdersearchError) as e:
            raise CodecError(f"corrupted bitstream: entropy decoding failed ({e})") from None
        x = self.base.synthesize(y)[0, :, :H, :W]
        return np.round(x.permute(1, 2, 0).numpy() * 255).astype(np.uint8), y

    def reconstruct(self, image: np.ndarray) -> np.ndarray:
        """What decoding must give: the base codec's own reconstruction of ``image``."""
        x = pad(torch.from_numpy(np.asarray(image)).permute(2, 0, 1)[None].double().div(255))
        y, _ = self.base.analyze(x)
        h, w = image.shape[:2]
        return np.round(self.base.synthesize(y)[0, :, :h, :w].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def _translated(state: dict, schedule: Schedule) -> dict:
    """Per-position weights stored for the canonical translate, moved to ``schedule``'s positions."""
    n = schedule.patch
    canonical = schedule.canonical("translations").array()
    for dr in range(n):
        for dc in range(n):
            if np.array_equal(np.roll(canonical, (dr, dc), axis=(0, 1)), schedule.array()):
                if (dr, dc) == (0, 0):
                    return state
                moved = dict(state)
                for k in ("weight", "bias", "masks"):
                    if k in state and state[k].shape[0] == n * n:
                        t = state[k].reshape(n, n, *state[k].shape[1:])
                        moved[k] = torch.roll(t, (dr, dc), dims=(0, 1)).reshape(state[k].shape)
                return moved
    return state


def weights_for(schedule_file: Path, seed: int = 0, train: bool = False, device: str = "cpu") -> Path:
    """The trained context-model weights of a schedule file.

    A file written by ``ordersearch run`` names its data and training config
    in its provenance: its dedicated model (seed ``seed``) is looked up in the
    run's evaluation store (``<run>/store``). Any other schedule file is looked
    up as trained on the built-in latents with the default config, in
    ``results/store`` (where ``ordersearch verify`` puts it). With ``train``,
    a missing model is trained there (progress bar) instead of refused.
    """
    import json

    from ..harness import TrainConfig, data_fingerprint
    from ..models.multistage import ModelConfig as MC
    from ..schedule_io import load_schedule
    from ..store import EvaluationStore, evaluation_key

    schedule, meta = load_schedule(schedule_file)
    prov = meta.provenance
    train_config = (prov.get("config") or {}).get("train")
    if train_config and "data" in prov:
        config = TrainConfig(**{**train_config, "model": MC(**train_config["model"])})
        data, folders = prov["data"], [schedule_file.parent / "store", schedule_file.parent.parent / "store"]
    else:
        from ..data import builtin

        config = TrainConfig(model=MC(kernel=meta.kernel))
        data, folders = data_fingerprint(builtin().split()), [Path("results") / "store"]
    subject = json.dumps([list(r) for r in schedule.canonical("translations").stages])
    key = evaluation_key("schedule", subject, "dedicated", config.to_dict(), data, seed)
    for folder in folders:
        if (folder / "models" / f"{key}.pt").is_file():
            return folder / "models" / f"{key}.pt"
    if not train:
        raise OrdersearchError(f"{schedule_file}: no trained context model for it in "
                               f"{' or '.join(str(f) for f in folders)}; pass --train to train one, or --weights")
    from ..data import builtin

    if data != data_fingerprint(builtin().split()):
        raise OrdersearchError(f"{schedule_file}: it was found on other latents than the built-in ones; the codec "
                               "can only train on latents of its own base codec (run `ordersearch verify` on them)")
    store = EvaluationStore(folders[0])
    store.evaluate(schedule, builtin(), config, seed=seed, device=device, progress=True)
    store.close()
    return folders[0] / "models" / f"{key}.pt"


def write_png(image: np.ndarray, path: str | Path) -> None:
    from PIL import Image

    from ..files import atomic_write

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write(Path(path), buf.getvalue())
