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
``train_stacked`` runs the same loop over K models in one module (the
device's fastest layout of them): one loss and one validation per model,
each stopping and keeping its best state on its own. It is how schedules
are trained; ``train_dedicated`` is the reference (the dense model itself,
any module).

A training in progress can keep a :class:`Checkpoint` (model, optimiser,
random streams, best state, curves) at most ``every`` seconds apart; a
training started again with the same checkpoint continues from it and ends
exactly where the uninterrupted one would have (same batches, same steps).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.latents import Splits
from ..files import atomic_write
from ..models.any_order import AnyOrderContextModel, random_stage_grids, window_masks
from ..models.entropy import bits
from ..models.multistage import MultistageContextModel
from ..models.packed import PackedContextModels
from ..models.stacked import StackedContextModels
from ..schedule import Schedule
from .config import LoopConfig, TrainConfig
from .measure import OnDevice


@dataclass
class Trained:
    """A trained model (best validation state loaded) and how its training went."""

    model: nn.Module
    curve: list[tuple[int, float, float]]  # (step, mean train loss since last validation, validation)
    steps: int
    best_step: int


@dataclass(frozen=True)
class Checkpoint:
    """Where a training in progress keeps its state, written at most ``every`` seconds apart.

    A damaged or foreign checkpoint (another model's shapes) is ignored: the
    training starts over rather than fail.
    """

    path: Path
    every: float = 60.0

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # torch raises many types for a damaged file: start over
            return None

    def save(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write(self.path, buf.getvalue())

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def scheduled_lr(loop: LoopConfig, step: int) -> float:
    """The learning rate at ``step``: cosine from ``lr`` down to ``lr / 20`` (constant ``lr`` with drops)."""
    if loop.lr_drops:
        return loop.lr
    return loop.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / loop.max_steps)))


def train_loop(model: nn.Module, batch_loss: Callable[[], torch.Tensor], validate: Callable[[], float],
               loop: LoopConfig, progress: bool = False, label: str = "train",
               rngs: Sequence[np.random.Generator] = (), checkpoint: Checkpoint | None = None) -> Trained:
    """Train ``model`` on ``batch_loss()`` until ``validate()`` stops improving; see the module docstring.

    ``rngs``: the random streams ``batch_loss`` draws from, kept in the ``checkpoint``.
    """
    trained = _loop(model, 1, lambda: batch_loss().view(1), lambda: np.array([validate()]), loop, progress,
                    label, rngs, checkpoint)
    return trained[0]


