"""Shared helpers for the benchmark scripts: made-up images, a random-weight backbone chosen by name, RSS."""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from conceptforest.features.backbone import Backbone, quantize_linear_int8, select_device

LABELS = ["red disc", "blue tile", "green wedge", "yellow star"]
COLOURS = [(220, 30, 30), (30, 30, 220), (30, 170, 30), (230, 200, 20)]


def make_jpegs(root: Path, n: int, size: tuple[int, int] = (500, 375), seed: int = 0) -> Path:
    """``n`` JPEGs of realistic size in ``root/<label>/``, with noise so they do not compress to nothing."""
    rng = random.Random(seed)
    for i in range(n):
        label = i % len(LABELS)
        folder = root / LABELS[label]
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.effect_noise(size, 40).convert("RGB")
        draw = ImageDraw.Draw(image)
        radius = min(size) // 4
        x, y = rng.randint(0, size[0] - 2 * radius), rng.randint(0, size[1] - 2 * radius)
        draw.ellipse([x, y, x + 2 * radius, y + 2 * radius], fill=COLOURS[label])
        image.save(folder / f"{i:06d}.jpg", quality=90)
    return root


def random_backbone(model_name: str, device: str | None = None) -> Backbone:
    """An untrained open_clip model of the given architecture: for speed only, labelled as random."""
    import open_clip

    torch_device = select_device(device)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None, device=torch_device)
    return Backbone(
        model=model.eval(),
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(model_name),
        backbone_id=f"bench-random-{model_name}",
        device=torch_device,
        random_weights=True,
        description={"model": model_name, "weights": "random (benchmark)"},
    )


def as_int8(backbone: Backbone) -> Backbone:
    """A copy of ``backbone`` with dynamic int8 Linear layers (the --precision int8 path)."""
    import copy

    return Backbone(
        model=quantize_linear_int8(copy.deepcopy(backbone.model)),
        preprocess=backbone.preprocess,
        tokenizer=backbone.tokenizer,
        backbone_id=backbone.backbone_id + "__int8",
        device=backbone.device,
        random_weights=True,
        description={**backbone.description, "precision": "int8"},
    )


def matmul_gflops(size: int = 2048, repeats: int = 10, device: torch.device | None = None) -> float:
    """Measured fp32 matmul throughput of this machine or GPU (the FLOP limit's basis)."""
    a, b = torch.rand(size, size, device=device), torch.rand(size, size, device=device)
    a @ b  # warm-up
    sync = torch.cuda.synchronize if a.device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def image_gflop(model: torch.nn.Module, image_size: int = 224) -> float:
    """FLOPs (2 per multiply-add) of one image through ``model.visual``: the linear layers and the patch convolution
    counted by torch's FlopCounterMode, attention's two products (4 x tokens² x width a layer) added by formula.

    The counter sees neither the fused multi-head-attention fast path's projections (so the fast path is off
    while counting; the same projections run either way) nor, on the CPU, scaled-dot-product attention (so its
    counts are left out on every device and the formula stands in). ViT-B-32: 8.82 GFLOP; the often quoted 4.4
    counts multiply-adds.
    """
    from torch.utils.flop_counter import FlopCounterMode

    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model.visual(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)
    counted = sum(
        flops for op, flops in counter.get_flop_counts().get("Global", {}).items() if "attention" not in str(op)
    )
    visual: Any = model.visual
    tokens, width = visual.positional_embedding.shape
    attention = 4 * tokens**2 * width * len(visual.transformer.resblocks)
    return float(counted + attention) / 1e9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict[str, Any]) -> None:
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
