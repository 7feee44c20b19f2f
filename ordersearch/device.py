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


def describe_machine(device: torch.device | None = None) -> str:
    """What a measurement ran on, for reports: processor model, CPU count and, on CUDA, the GPU's name.

    Machines of one kind differ (an AMD EPYC here, an Intel Xeon with AMX there), and speeds with them.
    """
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    out = f"{cpu}, {os.cpu_count()} CPUs"
    if device is not None and device.type == "cuda":
        out += f", {torch.cuda.get_device_name(device)}"
    return out
