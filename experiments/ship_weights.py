"""Trained context models beside the committed schedules, so a fresh clone compresses with them.

For each schedule file (default: results/patch{2,3,4}/best.json and the 2x2
checkerboard) it writes ``<name>.weights.pt`` (float16, self-describing) beside it: the
schedule's dedicated model (the first report seed of its run, seed 0 in runs
of the earlier protocol, as ``run`` ships its leader's), with the protocol its run names, taken
from the run's store or trained now on the built-in latents (train split;
early stopping on val). A weights file there already is kept, or, when it is
a bare state dict (written before weights described themselves), re-written
with its description; its tensors are unchanged. Then it compresses and decompresses every test photo
with it (``data/photos`` from experiments/fetch_photos.py) and writes
``results/shipped_weights.md``: file sizes, bpp and
whether each round trip was exact.

    python experiments/ship_weights.py [--device auto] [SCHEDULE.json ...]

Training takes minutes per schedule on a 2-core CPU (a run's `--train`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ordersearch.codec import MultistageCodec
from ordersearch.data import read_image
from ordersearch.errors import OrdersearchError
from ordersearch.models import ContextWeights, builtin
from ordersearch.run import load_weights, save_weights, stored_weights, weights_file
from ordersearch.run.folder import read_report_seeds, train_weights, weights_source
from ordersearch.schedule_io import load_schedule

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = [ROOT / f"results/patch{n}/best.json" for n in (2, 3, 4)] + [ROOT / "results/patch2/schedules/checkerboard.json"]


def test_photos(folder: Path = ROOT / "data/photos") -> list[Path]:
    """The held-out photos as ``experiments/fetch_photos.py`` prepared them (none if it was not run)."""
    import csv

    if not (folder / "manifest.csv").is_file():
        return []
    with open(folder / "manifest.csv") as f:
        return [folder / f"{r['name']}.png" for r in csv.DictReader(f) if r["split"] == "test"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("schedules", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    photos = test_photos()
    rows = []
    for path in args.schedules:
        start = time.time()
        run = path.parent.parent if path.parent.name == "schedules" else path.parent
        seed = (read_report_seeds(run) if (run / "per_image.csv").is_file() else ()) or (0,)
        try:
            weights = stored_weights(path, seed[0])
        except OrdersearchError:
            weights = train_weights(path, args.device)
        target = weights_file(path)
        schedule, meta = load_schedule(path)
        if not weights.described:  # a version-1 file (a bare state dict): described by the protocol its run names,
            # decided on the built-in latents (the only latents the bundled codec's weights can be of)
            config = weights_source(path, meta.kernel, meta.provenance)[0].decided(builtin().split())
            weights = ContextWeights.from_state(weights.state, schedule, config.model)
        if not target.exists() or not load_weights(target).described:
            save_weights(target, weights)
        seconds = time.time() - start
        codec = MultistageCodec.from_weights(schedule, load_weights(target), kernel=meta.kernel)
        bpp, exact = [], True
        for photo in photos:
            image = read_image(photo)
            data = codec.compress(image)
            exact &= bool(np.array_equal(codec.decompress(data), codec.reconstruct(image)))
            bpp.append(8 * len(data) / (image.shape[0] * image.shape[1]))
        rows.append((path.relative_to(ROOT), target.stat().st_size, seconds, float(np.mean(bpp)) if bpp else None,
                     len(photos), exact))
        print(rows[-1], flush=True)
    lines = ["# Weights shipped beside the committed schedules", "",
             "Command: `python experiments/ship_weights.py`. Each `<name>.weights.pt` holds the schedule's dedicated "
             "context model (the first report seed of its run, seed 0 in runs of the earlier protocol; float16, the "
             "protocol of its run) trained on the built-in latents' train split; "
             "`ordersearch encode --schedule <name>.json` finds it. bpp: mean file size over the test photos "
             "(headers and z included), each round trip checked bit-exact.", "",
             "| schedule | weights (bytes) | seconds (training now, or finding the file) | test photos | mean bpp | round trips exact |",
             "|---|---|---|---|---|---|"]
    for p, size, sec, b, k, ok in rows:
        lines.append(f"| {p} | {size} | {sec:.0f} | {k} | {'-' if b is None else f'{b:.4f}'} | {ok} |")
    (ROOT / "results/shipped_weights.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