def _loop(model: nn.Module, k: int, batch_loss: Callable[[], torch.Tensor], validate: Callable[[], np.ndarray],
          loop: LoopConfig, progress: bool, label: str, rngs: Sequence[np.random.Generator] = (),
          checkpoint: Checkpoint | None = None) -> list[Trained]:
    """The loop for ``k`` models in one module: losses and validations are (k,); with k > 1 every tensor of
    the module's state has the models along dim 0, and each model stops and keeps its best state on its own."""
    from tqdm.auto import tqdm

    p = loop
    # a model may ask for parameter groups with their own learning-rate scale (``optimizer_groups``)
    groups = model.optimizer_groups() if hasattr(model, "optimizer_groups") else [{"params": model.parameters()}]
    # fused: one pass over each parameter instead of about ten (on a CPU, a 4x4 model's step spent a sixth of
    # its time in the optimiser without it)
    fused = all(t.device.type in ("cpu", "cuda") and t.dtype == torch.float32 for t in model.parameters())
    opt = torch.optim.AdamW(groups, lr=p.lr, weight_decay=p.weight_decay, fused=fused or None)
    best, since = np.full(k, math.inf), np.zeros(k, dtype=int)
    best_step, steps = np.zeros(k, dtype=int), np.zeros(k, dtype=int)
    active = np.ones(k, dtype=bool)
    # plateau training: each model's learning rate as a fraction of the loop's, and the drops it has left
    rate, drops = np.ones(k), np.full(k, p.lr_drops)
    best_state: dict[str, torch.Tensor] | None = None
    curves: list[list[tuple[int, float, float]]] = [[] for _ in range(k)]
    running: list[torch.Tensor] = []
    step, elapsed = 0, 0.0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        fresh = ({n: t.detach().clone() for n, t in model.state_dict().items()}, [r.bit_generator.state for r in rngs])
        try:
            step, elapsed, running, best_state, curves = _restore(saved, model, opt, rngs, k, best, since,
                                                                   best_step, steps, active, rate, drops)
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError):  # not this training's: start over
            model.load_state_dict(fresh[0])
            for r, state in zip(rngs, fresh[1]):
                r.bit_generator.state = state
            return _loop(model, k, batch_loss, validate, loop, progress, label, rngs, None)
    start, last_save = time.time() - elapsed, time.time()
    # plateau training stops at its plateau, not at the cap: no time estimate to the cap (it read 47:09 for a
    # training of a few minutes); after each validation the bar's total is the earliest step it can stop at
    # (every plateau left needs ``patience`` validations without improvement), so its time left is a lower bound
    bar = tqdm(total=None if p.lr_drops else p.max_steps, initial=step, desc=label, unit="step",
               disable=not progress or None, leave=False)
    while step < p.max_steps and active.any():
        if p.max_seconds is not None and time.time() - start > p.max_seconds:
            break
        model.train()
        top = float(rate[active].max())  # a Python float: the optimiser's state must load with weights_only
        for g in opt.param_groups:
            g["lr"] = scheduled_lr(p, step) * g.get("scale", 1.0) * top
        losses = batch_loss()
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # disjoint parameters: each model's gradient is its own loss's
        if k > 1 and (rate[active] != top).any():
            # models of a stack on lower learning rates: AdamW's step (weight decay included) is proportional
            # to the learning rate, so each model's row of the step is scaled by its rate / the group's
            before = [t.detach().clone() for t in model.parameters()]
            opt.step()
            with torch.no_grad():
                for t, old in zip(model.parameters(), before):
                    # (a stopped model's row may move at most at the group's rate: its best state is kept)
                    ratio = torch.as_tensor(np.minimum(rate / top, 1.0), dtype=t.dtype, device=t.device)
                    t.copy_(old + (t - old) * ratio.view(-1, *[1] * (t.dim() - 1)))
        else:
            opt.step()
        running.append(losses.detach())
        step += 1
        steps[active] = step
        bar.update(1)
        if step % p.eval_every == 0 or step == p.max_steps:
            model.eval()
            with torch.no_grad():
                v = np.asarray(validate(), dtype=float)
            mean_loss = torch.stack(running).mean(0).cpu().numpy()
            running = []
            improved = active & (v < best - 1e-6)
            for i in np.flatnonzero(active):
                curves[i].append((step, float(mean_loss[i]), float(v[i])))
            best[improved], best_step[improved], since[improved] = v[improved], step, 0
            since[active & ~improved] += 1
            if improved.any():
                best_state = _keep(best_state, model.state_dict(), improved, k)
            plateau = active & (since >= p.patience)
            drop = plateau & (drops > 0)
            rate[drop] /= 10
            drops[drop] -= 1
            since[drop] = 0
            active &= ~(plateau & ~drop)
            if p.lr_drops and active.any():
                bar.total = earliest_stop(p, step, since[active], drops[active])
                bar.set_postfix_str(f"val={v.min():.4f}, plateaus left {int(drops[active].max()) + 1}, at least "
                                    f"{bar.total - step} steps left", refresh=False)
                bar.refresh()
            else:
                bar.set_postfix(val=f"{v.min():.4f}")
        if checkpoint is not None and time.time() - last_save >= checkpoint.every and step < p.max_steps:
            checkpoint.save({
                "step": step, "elapsed": time.time() - start, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "rngs": json.dumps([r.bit_generator.state for r in rngs]),
                "best": torch.from_numpy(best), "since": torch.from_numpy(since),
                "best_step": torch.from_numpy(best_step), "steps": torch.from_numpy(steps),
                "active": torch.from_numpy(active), "rate": torch.from_numpy(rate),
                "drops": torch.from_numpy(drops), "best_state": best_state or {},
                "curves": json.dumps(curves), "running": torch.stack(running) if running else torch.zeros(0, k)})
            last_save = time.time()
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return [Trained(model, curves[i], int(steps[i]), int(best_step[i])) for i in range(k)]


