"""Weights files that describe themselves: a multistage context model's tensors and everything needed to build it.

``best.weights.pt`` beside ``best.json`` (``weights_file``) is a torch file
holding one dict::

    {"format": "ordersearch.weights", "version": 2,
     "schedule": [[0, 1], [3, 2]],             stage grid the tensors are laid out for
     "channels": 64, "prior_channels": 64,     latent and prior channels
     "config": {"kernel": 5, "prior_scale": true, "outside": true, ...},   ModelConfig, decided
     "state": {name: float16 tensor, ...}}     the module's state dict

``load_context_model(path)`` builds the right module from it (a schedule
file or the weights file itself). A plain state dict (version 1, what runs
wrote before) still loads for the codec, which knows its own configuration,
but carries no description: ``load_context_model`` asks to re-export it.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ..errors import OrdersearchError, printable
from ..files import atomic_write, read_input
from ..schedule import Schedule
from ..schedule_io import load_schedule
from .multistage import ModelConfig, MultistageContextModel, fitted_state

FORMAT, VERSION = "ordersearch.weights", 2
SUFFIX = ".weights.pt"
MAX_BYTES = 1 << 30


@dataclass
class ContextWeights:
    """A multistage context model's state dict and what it was built with (None: a version 1 file, unknown)."""

    state: dict[str, torch.Tensor]
    schedule: Schedule | None = None
    channels: int | None = None
    prior_channels: int | None = None
    config: ModelConfig | None = None

    @classmethod
    def of(cls, model: MultistageContextModel) -> ContextWeights:
        """The weights of ``model``, described by it."""
        return cls(dict(model.state_dict()), model.schedule, model.channels, model.prior_channels, model.config)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], schedule: Schedule, config: ModelConfig) -> ContextWeights:
        """A trained state dict of ``schedule``'s model built with ``config`` (decided: ``prior_scale`` a bool),
        described; its channels are read from the tensors."""
        try:
            channels, ctx = int(state["weight"].shape[2]), int(state["bias"].shape[1])
            prior_channels = int(state["entropy_parameters.0.weight"].shape[1]) - ctx
        except (KeyError, IndexError) as e:
            raise OrdersearchError(f"not the weights of a multistage context model (no {e})") from None
        return cls(state, schedule, channels, prior_channels, config)

    @property
    def described(self) -> bool:
        return self.config is not None

    def model(self, schedule: Schedule | None = None) -> MultistageContextModel:
        """The module these weights belong to, weights loaded, in eval mode; with ``schedule`` (the weights'
        own or a translate of it), laid out for that one."""
        if not self.described:
            raise OrdersearchError("this weights file carries no model configuration (written before version 2); "
                                   "re-export it (experiments/ship_weights.py) or build the module yourself")
        schedule = schedule or self.schedule
        module = MultistageContextModel(schedule, self.channels, self.prior_channels, self.config)
        self.load_into(module)
        return module.eval()

    def load_into(self, module: MultistageContextModel) -> None:
        """Load into ``module`` after checking it was built as these weights were: one clear error otherwise."""
        if self.described:
            for name, want, have in (("channels", self.channels, module.channels),
                                     ("prior_channels", self.prior_channels, module.prior_channels),
                                     *((f"ModelConfig.{f.name}", getattr(self.config, f.name),
                                        getattr(module.config, f.name)) for f in fields(ModelConfig))):
                if want != have and not (name == "ModelConfig.prior_scale" and not want and not have):
                    raise OrdersearchError(f"these weights were trained with {name}={want!r}, the module was "
                                           f"built with {have!r}; build it with load_context_model()")
        try:
            module.load_state_dict(fitted_state(self.state, module.schedule))
        except RuntimeError as e:
            raise OrdersearchError(f"weights do not fit this context model ({' '.join(str(e).split())[:300]})") \
                from None


def untrusted_load(blob: bytes, failure: str) -> object:
    """``torch.load`` of bytes from anywhere: tensors and plain containers only (``weights_only``, no code runs);
    bytes that are not torch's are one error, ``failure (why)``."""
    try:
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bytes that are not its own
        why = printable((str(e).splitlines() or [type(e).__name__])[0])[:200]
        raise OrdersearchError(f"{failure} ({why})") from None


def weights_file(schedule_file: str | Path) -> Path:
    """Where a schedule file's weights lie: ``best.json`` -> ``best.weights.pt``."""
    schedule_file = Path(schedule_file)
    return schedule_file.with_name(schedule_file.stem + SUFFIX)


def save_weights(path: str | Path, weights: ContextWeights) -> None:
    """The weights in float16 (half the bytes; encoder and decoder load the same numbers), with their
    description when known."""
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in weights.state.items()}
    payload: dict = state
    if weights.described:
        payload = {"format": FORMAT, "version": VERSION, "schedule": weights.schedule.array().tolist(),
                   "channels": int(weights.channels), "prior_channels": int(weights.prior_channels),
                   "config": asdict(weights.config), "state": state}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(Path(path), buf.getvalue())


def load_weights(path: str | Path) -> ContextWeights:
    """A weights file (float32 tensors), or one clear error: missing, not torch's, not a context model's."""
    obj = untrusted_load(read_input(Path(path), MAX_BYTES, "a weights file"), f"{path}: not a weights file")
    described = isinstance(obj, dict) and obj.get("format") == FORMAT
    state = obj.get("state") if described else obj
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise OrdersearchError(f"{path}: not the weights of a context model (not a dict of tensors)")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    if not described:
        return ContextWeights(state)
    if obj.get("version") != VERSION:
        raise OrdersearchError(f"{path}: weights format version {obj.get('version')!r}; this ordersearch reads "
                               f"{VERSION} (a newer one wrote it?)")
    try:
        schedule = Schedule.from_grid(obj["schedule"])
        config = ModelConfig(**obj["config"])
        channels, prior_channels = int(obj["channels"]), int(obj["prior_channels"])
        if not 0 < channels <= 4096 or not 0 <= prior_channels <= 8192 or not 1 <= config.kernel <= 31:
            raise ValueError("sizes out of range")
    except (KeyError, TypeError, ValueError, OrdersearchError) as e:
        raise OrdersearchError(f"{path}: a damaged weights description ({printable(str(e))[:200]})") from None
    return ContextWeights(state, schedule, channels, prior_channels, config)


def load_context_model(path: str | Path) -> MultistageContextModel:
    """The trained context model of a schedule file (its weights file beside it) or of a weights file: the
    module built as it was trained, weights loaded, in eval mode, laid out for the schedule file's grid.

    >>> model = load_context_model("results/patch4/best.json")   # doctest: +SKIP
    """
    path = Path(path)
    if path.name.endswith(SUFFIX):
        return load_weights(path).model()
    schedule, _ = load_schedule(path)
    beside = weights_file(path)
    if not beside.is_file():
        raise OrdersearchError(f"{path}: no weights file {beside.name} beside it (a run writes one for best.json; "
                               "`ordersearch encode --train` or experiments/ship_weights.py make others)")
    return load_weights(beside).model(schedule)
