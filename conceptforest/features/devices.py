"""Devices and precisions: which device a backbone runs on, and which precisions that device can run."""

from __future__ import annotations

from collections.abc import Callable

import torch

from conceptforest.errors import BadInputError

__all__ = ["MIXED_PRECISION", "batch_size_for_memory", "check_precision", "probe_gpu_batch_size", "select_device"]


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


CPU_BATCH_SIZE = 64
MAX_GPU_BATCH_SIZE = 1024


def batch_size_for_memory(
    bytes_per_image: float, fixed_bytes: float, free_bytes: float, *, share: float = 0.6, cap: int = MAX_GPU_BATCH_SIZE
) -> int:
    """The largest power of two whose forward pass (``fixed + n x per image``) fits in ``share`` of free memory."""
    budget = share * free_bytes - fixed_bytes
    size = 1
    while size * 2 <= cap and (size * 2) * max(bytes_per_image, 1.0) <= budget:
        size *= 2
    return size


def probe_gpu_batch_size(encode: Callable[[int], object], device: torch.device) -> int:
    """Batch size for ``device`` from two probe passes (1 and 16 images) of ``encode(n)``, after a warm-up pass:
    the peak memory per image and the fixed part, against the memory free now. Only CUDA reports memory; other
    devices get 64."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    encode(1)  # one-off allocations (library workspaces) happen here, outside the measured passes
    peaks = []
    for n in (1, 16):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        encode(n)
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
    per_image = max((peaks[1] - peaks[0]) / 15, 1.0)
    free, _ = torch.cuda.mem_get_info(device)
    return batch_size_for_memory(per_image, max(peaks[0] - per_image, 0.0), free)
