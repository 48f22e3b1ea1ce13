"""Images/s of feature extraction (decode + preprocess + encode + score) against plain eager open_clip.

All paths run in this process on the same JPEGs with the same random-weight model, so the ratios are fair; the
weights are random because only speed is measured. Also reports the FLOP limit from a matmul measured in the
same run, the opt-in int8 path and (--precision) an autocast path with their cosine similarity to the fp32
embeddings (their fraction is of the fp32 matmul limit), and the time to the first
encoded image in a fresh interpreter (imports, model built, one JPEG decoded and encoded). Prints JSON.

    python benchmarks/encode_images.py --n 256 --model ViT-B-32
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import VIT_B_32_GFLOP_PER_IMAGE, as_int8, emit, make_jpegs, matmul_gflops, peak_rss_mb, random_backbone
from PIL import Image

from conceptforest.concepts.template import template_tree
from conceptforest.features import extract_features, load_dataset

FIRST_IMAGE = """
import sys
sys.path.insert(0, {bench!r})
import conceptforest.features
from _common import random_backbone
from PIL import Image
backbone = random_backbone({model!r}, {device!r})
backbone.encode_images(backbone.preprocess(Image.open({path!r}).convert("RGB")).unsqueeze(0))
"""


def time_to_first_image(path: Path, model: str, device: str | None) -> float:
    """Seconds from starting a fresh interpreter to its first encoded image (random weights: none to load)."""
    script = FIRST_IMAGE.format(bench=str(Path(__file__).parent), model=model, device=device, path=str(path))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    return time.perf_counter() - started


def eager_baseline(paths: list[Path], backbone, batch_size: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = [backbone.preprocess(Image.open(p).convert("RGB")) for p in paths[start : start + batch_size]]
            backbone.model.encode_image(torch.stack(batch).to(backbone.device))
    return len(paths) / (time.perf_counter() - started)


def variant_run(  # type: ignore[no-untyped-def]
    dataset, tree, backbone, folder: Path, batch_size: int, sample: torch.Tensor, reference: np.ndarray
) -> dict[str, float]:
    """A variant backbone (autocast) through the real extraction, with its cosine to eager fp32."""
    _, stats = extract_features(
        dataset, tree, backbone, folder / "run", cache_dir=folder / "cache", batch_size=batch_size, progress=False
    )
    cosine = np.sum(reference * backbone.encode_images(sample), axis=1)
    return {
        "images_per_s": round(stats.images_per_second, 2),
        "cosine_to_eager_fp32_min": round(float(cosine.min()), 7),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", choices=["fp16", "bf16"], default=None, help="also run this autocast path")
    parser.add_argument("--gpu-peak-tflops", type=float, default=None, help="dense fp16 peak, for the GPU fraction")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_jpegs(Path(tmp) / "images", args.n)
        backbone = random_backbone(args.model, args.device)
        dataset = load_dataset(root, val_fraction=0.1, test_fraction=0.1)
        tree = template_tree("toy shape", dataset.labels)
        paths = [r.path for r in dataset.records]
        eager_baseline(paths[: args.batch_size], backbone, args.batch_size)  # warm-up
        baseline = eager_baseline(paths, backbone, args.batch_size)
        _, stats = extract_features(
            dataset,
            tree,
            backbone,
            Path(tmp) / "run",
            cache_dir=Path(tmp) / "cache",
            batch_size=args.batch_size,
            progress=False,
        )
        _, cached = extract_features(
            dataset,
            tree,
            backbone,
            Path(tmp) / "run2",
            cache_dir=Path(tmp) / "cache",
            batch_size=args.batch_size,
            progress=False,
        )
        int8 = as_int8(backbone)
        _, int8_stats = extract_features(
            dataset,
            tree,
            int8,
            Path(tmp) / "run3",
            cache_dir=Path(tmp) / "cache8",
            batch_size=args.batch_size,
            progress=False,
        )
        sample = torch.stack([backbone.preprocess(Image.open(p).convert("RGB")) for p in paths[:64]])
        cosine = np.sum(backbone.encode_images(sample) * int8.encode_images(sample), axis=1)
        reference = backbone.encode_images(sample)
        variants: dict[str, dict[str, float]] = {}
        if args.precision:
            import copy

            from conceptforest.features.backbone import MIXED_PRECISION

            mixed = copy.deepcopy(backbone)
            mixed.autocast = MIXED_PRECISION[args.precision]
            variants[args.precision] = variant_run(
                dataset, tree, mixed, Path(tmp) / args.precision, args.batch_size, sample, reference
            )
        gflops = matmul_gflops()
        first_image_s = time_to_first_image(paths[0], args.model, args.device)
    emit(
        {
            "benchmark": "encode_images",
            "model": args.model,
            "weights": "random (speed only)",
            "device": str(backbone.device),
            "threads": torch.get_num_threads(),
            "images": args.n,
            "image_size": [500, 375],
            "batch_size": args.batch_size,
            "eager_baseline_images_per_s": round(baseline, 2),
            "conceptforest_images_per_s": round(stats.images_per_second, 2),
            "ratio_vs_baseline": round(stats.images_per_second / baseline, 3),
            "matmul_gflops": round(gflops, 1),
            "flop_limit_images_per_s": round(gflops / VIT_B_32_GFLOP_PER_IMAGE, 1),
            "fraction_of_flop_limit": round(stats.images_per_second / (gflops / VIT_B_32_GFLOP_PER_IMAGE), 3),
            "int8_images_per_s": round(int8_stats.images_per_second, 2),
            "int8_ratio_vs_baseline": round(int8_stats.images_per_second / baseline, 3),
            "int8_fraction_of_flop_limit": round(int8_stats.images_per_second / (gflops / VIT_B_32_GFLOP_PER_IMAGE), 3),
            "int8_cosine_to_fp32_min": round(float(cosine.min()), 5),
            "int8_cosine_to_fp32_mean": round(float(cosine.mean()), 5),
            "cached_rerun_images_per_s": round(cached.images_per_second, 1),
            **{
                f"{name}_{key}": value
                for name, found in variants.items()
                for key, value in {
                    **found,
                    "fraction_of_flop_limit": round(found["images_per_s"] / (gflops / VIT_B_32_GFLOP_PER_IMAGE), 3),
                }.items()
            },
            **(
                {
                    "fraction_of_gpu_fp16_peak": round(
                        variants.get(args.precision or "", {}).get("images_per_s", stats.images_per_second)
                        * VIT_B_32_GFLOP_PER_IMAGE
                        / (args.gpu_peak_tflops * 1000),
                        4,
                    )
                }
                if args.gpu_peak_tflops
                else {}
            ),
            "time_to_first_image_s": round(first_image_s, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    )


if __name__ == "__main__":
    main()
