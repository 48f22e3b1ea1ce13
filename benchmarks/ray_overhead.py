"""The overhead of the Ray backend on one machine: ``features extract`` locally and through a local Ray instance.

Both runs start from an empty cache on the same made-up JPEGs, with the same random-weight backbone (chosen by
name, labelled as random) and the template tree; the local run is the baseline. Reported: wall seconds of each,
images per second, the Ray start-up seconds (measured alone), and whether the two feature tables are equal. Needs
the ray extra. Prints JSON.

    python benchmarks/ray_overhead.py --images 400 --actors 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import LABELS, emit, make_jpegs

from conceptforest.concepts.template import template_tree
from conceptforest.features.backbone import load_backbone
from conceptforest.features.dataset import load_dataset
from conceptforest.features.extract import extract_features
from conceptforest.features.ray_backend import RaySettings, extract_features_ray


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="conceptforest-tiny-random")
    args = parser.parse_args(argv)

    import ray

    with tempfile.TemporaryDirectory() as folder:
        root = make_jpegs(Path(folder) / "images", args.images, size=(320, 240))
        tree = template_tree("shape", LABELS)
        backbone = load_backbone(args.model, device="cpu")
        dataset = load_dataset(root, labels=tree.labels)
        started = time.perf_counter()
        local, _ = extract_features(
            dataset, tree, backbone, Path(folder) / "local", cache_dir=Path(folder) / "c1", progress=False
        )
        local_seconds = time.perf_counter() - started
        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - started
        settings = RaySettings(actors=args.actors, batch_size=args.batch_size)
        started = time.perf_counter()
        remote, stats = extract_features_ray(
            dataset,
            tree,
            backbone,
            Path(folder) / "ray",
            settings=settings,
            cache_dir=Path(folder) / "c2",
            progress=False,
        )
        ray_seconds = time.perf_counter() - started
        ray.shutdown()
        concepts = [c for c in local.frame.columns if c not in ("path", "label", "split", "sha256")]
        equal = bool(
            np.allclose(local.frame[concepts].to_numpy(), remote.frame[concepts].to_numpy(), rtol=1e-5, atol=1e-6)
        )
    emit(
        {
            "images": args.images,
            "model": args.model,
            "actors": args.actors,
            "cpus": os.cpu_count(),
            "baseline_local_seconds": round(local_seconds, 2),
            "baseline_local_images_per_second": round(args.images / local_seconds, 1),
            "ray_startup_seconds": round(startup, 2),
            "ray_seconds_after_startup": round(ray_seconds, 2),
            "ray_images_per_second": round(args.images / ray_seconds, 1),
            "ray_encoded": stats.encoded,
            "overhead_factor": round(ray_seconds / local_seconds, 2),
            "tables_equal": equal,
            "load_average": os.getloadavg()[0],
        }
    )


if __name__ == "__main__":
    main()
