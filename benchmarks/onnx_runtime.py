"""Images/s of the image tower under eager torch and under ONNX Runtime (``--runtime onnxruntime``), same process.

Model-only: ``Backbone.encode_images`` on one fixed random batch, best of ``--repeats`` timed passes after a
warm-up, the two runtimes taking turns. End-to-end: ``extract_features`` (decode + preprocess + encode + score)
on made-up JPEGs, each runtime with its own empty embedding cache. Also the export and cached-load times and the
minimum cosine between the two runtimes' embeddings (fixed batch and JPEGs). Random weights: only speed and
agreement are measured. The ONNX export goes to a temporary ``$CONCEPTFOREST_HOME``, never to the user's cache.
Prints JSON.

    python benchmarks/onnx_runtime.py --model ViT-B-32 --n 256 --batch-size 64
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit, make_jpegs, random_backbone
from PIL import Image

from conceptforest.concepts.template import template_tree
from conceptforest.features import extract_features, load_dataset
from conceptforest.features.backbone import Backbone


def with_onnx_tower(backbone: Backbone) -> tuple[Backbone, float, float]:
    """A copy of ``backbone`` whose image tower runs in ONNX Runtime; (copy, export s, cached load + check s)."""
    from conceptforest.features.onnx_visual import onnx_image_tower

    model = copy.deepcopy(backbone.model)
    eager_visual = model.visual
    started = time.perf_counter()
    onnx_image_tower(eager_visual, backbone.backbone_id, str(backbone.description["model"]))  # exports
    exported = time.perf_counter()
    model.visual = onnx_image_tower(eager_visual, backbone.backbone_id, str(backbone.description["model"]))
    loaded = time.perf_counter()
    onnx = Backbone(
        model=model,
        preprocess=backbone.preprocess,
        tokenizer=backbone.tokenizer,
        backbone_id=backbone.backbone_id,
        device=backbone.device,
        random_weights=True,
        description={**backbone.description, "runtime": "onnxruntime"},
    )
    return onnx, exported - started, loaded - exported


def model_only(backbones: list[Backbone], batch: torch.Tensor, repeats: int) -> list[float]:
    """Images/s of each backbone's ``encode_images`` on ``batch``: best of ``repeats`` passes after a warm-up,
    the backbones taking turns so that a change in the machine's load falls on all of them alike."""
    best = [float("inf")] * len(backbones)
    for backbone in backbones:
        backbone.encode_images(batch)
    for _ in range(repeats):
        for i, backbone in enumerate(backbones):
            started = time.perf_counter()
            backbone.encode_images(batch)
            best[i] = min(best[i], time.perf_counter() - started)
    return [len(batch) / seconds for seconds in best]


def end_to_end(backbone: Backbone, root: Path, folder: Path, batch_size: int) -> float:
    dataset = load_dataset(root, val_fraction=0.1, test_fraction=0.1)
    tree = template_tree("toy shape", dataset.labels)
    _, stats = extract_features(
        dataset, tree, backbone, folder / "run", cache_dir=folder / "cache", batch_size=batch_size, progress=False
    )
    return stats.images_per_second


def min_cosine(a: Backbone, b: Backbone, batch: torch.Tensor) -> float:
    return float(np.min(np.sum(a.encode_images(batch) * b.encode_images(batch), axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--n", type=int, default=256, help="made-up JPEGs for the end-to-end run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CONCEPTFOREST_HOME"] = str(Path(tmp) / "home")  # the export stays out of the user's cache
        eager = random_backbone(args.model, "cpu")
        onnx, export_s, load_s = with_onnx_tower(eager)
        size = eager.model.visual.image_size
        generator = torch.Generator().manual_seed(0)
        batch = torch.randn(args.batch_size, 3, *size, generator=generator)
        eager_model, onnx_model = model_only([eager, onnx], batch, args.repeats)
        root = make_jpegs(Path(tmp) / "images", args.n)
        eager_e2e = end_to_end(eager, root, Path(tmp) / "torch", args.batch_size)
        onnx_e2e = end_to_end(onnx, root, Path(tmp) / "onnxruntime", args.batch_size)
        paths = sorted(root.glob("*/*.jpg"))[: args.batch_size]
        jpegs = torch.stack([eager.preprocess(Image.open(p).convert("RGB")) for p in paths])
        cosine_batch, cosine_jpegs = min_cosine(eager, onnx, batch), min_cosine(eager, onnx, jpegs)
    import onnxruntime

    emit(
        {
            "benchmark": "onnx_runtime",
            "model": args.model,
            "weights": "random (speed only)",
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "batch_size": args.batch_size,
            "images": args.n,
            "export_s": round(export_s, 2),
            "cached_load_and_check_s": round(load_s, 2),
            "model_only_torch_images_per_s": round(eager_model, 2),
            "model_only_onnxruntime_images_per_s": round(onnx_model, 2),
            "model_only_ratio": round(onnx_model / eager_model, 3),
            "end_to_end_torch_images_per_s": round(eager_e2e, 2),
            "end_to_end_onnxruntime_images_per_s": round(onnx_e2e, 2),
            "end_to_end_ratio": round(onnx_e2e / eager_e2e, 3),
            "min_cosine_random_batch": round(cosine_batch, 7),
            "min_cosine_jpegs": round(cosine_jpegs, 7),
        }
    )


if __name__ == "__main__":
    main()
