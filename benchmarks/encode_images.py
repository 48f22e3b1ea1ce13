"""Images/s of feature extraction (decode + preprocess + encode + score) against plain eager open_clip.

All paths run in this process on the same JPEGs with the same random-weight model, so the ratios are fair; the
weights are random because only speed is measured. The FLOP limit is the matmul throughput measured in the same
run divided by the image tower's FLOPs, counted by torch (2 per multiply-add). Also reports the image tower alone
on a ready batch (no decoding), the two decoders (tensor path, the default, against open_clip's Pillow path) with
their embeddings' cosine, the opt-in int8 path and (--precision) an autocast path with their cosine to the fp32
embeddings (their fraction is of the fp32 matmul limit), and the time to the first encoded image in a fresh
interpreter (imports, model built, one JPEG decoded and encoded). On CUDA the batches are sized to the GPU
(--batch-size 0) and --gpu-peak-tflops gives the fraction of the GPU's dense fp16 peak. Prints JSON.

    python benchmarks/encode_images.py --n 256 --model ViT-B-32
    python benchmarks/encode_images.py --device cuda --n 4096 --precision fp16 --gpu-peak-tflops 989
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
from _common import as_int8, emit, image_gflop, make_jpegs, matmul_gflops, peak_rss_mb, random_backbone
from PIL import Image

from conceptforest.concepts.template import template_tree
from conceptforest.features import extract_features, load_dataset
from conceptforest.features.extract import default_batch_size

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


def extraction(dataset, tree, backbone, folder: Path, batch_size: int, decode: str = "auto"):  # type: ignore[no-untyped-def]
    """One extraction into its own run folder and cache: (matrix, stats)."""
    return extract_features(
        dataset,
        tree,
        backbone,
        folder / "run",
        cache_dir=folder / "cache",
        batch_size=batch_size,
        decode=decode,
        progress=False,
    )


def variant_run(  # type: ignore[no-untyped-def]
    dataset, tree, backbone, folder: Path, batch_size: int, sample: torch.Tensor, reference: np.ndarray
) -> dict[str, float]:
    """A variant backbone (autocast) through the real extraction, with its cosine to eager fp32."""
    _, stats = extraction(dataset, tree, backbone, folder, batch_size)
    cosine = np.sum(reference * backbone.encode_images(sample), axis=1)
    return {
        "images_per_s": round(stats.images_per_second, 2),
        "cosine_to_eager_fp32_min": round(float(cosine.min()), 7),
    }


def model_only(backbone, batch_size: int, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Images/s of the image tower on a ready batch (no decoding, no copy from the host), best of ``repeats``."""
    size = backbone.model.visual.image_size
    batch = torch.randn(batch_size, 3, *((size, size) if isinstance(size, int) else size), device=backbone.device)
    backbone.encode_images(batch)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        backbone.encode_images(batch)
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return batch_size / best


