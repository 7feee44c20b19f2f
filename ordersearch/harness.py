"""Train and measure context models: the dedicated estimator of a schedule's rate.

``evaluate(schedule, latents)`` trains the paper's multistage model for one
schedule on the train split, early-stops on the validation split and measures
the test split; ``evaluate_context(C, patch, latents)`` does the same for one
relative context set C (a model whose every latent sees exactly the window
offsets d with d mod n in C), which measures f(C) directly. Rates are bits per
latent element of y on the test split; ``bpp`` (y only, no hyper latent) where
image sizes are known.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .device import resolve_device
from .errors import OrdersearchError
from .models.entropy import bits
from .models.multistage import ModelConfig, MultistageContextModel, prior_is_scale
from .schedule import Position, Schedule, context_index, context_window_masks
from .data.latents import LatentSet, Splits


@dataclass(frozen=True)
class TrainConfig:
    """Training protocol of a dedicated evaluation.

    Crops of ``crop`` x ``crop`` latents (plus a border of kernel // 2 that
    supplies their neighbours, zeros at image edges, and is not scored),
    AdamW with weight decay and a cosine learning rate from ``lr`` down to
    ``lr / 20`` over ``max_steps``,
    validation every ``eval_every`` steps, stop after ``patience`` validations
    without improvement or at ``max_steps`` / ``max_seconds``; the best
    validation state is measured on the test split.
    """

    model: ModelConfig = ModelConfig()
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch: int = 16
    crop: int = 16
    max_steps: int = 1200
    eval_every: int = 100
    patience: int = 5
    max_seconds: float | None = None
    #: Steps of the shared warm start: a prior-only model (no context) trained once per data set, config
    #: and seed, from which every schedule's model starts (its context convolutions at zero). Every
    #: schedule then starts from the same model and sees the same batches, so differences between
    #: schedules come from their context, not from training noise. 0: train from scratch.
    warm_steps: int = 1000
    #: Latents this close to an edge are not scored on the val/test splits: 0 for real images (their
    #: borders are real), kernel // 2 to compare with the infinite-field Gaussian oracle.
    score_border: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Evaluation:
    """One dedicated measurement of a schedule (or of one context set) on the test split."""

    estimator: str
    patch: int
    stages: list[list[int]] | None
    context: list[Position] | None
    seed: int
    bits_per_latent: float
    bpp: float | None
    image_bits: list[float]
    image_elements: list[int]
    per_position: list[list[float]]
    per_stage: list[float]
    curve: list[tuple[int, float, float]]
    steps: int
    best_step: int
    seconds: float
    config: dict
    data: str
    device: str = "cpu"
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def schedule(self) -> Schedule | None:
        return None if self.stages is None else Schedule.from_grid(self.stages)

    @property
    def image_rates(self) -> np.ndarray:
        """Bits per latent element of each test image."""
        return np.asarray(self.image_bits) / np.asarray(self.image_elements)

    def ci95(self) -> float:
        """Half-width of a 95% interval of ``bits_per_latent`` over test images (this seed only)."""
        from scipy.stats import t

        _, se = weighted_mean_se(self.image_rates, np.asarray(self.image_elements, dtype=float))
        return float(t.ppf(0.975, len(self.image_bits) - 1)) * se if len(self.image_bits) > 1 else math.nan

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("model")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        context = None if d["context"] is None else [tuple(p) for p in d["context"]]
        return cls(**{**d, "curve": [tuple(c) for c in d["curve"]], "context": context})

    def __str__(self) -> str:
        what = "context " + str(sorted(self.context)) if self.context is not None else f"{self.patch}x{self.patch} schedule"
        return (f"{what}: {self.bits_per_latent:.4f} +- {self.ci95():.4f} bits/latent (test, 95% over images, "
                f"seed {self.seed}, {self.steps} steps, {self.seconds:.0f}s)")


def weighted_mean_se(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted mean and its standard error (unbiased weighted variance; NaN for one value)."""
    w = weights / weights.sum()
    mean = float((w * values).sum())
    if len(values) < 2:
        return mean, math.nan
    var = float((w * (values - mean) ** 2).sum()) / (1 - float((w**2).sum()))
    return mean, math.sqrt(var * float((w**2).sum()))


