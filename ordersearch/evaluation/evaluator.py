"""Dedicated evaluation: train a context model on the train split, early-stop on val, measure test.

One :class:`Evaluator` holds what every evaluation of a job shares: the
data (train / val / test splits), the training protocol, the device
(resolved once) and the evaluation store (optional). Then::

    evaluator.evaluate(schedule, seed)          the paper's multistage model for one schedule
    evaluator.evaluate_context(C, patch, seed)  a model whose every latent sees exactly the window
                                                offsets d with d mod n in C: f(C) measured directly
    evaluator.evaluate_serial(seed)             the serial raster autoregressive baseline

Every schedule's model starts from the *any-order model* of its patch size
(``models.any_order``: one model trained over random schedules, read through
the schedule's masks; ``TrainConfig.start``), trained once per (data,
protocol, patch, seed) from the *warm start*, a prior-only model trained
once per (data, protocol, seed). Both are evaluations that the store keeps
like any other (the warm start one of the 1x1 ``single`` schedule). Context-
set and serial models start from the warm start. Rates are bits per latent
element of y on the test split; ``bpp`` (y only) where image sizes are known.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

from ..data.latents import LatentSet, Splits
from ..device import resolve_device
from ..errors import OrdersearchError
from ..models.any_order import AnyOrderContextModel
from ..models.multistage import ModelConfig, MultistageContextModel, translated_state
from ..schedule import Position, Schedule, context_index, context_window_masks
from .config import TrainConfig
from .measure import OnDevice, measure
from .record import Evaluation
from .store import EvaluationStore, any_order_subject, context_subject, evaluation_key, schedule_subject
from .training import Checkpoint, Trained, train_any_order, train_dedicated, train_stacked

WARM = Schedule.named("single", 1)
#: models trained as one stack on a GPU (on an H100 the 22 4x4 candidate-seeds of a run train 8.3x faster
#: stacked than one at a time: results/bench_verify.md); memory is not the limit at these model sizes
STACK_CUDA = 32


def as_splits(latents: LatentSet | Splits) -> Splits:
    """Splits as given, or a LatentSet's own split (its fixed one, else seed 0)."""
    return latents if isinstance(latents, Splits) else latents.split(seed=0)


def data_fingerprint(splits: Splits) -> str:
    """The data part of an evaluation's identity: the three splits' fingerprints."""
    return "-".join(p.fingerprint for p in splits)


