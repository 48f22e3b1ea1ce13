"""Size of the report's index.html and the time to build it, on made-up data, at a baseline and a large size.

Each size gets a FeatureMatrix of random concept scores (every label a random signature over the template tree's
concepts, plus noise), one tiny PNG per image (the thumbnails' sources), a trained forest and the report with the
template tree, so that every per-label tree picture is drawn. Only the forest is compared (the methods are not what
is measured); ``build_s`` times ``explain_model`` alone. Prints JSON.

    python benchmarks/report_size.py                      # 100 labels x 10,000 images, baseline 10 x 1,000
    python benchmarks/report_size.py --labels 5 --images 200 --baseline-labels 3 --baseline-images 90
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from conceptforest.concepts.render import dot_available
from conceptforest.concepts.template import template_tree
from conceptforest.concepts.tree import ConceptTree
from conceptforest.explain import explain_model
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.meta import FeatureMeta
from conceptforest.models import load_bundle, train_model
from conceptforest.models.methods import run_methods
from conceptforest.models.methods.context import method_inputs

LIMIT_BYTES = 5_000_000
TEST_EVERY = 4  # a quarter of each label's images are test images
IMAGE_SIDE = 16


def made_up_run(folder: Path, n_labels: int, n_images: int, seed: int = 0) -> tuple[FeatureMatrix, ConceptTree]:
    """A matrix of ``n_images`` rows over ``n_labels`` labels and the template tree's concepts, with a tiny PNG
    per row under ``folder/images/<label>/``."""
    rng = np.random.default_rng(seed)
    labels = [f"label {i:03d}" for i in range(n_labels)]
    tree = template_tree("made-up thing", labels)
    concepts = tree.concepts()
    signatures = rng.normal(0.0, 0.03, size=(n_labels, len(concepts)))
    y = np.arange(n_images) % n_labels
    scores = (0.2 + signatures[y] + rng.normal(0.0, 0.02, size=(n_images, len(concepts)))).astype(np.float32)
    paths = []
    for i, label in enumerate(y):
        path = folder / "images" / f"label-{label:03d}" / f"img{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), colour).save(path)
        paths.append(str(path))
    frame = pd.DataFrame(scores, columns=[c.id for c in concepts])
    frame.insert(0, "sha256", [f"{i:064x}" for i in range(n_images)])
    rounds = np.arange(n_images) // n_labels  # every label's rows, a quarter of them test rows
    frame.insert(0, "split", np.where(rounds % TEST_EVERY == 0, "test", "train"))
    frame.insert(0, "label", [labels[i] for i in y])
    frame.insert(0, "path", paths)
    meta = {
        "labels": labels,
        "concepts": [asdict(c) for c in concepts],
        "backbone_id": "made-up",
        "tree_hash": tree.tree_hash(),
        "random_weights": False,
        "split_seed": seed,
        "source": str(folder / "images"),
    }
    return FeatureMatrix(frame=frame, meta=FeatureMeta.model_validate(meta)), tree


def measure(folder: Path, n_labels: int, n_images: int, n_estimators: int) -> dict[str, Any]:
    """Build one report; its index.html size in bytes and the seconds each step took."""
    start = time.perf_counter()
    matrix, tree = made_up_run(folder, n_labels, n_images)
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    train_model(matrix, folder / "model", n_estimators=n_estimators)
    bundle = load_bundle(folder / "model")
    train_s = time.perf_counter() - start
    methods = run_methods(method_inputs(matrix, split="test", seed=0, bundle=bundle, tree=tree), ["forest"])
    start = time.perf_counter()
    explain_model(bundle, matrix, folder / "report", tree=tree, methods=methods)
    build_s = time.perf_counter() - start
    page = folder / "report" / "index.html"
    report_files = [p for p in (folder / "report").rglob("*") if p.is_file()]
    return {
        "labels": n_labels,
        "images": n_images,
        "concepts": len(matrix.concept_ids),
        "index_html_bytes": page.stat().st_size,
        "under_limit": page.stat().st_size < LIMIT_BYTES,
        "report_folder_bytes": sum(p.stat().st_size for p in report_files),
        "report_files": len(report_files),
        "build_s": round(build_s, 2),
        "train_s": round(train_s, 2),
        "data_s": round(data_s, 2),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure the baseline and the large size; print and return the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--baseline-labels", type=int, default=10)
    parser.add_argument("--baseline-images", type=int, default=1_000)
    parser.add_argument("--trees", type=int, default=100, help="forest size (n_estimators)")
    parser.add_argument("--keep", type=Path, default=None, help="copy the reports into this folder")
    args = parser.parse_args(argv)
    results = []
    for n_labels, n_images in ((args.baseline_labels, args.baseline_images), (args.labels, args.images)):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(measure(Path(tmp), n_labels, n_images, args.trees))
            if args.keep is not None:
                shutil.copytree(Path(tmp) / "report", args.keep / f"report-{n_labels}x{n_images}", dirs_exist_ok=True)
    output = {
        "benchmark": "report_size",
        "graphviz": dot_available(),
        "limit_bytes": LIMIT_BYTES,
        "forest_trees": args.trees,
        "baseline": results[0],
        "large": results[1],
        "size_ratio": round(results[1]["index_html_bytes"] / max(results[0]["index_html_bytes"], 1), 2),
        "time_ratio": round(results[1]["build_s"] / max(results[0]["build_s"], 1e-9), 2),
    }
    print(json.dumps(output, indent=2))
    return output


if __name__ == "__main__":
    main()
