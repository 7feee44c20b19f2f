"""Rate-distortion points of codecs on real photos, and BD-rate between their curves with an interval.

``measure`` sends every photo through ``compress`` / ``decompress``: the rate
is the file's size (header, z and every y stream included), the distortion
the RGB PSNR and MS-SSIM of what the decoder returns (checked equal to the
encoder's reconstruction). ``bd_rate`` is the Bjontegaard delta rate of the
maintained ``bjontegaard`` package (PCHIP interpolation, what the JVET common
test conditions use) between mean curves: for every operating point, the
mean bpp and mean quality over the photos, quality being PSNR or MS-SSIM in
dB (-10 log10(1 - MS-SSIM), as codec papers plot it). ``bd_rate_table`` adds
a percentile bootstrap over photos, paired (both curves resampled with the
same photos).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.images import read_image
from ..errors import OrdersearchError
from .multistage import MultistageCodec

__all__ = ["BD_COLUMNS", "METRICS", "POINT_COLUMNS", "bd_rate", "bd_rate_table", "bd_rate_tables", "measure",
           "measured", "ms_ssim", "plot_rd", "psnr"]

POINT_COLUMNS = ("label", "lmbda", "image", "bpp", "psnr", "ms_ssim", "encode_seconds", "decode_seconds", "exact")
#: the quality measures a BD-rate is computed on, and their axis labels
METRICS = {"psnr": "RGB PSNR (dB)", "ms_ssim_db": "MS-SSIM (dB, -10 log10(1 - MS-SSIM))"}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR in dB of two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / max(mse, 1e-10))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """RGB MS-SSIM of two uint8 images (torchmetrics: 5 scales, Gaussian window 11, sigma 1.5, Wang et al.'s
    weights), NaN for an image whose sides are not over 160 pixels, too small for five scales."""
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    if min(a.shape[:2]) <= 160:
        return float("nan")
    # np.array copies: a decoded image may be a read-only view, which from_numpy warns about
    x, y = (torch.from_numpy(np.array(v, dtype=np.float64)).permute(2, 0, 1)[None] for v in (a, b))
    return float(multiscale_structural_similarity_index_measure(x, y, data_range=255.0))


def measure(codec: MultistageCodec, photos: Sequence[Path], label: str, lmbda: float,
            report: Callable[[int], None] | None = None) -> list[dict]:
    """One row (``POINT_COLUMNS``) per photo: real bitstreams, decoded and checked."""
    rows = []
    for i, path in enumerate(photos):
        image = read_image(path)
        start = time.perf_counter()
        data = codec.compress(image)
        encoded = time.perf_counter()
        decoded = codec.decompress(data)
        done = time.perf_counter()
        rows.append({"label": label, "lmbda": lmbda, "image": Path(path).stem,
                     "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]), "psnr": psnr(image, decoded),
                     "ms_ssim": ms_ssim(image, decoded),
                     "encode_seconds": encoded - start, "decode_seconds": done - encoded,
                     "exact": bool(np.array_equal(decoded, codec.reconstruct(image)))})
        if report is not None:
            report(i + 1)
    return rows


def bd_rate(anchor: tuple[Sequence[float], Sequence[float]], test: tuple[Sequence[float], Sequence[float]]
            ) -> float:
    """BD-rate of ``test`` against ``anchor``, each (rates, PSNRs), in percent (negative: test saves bits)."""
    import warnings

    import bjontegaard

    (ra, pa), (rt, pt) = anchor, test
    if min(len(ra), len(rt)) < 2:
        raise OrdersearchError("a BD-rate needs at least two operating points on each curve")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package warns where the curves barely overlap; the result says it
        try:
            return float(bjontegaard.bd_rate(list(ra), list(pa), list(rt), list(pt), method="pchip"))
        except (AssertionError, ValueError, ZeroDivisionError) as e:  # it asserts PSNR rising with rate
            raise OrdersearchError(f"no BD-rate: a curve whose PSNR does not rise with its rate ({e or 'assert'})"
                                   ) from None


def _curve(points: pd.DataFrame, metric: str = "psnr") -> tuple[np.ndarray, np.ndarray]:
    """Mean bpp and mean quality per operating point, by rate (MS-SSIM averaged before it is put in dB)."""
    means = points.groupby("lmbda")[["bpp", "psnr" if metric == "psnr" else "ms_ssim"]].mean().sort_values("bpp")
    quality = means.psnr if metric == "psnr" else -10 * np.log10(1 - means.ms_ssim)
    return means.bpp.to_numpy(), quality.to_numpy()


def bd_rate_table(points: pd.DataFrame, references: Sequence[str], resamples: int = 1000, seed: int = 0,
                  level: float = 0.95, metric: str = "psnr") -> pd.DataFrame:
    """BD-rate of every label against every reference present, with a paired bootstrap interval over photos.

    Columns ``BD_COLUMNS``: label, reference, metric (a key of ``METRICS``), bd_rate, low, high (percent),
    photos, operating points, and how many resamples gave curves without a BD-rate (quality not rising
    with rate; no interval if over 5%). No rows for MS-SSIM where a photo has none (too small).
    """
    if metric not in METRICS:
        raise OrdersearchError(f"unknown quality measure {metric!r}; one of {', '.join(METRICS)}")
    if metric not in measured(points):
        return pd.DataFrame(columns=list(BD_COLUMNS))
    labels = list(dict.fromkeys(points.label))
    rng = np.random.default_rng(seed)
    images = sorted(set(points.image))
    draws = [rng.choice(len(images), len(images)) for _ in range(resamples)]
    by_image = {k: g.set_index("image") for k, g in points.groupby("label")}
    rows = []
    for ref in references:
        if ref not in by_image:
            continue
        for label in labels:
            if label == ref:
                continue
            a, t = by_image[ref], by_image[label]
            common = sorted(set(a.index) & set(t.index))
            if len(set(a.lmbda)) < 2 or len(set(t.lmbda)) < 2 or not common:
                continue
            estimate = _or_nan(a, t, common, metric)
            boot = [_or_nan(a, t, [images[i] for i in d if images[i] in common], metric) for d in draws]
            defined = [b for b in boot if not np.isnan(b)]
            q = (1 - level) / 2
            # an interval only where nearly every resample has curves a BD-rate is defined for
            low, high = (np.quantile(defined, [q, 1 - q]) if len(defined) >= 0.95 * len(boot) and boot
                         else (np.nan, np.nan))
            rows.append({"label": label, "reference": ref, "metric": metric, "bd_rate": estimate,
                         "low": float(low), "high": float(high),
                         "photos": len(common), "operating_points": len(set(t.lmbda)),
                         "undefined_resamples": len(boot) - len(defined)})
    return pd.DataFrame(rows, columns=list(BD_COLUMNS))


def measured(points: pd.DataFrame) -> list[str]:
    """The quality measures of ``METRICS`` every photo of ``points`` has (MS-SSIM: none on small photos)."""
    return [m for m in METRICS if m == "psnr" or ("ms_ssim" in points and points.ms_ssim.notna().all())]


def bd_rate_tables(points: pd.DataFrame, references: Sequence[str], resamples: int = 1000) -> pd.DataFrame:
    """``bd_rate_table`` on every quality measure the points have, one table."""
    tables = [bd_rate_table(points, references, resamples, metric=m) for m in measured(points)]
    return pd.concat([t for t in tables if len(t)] or tables[:1], ignore_index=True)


BD_COLUMNS = ("label", "reference", "metric", "bd_rate", "low", "high", "photos", "operating_points",
              "undefined_resamples")


def _or_nan(anchor: pd.DataFrame, test: pd.DataFrame, images: list[str], metric: str) -> float:
    """BD-rate of the mean curves over ``images`` (repeats count), NaN where it is not defined."""
    if not images:
        return float("nan")
    try:
        return bd_rate(*(_curve(side.loc[images].reset_index(), metric) for side in (anchor, test)))
    except OrdersearchError:
        return float("nan")


def plot_rd(folder: Path, fmt: str = "png", figures: Path | None = None) -> Path:
    """``rd.<fmt>`` in ``figures`` (default ``folder/figures``): mean quality against mean bpp per codec label,
    from ``folder/points.csv``.

    One panel for PSNR and, where every photo has one, one for MS-SSIM in dB.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = pd.read_csv(Path(folder) / "points.csv")
    metrics = measured(points)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, g in points.groupby("label", sort=False):
            bpp, quality = _curve(g, metric)
            ax.plot(bpp, quality, marker="o", ms=3, lw=1.2, label=label)
        ax.set_xlabel("bits per pixel (file size)")
        ax.set_ylabel(METRICS[metric])
        ax.set_title(f"rate-distortion, mean over {points.image.nunique()} photos", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = (Path(folder) / "figures" if figures is None else Path(figures)) / f"rd.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
