"""The one training loop every trainer uses: AdamW, cosine learning rate, early stopping on validation.

::

    for step in 0 .. max_steps - 1:
        lr = lr0 * (0.05 + 0.95 * (1 + cos(pi * step / max_steps)) / 2)
        one AdamW step on batch_loss()
        every eval_every steps: v = validate(); keep the best state;
            stop after `patience` validations without improvement
    load the best state

The dedicated models (``train_dedicated``) and the shared scorer
(``estimators.shared``) differ only in what a batch and a validation are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.latents import Splits
from ..models.entropy import bits
from .config import TrainConfig
from .measure import OnDevice


@dataclass(frozen=True)
class LoopConfig:
    """The optimiser's protocol: learning rate, weight decay, step cap, validation cadence, patience."""

    lr: float
    weight_decay: float
    max_steps: int
    eval_every: int
    patience: int
    max_seconds: float | None = None


@dataclass
class Trained:
    """A trained model (best validation state loaded) and how its training went."""

    model: nn.Module
    curve: list[tuple[int, float, float]]  # (step, mean train loss since last validation, validation)
    steps: int
    best_step: int


def train_loop(model: nn.Module, batch_loss: Callable[[], torch.Tensor], validate: Callable[[], float],
               loop: LoopConfig, progress: bool = False, label: str = "train") -> Trained:
    """Train ``model`` on ``batch_loss()`` until ``validate()`` stops improving; see the module docstring."""
    from tqdm.auto import tqdm

    p = loop
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    best, best_state, best_step, since = math.inf, None, 0, 0
    curve: list[tuple[int, float, float]] = []
    running, start = [], time.time()
    bar = tqdm(total=p.max_steps, desc=label, unit="step", disable=not progress, leave=False)
    step = 0
    while step < p.max_steps:
        if p.max_seconds is not None and time.time() - start > p.max_seconds:
            break
        model.train()
        for g in opt.param_groups:
            g["lr"] = p.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / p.max_steps)))
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(loss.item())
        step += 1
        bar.update(1)
        if step % p.eval_every == 0 or step == p.max_steps:
            model.eval()
            with torch.no_grad():
                v = validate()
            curve.append((step, float(np.mean(running)), v))
            running = []
            bar.set_postfix(val=f"{v:.4f}")
            if v < best - 1e-6:
                best, best_step, since = v, step, 0
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            else:
                since += 1
                if since >= p.patience:
                    break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return Trained(model.eval(), curve, step, best_step)


def train_dedicated(model: nn.Module, splits: Splits, config: TrainConfig, seed: int, device: torch.device,
                    progress: bool = False, label: str = "train") -> Trained:
    """Train a context model on random crops of the train split, early-stopped on the val split."""
    rng = np.random.default_rng(seed)
    train, val = OnDevice(splits.train, device), OnDevice(splits.val, device)
    h = config.model.kernel // 2

    def batch_loss() -> torch.Tensor:
        y, prior = train.crops(config.crop, h, config.batch, rng)
        return bits(model(y, prior, border=h)).mean()  # the crop's border only serves as neighbours

    loop = LoopConfig(config.lr, config.weight_decay, config.max_steps, config.eval_every, config.patience,
                         config.max_seconds)
    return train_loop(model, batch_loss, lambda: val.mean_bits(model, config.score_border), loop, progress,
                      label)
