"""Latent sets: integer latents (+ hyperprior features) of a collection of images.

File format (.npz or .pt), one mapping of names to arrays:

==================  =====================================================
key                 meaning
==================  =====================================================
``y``               int array (N, C, H, W): quantized latents, all one size
``y_0``, ``y_1``..  or one (C, H_i, W_i) array per image (sizes may differ)
``prior``           optional float (N, P, H, W) (or ``prior_0``, ...): features
                    the entropy model may use, same H, W as ``y``
``image_sizes``     optional int (N, 2): (height, width) in pixels, for bpp
``groups``          optional int (N,): source image of each entry; entries of
                    one group (e.g. flips/shifts of one photo) share a split
``split``           optional int (N,): fixed split, 0 train, 1 val, 2 test
==================  =====================================================

In a .pt file the per-image lists may also be Python lists under ``y`` and
``prior``. Float ``y`` is accepted when every value is a whole number.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import LatentError
from ..files import NOT_REGULAR, atomic_write

SPLIT_NAMES = ("train", "val", "test")
#: the most pixels one latent may stand for along a side (image_sizes are checked against the latents' shapes)
MAX_STRIDE = 256


@dataclass(frozen=True, eq=False)
class LatentSet:
    """Integer latents ``y[i]`` (C, H_i, W_i) with optional ``prior[i]`` (P, H_i, W_i).

    Build with :meth:`create`, which checks and normalizes the arrays.
    """

    y: tuple[np.ndarray, ...]
    prior: tuple[np.ndarray, ...] | None = None
    image_sizes: np.ndarray | None = None
    groups: np.ndarray | None = None
    split_labels: np.ndarray | None = None
    name: str = "latents"

    @classmethod
    def create(cls, y: Any, prior: Any = None, image_sizes: Any = None, groups: Any = None,
               split_labels: Any = None, name: str = "latents") -> LatentSet:
        """Validate and normalize: y to int32, prior to float32, per-image tuples."""
        ys = _as_list(y, "y")
        if not ys:
            raise LatentError("y holds no latents")
        ys = tuple(_integer_latent(a, f"y[{i}]") for i, a in enumerate(ys))
        channels = ys[0].shape[0]
        for i, a in enumerate(ys):
            if a.shape[0] != channels:
                raise LatentError(f"y[{i}] has {a.shape[0]} channels but y[0] has {channels}")
        priors = None
        if prior is not None:
            priors = _as_list(prior, "prior")
            if len(priors) != len(ys):
                raise LatentError(f"prior has {len(priors)} entries but y has {len(ys)}")
            priors = tuple(_prior(p, a, i) for i, (p, a) in enumerate(zip(priors, ys)))
            for i, p in enumerate(priors):
                if p.shape[0] != priors[0].shape[0]:
                    raise LatentError(f"prior[{i}] has {p.shape[0]} channels but prior[0] has {priors[0].shape[0]}")
        n = len(ys)
        sizes = _per_image(image_sizes, n, "image_sizes", (n, 2))
        if sizes is not None and (sizes <= 0).any():
            raise LatentError("image_sizes must be positive (height, width) pairs")
        if sizes is not None:  # a codec downsamples: each latent covers 1 to MAX_STRIDE pixels per side
            shapes = np.array([y.shape[1:] for y in ys], dtype=np.int64)
            bad = np.flatnonzero(((sizes < shapes) | (sizes > MAX_STRIDE * shapes)).any(axis=1))
            if len(bad):
                i = int(bad[0])
                raise LatentError(f"image_sizes[{i}] = {tuple(int(v) for v in sizes[i])} does not fit latent {i} of "
                                  f"{shapes[i][0]}x{shapes[i][1]} (each latent covers 1 to {MAX_STRIDE} pixels per side)")
        grp = _per_image(groups, n, "groups", (n,))
        spl = _per_image(split_labels, n, "split", (n,))
        if spl is not None and not np.isin(spl, (0, 1, 2)).all():
            raise LatentError("split must hold 0 (train), 1 (val) or 2 (test) per entry")
        return cls(ys, priors, sizes, grp, spl, name)

    # ---------------------------------------------------------------- properties
    def __len__(self) -> int:
        return len(self.y)

    @property
    def channels(self) -> int:
        return self.y[0].shape[0]

    @property
    def prior_channels(self) -> int:
        return 0 if self.prior is None else self.prior[0].shape[0]

    @property
    def num_positions(self) -> int:
        """Spatial latent positions over all entries (each has ``channels`` elements)."""
        return sum(a.shape[1] * a.shape[2] for a in self.y)

    @property
    def fingerprint(self) -> str:
        """Hash of the content (arrays, shapes, sizes, groups, split): 16 hex digits."""
        h = hashlib.sha256()
        for label, arrays in (("y", self.y), ("prior", self.prior or ()),
                              ("sizes", _opt(self.image_sizes)), ("groups", _opt(self.groups)),
                              ("split", _opt(self.split_labels))):
            h.update(label.encode())
            for a in arrays:
                h.update(str((a.dtype.str, a.shape)).encode())
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        prior = f", prior {self.prior_channels} ch" if self.prior is not None else ""
        return (f"LatentSet({self.name!r}: {len(self)} entries, {self.channels} ch{prior}, "
                f"{self.num_positions} positions)")

    # ---------------------------------------------------------------- splitting
    def subset(self, indices: Sequence[int], name: str | None = None) -> LatentSet:
        """The entries at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        pick = (lambda a: None if a is None else a[idx])
        return LatentSet(tuple(self.y[i] for i in idx),
                         None if self.prior is None else tuple(self.prior[i] for i in idx),
                         pick(self.image_sizes), pick(self.groups), pick(self.split_labels),
                         name or self.name)

    def split(self, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> Splits:
        """Train / validation / test parts, by image.

        A stored fixed split (``split`` key) is used as it is. Otherwise the
        groups (or single entries) are shuffled with ``seed`` and cut by
        ``fractions``, each part getting at least one group.
        """
        if self.split_labels is not None:
            labels = self.split_labels
        else:
            groups = self.groups if self.groups is not None else np.arange(len(self))
            unique = np.unique(groups)
            if len(unique) < 3:
                raise LatentError(f"need at least 3 images to split into train/val/test, got {len(unique)}")
            order = np.random.default_rng(seed).permutation(unique)
            n_test = max(1, round(fractions[2] * len(unique)))
            n_val = max(1, round(fractions[1] * len(unique)))
            n_test, n_val = min(n_test, len(unique) - 2), min(n_val, len(unique) - 2)
            part = {g: (2 if k < n_test else 1 if k < n_test + n_val else 0) for k, g in enumerate(order)}
            labels = np.array([part[g] for g in groups])
        parts = []
        for code, label in enumerate(SPLIT_NAMES):
            idx = np.flatnonzero(labels == code)
            if len(idx) == 0:
                raise LatentError(f"the {label} split of {self.name!r} is empty")
            parts.append(self.subset(idx, f"{self.name}:{label}"))
        return Splits(*parts)


class Splits(NamedTuple):
    """Train (fitting), val (early stopping and every choice) and test (reported once) latent sets."""

    train: LatentSet
    val: LatentSet
    test: LatentSet

    def check(self, patch: int = 1, crop: int = 1) -> None:
        """One clear error if the splits cannot train and measure an n x n patch model on crops of ``crop``."""
        for part, label in zip(self, ("train", "val", "test")):
            if len(part) == 0:
                raise LatentError(f"the {label} split is empty")
            if (part.channels, part.prior_channels) != (self.train.channels, self.train.prior_channels):
                raise LatentError(f"the {label} split has {part.channels} latent and {part.prior_channels} prior "
                                  f"channels but the train split has {self.train.channels} and "
                                  f"{self.train.prior_channels}")
            small = [a.shape[1:] for a in part.y if min(a.shape[1:]) < patch]
            if small:
                raise LatentError(f"{label} split has a latent of {small[0][0]}x{small[0][1]}, "
                                  f"smaller than the {patch}x{patch} patch")
        if not any(min(a.shape[1:]) >= crop for a in self.train.y):
            raise LatentError(f"no training latent is at least {crop}x{crop}, the size of the training crops: give "
                              f"larger latents (through the bundled codec: images of at least {16 * crop}x{16 * crop} "
                              f"pixels)")


def _opt(a: np.ndarray | None) -> tuple[np.ndarray, ...]:
    return () if a is None else (a,)


def _numpy(value: Any, label: str) -> np.ndarray:
    """A plain numpy array of ``value`` (array, nested list or dense CPU-convertible torch tensor)."""
    if hasattr(value, "detach"):  # torch tensor: only dense tensors of plain numeric types
        import torch

        plain = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.float16, torch.float32,
                 torch.float64)  # not bfloat16 or float8: numpy has no such type
        if value.layout != torch.strided or value.is_meta or value.is_quantized or value.dtype not in plain:
            raise LatentError(f"{label} must be a dense tensor of integers or floats, got {value.dtype} "
                              f"({value.layout}{', meta' if value.is_meta else ''})")
        return value.detach().cpu().numpy()
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise LatentError(f"{label} is not a rectangular array ({str(e).splitlines()[0][:120]})") from None
    return a


