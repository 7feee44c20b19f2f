"""The codec file: a fine-tuned codec (schedule or serial, base codec, context model) in one float16 file.

``save_codec`` writes what ``evaluation.joint.fine_tune`` made; ``load_codec``
gives back a ready ``MultistageCodec`` (or ``SerialCodec``): ``encode``,
``decode`` and ``codec eval`` need nothing else.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import OrdersearchError
from ..files import atomic_write, read_input
from ..models.hyperprior import BaseCodec, BaseCodecConfig
from ..models.joint import SERIAL, JointModel, context_model
from ..models.multistage import fitted_state
from ..schedule import Schedule
from .multistage import MultistageCodec
from .serial import SerialCodec

__all__ = ["FORMAT", "load_codec", "save_codec"]

FORMAT = "ordersearch-codec/1"
MAX_CODEC_BYTES = 1 << 30
MAX_WIDTH = 1024  # of a base codec's transforms: a forged file cannot make the loader allocate without bound


def _half(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().half() if v.is_floating_point() else v.cpu() for k, v in module.state_dict().items()}


def save_codec(path: Path, schedule: Schedule | str, model: JointModel, info: dict | None = None) -> None:
    """One float16 file: schedule (or ``serial``), base codec and context model (``load_codec`` reads it)."""
    blob = {"format": FORMAT,
            "schedule": SERIAL if schedule == SERIAL else json.dumps(schedule.array().tolist()),
            "kernel": model.context.config.kernel, "base_config": asdict(model.base.config),
            "base": _half(model.base), "context": _half(model.context), "info": json.dumps(info or {})}
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write(path, buf.getvalue())


def load_codec(path: Path) -> tuple[MultistageCodec, dict]:
    """The codec of a codec file (multistage or serial) and the file's info, or one clear error."""
    raw = read_input(path, MAX_CODEC_BYTES, "a codec file")
    try:
        blob = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for files that are not its own
        blob = None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise OrdersearchError(f"{path}: not a codec file of `ordersearch codec train`")
    try:
        widths = blob["base_config"]
        if not isinstance(widths, dict) or not all(isinstance(v, int) and 1 <= v <= MAX_WIDTH for v in widths.values()):
            raise ValueError(f"base codec widths {str(widths)[:80]}")
        base = BaseCodec(BaseCodecConfig(**widths))
        if not all(bool(torch.isfinite(v).all()) for v in blob["base"].values() if v.is_floating_point()):
            raise ValueError("non-finite base codec weights")
        base.load_state_dict({k: v.float() for k, v in blob["base"].items()})
        base.eval()
        state = {k: v.float() if v.is_floating_point() else v for k, v in blob["context"].items()}
        if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
            raise ValueError("non-finite context model weights")
        if blob["schedule"] == SERIAL:
            context = context_model(SERIAL, base.config, int(blob["kernel"]))
            context.load_state_dict(state)
            codec: MultistageCodec = SerialCodec(context.eval(), base)
        else:
            schedule = Schedule.from_grid(json.loads(blob["schedule"]))
            context = context_model(schedule, base.config, int(blob["kernel"]))
            context.load_state_dict(fitted_state(state, schedule))
            codec = MultistageCodec(schedule, context.eval(), base)
        info = json.loads(blob["info"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OrdersearchError) as e:
        raise OrdersearchError(f"{path}: a damaged codec file ({' '.join(str(e).split())[:200]})") from None
    return codec, info
