"""Devices and precisions: which device a backbone runs on, and which precisions that device can run."""

from __future__ import annotations

import torch

from conceptforest.errors import BadInputError

__all__ = ["MIXED_PRECISION", "check_precision", "select_device"]


def _available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def select_device(device: str | None = None) -> torch.device:
    """The given device (refused by name when this machine has none of it), else cuda, then mps, then cpu."""
    if device:
        available = _available_devices()
        try:
            chosen = torch.device(device)
        except RuntimeError as exc:
            raise BadInputError(
                f"--device {device!r} is not a device name.", hint=f"use one of {', '.join(available)}."
            ) from exc
        if chosen.type in ("cuda", "mps") and chosen.type not in available:
            raise BadInputError(
                f"--device {device!r}: this machine has no {chosen.type.upper()} device that torch can use.",
                hint=f"use --device {' or --device '.join(available)}, or leave --device out (the best available).",
            )
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


MIXED_PRECISION = {"fp16": torch.float16, "bf16": torch.bfloat16}
_PRECISION_DEVICES = {"int8": ("cpu",), "fp16": ("cuda", "mps"), "bf16": ("cuda", "cpu")}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run, naming the ones it can."""
    allowed = _PRECISION_DEVICES.get(precision)
    if allowed is not None and device.type not in allowed:
        usable = [p for p, devices in _PRECISION_DEVICES.items() if device.type in devices]
        raise BadInputError(
            f"{precision} precision runs on {' or '.join(allowed)}, not on {device.type}.",
            hint=f"on {device.type} use --precision fp32{''.join(', ' + p for p in usable)}; or pass another --device.",
        )
