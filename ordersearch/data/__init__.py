"""Latent data: latent sets and files, Gaussian-field ground truth, images -> latents, the built-in set."""

from .builtin import builtin, builtin_info
from .gaussian import PRESETS, FieldChannel, GaussianField, gaussian_field
from .images import images_to_latents, list_images, read_image
from .latents import LatentSet, Splits, load_latents, save_latents

__all__ = [
    "PRESETS",
    "FieldChannel",
    "GaussianField",
    "LatentSet",
    "Splits",
    "builtin",
    "builtin_info",
    "gaussian_field",
    "images_to_latents",
    "list_images",
    "load_latents",
    "read_image",
    "save_latents",
]