def rounded(stats_or_rate) -> float:  # type: ignore[no-untyped-def]
    rate = getattr(stats_or_rate, "images_per_second", stats_or_rate)
    return round(float(rate), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=64, help="0: sized to the device (the GPU's free memory)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", choices=["fp16", "bf16"], default=None, help="also run this autocast path")
    parser.add_argument("--gpu-peak-tflops", type=float, default=None, help="dense fp16 peak, for the GPU fraction")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        root = make_jpegs(folder / "images", args.n)
        backbone = random_backbone(args.model, args.device)
        batch_size = args.batch_size or default_batch_size(backbone)
        dataset = load_dataset(root, val_fraction=0.1, test_fraction=0.1)
        tree = template_tree("toy shape", dataset.labels)
        paths = [r.path for r in dataset.records]
        eager_baseline(paths[:batch_size], backbone, batch_size)  # warm-up
        baseline = eager_baseline(paths, backbone, batch_size)
        auto, stats = extraction(dataset, tree, backbone, folder / "auto", batch_size)
        _, cached = extract_features(
            dataset,
            tree,
            backbone,
            folder / "again",
            cache_dir=folder / "auto" / "cache",
            batch_size=batch_size,
            progress=False,
        )
        _, pillow_stats = extraction(dataset, tree, backbone, folder / "pillow", batch_size, decode="pillow")
        decoders = embeddings_cosine(folder, backbone.backbone_id, auto.frame["sha256"].tolist())
        tower = model_only(backbone, batch_size)
        gflop = image_gflop(backbone.model, backbone.model.visual.image_size[0])
        sample = torch.stack([backbone.preprocess(Image.open(p).convert("RGB")) for p in paths[:64]])
        reference = backbone.encode_images(sample)
        variants: dict[str, dict[str, float]] = {}
        if backbone.device.type == "cpu":
            int8 = as_int8(backbone)
            _, int8_stats = extraction(dataset, tree, int8, folder / "int8", batch_size)
            cosine = np.sum(reference * int8.encode_images(sample), axis=1)
            variants["int8"] = {
                "images_per_s": rounded(int8_stats),
                "cosine_to_eager_fp32_min": round(float(cosine.min()), 5),
            }
        if args.precision:
            import copy

            from conceptforest.features.backbone import MIXED_PRECISION

            mixed = copy.deepcopy(backbone)
            mixed.autocast = MIXED_PRECISION[args.precision]
            variants[args.precision] = variant_run(
                dataset, tree, mixed, folder / args.precision, batch_size, sample, reference
            )
        gflops = matmul_gflops(device=backbone.device)
        first_image_s = time_to_first_image(paths[0], args.model, args.device)
    limit = gflops / gflop
    best = variants.get(args.precision or "", {}).get("images_per_s", stats.images_per_second)
    emit(
        {
            "benchmark": "encode_images",
            "model": args.model,
            "weights": "random (speed only)",
            "device": str(backbone.device),
            "threads": torch.get_num_threads(),
            "images": args.n,
            "image_size": [500, 375],
            "batch_size": batch_size,
            "gflop_per_image": round(gflop, 3),
            "matmul_gflops": round(gflops, 1),
            "flop_limit_images_per_s": round(limit, 1),
            "eager_baseline_images_per_s": round(baseline, 2),
            "conceptforest_images_per_s": rounded(stats),
            "decoder": stats.decoder,
            "ratio_vs_baseline": round(stats.images_per_second / baseline, 3),
            "fraction_of_flop_limit": round(stats.images_per_second / limit, 3),
            "pillow_decoder_images_per_s": rounded(pillow_stats),
            "decoders_cosine_min": round(decoders, 7),
            "model_only_images_per_s": round(tower, 2),
            "model_only_fraction_of_flop_limit": round(tower / limit, 3),
            "cached_rerun_images_per_s": round(cached.images_per_second, 1),
            **{
                f"{name}_{key}": value
                for name, found in variants.items()
                for key, value in {**found, "fraction_of_flop_limit": round(found["images_per_s"] / limit, 3)}.items()
            },
            **(
                {"fraction_of_gpu_fp16_peak": round(best * gflop / (args.gpu_peak_tflops * 1000), 4)}
                if args.gpu_peak_tflops
                else {}
            ),
            "time_to_first_image_s": round(first_image_s, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    )


def embeddings_cosine(folder: Path, backbone_id: str, keys: list[str]) -> float:
    """Smallest cosine between the tensor decoder's and Pillow's cached embedding of each image."""
    from conceptforest.features.store import EmbeddingStore

    auto = EmbeddingStore(folder / "auto" / "cache", backbone_id, "images").get(keys)
    pillow = EmbeddingStore(folder / "pillow" / "cache", backbone_id, "images").get(keys)
    return float(min(np.dot(auto[k], pillow[k]) for k in auto))


if __name__ == "__main__":
    main()
