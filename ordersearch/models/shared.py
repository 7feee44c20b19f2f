"""The shared order-agnostic scorer ("supernet"): one model that rates any context set.

A dedicated model learns one masked convolution per patch position. The
shared scorer instead reads the KxK window around a latent together with the
window's decoded mask ``m`` (1 where a neighbour is decoded)::

    window u (C x K x K)  --(u * m, m)-->  context MLP  --+
                                                          +--> entropy net --> N(mean, scale) of the centre
    prior features at the centre  -------------------------+

It is trained on random windows with a random context set each, so one
forward pass scores f(C) for any C: a whole 4x4 cost table (32,768 sets) is a
batched evaluation on a fixed sample of test windows (the same windows for
every set, so differences between sets are paired). Like the dedicated
model it reads ``u = y / prior scale`` and predicts means in units of the
scale when the prior is a scale (``ModelConfig.prior_scale``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.latents import LatentSet, Splits
from ..errors import OrdersearchError
from ..schedule import Position, Schedule, check_kernel, context_index, context_window_masks
from .entropy import SCALE_BOUND, bits, gaussian_likelihood
from .multistage import prior_is_scale


@dataclass(frozen=True)
class SharedConfig:
    """Shape and training protocol of the shared scorer.

    ``windows`` windows of ``batch`` per step for at most ``max_steps`` steps,
    each with a context set drawn uniformly from all sets of the patch;
    validation every ``eval_every`` steps on ``val_windows`` fixed validation
    windows x ``val_sets`` fixed sets; the best validation state is kept;
    ``table_windows`` test windows score the cost table.
    """

    kernel: int = 5
    hidden: int | None = None  # context features, default max(64, 2 C)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch: int = 1024
    max_steps: int = 3000
    eval_every: int = 250
    patience: int = 4
    val_windows: int = 4096
    val_sets: int = 32
    table_windows: int = 4096
    prior_scale: bool | None = None
    #: validation and test windows come from latents this far from an edge (kernel // 2 to compare with
    #: the infinite-field Gaussian oracle; 0 for real images)
    score_border: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class Windows:
    """KxK windows of a latent set (zeros outside images), gathered by flat index without copying images."""

    def __init__(self, latents: LatentSet, kernel: int, prior_scale: bool):
        h = kernel // 2
        self.kernel, self.channels = kernel, latents.channels
        flats, self.bases, self.widths, self.shapes = [], [], [], []
        offset = 0
        for i, y in enumerate(latents.y):
            u = y.astype(np.float32)
            if prior_scale:
                u = u / np.maximum(latents.prior[i], SCALE_BOUND)
            padded = np.pad(u, ((0, 0), (h, h), (h, h)))
            flats.append(padded.reshape(len(u), -1))
            self.bases.append(offset)
            self.widths.append(padded.shape[2])
            self.shapes.append(y.shape[1:])
            offset += padded.shape[1] * padded.shape[2]
        self.u = torch.from_numpy(np.concatenate(flats, axis=1))  # (C, total)
        self.y = [torch.from_numpy(y.astype(np.float32)) for y in latents.y]
        self.prior = None if latents.prior is None else [torch.from_numpy(p) for p in latents.prior]
        d = np.arange(kernel)
        self._dr, self._dc = np.repeat(d, kernel), np.tile(d, kernel)

    def sample(self, count: int, rng: np.random.Generator, border: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``count`` random latent positions (image, row, col) at least ``border`` from an edge."""
        inner = np.array([(h - 2 * border) * (w - 2 * border) for h, w in self.shapes], dtype=float).clip(0)
        if inner.sum() == 0:
            raise OrdersearchError(f"no latent is more than {border} from an edge")
        img = rng.choice(len(self.shapes), size=count, p=inner / inner.sum())
        shapes = np.array(self.shapes)[img]
        return (img, rng.integers(border, shapes[:, 0] - border), rng.integers(border, shapes[:, 1] - border))

    def gather(self, img: np.ndarray, r: np.ndarray, c: np.ndarray
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Windows (B, C, K*K), centre latents (B, C) and centre priors (B, P) at the given positions."""
        width = np.array(self.widths)[img]
        base = np.array(self.bases)[img] + r * width + c
        idx = base[:, None] + self._dr[None, :] * width[:, None] + self._dc[None, :]
        windows = self.u[:, torch.from_numpy(idx)].permute(1, 0, 2)
        centre = torch.stack([self.y[i][:, a, b] for i, a, b in zip(img, r, c)])
        prior = None if self.prior is None else torch.stack([self.prior[i][:, a, b] for i, a, b in zip(img, r, c)])
        return windows, centre, prior


class SharedScorer(nn.Module):
    """The order-agnostic context model: likelihood of a window's centre given any decoded mask."""

    def __init__(self, channels: int, prior_channels: int, config: SharedConfig = SharedConfig(),
                 prior_scale: bool = False):
        super().__init__()
        k = check_kernel(config.kernel)
        self.channels, self.prior_channels, self.config, self.prior_scale = channels, prior_channels, config, prior_scale
        hidden = config.hidden or max(64, 2 * channels)
        self.first = nn.Linear((channels + 1) * k * k, hidden)
        self.context = nn.Sequential(nn.LeakyReLU(), nn.Linear(hidden, hidden))
        # a gate from the mask alone: lets the linear prediction's weights depend on which neighbours are decoded
        self.gate = nn.Linear(k * k, hidden)
        width = prior_channels + hidden
        inner = max(32, width * 3 // 4)
        self.entropy_parameters = nn.Sequential(
            nn.Linear(width, inner), nn.LeakyReLU(),
            nn.Linear(inner, inner * 3 // 4), nn.LeakyReLU(),
            nn.Linear(inner * 3 // 4, 2 * channels))

    def _features(self, pre: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.context(pre) + pre * 2 * torch.sigmoid(self.gate(masks))

    def first_layer_terms(self, windows: torch.Tensor) -> torch.Tensor:
        """(K*K, B, H): what each window offset adds to the first layer when it is decoded."""
        b, c, k2 = windows.shape
        w = self.first.weight.view(-1, c + 1, k2)  # (H, C+1, K2): [u * m, m] per offset
        return torch.einsum("hcd,bcd->dbh", w[:, :c], windows) + w[:, c].T[:, None, :]

    def _likelihood(self, terms: torch.Tensor, masks: torch.Tensor, centre: torch.Tensor,
                    prior: torch.Tensor | None) -> torch.Tensor:
        """Likelihoods (S, B, C) of the centres for S masks (S, K*K) from precomputed first-layer terms."""
        pre = torch.einsum("sd,dbh->sbh", masks, terms) + self.first.bias
        feats = self._features(pre, masks[:, None, :])
        if prior is not None:
            feats = torch.cat([prior.expand(masks.shape[0], *prior.shape), feats], dim=-1)
        mean, raw = self.entropy_parameters(feats).chunk(2, dim=-1)
        if self.prior_scale:
            mean = mean * prior.clamp_min(SCALE_BOUND)
        return gaussian_likelihood(centre, mean, F.softplus(raw))

    def forward(self, windows: torch.Tensor, masks: torch.Tensor, centre: torch.Tensor,
                prior: torch.Tensor | None) -> torch.Tensor:
        """Likelihood (B, C) of each window's centre given its own mask (B, K*K)."""
        b, c, k2 = windows.shape
        x = torch.cat([windows * masks[:, None, :], masks[:, None, :]], dim=1).reshape(b, -1)
        feats = self._features(self.first(x), masks)
        if prior is not None:
            feats = torch.cat([prior, feats], dim=-1)
        mean, raw = self.entropy_parameters(feats).chunk(2, dim=-1)
        if self.prior_scale:
            mean = mean * prior.clamp_min(SCALE_BOUND)
        return gaussian_likelihood(centre, mean, F.softplus(raw))


class SharedEstimator:
    """A trained shared scorer plus fixed test windows: f(C) for any set, the cost table, schedule rates."""

    def __init__(self, model: SharedScorer, test: Windows, positions: tuple[np.ndarray, ...], patch: int,
                 curve: list[tuple[int, float, float]], seconds: float, name: str = "shared"):
        self.model, self.test, self.positions, self.patch = model.eval(), test, positions, patch
        self.kernel = model.config.kernel
        self.curve, self.seconds, self.name = curve, seconds, name
        with torch.no_grad():
            windows, self._centre, self._prior = test.gather(*positions)
            self._terms = model.first_layer_terms(windows)

    @torch.no_grad()
    def rates(self, codes: np.ndarray, chunk: int = 16) -> np.ndarray:
        """Mean bits per latent element on the fixed test windows for each context-set code."""
        masks = torch.from_numpy(context_window_masks(np.asarray(codes), self.patch, self.kernel)).float()
        masks = masks.reshape(len(masks), -1)
        out = []
        for start in range(0, len(masks), chunk):
            like = self.model._likelihood(self._terms, masks[start:start + chunk], self._centre, self._prior)
            out.append(bits(like).mean(dim=(1, 2)))
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def context_rate(self, context: list[Position], patch: int | None = None) -> float:
        return float(self.rates(np.array([context_index(context, patch or self.patch)]))[0])

    def cost_table(self, progress: bool = False) -> np.ndarray:
        """f(C) for every code of the patch (NaN at odd codes), in batches."""
        from tqdm.auto import tqdm

        n = self.patch
        codes = np.arange(0, 2 ** (n * n), 2)
        table = np.full(2 ** (n * n), np.nan)
        step = 512
        for start in tqdm(range(0, len(codes), step), desc=f"shared-scorer cost table {n}x{n}",
                          disable=not progress, leave=False):
            table[codes[start:start + step]] = self.rates(codes[start:start + step])
        return table

    def schedule_rate(self, schedule: Schedule) -> float:
        return float(self.rates(schedule.context_indices().ravel()).mean())


def train_shared_scorer(latents: Splits, patch: int, config: SharedConfig = SharedConfig(), seed: int = 0,
                        device: str = "cpu", progress: bool = True) -> SharedEstimator:
    """Train the shared scorer on the train split over random context sets of ``patch``, early-stop on val."""
    from tqdm.auto import tqdm

    from ..device import resolve_device
    from ..harness import check_data

    check_data(latents, 1, 1)  # splits not empty, channels agree
    train_set, val_set, test_set = latents
    scale = prior_is_scale(train_set.channels, train_set.prior) if config.prior_scale is None else config.prior_scale
    k = check_kernel(config.kernel)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train, val, test = (Windows(s, k, scale) for s in (train_set, val_set, test_set))
    model = SharedScorer(train_set.channels, train_set.prior_channels, config, scale).to(dev)
    sets = 2 ** (patch * patch - 1)
    all_masks = torch.from_numpy(context_window_masks(np.arange(0, 2 ** (patch * patch), 2), patch, k)).float()
    all_masks = all_masks.reshape(sets, -1)
    val_sets = np.unique(np.concatenate([[0, sets - 1], rng.integers(0, sets, config.val_sets)]))
    val_pos = val.sample(config.val_windows, rng, config.score_border)
    with torch.no_grad():
        vw, vc, vp = val.gather(*val_pos)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_state, since, curve, running = math.inf, None, 0, [], []
    start = time.time()
    bar = tqdm(total=config.max_steps, desc=f"train shared scorer {patch}x{patch}", unit="step",
               disable=not progress, leave=False)
    for step in range(1, config.max_steps + 1):
        model.train()
        for g in opt.param_groups:
            g["lr"] = config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / config.max_steps)))
        w, c, p = train.gather(*train.sample(config.batch, rng))
        m = all_masks[torch.from_numpy(rng.integers(0, sets, config.batch))]
        loss = bits(model(w.to(dev), m.to(dev), c.to(dev), None if p is None else p.to(dev))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(loss.item())
        bar.update(1)
        if step % config.eval_every == 0 or step == config.max_steps:
            model.eval()
            with torch.no_grad():
                terms = model.first_layer_terms(vw.to(dev))
                v = float(bits(model._likelihood(terms, all_masks[val_sets].to(dev), vc.to(dev),
                                                 None if vp is None else vp.to(dev))).mean())
            curve.append((step, float(np.mean(running)), v))
            running = []
            bar.set_postfix(val=f"{v:.4f}")
            if v < best - 1e-6:
                best, since = v, 0
                best_state = {key: t.detach().clone() for key, t in model.state_dict().items()}
            else:
                since += 1
                if since >= config.patience:
                    break
    bar.close()
    model.load_state_dict(best_state)
    model = model.cpu()
    positions = test.sample(config.table_windows, np.random.default_rng(seed + 1), config.score_border)
    return SharedEstimator(model, test, positions, patch, curve, time.time() - start,
                           name=f"shared({train_set.name}, seed {seed})")
