"""Choosing the torch device from a user's ``--device`` flag."""

from __future__ import annotations

import torch

from .errors import OrdersearchError


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a clear error when CUDA is asked for but absent."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise OrdersearchError(f"unknown device {name!r} (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OrdersearchError(f"device {name!r} asked for, but CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise OrdersearchError(f"unsupported device {name!r} (use cpu or cuda)")
    return device
