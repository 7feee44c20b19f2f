"""Dedicated evaluation: train a context model on the train split, early-stop on val, measure test.

One :class:`Evaluator` holds what every evaluation of a job shares: the
data (train / val / test splits), the training protocol, the device
(resolved once) and the evaluation store (optional). Then::

    evaluator.evaluate(schedule, seed)          the paper's multistage model for one schedule
    evaluator.evaluate_context(C, patch, seed)  a model whose every latent sees exactly the window
                                                offsets d with d mod n in C: f(C) measured directly
    evaluator.evaluate_serial(seed)             the serial raster autoregressive baseline

Every model starts from the *warm start*: a prior-only model trained once
per (data, protocol, seed), itself an evaluation of the 1x1 ``single``
schedule that the store keeps like any other. Rates are bits per latent
element of y on the test split; ``bpp`` (y only) where image sizes are known.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch

from ..data.latents import LatentSet, Splits
from ..device import resolve_device
from ..models.multistage import ModelConfig, MultistageContextModel
from ..schedule import Position, Schedule, context_index, context_window_masks
from .config import TrainConfig
from .measure import measure
from .record import Evaluation
from .store import EvaluationStore, context_subject, evaluation_key, schedule_subject
from .training import train_dedicated

WARM = Schedule.named("single", 1)


def as_splits(latents: LatentSet | Splits) -> Splits:
    """Splits as given, or a LatentSet's own split (its fixed one, else seed 0)."""
    return latents if isinstance(latents, Splits) else latents.split(seed=0)


def data_fingerprint(splits: Splits) -> str:
    """The data part of an evaluation's identity: the three splits' fingerprints."""
    return "-".join(p.fingerprint for p in splits)


