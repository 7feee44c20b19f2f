"""Make the built-in latent set shipped in ordersearch/data/builtin/.

    python experiments/fetch_photos.py
    python experiments/make_builtin_latents.py

Train photos: 4 versions each (horizontal flip x shift 0/8 px); val/test
photos: one version. Each version is cropped from its top-left to multiples
of 64 pixels and run through the bundled base codec; y and z are stored as
int16, the hyperprior features are recomputed from z at load time.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ordersearch.data import read_image
from ordersearch.models.builtin import DATA, INFO
from ordersearch.models.hyperprior import STRIDE, BaseCodec
from ordersearch.files import atomic_write

SPLITS = {"train": 0, "val": 1, "test": 2}
TRAIN_VERSIONS = [(flip, shift) for flip in (False, True) for shift in (0, 8)]


def main() -> None:
    photos = Path("data/photos")
    with open(photos / "manifest.csv") as f:
        manifest = list(csv.DictReader(f))
    codec = BaseCodec.load()
    torch.set_grad_enabled(False)
    arrays, sizes, groups, split, entries = {}, [], [], [], []
    i = 0
    for g, row in enumerate(tqdm(manifest, desc="photos")):
        image = read_image(photos / f"{row['name']}.png")
        versions = TRAIN_VERSIONS if row["split"] == "train" else [(False, 0)]
        for flip, shift in versions:
            v = image[shift:, shift:]
            v = v[:, ::-1] if flip else v
            h, w = (v.shape[0] // STRIDE) * STRIDE, (v.shape[1] // STRIDE) * STRIDE
            v = v[:h, :w]
            y, z, _ = codec.encode_array(v)
            assert np.abs(y).max() < 2**15 and np.abs(z).max() < 2**15
            arrays[f"y_{i}"], arrays[f"z_{i}"] = y.astype(np.int16), z.astype(np.int16)
            sizes.append((h, w))
            groups.append(g)
            split.append(SPLITS[row["split"]])
            entries.append({"index": i, "photo": row["name"], "split": row["split"], "flip": flip,
                            "shift": shift, "height": h, "width": w})
            i += 1
    arrays.update(image_sizes=np.array(sizes), groups=np.array(groups), split=np.array(split))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(DATA, buf.getvalue())
    positions = {s: sum(e["height"] * e["width"] // 256 for e in entries if e["split"] == s) for s in SPLITS}
    info = {"description": "offline real photographs through the bundled base codec (see builtin.py)",
            "channels": int(arrays["y_0"].shape[0]), "positions": positions,
            "photos": [{k: r[k] for k in ("name", "split", "width", "height", "source", "file", "licence")}
                       for r in manifest],
            "entries": entries}
    atomic_write(INFO, json.dumps(info, indent=1) + "\n")
    print(f"{i} entries, positions per split {positions}, {DATA.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
