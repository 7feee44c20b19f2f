"""The built-in latent set: real photographs through the bundled base codec.

The data lie in ``ordersearch/data/builtin/``; this loader sits with the
models because it recomputes the prior with the bundled hyperprior.

Made by ``experiments/make_builtin_latents.py`` from the photos that
``experiments/fetch_photos.py`` gathers (Debian wallpaper and sample-image
packages, scikit-image and matplotlib sample photos; list and licences in
``builtin.json`` beside the data). The split is fixed by photo:

- train: 39 photos, each in 4 versions (horizontal flip x shift by 0 or 8
  pixels on both axes), which multiplies training positions without
  touching the held-out photos;
- val (early stopping): 5 photos; test (reported numbers): 12 photos.

Every version is cropped from its top-left corner to a multiple of 64 pixels,
so no latent comes from padding. ``y`` has 64 channels; ``prior`` is the
hyperprior's scale per channel (64 channels), recomputed at load time from
the stored hyper latents ``z`` by the bundled codec, in float64 and rounded
to float16 precision, so that it (and the data fingerprint that keys every
stored evaluation) does not depend on the machine's thread count or BLAS.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..data.latents import LatentSet

FOLDER = Path(__file__).parent.parent / "data" / "builtin"
DATA = FOLDER / "latents.npz"
INFO = FOLDER / "builtin.json"


@lru_cache(maxsize=1)
def builtin() -> LatentSet:
    """The built-in latent set (loaded once per process), with its fixed train/val/test split."""
    from .hyperprior import BaseCodec

    codec = BaseCodec.load().double()
    with np.load(DATA) as f:
        n = len(f["split"])
        ys = [f[f"y_{i}"] for i in range(n)]
        zs = [f[f"z_{i}"] for i in range(n)]
        sizes, groups, split = f["image_sizes"], f["groups"], f["split"]
    priors = []
    with torch.no_grad():
        for z in zs:
            scale = codec.hyper(torch.from_numpy(z.astype(np.float64))[None])[0].numpy()
            priors.append(scale.astype(np.float16).astype(np.float32))
    return LatentSet.create(ys, priors, sizes, groups, split, name="builtin")


def builtin_info() -> dict:
    """Photos, versions, sizes and licences of the built-in set."""
    return json.loads(INFO.read_text())
