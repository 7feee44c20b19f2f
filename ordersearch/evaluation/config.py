"""The optimiser's knobs every training shares (``LoopConfig``) and the protocol of a dedicated evaluation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..data.latents import Splits
from ..errors import OrdersearchError
from ..models.multistage import ModelConfig, prior_is_scale


#: where a schedule's training starts (``TrainConfig.start``)
STARTS = ("any-order", "prior")


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
        """The inverse of :meth:`to_dict` (as stored in evaluations and schedule provenance)."""
        # a protocol written before ``start`` existed started every schedule from the prior-only warm start
        return cls(**{"start": "prior", **d, "model": ModelConfig(**d["model"])})

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
