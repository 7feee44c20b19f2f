"""The optimiser's knobs every training shares (``LoopConfig``) and the protocol of a dedicated evaluation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..data.latents import Splits
from ..errors import OrdersearchError
from ..models.multistage import ModelConfig, prior_is_scale


#: where a schedule's training starts (``TrainConfig.start``)
STARTS = ("any-order", "prior")


def _bounds(c: TrainConfig) -> list[tuple[str, object, float, float]]:
    """What a training protocol read from a file may hold: far beyond any real one, far below a memory bomb."""
    m = c.model
    return [("lr", c.lr, 1e-9, 10.0), ("weight_decay", c.weight_decay, 0.0, 10.0), ("max_steps", c.max_steps, 1, 10**7),
            ("eval_every", c.eval_every, 1, 10**7), ("patience", c.patience, 1, 10**4),
            ("max_seconds", c.max_seconds, 0.0, 1e9), ("lr_drops", c.lr_drops, 0, 10), ("batch", c.batch, 1, 4096),
            ("crop", c.crop, 1, 1024), ("warm_steps", c.warm_steps, 0, 10**7), ("score_border", c.score_border, 0, 64),
            ("kernel", m.kernel, 1, 31), ("mixture", m.mixture, 1, 16),
            ("context_channels", m.context_channels, 1, 4096), ("hidden", m.hidden, 1, 8192)]


_OPTIONAL = {"max_seconds", "context_channels", "hidden"}
_REAL = {"lr", "weight_decay", "max_seconds"}


@dataclass(frozen=True)
class LoopConfig:
    """The optimiser's protocol, as ``train_loop`` reads it: AdamW, validation cadence, when to stop.

    ``lr_drops`` 0: a cosine learning rate from ``lr`` to ``lr / 20`` over
    ``max_steps``, stop after ``patience`` validations without improvement.
    ``lr_drops`` n > 0: train to a plateau: a constant learning rate, divided
    by 10 after ``patience`` validations without improvement, at most n
    times; the next such plateau stops the model. ``max_steps`` and
    ``max_seconds`` are then only caps. Every training protocol of the
    toolkit (``TrainConfig``, the shared scorer's ``SharedConfig``, the
    codec's ``JointConfig``) is one of these with its own defaults and what
    else it needs.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_steps: int = 8000
    eval_every: int = 100
    patience: int = 4
    max_seconds: float | None = None
    lr_drops: int = 0


@dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """Training protocol of a dedicated evaluation.

    Crops of ``crop`` x ``crop`` latents (plus a border of kernel // 2 that
    supplies their neighbours and is not scored) that reach up to n - 1
    latents past the image, each latent's bits weighted so that the border
    counts as often as it is measured (``measure.OnDevice.cut``),
    AdamW with weight decay, validation every ``eval_every`` steps. The
    learning rate is ``lr`` until a plateau (``patience`` validations without
    improvement), then divided by 10 at each of the first ``lr_drops``
    plateaus; training stops at the next one, or at the cap ``max_steps`` /
    ``max_seconds``, which a converging training does not reach (on the
    built-in latents every 4x4 training plateaued at 3,600-4,400 steps:
    results/convergence.md). ``lr_drops=0`` is the earlier protocol: a
    cosine learning rate from ``lr`` to ``lr / 20`` over ``max_steps``, early
    stopping after ``patience`` validations. The best validation state is
    measured on the test split.
    """

    #: plateau training (``LoopConfig``): the learning rate divided by 10 at each of the first two plateaus
    lr_drops: int = 2
    model: ModelConfig = ModelConfig()
    batch: int = 16
    crop: int = 16
    #: Steps of the shared warm start: a prior-only model (no context) trained once per data set, config
    #: and seed, from which the any-order model starts (``start``; with "prior", every schedule's model,
    #: its context convolutions at zero). The schedules of a seed then start from one model and see the
    #: same batches, so differences between schedules come from their context, not from training noise.
    #: 0: train from scratch.
    warm_steps: int = 1000
    #: Where a schedule's model starts (with ``warm_steps`` > 0): "any-order": the any-order model of its patch
    #: size (``models.any_order``), trained once per data set, protocol, patch and seed over random schedules
    #: (itself from the prior-only warm start), read through the schedule's masks, then trained by this
    #: protocol; "prior": the prior-only warm start, context convolutions at zero (the earlier protocol)
    start: str = "any-order"
    #: Latents this close to an edge are not scored on the val/test splits: 0 for real images (their
    #: borders are real), kernel // 2 to compare with the infinite-field Gaussian oracle.
    score_border: int = 0

    def __post_init__(self) -> None:
        if self.start not in STARTS:
            raise OrdersearchError(f"unknown start {self.start!r}; known: {', '.join(STARTS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The inverse of :meth:`to_dict` (as stored in evaluations and schedule provenance), every field checked
        and bounded like any other input (a schedule file's provenance is read by ``encode``): one clear error."""
        try:
            # a protocol written before ``start`` existed started every schedule from the prior-only warm start
            config = cls(**{"start": "prior", **d, "model": ModelConfig(**d["model"])})
        except (TypeError, KeyError) as e:
            raise OrdersearchError(f"not a training protocol ({e})") from None
        for name, value, low, high in _bounds(config):
            if value is None and name in _OPTIONAL:
                continue
            number = (float, int) if name in _REAL else int
            if isinstance(value, bool) or not isinstance(value, number) or not low <= value <= high:
                raise OrdersearchError(f"training protocol: {name} = {value!r}, expected a number from {low} to "
                                       f"{high}")
        if config.model.kernel % 2 == 0 or config.model.prior_scale not in (None, True, False):
            raise OrdersearchError(f"training protocol: kernel {config.model.kernel!r} or prior_scale "
                                   f"{config.model.prior_scale!r} not possible")
        if config.batch * (config.crop + config.model.kernel) ** 2 > 2**22:  # latents per step, every channel
            raise OrdersearchError(f"training protocol: batch {config.batch} of {config.crop}x{config.crop} crops "
                                   "is far beyond memory")
        return config

    @property
    def kernel(self) -> int:
        return self.model.kernel

    def warm(self) -> TrainConfig:
        """The protocol of the warm start itself: ``warm_steps`` steps, from scratch."""
        return replace(self, max_steps=self.warm_steps, warm_steps=0)

    def decided(self, splits: Splits) -> TrainConfig:
        """This config with ``model.prior_scale`` decided from the data where it was left to the data."""
        if self.model.prior_scale is not None:
            return self
        scale = prior_is_scale(splits.train.channels, splits.train.prior)
        return replace(self, model=replace(self.model, prior_scale=scale))
