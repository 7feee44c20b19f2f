"""Choosing the torch device from a user's ``--device`` flag, once per command."""

from __future__ import annotations

import torch

from .errors import OrdersearchError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    A clear error when CUDA is asked for but absent or the name is unknown.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise OrdersearchError(f"unknown device {name!r} (use auto, cpu or cuda)") from None
    if device.type not in ("cpu", "cuda"):
        raise OrdersearchError(f"unsupported device {name!r} (use auto, cpu or cuda)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OrdersearchError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device
