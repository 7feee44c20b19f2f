"""Images -> latents through the bundled base codec (``ordersearch latents``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import ImageError, LatentError
from .latents import LatentSet

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


def images_to_latents(paths: Iterable[str | os.PathLike], codec=None, device: str = "cpu",
                      name: str = "images", progress: bool = True) -> tuple[LatentSet, list[str]]:
    """Run every image through the base codec.

    Returns the latent set (``y``, ``prior`` = the hyperprior's scales,
    ``image_sizes``) and one message per image that was skipped (unreadable
    or too small); the others are still processed.
    """
    from tqdm.auto import tqdm

    from ..codec.base import BaseCodec

    codec = codec or BaseCodec.load(device=device)
    ys, priors, sizes, skipped = [], [], [], []
    paths = list(paths)
    for path in tqdm(paths, desc="images -> latents", unit="img", disable=not progress):
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