class Evaluator:
    """Dedicated evaluations on one data set with one protocol, on one device, cached in one store."""

    def __init__(self, latents: LatentSet | Splits, config: TrainConfig = TrainConfig(),
                 device: str | torch.device = "auto", store: EvaluationStore | None = None, progress: bool = True,
                 stack: int | None = None, checkpoint_every: float = 60.0):
        self.splits = as_splits(latents)
        self.config = config
        self.device = resolve_device(device)
        #: models ``evaluate_many`` trains as one; default: many on a GPU, one on a CPU (where a stack
        #: saves nothing: the step is arithmetic-bound, and a stack keeps computing the models that
        #: stopped early until its last one stops; see benchmarks/bench_verify.py)
        self.stack = stack or (STACK_CUDA if self.device.type == "cuda" else 1)
        self.store = store
        #: seconds between checkpoints of a training in progress (folder stores only): an interrupted
        #: evaluation loses at most this much training
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.data = data_fingerprint(self.splits)
        self._warm: dict[int, dict[str, torch.Tensor]] = {}
        self._any_order: dict[tuple[int, int], AnyOrderContextModel] = {}
        self._translates: dict[tuple[str, Schedule], Evaluation] = {}
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
                              lambda checkpoint: self._train_schedule(canonical, seed, checkpoint=checkpoint))
        return None if result is None else self._translated(result, schedule, self.key(schedule_subject(canonical),
                                                                                          seed))

    def evaluate_many(self, items: Iterable[tuple[Schedule, int]], names: Sequence[str] | None = None
                      ) -> list[Evaluation]:
        """``evaluate(schedule, seed)`` of every item; the ones not in the store are trained together.
        ``names``: what the progress bars call each item's schedule (a candidate's label).

        Up to ``stack`` models of one patch size train as one stacked module
        (``train_stacked``): on a GPU many small models cost about what one
        does. Results equal those of ``evaluate`` up to floating-point order.
        """
        return self._evaluate_many(list(items), self.config, names)

    def _evaluate_many(self, items: list[tuple[Schedule, int]], config: TrainConfig,
                       names: Sequence[str] | None = None) -> list[Evaluation]:
        canonical = [(s.canonical("translations"), seed) for s, seed in items]
        for s, _ in canonical:
            self.splits.check(s.patch, config.crop)
        keyed = [(self.key(schedule_subject(s), seed, config), *schedule_subject(s)[:2]) for s, seed in canonical]

        def train(indices: list[int]) -> Iterator[Evaluation]:
            # in the given order (seed-major from verify), a stack of one patch size at a time
            for _, same in itertools.groupby(indices, key=lambda i: canonical[i][0].patch):
                same = list(same)
                for at in range(0, len(same), self.stack):
                    chunk = same[at:at + self.stack]
                    yield from self._train_schedules([canonical[i] for i in chunk], config,
                                                     self._checkpoint([keyed[i][0] for i in chunk]),
                                                     None if names is None else [names[i] for i in chunk])

        results = (list(train(list(range(len(items))))) if self.store is None else
                   self.store.cached_many(keyed, train))
        return [self._translated(r, s, k[0]) for r, (s, _), k in zip(results, items, keyed)]

    def _translated(self, evaluation: Evaluation, schedule: Schedule, key: str) -> Evaluation:
        """``evaluation`` (of a translate of ``schedule``) for ``schedule``: its model, moved to ``schedule``'s
        positions, measured again. One training serves every translate (training crops fall on the patch grid at
        random offsets, so all translates train alike), but the bits do not carry over: on whole images the grid
        meets the image edges elsewhere (results/translations.md)."""
        shift = evaluation.schedule.translation_to(schedule)
        if shift == (0, 0):
            return evaluation
        cached = self._translates.get((key, schedule))
        if cached is not None:
            return cached
        model = self._moved(evaluation, schedule, key)
        result = Evaluation(**{**evaluation.__dict__, "stages": [list(r) for r in schedule.stages], "model": model,
                               **measure(model, self.splits, schedule, self.config.score_border)})
        self._translates[(key, schedule)] = result
        return result

    def _moved(self, evaluation: Evaluation, schedule: Schedule, key: str) -> MultistageContextModel:
        """The model of ``evaluation`` (its own, else its weights from the store) for a translate of its schedule."""
        state = (evaluation.model.state_dict() if evaluation.model is not None else
                 None if self.store is None else self.store.state(key))
        if state is None:
            raise OrdersearchError(f"the store has no weights for evaluation {key}: cannot measure a translate of it")
        s = self.splits.train
        config = TrainConfig.from_dict(evaluation.config)
        model = MultistageContextModel(schedule, s.channels, s.prior_channels, config.model).to(self.device)
        model.load_state_dict(translated_state(state, evaluation.schedule.translation_to(schedule)))
        return model.eval()

    def translates_on_val(self, evaluations: list[Evaluation]) -> dict[Schedule, float]:
        """Every translate of the evaluated schedule and its val rate: the models of ``evaluations`` (one per seed)
        moved to its positions, measured on the val split, averaged over the seeds. No training: where the patch
        grid should meet the image border, chosen on val."""
        schedule = evaluations[0].schedule
        subject = schedule_subject(schedule.canonical("translations"))
        val = OnDevice(self.splits.val, self.device)
        rates = {}
        for t in sorted(schedule.orbit(), key=schedule.translation_to):
            per_seed = []
            for e in evaluations:
                bits_, elements = val.image_bits(self._moved(e, t, self.key(subject, e.seed)), self.config.score_border)
                per_seed.append(sum(bits_) / sum(elements))
            rates[t] = float(sum(per_seed) / len(per_seed))
        return rates

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
                            lambda checkpoint: self._train_one_mask(model_for, "dedicated-set", patch, context,
                                                                    seed, f"train f(C={code})", checkpoint))

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
                run: Callable[[Checkpoint | None], Evaluation] | None) -> Evaluation | None:
        """The stored evaluation, else ``run(checkpoint)``'s, stored."""
        if self.store is None:
            return None if run is None else run(None)
        key = self.key(kind_subject, seed)
        return self.store.cached(key, kind_subject[0], kind_subject[1],
                                 None if run is None else lambda: run(self._checkpoint([key])))

    def _checkpoint(self, keys: list[str]) -> Checkpoint | None:
        """Where the training of these keys (one model, or one stack) keeps its checkpoint, if anywhere."""
        path = None if self.store is None else self.store.checkpoint_path(keys)
        return None if path is None else Checkpoint(path, self.checkpoint_every)

    def _seeded(self, build: Callable[..., torch.nn.Module], seed: int, config: TrainConfig) -> torch.nn.Module:
        """``build(channels, prior channels, model config)`` on the device, initialised from ``seed``."""
        torch.manual_seed(seed)
        s = self.splits.train
        return build(s.channels, s.prior_channels, config.model).to(self.device)

    def _train_schedule(self, schedule: Schedule, seed: int, config: TrainConfig | None = None,
                        label: str | None = None, checkpoint: Checkpoint | None = None) -> Evaluation:
        config = (config or self.config).decided(self.splits)
        model = self._seeded(functools.partial(MultistageContextModel, schedule), seed, config)
        n = schedule.patch
        return self._train(model, config, seed, "dedicated", n, schedule, None,
                           label or f"train {n}x{n} schedule seed {seed}", checkpoint)

    def _train_schedules(self, items: list[tuple[Schedule, int]], config: TrainConfig,
                         checkpoint: Checkpoint | None = None, names: list[str] | None = None) -> list[Evaluation]:
        """Dedicated evaluations of (schedule, seed) pairs of one patch size, trained as one stack."""
        warm = config.warm_steps == 0 and items[0][0] == WARM
        n = items[0][0].patch
        if len(items) == 1:
            schedule, seed = items[0]
            label = (f"warm start (prior only) seed {seed}" if warm else
                     f"train {n}x{n} {names[0]} seed {seed}" if names else None)
            return [self._train_schedule(schedule, seed, config, label, checkpoint)]
        config = config.decided(self.splits)
        if config.warm_steps > 0:
            self.warm_starts([seed for _, seed in items])
        models = []
        for schedule, seed in items:  # each initialised as the one-at-a-time path initialises it
            model = self._seeded(functools.partial(MultistageContextModel, schedule), seed, config)
            models.append(self._start(model, seed, config))
        start = time.time()
        label = (f"{len(items)} warm starts together" if warm else f"train {len(items)} {n}x{n} models together"
                 + (f" ({', '.join(names)[:60]})" if names else ""))
        trained = train_stacked(models, self.splits, config, [seed for _, seed in items], self.device,
                                self.progress, label, checkpoint)
        seconds = (time.time() - start) / len(items)  # the stack's time, shared evenly
        results = [self._record(t, config, seed, "dedicated", n, schedule, None, seconds)
                   for t, (schedule, seed) in zip(trained, items)]
        if checkpoint is not None:
            checkpoint.clear()
        return results

    def _train_one_mask(self, model_for, estimator: str, patch: int, context: list[Position] | None, seed: int,
                        label: str, checkpoint: Checkpoint | None = None) -> Evaluation:
        """Train and measure a model whose one convolution mask serves every latent."""
        config = self.config.decided(self.splits)
        model = self._seeded(model_for, seed, config)
        ev = self._train(model, config, seed, estimator, patch, WARM, context, label, checkpoint)
        ev.per_position = [[ev.bits_per_latent] * patch for _ in range(patch)]
        ev.stages = None
        return ev

    def _train(self, model: MultistageContextModel, config: TrainConfig, seed: int, estimator: str, patch: int,
               measured_as: Schedule, context: list[Position] | None, label: str,
               checkpoint: Checkpoint | None = None) -> Evaluation:
        model = self._start(model, seed, config)  # (a start trained now is timed in its own record)
        start = time.time()
        # a multistage model trains in its device's fastest layout, a stack of one (``train_stacked``)
        trained = (train_stacked([model], self.splits, config, [seed], self.device, self.progress, label, checkpoint)[0]
                   if isinstance(model, MultistageContextModel) else
                   train_dedicated(model, self.splits, config, seed, self.device, self.progress, label, checkpoint))
        result = self._record(trained, config, seed, estimator, patch, measured_as, context, time.time() - start)
        if checkpoint is not None:
            checkpoint.clear()
        return result

    def _record(self, trained: Trained, config: TrainConfig, seed: int, estimator: str, patch: int,
                measured_as: Schedule, context: list[Position] | None, seconds: float) -> Evaluation:
        m = measure(trained.model, self.splits, measured_as, config.score_border)
        return Evaluation(estimator, patch, [list(r) for r in measured_as.stages], context, seed,
                          steps=trained.steps, best_step=trained.best_step, seconds=seconds,
                          curve=trained.curve, config=config.to_dict(), data=self.data, device=str(self.device),
                          model=trained.model, **m)

    def warm_start(self, seed: int) -> dict[str, torch.Tensor]:
        """State of the prior-only model every schedule starts from (trained once, then from the store)."""
        return self.warm_starts([seed])[seed]

    def warm_starts(self, seeds: Iterable[int]) -> dict[int, dict[str, torch.Tensor]]:
        """``warm_start`` of several seeds; the missing ones are trained together (``stack`` at a time)."""
        missing = [seed for seed in dict.fromkeys(seeds) if seed not in self._warm]
        if missing:
            warm = self.config.warm()
            for seed, ev in zip(missing, self._evaluate_many([(WARM, seed) for seed in missing], warm)):
                state = (ev.model.state_dict() if ev.model is not None else
                         self.store.state(self.key(schedule_subject(WARM), seed, warm)))
                self._warm[seed] = {k: v.detach().clone() for k, v in state.items()
                                    if k == "bias" or k.startswith("entropy_parameters.")}
        return self._warm

    def _from_any_order(self, model: torch.nn.Module, config: TrainConfig) -> bool:
        """Whether ``model`` starts from the any-order model: a schedule's model (not a context set's, not the
        serial one) under ``start="any-order"``."""
        return (config.warm_steps > 0 and config.start == "any-order" and type(model) is MultistageContextModel
                and model.schedule.patch > 1)

    def _start(self, model: torch.nn.Module, seed: int, config: TrainConfig) -> torch.nn.Module:
        """``model`` as its training starts: the any-order model read through its schedule's masks, else with
        the prior-only warm start (``config.warm_steps`` > 0), else as initialised."""
        if self._from_any_order(model, config):
            return self.any_order(model.schedule.patch, seed).dedicated(model.schedule).to(self.device)
        if config.warm_steps > 0:
            self._load_warm_start(model, seed)
        return model

    def any_order(self, patch: int, seed: int) -> AnyOrderContextModel:
        """The any-order model of ``patch`` (``models.any_order``) that every schedule's training starts from:
        trained once per data set, protocol, patch and seed from the prior-only warm start, then from the store.
        """
        found = self._any_order.get((patch, seed))
        if found is not None:
            return found
        config = self.config.decided(self.splits)
        s = self.splits.train
        self.splits.check(patch, config.crop)

        def train(checkpoint: Checkpoint | None) -> Evaluation:
            model = self._seeded(functools.partial(AnyOrderContextModel, patch), seed, config)
            self._load_warm_start(model, seed)
            start = time.time()
            trained = train_any_order(model, self.splits, config, seed, self.device, self.progress,
                                      f"train {patch}x{patch} any-order model seed {seed}", checkpoint)
            raster = Schedule.named("raster", patch)  # what the record measures: the model read as raster
            return Evaluation("any-order", patch, [list(r) for r in raster.stages], None, seed,
                              steps=trained.steps, best_step=trained.best_step, seconds=time.time() - start,
                              curve=trained.curve, config=config.to_dict(), data=self.data, device=str(self.device),
                              model=model, **measure(model.dedicated(raster), self.splits, raster, config.score_border))

        subject = any_order_subject(patch)
        result = self._cached(subject, seed, train)
        model = result.model
        if model is None:
            state = self.store.state(self.key(subject, seed))
            if state is None:
                raise OrdersearchError(f"the store has no weights for the {patch}x{patch} any-order model of seed "
                                       f"{seed}: remove its row or use another store")
            model = AnyOrderContextModel(patch, s.channels, s.prior_channels, config.model)
            model.load_state_dict(state)
        self._any_order[(patch, seed)] = model.to(self.device).eval()
        return self._any_order[(patch, seed)]

    def _load_warm_start(self, model: MultistageContextModel, seed: int) -> None:
        state = self.warm_start(seed)
        with torch.no_grad():
            model.bias.copy_(state["bias"].to(self.device).expand_as(model.bias))
            model.entropy_parameters.load_state_dict(
                {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("entropy_parameters.")})
