"""The bitstream format of ``ordersearch encode``: header, stream table, checksum, and the parameter grid.

All integers big-endian::

    magic "OSMC" | version u8 | patch u8 | kernel u8 | stage grid (patch^2 x u8; patch 0: serial)
    image H, W (u32) | y C, h, w (u16) | z C, h, w (u16) | y range u16 | z range u16
    model identity (8 bytes: hash of the context model and base codec weights)
    streams count u16 | stream lengths (u32 each) | CRC-32 of everything else u32 | streams

Stream 0 codes z, then one stream per decoding stage (one for the serial
codec). Gaussian parameters are rounded to a fixed grid (means to 1/256,
scales to 256 log-spaced values) before coding, so that tiny float
differences between machines cannot desynchronize a decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..data.images import MAX_PIXELS as _IMAGE_PIXELS
from ..errors import OrdersearchError
from ..models.entropy import SCALE_BOUND
from ..schedule import MAX_PATCH

MAGIC = b"OSMC"
VERSION = 1
_FIXED = struct.Struct(">4sBBB")
_SIZES = struct.Struct(">IIHHHHHHHH8sH")
#: the scale grid: 256 log-spaced values from the scale bound to 256
SCALES = np.exp(np.linspace(np.log(SCALE_BOUND), np.log(256.0), 256))
MEAN_STEP = 1 / 256
#: Largest image the codec encodes or decodes (16.7 megapixels, the largest image read); a header naming
#: more is refused before any work. The transforms run tile by tile: encoding or decoding the largest image
#: peaks at about 1.1 GB, torch included (results/bench_codec_memory.md).
MAX_PIXELS = _IMAGE_PIXELS
#: Largest bitstream file decode reads: far above what an image of MAX_PIXELS codes to (tens of megabytes)
MAX_BITSTREAM_BYTES = 256 * 2**20


class CodecError(OrdersearchError):
    """A bitstream that cannot be decoded (not ours, truncated, corrupted, other schedule or model)."""


def quantize(mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian parameters rounded to the grid both encoder and decoder use."""
    idx = np.clip(np.rint((np.log(scale) - np.log(SCALE_BOUND)) / (np.log(256.0) - np.log(SCALE_BOUND)) * 255),
                  0, 255).astype(int)
    return np.rint(mean / MEAN_STEP) * MEAN_STEP, SCALES[idx]


@dataclass(frozen=True)
class Header:
    """Everything before the stream table."""

    patch: int  # 0: the serial codec
    kernel: int
    grid: np.ndarray  # (patch, patch) decoding stages
    image: tuple[int, int]  # H, W
    y_shape: tuple[int, int, int]
    z_shape: tuple[int, int, int]
    y_range: int
    z_range: int
    identity: bytes
    count: int  # streams


def pack(header: Header, streams: list[bytes]) -> bytes:
    """The whole bitstream of a header and its streams."""
    head = (_FIXED.pack(MAGIC, VERSION, header.patch, header.kernel) + bytes(int(v) for v in header.grid.ravel())
            + _SIZES.pack(*header.image, *header.y_shape, *header.z_shape, header.y_range, header.z_range,
                          header.identity, len(streams)))
    lengths = struct.pack(f">{len(streams)}I", *(len(b) for b in streams))
    payload = b"".join(streams)
    return head + lengths + struct.pack(">I", zlib.crc32(head + lengths + payload)) + payload


def header_size(data: bytes) -> int:
    """Bytes of header, stream table and checksum of a packed bitstream."""
    n = data[_FIXED.size - 2]
    count = _SIZES.unpack_from(data, _FIXED.size + n * n)[-1]
    return _FIXED.size + n * n + _SIZES.size + 4 * count + 4


def read_header(data: bytes) -> tuple[Header, int]:
    """The header and where the stream table starts; CodecError for anything not ours or cut short."""
    if len(data) < _FIXED.size:
        raise CodecError("not an ordersearch bitstream: empty or too short")
    magic, version, n, kernel = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise CodecError("not an ordersearch bitstream (bad magic bytes)")
    if version != VERSION:
        raise CodecError(f"bitstream version {version} is not supported (this reader knows {VERSION})")
    if n > MAX_PATCH:
        raise CodecError(f"corrupted bitstream: patch size {n} (at most {MAX_PATCH})")
    pos = _FIXED.size
    if len(data) < pos + n * n + _SIZES.size:
        raise CodecError("truncated bitstream (header)")
    grid = np.frombuffer(data[pos:pos + n * n], dtype=np.uint8).reshape(n, n)
    pos += n * n
    H, W, yc, yh, yw, zc, zh, zw, y_rng, z_rng, identity, count = _SIZES.unpack_from(data, pos)
    header = Header(n, kernel, grid, (H, W), (yc, yh, yw), (zc, zh, zw), y_rng, z_rng, identity, count)
    return header, pos + _SIZES.size


def read_streams(data: bytes, pos: int, count: int) -> list[np.ndarray]:
    """The ``count`` streams (32-bit words) after the header, checked against the table and the CRC."""
    if len(data) < pos + 4 * count + 4:
        raise CodecError("truncated bitstream (stream table)")
    lengths = struct.unpack_from(f">{count}I", data, pos)
    pos += 4 * count
    (crc,) = struct.unpack_from(">I", data, pos)
    pos += 4
    payload = data[pos:]
    if len(payload) != sum(lengths):
        raise CodecError(f"truncated or padded bitstream: {len(payload)} payload bytes, header says {sum(lengths)}")
    if zlib.crc32(data[:pos - 4] + payload) != crc:
        raise CodecError("corrupted bitstream (checksum mismatch)")
    streams, start = [], 0
    for length in lengths:
        if length % 4:
            raise CodecError("corrupted bitstream: a stream is not a whole number of 32-bit words")
        streams.append(np.frombuffer(payload[start:start + length], dtype=np.uint32).copy())
        start += length
    return streams


def decode_exactly(coder, model, *params: np.ndarray, count: int | None = None, last: bool = True) -> np.ndarray:
    """Decode one symbol per row of ``params`` (or ``count`` symbols of a concrete ``model``) from ``coder``,
    which these symbols must use up exactly (``last``: they are the stream's last ones).

    An ANS decoder that runs past the end of its words still returns
    symbols, so a forged header (a larger image) or an appended word would
    otherwise decode "successfully": the coder must still hold data before
    the last symbol and none after it (``CodecError`` otherwise).
    """
    n = len(params[0]) if count is None else count

    def decode(k: int, at: int) -> np.ndarray:
        return coder.decode(model, *(p[at:at + k] for p in params)) if count is None else coder.decode(model, k)

    if not last:
        return np.asarray(decode(n, 0))
    if n == 0:
        if not coder.is_empty():
            raise CodecError("corrupted bitstream: a stream holds data the header has no symbols for")
        return np.zeros(0, dtype=np.int64)
    head = decode(n - 1, 0)
    if coder.is_empty():
        raise CodecError("corrupted bitstream: a stream holds fewer symbols than the header says")
    tail = decode(1, n - 1)
    if not coder.is_empty():
        raise CodecError("corrupted bitstream: a stream holds more data than the header's symbols")
    return np.concatenate([head, tail])