class Evaluator:
    """Dedicated evaluations on one data set with one protocol, on one device, cached in one store."""

    def __init__(self, latents: LatentSet | Splits, config: TrainConfig = TrainConfig(),
                 device: str | torch.device = "auto", store: EvaluationStore | None = None, progress: bool = True):
        self.splits = as_splits(latents)
        self.config = config
        self.device = resolve_device(device)
        self.store = store
        self.progress = progress
        self.data = data_fingerprint(self.splits)
        self._warm: dict[int, dict[str, torch.Tensor]] = {}
        self.splits.check()  # not empty, channels agree; patch and crop sizes per evaluation

    @property
    def kernel(self) -> int:
        return self.config.model.kernel

    # ---------------------------------------------------------------- public
    def evaluate(self, schedule: Schedule, seed: int = 0, cached_only: bool = False) -> Evaluation | None:
        """The dedicated evaluation of ``schedule`` (a translate of a stored one is a hit).

        ``cached_only``: None instead of training when the store does not have it.
        """
        self.splits.check(schedule.patch, self.config.crop)
        canonical = schedule.canonical("translations")
        result = self._cached(schedule_subject(canonical), seed, None if cached_only else
                              lambda: self._train_schedule(canonical, seed))
        return None if result is None else result.translated(schedule)

    def evaluate_context(self, context: Iterable[Position], patch: int, seed: int = 0,
                         cached_only: bool = False) -> Evaluation | None:
        """f(C) by dedicated training: every latent sees the window offsets d with d mod n in C.

        Under stationarity f(C) is the same at every patch position, so the
        model is trained and measured on all positions at once (n*n times the
        data of one sub-lattice).
        """
        context = sorted({(r % patch, c % patch) for r, c in context})
        code = context_index(context, patch)  # validates
        self.splits.check(1, self.config.crop)

        def model_for(channels: int, prior_channels: int, config: ModelConfig) -> MultistageContextModel:
            model = MultistageContextModel(WARM, channels, prior_channels, config)
            mask = torch.from_numpy(context_window_masks([code], patch, config.kernel)[0]).float()
            model.masks.copy_(mask.view_as(model.masks))
            return model

        return self._cached(context_subject(context, patch), seed, None if cached_only else
                            lambda: self._train_one_mask(model_for, "dedicated-set", patch, context, seed,
                                                         f"train f(C={code})"))

    def evaluate_serial(self, seed: int = 0) -> Evaluation:
        """The serial raster autoregressive baseline (``models.serial``), same protocol (not stored)."""
        from ..models.serial import SerialContextModel

        self.splits.check(1, self.config.crop)
        return self._train_one_mask(SerialContextModel, "serial", 1, None, seed, "train serial autoregressive")

    def key(self, kind_subject: tuple[str, str, str], seed: int, config: TrainConfig | None = None) -> str:
        """The store key of an evaluation on this data (``config``: this evaluator's protocol)."""
        return evaluation_key(*kind_subject, (config or self.config).to_dict(), self.data, seed)

    # ---------------------------------------------------------------- training
    def _cached(self, kind_subject: tuple[str, str, str], seed: int,
                run: Callable[[], Evaluation] | None, config: TrainConfig | None = None) -> Evaluation | None:
        if self.store is None:
            return None if run is None else run()
        return self.store.cached(self.key(kind_subject, seed, config), kind_subject[0], kind_subject[1], run)

    def _train_schedule(self, schedule: Schedule, seed: int, config: TrainConfig | None = None,
                        label: str | None = None) -> Evaluation:
        config = (config or self.config).decided(self.splits)
        torch.manual_seed(seed)
        s = self.splits.train
        model = MultistageContextModel(schedule, s.channels, s.prior_channels, config.model).to(self.device)
        n = schedule.patch
        return self._train(model, config, seed, "dedicated", n, schedule, None,
                           label or f"train {n}x{n} schedule seed {seed}")

    def _train_one_mask(self, model_for, estimator: str, patch: int, context: list[Position] | None, seed: int,
                        label: str) -> Evaluation:
        """Train and measure a model whose one convolution mask serves every latent."""
        config = self.config.decided(self.splits)
        torch.manual_seed(seed)
        s = self.splits.train
        model = model_for(s.channels, s.prior_channels, config.model).to(self.device)
        ev = self._train(model, config, seed, estimator, patch, WARM, context, label)
        ev.per_position = [[ev.bits_per_latent] * patch for _ in range(patch)]
        ev.stages = None
        return ev

    def _train(self, model: MultistageContextModel, config: TrainConfig, seed: int, estimator: str, patch: int,
               measured_as: Schedule, context: list[Position] | None, label: str) -> Evaluation:
        start = time.time()
        if config.warm_steps > 0:
            self._load_warm_start(model, seed)
        trained = train_dedicated(model, self.splits, config, seed, self.device, self.progress, label)
        m = measure(trained.model, self.splits, measured_as, config.score_border)
        return Evaluation(estimator, patch, [list(r) for r in measured_as.stages], context, seed,
                          steps=trained.steps, best_step=trained.best_step, seconds=time.time() - start,
                          curve=trained.curve, config=config.to_dict(), data=self.data, device=str(self.device),
                          model=trained.model, **m)

    def warm_start(self, seed: int) -> dict[str, torch.Tensor]:
        """State of the prior-only model every schedule starts from (trained once, then from the store)."""
        if seed not in self._warm:
            warm = self.config.warm()
            key = self.key(schedule_subject(WARM), seed, warm)
            state = None if self.store is None else self.store.state(key)
            if state is None:
                ev = self._cached(schedule_subject(WARM), seed, lambda: self._train_schedule(
                    WARM, seed, warm, f"warm start (prior only) seed {seed}"), warm)
                state = ev.model.state_dict() if ev.model is not None else self.store.state(key)
            self._warm[seed] = {k: v.detach().clone() for k, v in state.items()
                                if k == "bias" or k.startswith("entropy_parameters.")}
        return self._warm[seed]

    def _load_warm_start(self, model: MultistageContextModel, seed: int) -> None:
        state = self.warm_start(seed)
        with torch.no_grad():
            model.bias.copy_(state["bias"].to(self.device).expand_as(model.bias))
            model.entropy_parameters.load_state_dict(
                {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("entropy_parameters.")})