# ------------------------------------------------------------------------ data on a device
class _Tensors:
    """One split's latents on the device; training crops come from the zero-padded latents."""

    def __init__(self, latents: LatentSet, device: torch.device):
        self.y = [torch.from_numpy(a).float().to(device) for a in latents.y]
        self.prior = None if latents.prior is None else [torch.from_numpy(p).to(device) for p in latents.prior]

    def crops(self, size: int, border: int, count: int,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``count`` crops of (size + 2 border)^2 whose inner size^2 lies inside a latent.

        The border around the inner part is the latent's real neighbourhood
        or, at an image edge, zeros: exactly what the model sees at the edges
        of a whole test image, so edge latents are trained for too.
        """
        shapes = np.array([a.shape[1:] for a in self.y])
        ok = np.flatnonzero((shapes >= size).all(axis=1))
        area = (shapes[ok, 0] - size + 1) * (shapes[ok, 1] - size + 1)
        picks = rng.choice(ok, size=count, p=area / area.sum())
        pad = (border, border, border, border)
        ys, ps = [], []
        for i in picks:
            r, c = rng.integers(shapes[i, 0] - size + 1), rng.integers(shapes[i, 1] - size + 1)
            window = (slice(None), slice(r, r + size + 2 * border), slice(c, c + size + 2 * border))
            ys.append(F.pad(self.y[i], pad)[window])
            if self.prior is not None:
                ps.append(F.pad(self.prior[i], pad)[window])
        return torch.stack(ys), (torch.stack(ps) if ps else None)


def _bits_map(model: nn.Module, data: _Tensors, i: int, border: int) -> torch.Tensor:
    """Bits of every element of entry i, (C, H, W), or (C, H - 2 border, W - 2 border)."""
    prior = None if data.prior is None else data.prior[i][None]
    b = bits(model(data.y[i][None], prior))[0]
    return b[:, border:b.shape[1] - border, border:b.shape[2] - border] if border else b


def _mean_bits(model: nn.Module, data: _Tensors, border: int) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(data.y)):
            b = _bits_map(model, data, i, border)
            total += float(b.sum())
            count += b.numel()
    return total / count


def check_data(splits: Splits, patch: int, crop: int) -> None:
    for part, label in zip(splits, ("train", "val", "test")):
        if len(part) == 0:
            raise OrdersearchError(f"the {label} split is empty")
        if (part.channels, part.prior_channels) != (splits.train.channels, splits.train.prior_channels):
            raise OrdersearchError(f"the {label} split has {part.channels} latent and {part.prior_channels} prior "
                                   f"channels but the train split has {splits.train.channels} and "
                                   f"{splits.train.prior_channels}")
        small = [a.shape[1:] for a in part.y if min(a.shape[1:]) < patch]
        if small:
            raise OrdersearchError(f"{label} split has a latent of {small[0][0]}x{small[0][1]}, "
                                   f"smaller than the {patch}x{patch} patch")
    if not any(min(a.shape[1:]) >= crop for a in splits.train.y):
        raise OrdersearchError(f"no training latent is at least {crop}x{crop}; lower TrainConfig.crop")


def _decided(config: TrainConfig, splits: Splits) -> TrainConfig:
    """The config with ``model.prior_scale`` decided from the data where it was left to the data."""
    if config.model.prior_scale is not None:
        return config
    scale = prior_is_scale(splits.train.channels, splits.train.prior)
    return replace(config, model=replace(config.model, prior_scale=scale))


def as_splits(latents: LatentSet | Splits) -> Splits:
    """Splits as given, or a LatentSet's own split (its fixed one, else seed 0)."""
    return latents if isinstance(latents, Splits) else latents.split(seed=0)


def _train(model: nn.Module, splits: Splits, config: TrainConfig, seed: int, device: torch.device,
           progress: bool, label: str) -> tuple[nn.Module, list[tuple[int, float, float]], int, int]:
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    train, val = _Tensors(splits.train, device), _Tensors(splits.val, device)
    h = model.config.kernel // 2
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_state, best_step, since = math.inf, None, 0, 0
    curve: list[tuple[int, float, float]] = []
    running, start = [], time.time()
    bar = tqdm(total=config.max_steps, desc=label, unit="step", disable=not progress, leave=False)
    step = 0
    while step < config.max_steps:
        if config.max_seconds is not None and time.time() - start > config.max_seconds:
            break
        model.train()
        for g in opt.param_groups:
            g["lr"] = config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / config.max_steps)))
        y, prior = train.crops(config.crop, h, config.batch, rng)
        b = bits(model(y, prior, border=h))  # the crop's border only serves as neighbours
        loss = b.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(loss.item())
        step += 1
        bar.update(1)
        if step % config.eval_every == 0 or step == config.max_steps:
            model.eval()
            v = _mean_bits(model, val, config.score_border)
            curve.append((step, float(np.mean(running)), v))
            running = []
            bar.set_postfix(val=f"{v:.4f}")
            if v < best - 1e-6:
                best, best_step, since = v, step, 0
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            else:
                since += 1
                if since >= config.patience:
                    break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), curve, step, best_step


