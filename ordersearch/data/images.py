"""Image files: read one RGB array per file with clear errors, write PNG (``models.hyperprior`` makes latents)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".bmp", ".tif", ".tiff", ".webp")
#: Smallest image side accepted: smaller ones give less than one 4x4 patch of latents.
MIN_SIDE = 32


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 array (H, W, 3); grayscale and palette images are converted, alpha dropped."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{path}: not a readable image ({e})") from None
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


def write_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB uint8 array as a PNG file, atomically."""
    import io

    from PIL import Image

    from ..files import atomic_write

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write(Path(path), buf.getvalue())