def _as_list(value: Any, label: str) -> list[np.ndarray]:
    if isinstance(value, (list, tuple)):
        return [_numpy(v, f"{label}[{i}]") for i, v in enumerate(value)]
    value = _numpy(value, label)
    if value.ndim != 4:
        raise LatentError(f"{label} must have shape (N, C, H, W), got shape {value.shape}")
    return list(value)


def _integer_latent(a: np.ndarray, label: str) -> np.ndarray:
    if a.ndim != 3:
        raise LatentError(f"{label} must have shape (C, H, W), got shape {a.shape}")
    if a.size == 0:
        raise LatentError(f"{label} is empty (shape {a.shape})")
    if a.dtype.kind not in "iuf":
        raise LatentError(f"{label} must hold integers, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise LatentError(f"{label} has non-integer values (e.g. {a[where]} at {where})")
    low, high = a.min(), a.max()  # not abs(): abs of the smallest int64 or int32 overflows to itself
    if low < -(2**30) or high > 2**30:  # quantized latents are small; this is a wrong array, int32 would wrap it
        raise LatentError(f"{label} has values out of range ({low} to {high}; latents lie within +-2^30)")
    return a.astype(np.int32, copy=False)


def _prior(p: np.ndarray, y: np.ndarray, i: int) -> np.ndarray:
    if p.ndim != 3:
        raise LatentError(f"prior[{i}] must have shape (P, H, W), got shape {p.shape}")
    if p.dtype.kind not in "fiu":
        raise LatentError(f"prior[{i}] must hold numbers, got dtype {p.dtype}")
    if p.shape[1:] != y.shape[1:]:
        raise LatentError(f"prior[{i}] is {p.shape[1]}x{p.shape[2]} but y[{i}] is {y.shape[1]}x{y.shape[2]}")
    p = p.astype(np.float32, copy=False)
    if not np.isfinite(p).all():
        raise LatentError(f"prior[{i}] contains NaN or inf")
    return p


def _per_image(value: Any, n: int, label: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if value is None:
        return None
    a = _numpy(value, label)
    if a.shape != shape or a.dtype.kind not in "iu":
        raise LatentError(f"{label} must be an integer array of shape {shape}, got {a.dtype} {a.shape}")
    return a.astype(np.int64)


# ------------------------------------------------------------------------ files
def _collect(mapping: dict[str, Any], key: str) -> Any:
    """``key`` itself, or the list ``key_0``, ``key_1``, ... in index order."""
    if key in mapping:
        return mapping[key]
    indexed = {}
    for k in mapping:
        head, _, tail = k.rpartition("_")
        if head == key and tail.isascii() and tail.isdigit():  # not "y_²": str.isdigit takes other digits
            indexed[int(tail)] = mapping[k]
    if not indexed:
        return None
    if sorted(indexed) != list(range(len(indexed))):
        raise LatentError(f"{key}_0, {key}_1, ... must be numbered without gaps")
    return [indexed[i] for i in range(len(indexed))]


#: The most a latent file may unpack to: this many times its size on disk, at least MIN_UNPACKED (real
#: latents compress a few times; a zip bomb compresses a thousand times)
MAX_UNPACK_RATIO = 100
MIN_UNPACKED = 64 * 2**20


def _check_archive(path: Path, size: int) -> None:
    """Both formats are zip archives: every member's checksum, and what they unpack to, checked before loading.

    The zip CRC-32 of each .pt member is verified here (torch does not: a
    flipped byte would load as a changed value; numpy checks .npz members as
    it reads them), and the unpacked sizes
    (declared by the zip and, for .npy members, by their array headers) must
    stay within ``MAX_UNPACK_RATIO`` times the file size.
    """
    limit = max(MIN_UNPACKED, MAX_UNPACK_RATIO * size)
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
            declared = sum(m.file_size for m in members)
            if declared > limit:
                raise LatentError(f"unpacks to {declared} bytes, more than {MAX_UNPACK_RATIO} times its size")
            if path.suffix == ".npz":
                for m in members:
                    with z.open(m) as f:
                        need = _npy_bytes(f)
                    if need > m.file_size:
                        raise LatentError(f"{m.filename}: its header declares {need} bytes, the file holds "
                                          f"{m.file_size}")
            # torch reads .pt members without checking their CRC; numpy's zip reader checks .npz members itself
            bad = z.testzip() if path.suffix == ".pt" else None
    except zipfile.BadZipFile as e:
        raise LatentError(f"cannot read as {path.suffix} (BadZipFile: {e})") from None
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as e:
        raise LatentError(f"cannot read as {path.suffix} ({type(e).__name__}: {str(e)[:200]})") from None
    if bad is not None:
        raise LatentError(f"corrupted: the checksum of {bad} does not match")


def _npy_bytes(f) -> int:
    """Bytes of the array an .npy stream's header declares."""
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    shape, _, dtype = (npy.read_array_header_1_0(f) if version == (1, 0) else npy.read_array_header_2_0(f))
    if dtype.hasobject:
        raise LatentError("holds Python objects, which are never loaded")
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def load_latents(path: str | os.PathLike, name: str | None = None) -> LatentSet:
    """Read a .npz or .pt latent file; errors are :class:`LatentError` naming the file."""
    path = Path(path)
    try:
        return _load(path, name or path.stem)
    except LatentError as e:
        raise LatentError(f"{path}: {e}") from None


def _load(path: Path, name: str) -> LatentSet:
    if path.suffix not in (".npz", ".pt"):
        raise LatentError(f"unknown latent file type {path.suffix!r} (use .npz or .pt)")
    try:
        info = path.stat()
    except FileNotFoundError:
        raise LatentError("no such file") from None
    except OSError as e:  # a symlink loop, a name too long, no permission
        raise LatentError(f"cannot read ({e.strerror})") from None
    if path.is_dir():
        raise LatentError("is a directory, not a latent file")
    if not stat.S_ISREG(info.st_mode):
        raise LatentError(NOT_REGULAR)
    if info.st_size == 0:
        raise LatentError("empty file")
    _check_archive(path, info.st_size)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                mapping = {k: f[k] for k in f.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
            raise LatentError(f"cannot read as .npz ({type(e).__name__}: {e})") from None
    else:
        import torch

        try:
            mapping = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for corrupt files
            first = (str(e).splitlines() or [""])[0][:200]  # some torch errors have an empty message
            raise LatentError(f"cannot read as .pt ({type(e).__name__}: {first})") from None
        if not isinstance(mapping, dict):
            raise LatentError(f"a .pt latent file must hold a dict, got {type(mapping).__name__}")
    if not mapping:
        raise LatentError("the file holds no arrays")
    if not all(isinstance(k, str) for k in mapping):
        raise LatentError("the names of the arrays must be strings")
    y = _collect(mapping, "y")
    if y is None:
        raise LatentError("no 'y' array (expected 'y' or 'y_0', 'y_1', ...)")
    return LatentSet.create(y, _collect(mapping, "prior"), mapping.get("image_sizes"), mapping.get("groups"),
                            mapping.get("split"), name=name)


def save_latents(latents: LatentSet, path: str | os.PathLike) -> Path:
    """Write ``latents`` as .npz (compressed) or .pt, atomically."""
    path = Path(path)
    if path.suffix not in (".npz", ".pt"):
        raise LatentError(f"{path}: unknown latent file type {path.suffix!r} (use .npz or .pt)")
    same = len({a.shape for a in latents.y}) == 1
    arrays: dict[str, np.ndarray] = {}
    for key, items in (("y", latents.y), ("prior", latents.prior)):
        if items is None:
            continue
        if same:
            arrays[key] = np.stack(items)
        else:
            arrays.update({f"{key}_{i}": a for i, a in enumerate(items)})
    for key, value in (("image_sizes", latents.image_sizes), ("groups", latents.groups),
                       ("split", latents.split_labels)):
        if value is not None:
            arrays[key] = value
    buf = io.BytesIO()
    if path.suffix == ".npz":
        np.savez_compressed(buf, **arrays)
    else:
        import torch

        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, buf)
    return atomic_write(path, buf.getvalue())