def _measure(model: nn.Module, splits: Splits, schedule: Schedule, border: int) -> dict:
    """Test-split bits: total, per image, per patch position, per stage, bpp (whole images only)."""
    test = _Tensors(splits.test, next(model.parameters()).device)
    n = schedule.patch
    if border % n:
        raise OrdersearchError(f"score_border {border} must be a multiple of the patch size {n}")
    pos_bits, pos_count = np.zeros((n, n)), np.zeros((n, n))
    image_bits, image_elements = [], []
    with torch.no_grad():
        for i in range(len(test.y)):
            b = _bits_map(model, test, i, border).sum(dim=0).cpu().numpy()  # (H, W), summed over channels
            image_bits.append(float(b.sum()))
            image_elements.append(int(b.size * test.y[i].shape[0]))
            for r in range(n):
                for c in range(n):
                    pos_bits[r, c] += b[r::n, c::n].sum()
                    pos_count[r, c] += b[r::n, c::n].size * test.y[i].shape[0]
    per_position = pos_bits / pos_count
    grid = schedule.array()
    per_stage = [float(pos_bits[grid == s].sum() / pos_count[grid == s].sum()) for s in range(schedule.num_stages)]
    total = sum(image_bits)
    sizes = splits.test.image_sizes
    return {
        "bits_per_latent": total / sum(image_elements),
        "bpp": None if sizes is None or border else total / float(np.prod(sizes, axis=1).sum()),
        "image_bits": image_bits, "image_elements": image_elements,
        "per_position": per_position.tolist(), "per_stage": per_stage,
    }


_WARM: dict[tuple, dict[str, torch.Tensor]] = {}


def _warm_start(model: MultistageContextModel, splits: Splits, config: TrainConfig, seed: int,
                dev: torch.device, progress: bool) -> None:
    """Load the shared prior-only start into ``model`` (trained on first use, then kept per process)."""
    if config.warm_steps <= 0:
        return
    key = (data_fingerprint(splits), json.dumps(config.to_dict(), sort_keys=True), seed, str(dev))
    if key not in _WARM:
        torch.manual_seed(seed)
        base = MultistageContextModel(Schedule.named("single", 1), splits.train.channels,
                                      splits.train.prior_channels, config.model).to(dev)
        warm = replace(config, max_steps=config.warm_steps, warm_steps=0)
        base, *_ = _train(base, splits, warm, seed, dev, progress, f"warm start (prior only) seed {seed}")
        _WARM[key] = {k: v.detach().clone() for k, v in base.state_dict().items()
                      if k == "bias" or k.startswith("entropy_parameters.")}
    state = _WARM[key]
    with torch.no_grad():
        model.bias.copy_(state["bias"].expand_as(model.bias))
        model.entropy_parameters.load_state_dict(
            {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("entropy_parameters.")})


