"""Fine-tuning the whole codec (transforms, hyperprior, context model) with a schedule, end to end.

``fine_tune`` trains a ``models.joint.JointModel`` on random crops of train
photos (uniform noise for the rates, rounding straight through for the
context and the synthesis) with the loop of ``training``: AdamW (the context
model at its own learning rate) trained to a plateau on fixed centre crops
of the val photos with real rounding (what the encoder would spend): the
learning rates divided by 10 at each of the first two plateaus, the best
state kept at the third (``LoopConfig``; ``lr_drops=0``: the earlier cosine
decay to ``max_steps`` with early stopping), checkpoints from which an
interrupted fine-tuning continues and ends where it would have. The base transforms start from the
bundled codec (or another), the context model from given weights (else
zero: the hyperprior alone).

``ANY_ORDER`` fine-tunes one any-order context model (``models.any_order``)
with the codec: every training crop is decoded by a random schedule of the
patch size (half permutations, half groupings), and validation averages a
fixed mix of such schedules drawn from the seed. Any schedule of that patch
size then encodes and decodes with the one codec (``codec.codec_file``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import OrdersearchError
from ..models.any_order import random_stage_grids, window_masks
from ..models.hyperprior import STRIDE, BaseCodec
from ..models.joint import ANY_ORDER, SERIAL, JointModel, context_model
from ..models.multistage import fitted_state
from ..schedule import Schedule
from .config import LoopConfig
from .training import Checkpoint, train_loop

__all__ = ["FineTuned", "JointConfig", "fine_tune"]


@dataclass(frozen=True)
class JointConfig(LoopConfig):
    """Protocol of a fine-tuning: operating point, crops, the optimiser (``LoopConfig``: to a validation plateau,
    ``max_steps`` a cap; no weight decay)."""

    lr: float = 1e-4  # of the base codec's transforms: a fine-tuning, not a training from scratch
    weight_decay: float = 0.0
    max_steps: int = 20000  # a cap: training stops at its third plateau (``lr_drops``)
    lr_drops: int = 2
    eval_every: int = 250
    lmbda: float = 0.0067  # the bundled codec's operating point (about 0.3 bpp)
    context_lr: float = 1e-3  # of the context model, which may start from zero (the dedicated protocol's rate)
    batch: int = 8
    crop: int = 128
    val_crop: int = 256
    seed: int = 0


def _crops(photos: list[torch.Tensor], size: int, count: int, rng: np.random.Generator) -> torch.Tensor:
    out = []
    for i in rng.integers(len(photos), size=count):
        p = photos[i]
        y0, x0 = rng.integers(p.shape[1] - size + 1), rng.integers(p.shape[2] - size + 1)
        crop = p[:, y0:y0 + size, x0:x0 + size]
        out.append(crop.flip(-1) if rng.random() < 0.5 else crop)
    return torch.stack(out).float().div(255)


def _centre(photo: torch.Tensor, size: int) -> torch.Tensor:
    h = min(size, photo.shape[1] // STRIDE * STRIDE)
    w = min(size, photo.shape[2] // STRIDE * STRIDE)
    r, c = (photo.shape[1] - h) // 2, (photo.shape[2] - w) // 2
    return photo[None, :, r:r + h, c:c + w].float().div(255)


@dataclass
class FineTuned:
    """A fine-tuned codec and how its training went."""

    model: JointModel
    steps: int
    best_step: int
    curve: list[tuple[int, float, float]]  # (step, mean train loss, val loss)
    hit_cap: bool


def fine_tune(schedule: Schedule | str, train: list[np.ndarray], val: list[np.ndarray], config: JointConfig,
              device: torch.device | str = "cpu", base: BaseCodec | None = None,
              context_state: dict[str, torch.Tensor] | None = None, checkpoint: Path | None = None,
              progress: bool = False, checkpoint_every: float = 60.0, patch: int = 4) -> FineTuned:
    """Fine-tune base codec and context model of ``schedule`` (``SERIAL``, or ``ANY_ORDER`` of ``patch``)
    jointly on RGB uint8 photos (H, W, 3).

    ``base``: where the transforms start (default: the bundled codec);
    ``context_state``: where the context model starts (default: zero, the
    hyperprior alone). ``checkpoint``: a file the training keeps its state in,
    so an interrupted fine-tuning continues where it stopped (saved at most
    ``checkpoint_every`` seconds apart) and ends where it would have.
    """
    device = torch.device(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    c = config.crop
    if c % STRIDE:
        raise OrdersearchError(f"crop {c}: must be a multiple of {STRIDE}")
    tensors = [torch.from_numpy(np.array(p)).permute(2, 0, 1).to(device) for p in train]
    tensors = [t for t in tensors if min(t.shape[1:]) >= c]
    if not tensors:
        raise OrdersearchError(f"no train photo is at least {c}x{c} pixels (the training crop)")
    vals = [_centre(torch.from_numpy(np.array(p)).permute(2, 0, 1), config.val_crop).to(device)
            for p in val if min(p.shape[:2]) >= STRIDE]
    if not vals:
        raise OrdersearchError(f"no val photo is at least {STRIDE}x{STRIDE} pixels")
    # a copy: the caller's codec stays as it was (and a codec's base computes in float64)
    base = copy.deepcopy(base).float() if base is not None else BaseCodec.load()
    context = context_model(schedule, base.config, patch=patch)
    if context_state is not None:
        context.load_state_dict(context_state if schedule in (SERIAL, ANY_ORDER) else
                                fitted_state(context_state, schedule))
    model = JointModel(base, context, config.context_lr / config.lr).to(device).train()
    kernel = context.config.kernel

    def masks(grids: np.ndarray) -> torch.Tensor | None:
        return torch.from_numpy(window_masks(grids, kernel)).to(device) if schedule == ANY_ORDER else None

    # any-order: validation over a fixed mix of schedules drawn from the seed, permutations and groupings alike
    mix = random_stage_grids(patch, 4, np.random.default_rng([config.seed, 1])) if schedule == ANY_ORDER else [None]
    noise = torch.Generator(device)

    def batch_loss() -> torch.Tensor:
        # the noise is seeded from the crop stream, the one the checkpoint keeps: a resumed run draws the same
        noise.manual_seed(int(rng.integers(2**62)))
        crops = _crops(tensors, c, config.batch, rng)
        drawn = masks(random_stage_grids(patch, config.batch, rng)) if schedule == ANY_ORDER else None
        return model.loss(crops, config.lmbda, generator=noise, masks=drawn)[0]

    def validate() -> float:
        return float(np.mean([model.loss(v, config.lmbda, noise=False,
                                         masks=None if g is None else masks(g[None]))[0].item()
                              for v in vals for g in mix]))

    ck = None if checkpoint is None else Checkpoint(Path(checkpoint), checkpoint_every)
    trained = train_loop(model, batch_loss, validate, config, progress, "fine-tune", [rng], ck)
    if ck is not None:
        ck.clear()
    model = trained.model.cpu().eval()
    still_improving = trained.best_step >= trained.steps - config.eval_every
    return FineTuned(model, trained.steps, trained.best_step, trained.curve,
                     hit_cap=trained.steps >= config.max_steps and still_improving)
