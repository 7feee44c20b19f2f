"""Image files: read one RGB array per file with clear errors, write PNG (``models.hyperprior`` makes latents)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".bmp", ".tif", ".tiff", ".webp")
#: Smallest image side accepted: smaller ones give less than one 4x4 patch of latents.
MIN_SIDE = 32
#: Largest image read (and coded): 16.7 megapixels. Its size is checked in the file's header, before any
#: pixel is decoded, so a small file that declares a huge image costs nothing.
MAX_PIXELS = 4096 * 4096
#: Largest image file read
MAX_IMAGE_BYTES = 256 * 2**20


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 array (H, W, 3); grayscale and palette images are converted, alpha dropped.

    Only a regular file of at most MAX_IMAGE_BYTES declaring at most MAX_PIXELS is decoded.
    """
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    from ..files import read_regular_file

    path = Path(path)
    try:
        data = read_regular_file(path, MAX_IMAGE_BYTES)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except (ValueError, OSError) as e:  # a FIFO or device, too large, unreadable
        raise ImageError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ImageError(f"{path}: {im.width}x{im.height} pixels; at most {MAX_PIXELS} are read")
                im.load()
                rgb = im.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: declares more than {MAX_PIXELS} pixels; at most {MAX_PIXELS} are read") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{path}: not a readable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                         ) from None
    if min(rgb.size) < MIN_SIDE:
        raise ImageError(f"{path}: too small ({rgb.width}x{rgb.height}; each side must be at least {MIN_SIDE})")
    return np.asarray(rgb)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (by suffix), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


SPLITS = ("train", "val", "test")


def photo_splits(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """The photos of ``folder`` by split: from its ``manifest.csv`` (name, split; ``<name>.png`` beside it,
    as ``experiments/fetch_photos.py`` writes it), else from its ``train/``, ``val/`` and ``test/`` folders."""
    import csv

    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder of photos (run `python experiments/fetch_photos.py`, which "
                         "writes data/photos, or pass a folder with train/, val/ and test/ image folders)")
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        try:
            with open(manifest, newline="") as f:
                rows = list(csv.DictReader(f))
            found = {s: [folder / f"{r['name']}.png" for r in rows if r["split"] == s] for s in SPLITS}
        except (KeyError, csv.Error, UnicodeDecodeError) as e:
            raise ImageError(f"{manifest}: not a photo manifest (columns name, split): {e}") from None
        missing = [p for paths in found.values() for p in paths if not p.is_file()]
        if missing:
            raise ImageError(f"{manifest}: names {missing[0].name} but there is no such file")
    else:
        found = {s: list_images(folder / s) if (folder / s).is_dir() else [] for s in SPLITS}
    empty = [s for s in SPLITS if not found[s]]
    if empty:
        raise ImageError(f"{folder}: no {' / '.join(empty)} photos (a manifest.csv with a split column, or "
                         "train/, val/ and test/ image folders)")
    return found


def write_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB uint8 array as a PNG file, atomically."""
    import io

    from PIL import Image

    from ..files import atomic_write

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write(Path(path), buf.getvalue())