def earliest_stop(loop: LoopConfig, step: int, since: np.ndarray, drops: np.ndarray) -> int:
    """The earliest step plateau training can stop at, after a validation at ``step``: each model still needs
    ``patience - since`` validations without improvement to reach its current plateau and ``patience`` more for
    each of its ``drops`` left; the last model to get there ends the loop (or the cap)."""
    left = int(((loop.patience - since) + drops * loop.patience).max()) * loop.eval_every
    return min(step + left, loop.max_steps)


def _restore(saved: dict, model: nn.Module, opt: torch.optim.Optimizer, rngs: Sequence[np.random.Generator],
             k: int, best: np.ndarray, since: np.ndarray, best_step: np.ndarray, steps: np.ndarray,
             active: np.ndarray, rate: np.ndarray, drops: np.ndarray
             ) -> tuple[int, float, list[torch.Tensor], dict | None, list]:
    """Load a checkpoint into the loop's state (arrays in place); raises if it is not this training's."""
    states = json.loads(saved["rngs"])
    curves = [[tuple(c) for c in curve] for curve in json.loads(saved["curves"])]
    if len(states) != len(rngs) or len(curves) != k or saved["best"].shape != (k,):
        raise ValueError("checkpoint of another training")
    device = next(model.parameters()).device
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    for r, state in zip(rngs, states):
        r.bit_generator.state = state
    for array, name in ((best, "best"), (since, "since"), (best_step, "best_step"), (steps, "steps"),
                        (active, "active"), (rate, "rate"), (drops, "drops")):
        array[:] = saved[name].numpy()
    best_state = {n: t.to(device) for n, t in saved["best_state"].items()} or None
    running = [r.to(device) for r in saved["running"]]
    return int(saved["step"]), float(saved["elapsed"]), running, best_state, curves


def _keep(best: dict[str, torch.Tensor] | None, state: dict[str, torch.Tensor], improved: np.ndarray, k: int
          ) -> dict[str, torch.Tensor]:
    """``best`` with the rows of the improved models replaced by their current state (all rows when k == 1)."""
    if best is None or k == 1:
        return {name: t.detach().clone() for name, t in state.items()}
    rows = torch.from_numpy(np.flatnonzero(improved))
    for name, t in state.items():
        best[name][rows] = t.detach()[rows.to(t.device)].clone()
    return best


def train_dedicated(model: nn.Module, splits: Splits, config: TrainConfig, seed: int, device: torch.device,
                    progress: bool = False, label: str = "train", checkpoint: Checkpoint | None = None) -> Trained:
    """Train a context model on random crops of the train split, early-stopped on the val split."""
    rng = np.random.default_rng(seed)
    train, val = OnDevice(splits.train, device), OnDevice(splits.val, device)
    h = config.model.kernel // 2

    slack = model.schedule.patch - 1 if isinstance(model, MultistageContextModel) else 0

    def batch_loss() -> torch.Tensor:
        c = train.crops(config.crop, h, config.batch, rng, slack)
        # the crop's border only serves as neighbours; weighted: every latent counts as often as it is measured
        return (bits(model(c.y, c.prior, border=h, outside=c.outside)) * c.weight).mean()

    return train_loop(model, batch_loss, lambda: val.mean_bits(model, config.score_border), config,
                      progress,
                      label, [rng], checkpoint)


