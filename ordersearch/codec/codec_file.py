"""The codec file: a fine-tuned codec (schedule or serial, base codec, context model) in one float16 file.

``save_codec`` writes what ``evaluation.joint.fine_tune`` made; ``load_codec``
gives back a ready ``MultistageCodec`` (or ``SerialCodec``): ``encode``,
``decode`` and ``codec eval`` need nothing else. An any-order codec (one
context model for every schedule of its patch size) is made ready for the
schedule it is given, chosen at encode time (the stream records it, so
decode needs nothing more)::

    ANY.pt + S.json --load_codec--> AnyOrderContextModel.dedicated(S) --> MultistageCodec(S)
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import OrdersearchError
from ..files import atomic_write, read_input
from ..models.any_order import AnyOrderContextModel
from ..models.hyperprior import BaseCodec, BaseCodecConfig
from ..models.joint import ANY_ORDER, SERIAL, JointModel, context_model
from ..models.multistage import fitted_state
from ..schedule import Schedule
from .multistage import MultistageCodec
from .serial import SerialCodec

__all__ = ["FORMAT", "any_order_model", "codec_of", "load_codec", "open_codec", "save_codec"]

FORMAT = "ordersearch-codec/1"
MAX_CODEC_BYTES = 1 << 30
MAX_WIDTH = 1024  # of a base codec's transforms: a forged file cannot make the loader allocate without bound


def _half(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().half() if v.is_floating_point() else v.cpu() for k, v in module.state_dict().items()}


def save_codec(path: Path, schedule: Schedule | str, model: JointModel, info: dict | None = None) -> None:
    """One float16 file: schedule (or ``serial``), base codec and context model (``load_codec`` reads it)."""
    blob = {"format": FORMAT,
            "schedule": schedule if schedule in (SERIAL, ANY_ORDER) else json.dumps(schedule.array().tolist()),
            "patch": model.context.schedule.patch if schedule == ANY_ORDER else 0,
            "kernel": model.context.config.kernel, "base_config": asdict(model.base.config),
            "base": _half(model.base), "context": _half(model.context), "info": json.dumps(info or {})}
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write(path, buf.getvalue())


def load_codec(path: Path, schedule: Schedule | None = None) -> tuple[MultistageCodec, dict]:
    """The codec of a codec file (multistage or serial; an any-order one with ``schedule``, which it then
    encodes and decodes with; a codec of one schedule accepts only that one) and the file's info
    (``any_order``: the patch size, if it is one), or one clear error."""
    return codec_of(*open_codec(path), schedule)


def open_codec(path: Path) -> tuple[Path, dict, int]:
    """(path, the file's contents, the patch size of an any-order codec or 0), or one clear error: a codec file
    read once, for ``codec_of`` with one schedule or several."""
    raw = read_input(path, MAX_CODEC_BYTES, "a codec file")
    try:
        blob = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for files that are not its own
        blob = None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise OrdersearchError(f"{path}: not a codec file of `ordersearch codec train`")
    any_order = blob.get("patch", 0) if blob.get("schedule") == ANY_ORDER else 0
    if any_order and not (isinstance(any_order, int) and 2 <= any_order <= 16):
        raise OrdersearchError(f"{path}: a damaged codec file (any-order patch size {str(any_order)[:20]})")
    return path, blob, any_order


def codec_of(path: Path, blob: dict, any_order: int, schedule: Schedule | None = None
             ) -> tuple[MultistageCodec, dict]:
    """``load_codec`` of a file ``open_codec`` read."""
    if any_order and schedule is None:
        raise OrdersearchError(f"{path}: an any-order codec of {any_order}x{any_order} patches: give the schedule to "
                               "encode with (--schedule S.json)")
    if any_order and schedule.patch != any_order:
        raise OrdersearchError(f"{path}: its context model is for {any_order}x{any_order} patches, the schedule is "
                               f"{schedule.patch}x{schedule.patch}")
    try:
        base, state = _parts(blob)
        if blob["schedule"] == SERIAL:
            context = context_model(SERIAL, base.config, int(blob["kernel"]))
            context.load_state_dict(state)
            codec: MultistageCodec = SerialCodec(context.eval(), base)
        elif any_order:
            context = context_model(ANY_ORDER, base.config, int(blob["kernel"]), any_order)
            context.load_state_dict(state)
            codec = MultistageCodec(schedule, context.dedicated(schedule).eval(), base)
        else:
            own = Schedule.from_grid(json.loads(blob["schedule"]))
            context = context_model(own, base.config, int(blob["kernel"]))
            context.load_state_dict(fitted_state(state, own))
            codec = MultistageCodec(own, context.eval(), base)
        info = {**json.loads(blob["info"]), **({"any_order": any_order} if any_order else {})}
    except _DAMAGED as e:
        raise OrdersearchError(f"{path}: a damaged codec file ({' '.join(str(e).split())[:200]})") from None
    own = getattr(codec, "schedule", None)
    if schedule is not None and not any_order and (own is None or own.array().tolist() != schedule.array().tolist()):
        raise OrdersearchError(f"{path}: a codec of one schedule ({'serial' if own is None else own.array().tolist()})"
                               f", not of {schedule.array().tolist()}; another schedule needs an any-order codec")
    return codec, info


def any_order_model(path: Path, blob: dict, any_order: int) -> tuple[BaseCodec, AnyOrderContextModel]:
    """The base codec and the any-order context model of an any-order codec file ``open_codec`` read."""
    if not any_order:
        raise OrdersearchError(f"{path}: a codec of one schedule, not an any-order codec (`codec train --any-order N`)")
    try:
        base, state = _parts(blob)
        context = context_model(ANY_ORDER, base.config, int(blob["kernel"]), any_order)
        context.load_state_dict(state)
    except _DAMAGED as e:
        raise OrdersearchError(f"{path}: a damaged codec file ({' '.join(str(e).split())[:200]})") from None
    return base, context.eval()


#: what reading a forged or damaged codec file raises
_DAMAGED = (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OrdersearchError)


def _parts(blob: dict) -> tuple[BaseCodec, dict[str, torch.Tensor]]:
    """The file's base codec, ready, and its context model's state (float32), each checked."""
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
    return base, state