def evaluate(schedule: Schedule, latents: LatentSet | Splits, config: TrainConfig = TrainConfig(),
             seed: int = 0, device: str = "cpu", progress: bool = True) -> Evaluation:
    """Dedicated evaluation: train the multistage model for ``schedule``, report test bits.

    ``latents`` is a LatentSet (split with its fixed split, else seed 0) or
    ready Splits. The trained model is returned in ``Evaluation.model``.
    """
    splits = as_splits(latents)
    dev = resolve_device(device)
    check_data(splits, schedule.patch, config.crop)
    config = _decided(config, splits)
    torch.manual_seed(seed)
    model = MultistageContextModel(schedule, splits.train.channels, splits.train.prior_channels, config.model).to(dev)
    start = time.time()
    _warm_start(model, splits, config, seed, dev, progress)
    n = schedule.patch
    model, curve, steps, best_step = _train(model, splits, config, seed, dev, progress,
                                            f"train {n}x{n} schedule seed {seed}")
    m = _measure(model, splits, schedule, config.score_border)
    return Evaluation("dedicated", n, [list(r) for r in schedule.stages], None, seed, steps=steps,
                      best_step=best_step, seconds=time.time() - start, curve=curve, config=config.to_dict(),
                      data=data_fingerprint(splits), device=str(dev), model=model, **m)


def evaluate_context(context: Iterable[Position], patch: int, latents: LatentSet | Splits,
                     config: TrainConfig = TrainConfig(), seed: int = 0, device: str = "cpu",
                     progress: bool = True) -> Evaluation:
    """Dedicated measurement of f(C): every latent sees the window offsets d with d mod n in C.

    Under stationarity f(C) is the same at every patch position, so the model
    is trained and measured on all positions at once (n*n times the data of
    one sub-lattice).
    """
    context = sorted({(r % patch, c % patch) for r, c in context})
    code = context_index(context, patch)  # validates

    def model_for(channels: int, prior_channels: int, model_config: ModelConfig) -> MultistageContextModel:
        model = MultistageContextModel(Schedule.named("single", 1), channels, prior_channels, model_config)
        mask = torch.from_numpy(context_window_masks([code], patch, model_config.kernel)[0]).float()
        model.masks.copy_(mask.view_as(model.masks))
        return model

    return _evaluate_one_mask(model_for, "dedicated-set", patch, [tuple(p) for p in context], latents, config,
                              seed, device, progress, f"train f(C={code})")


def evaluate_serial(latents: LatentSet | Splits, config: TrainConfig = TrainConfig(), seed: int = 0,
                    device: str = "cpu", progress: bool = True) -> Evaluation:
    """Dedicated evaluation of the serial raster autoregressive baseline (``models.serial``), same protocol."""
    from .models.serial import SerialContextModel

    return _evaluate_one_mask(SerialContextModel, "serial", 1, None, latents, config, seed, device, progress,
                              "train serial autoregressive")


def _evaluate_one_mask(model_for, estimator: str, patch: int, context: list[Position] | None,
                       latents: LatentSet | Splits, config: TrainConfig, seed: int, device: str, progress: bool,
                       label: str) -> Evaluation:
    """Train and measure a model whose one convolution mask serves every latent."""
    splits = as_splits(latents)
    dev = resolve_device(device)
    check_data(splits, 1, config.crop)
    config = _decided(config, splits)
    torch.manual_seed(seed)
    model = model_for(splits.train.channels, splits.train.prior_channels, config.model).to(dev)
    start = time.time()
    _warm_start(model, splits, config, seed, dev, progress)
    model, curve, steps, best_step = _train(model, splits, config, seed, dev, progress, label)
    m = _measure(model, splits, Schedule.named("single", 1), config.score_border)
    m["per_position"] = [[m["bits_per_latent"]] * patch for _ in range(patch)]
    return Evaluation(estimator, patch, None, context, seed, steps=steps, best_step=best_step,
                      seconds=time.time() - start, curve=curve, config=config.to_dict(),
                      data=data_fingerprint(splits), device=str(dev), model=model, **m)


def data_fingerprint(splits: Splits) -> str:
    """The data part of an evaluation's identity: the three splits' fingerprints."""
    return "-".join(p.fingerprint for p in splits)
