"""Gather the offline real photographs the built-in data set is made from.

    python experiments/fetch_photos.py [--out data/photos]

Sources, all reachable without a network beyond the package registries:
- Debian packages (downloaded with `apt-get download`, unpacked with
  `dpkg-deb -x`, never installed): lomiri-wallpapers-16.04 (Ubuntu wallpaper
  contest photos, CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0 per file, see the
  package's copyright file), mate-backgrounds (nature/, GPL-2+), opencv-doc
  (OpenCV's sample photos, Apache-2.0 / BSD-3-Clause);
- scikit-image's wheel (skimage/data, licences in its README.txt) and
  matplotlib's sample data (grace_hopper.jpg, US Navy photo, public domain).

Only real photographs are kept (no renders, paintings, text, charts,
calibration targets or grayscale images); of stereo/sequence pairs only one
frame. Each is converted to RGB and downscaled (Lanczos) so that its longer
side is at most 1024 pixels, which removes sensor noise and JPEG artefacts of
the originals as is usual for training learned codecs. The fixed split
(train / val / test by photo) is written to `manifest.csv`; test photos
include grace_hopper, which the test suite can always load from matplotlib.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

MAX_SIDE = 1024

DEBIAN = {
    "lomiri-wallpapers-16.04": ("usr/share/backgrounds", "CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0 (per file)", [
        "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "seeding_by_Clements_Engelhardt.jpg",
        "aitzgorri_by_Aitzol_Berasategi.jpg", "Dragonfly_by_Bolly.jpg", "friends_by_Aitzol_Berasategi.jpg",
        "sunset_by_Aitzol_Berasategi.jpg", "free_by_Peter_Nerlich.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "Picture_0B_by_freespace.jpg", "life_by_Aitzol_Berasategi.jpg", "analogpattern_by_Peter_Nerlich.jpg",
        "Bridge_by_Sander_Klootwijk.jpg",
    ]),
    "lomiri-wallpapers-20.04": ("usr/share/backgrounds", "CC-BY-SA-4.0", ["Kleiber_by_Lukas_Baubkus.jpg"]),
    "mate-backgrounds": ("usr/share/backgrounds/mate/nature", "GPL-2+", [
        "Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg",
        "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg",
    ]),
    "opencv-doc": ("usr/share/doc/opencv-doc/examples/data", "Apache-2.0 / BSD-3-Clause (OpenCV)", [
        "fruits.jpg", "baboon.jpg", "leuvenA.jpg", "squirrel_cls.jpg", "home.jpg", "aloeL.jpg", "board.jpg",
        "orange.jpg", "chicky_512.png", "stuff.jpg", "smarties.png", "messi5.jpg", "ela_original.jpg",
        "graf1.png", "left.jpg", "aero1.jpg", "aero3.jpg", "apple.jpg", "butterfly.jpg", "building.jpg",
        "rubberwhale1.png", "licenseplate_motion.jpg",
    ]),
}
SKIMAGE = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
           "hubble_deep_field.jpg", "retina.jpg"]

# Held-out photos: a mix of sources and content, fixed so results are comparable across runs.
TEST = {"matplotlib-grace_hopper", "skimage-coffee", "skimage-astronaut", "opencv-fruits", "opencv-building",
        "opencv-baboon", "mate-LadyBird", "mate-Storm", "mate-Garden", "lomiri-sunset_by_Aitzol_Berasategi",
        "lomiri-Picture_0B_by_freespace", "lomiri-life_by_Aitzol_Berasategi"}
VAL = {"skimage-chelsea", "opencv-home", "opencv-smarties", "lomiri-friends_by_Aitzol_Berasategi",
       "lomiri-Bridge_by_Sander_Klootwijk"}


def _prefix(package: str) -> str:
    return package.split("-")[0]


def fetch_debian(workdir: Path) -> list[tuple[str, Path, str, str, str]]:
    out = []
    for package, (folder, licence, names) in DEBIAN.items():
        subprocess.run(["apt-get", "download", "-q", package], cwd=workdir, check=True)
        deb = next(workdir.glob(f"{package}_*.deb"))
        root = workdir / package
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for name in names:
            out.append((f"{_prefix(package)}-{Path(name).stem}", root / folder / name, package,
                        f"/{folder}/{name}", licence))
    return out


def fetch_python_packages() -> list[tuple[str, Path, str, str, str]]:
    import matplotlib
    import skimage

    skdata = Path(skimage.__file__).parent / "data"
    out = [(f"skimage-{Path(n).stem}", skdata / n, f"scikit-image {skimage.__version__}",
            f"skimage/data/{n}", "see skimage/data/README.txt") for n in SKIMAGE]
    mpl = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    out.append(("matplotlib-grace_hopper", mpl, f"matplotlib {matplotlib.__version__}",
                "mpl-data/sample_data/grace_hopper.jpg", "public domain (US Navy)"))
    return out


def prepare(src: Path, dst: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """RGB, longer side at most MAX_SIDE; returns (original size, new size) as (width, height)."""
    im = Image.open(src)
    im.load()
    original = im.size
    im = im.convert("RGB")
    scale = MAX_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS, reducing_gap=3.0)
    if np.asarray(im).std(axis=2).mean() < 1.0:
        raise ValueError(f"{src} is grayscale")
    im.save(dst)
    return original, im.size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/photos"))
    args = ap.parse_args()
    if importlib.util.find_spec("skimage") is None:  # said before the minutes of Debian downloads, not after
        raise SystemExit("fetch_photos: scikit-image is missing: pip install -e '.[experiments]'")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sources = fetch_debian(Path(tmp)) + fetch_python_packages()
        rows = []
        for name, src, package, file, licence in sources:
            original, size = prepare(src, args.out / f"{name}.png")
            split = "test" if name in TEST else "val" if name in VAL else "train"
            rows.append({"name": name, "split": split, "width": size[0], "height": size[1],
                         "original_width": original[0], "original_height": original[1],
                         "source": package, "file": file, "licence": licence})
    missing = (TEST | VAL) - {r["name"] for r in rows}
    assert not missing, f"split names not found: {missing}"
    with open(args.out / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for split in ("train", "val", "test"):
        chosen = [r for r in rows if r["split"] == split]
        pixels = sum(r["width"] * r["height"] for r in chosen)
        print(f"{split}: {len(chosen)} photos, {pixels / 1e6:.1f} Mpixel")
    Path("results").mkdir(exist_ok=True)
    shutil.copy(args.out / "manifest.csv", Path("results") / "photos_manifest.csv")


if __name__ == "__main__":
    main()
