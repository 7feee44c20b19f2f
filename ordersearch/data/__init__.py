"""Latent data: latent sets and files, splits, Gaussian random fields (samples), image files.

The built-in set and images -> latents need the bundled hyperprior, so they
live in ``ordersearch.models`` (``builtin``, ``images_to_latents``).
"""

from .gaussian import PRESETS, FieldChannel, GaussianField, gaussian_field
from .images import IMAGE_SUFFIXES, list_images, photo_splits, read_image, write_png
from .latents import LatentSet, Splits, load_latents, save_latents

__all__ = [
    "IMAGE_SUFFIXES",
    "PRESETS",
    "FieldChannel",
    "GaussianField",
    "LatentSet",
    "Splits",
    "gaussian_field",
    "list_images",
    "load_latents",
    "photo_splits",
    "read_image",
    "save_latents",
    "write_png",
]