def train_stacked(models: list[MultistageContextModel], splits: Splits, config: TrainConfig, seeds: list[int],
                  device: torch.device, progress: bool = False, label: str = "train",
                  checkpoint: Checkpoint | None = None) -> list[Trained]:
    """``train_dedicated`` of every model at once: model k on seed ``seeds[k]``'s crops, its own early stop.

    One module, one optimiser step per training step for all models; each
    model sees the crops, learning rates and validations that
    ``train_dedicated`` would give it. The module is the device's fastest
    layout of the same models (benchmarks/bench_verify.py): decoded offsets
    only on a CPU (``PackedContextModels``), grouped convolutions elsewhere
    (``StackedContextModels``).
    """
    rngs = [np.random.default_rng(seed) for seed in seeds]
    train, val = OnDevice(splits.train, device), OnDevice(splits.val, device)
    layout = PackedContextModels if device.type == "cpu" else StackedContextModels
    stacked = layout(models).to(device)
    k, h, border = len(models), config.model.kernel // 2, config.score_border

    slack = models[0].schedule.patch - 1  # the patch grid meets the image border at every phase

    def batch_loss() -> torch.Tensor:
        # every model's own crops (its seed's stream), cut in one copy
        c = train.cut([w for rng in rngs for w in train.windows(config.crop, config.batch, rng, slack)],
                      config.crop, h, slack)

        def per_model(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.view(k, config.batch, *t.shape[1:])

        # the crop's border only serves as neighbours; weighted: every latent counts as often as it is measured
        return stacked.scored_bits(per_model(c.y), per_model(c.prior), border=h, outside=per_model(c.outside),
                                   weight=per_model(c.weight)).mean(1)

    def validate() -> np.ndarray:
        total, elements = torch.zeros(k, device=device, dtype=torch.float64), 0
        for i, y in enumerate(val.y):
            prior = None if val.prior is None else val.prior[i].expand(k, 1, *val.prior[i].shape)
            b = stacked.scored_bits(y.expand(k, 1, *y.shape), prior, keep=border)
            total += b.sum(1).double()
            elements += b.shape[1]
        return (total / elements).cpu().numpy()

    trained = _loop(stacked, k, batch_loss, validate, config, progress, label, rngs, checkpoint)
    models = stacked.unstacked([m.to(device) for m in models])
    return [Trained(m.eval(), t.curve, t.steps, t.best_step) for m, t in zip(models, trained)]


def train_any_order(model: AnyOrderContextModel, splits: Splits, config: TrainConfig, seed: int,
                    device: torch.device, progress: bool = False, label: str = "train any-order",
                    checkpoint: Checkpoint | None = None, validation_schedules: int = 4) -> Trained:
    """Train an any-order model (``models.any_order``) on the crops ``train_dedicated`` draws, every crop
    decoded by a schedule of its own (``random_stage_grids``); early-stopped on its mean val rate over
    ``validation_schedules`` schedules drawn once from the seed (half permutations, half groupings)."""
    rng = np.random.default_rng(seed)
    train, val = OnDevice(splits.train, device), OnDevice(splits.val, device)
    n, h = model.schedule.patch, config.model.kernel // 2
    grids = random_stage_grids(n, 4 * validation_schedules, np.random.default_rng([seed, 1]))
    # a fixed mix for validation: permutations and groupings alike
    kinds = [g for g in grids if g.max() == n * n - 1][:validation_schedules // 2 or 1]
    kinds += [g for g in grids if g.max() < n * n - 1][:validation_schedules - len(kinds)]
    schedules = [Schedule(g) for g in kinds]

    def batch_loss() -> torch.Tensor:
        c = train.crops(config.crop, h, config.batch, rng, n - 1)
        masks = torch.from_numpy(window_masks(random_stage_grids(n, config.batch, rng), config.model.kernel))
        b = model(c.y, c.prior, border=h, outside=c.outside, masks=masks.to(device))
        return (bits(b) * c.weight).mean()

    def validate() -> float:
        return float(np.mean([val.mean_bits(model.dedicated(s), config.score_border) for s in schedules]))

    return train_loop(model, batch_loss, validate, config, progress, label, [rng], checkpoint)
