"""The images of a data set as a feature matrix without concept scores, for a method that needs no CLIP.

Direct classification by a vision LLM reads every image itself: nothing is decoded or encoded, and no backbone is
loaded. The matrix carries the id columns (path, label, split, content sha256) and a sidecar that says so.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from conceptforest.cache import file_sha256
from conceptforest.defaults import SKIPPED_FILE
from conceptforest.features.dataset import ImageDataset
from conceptforest.features.extract import ExtractionStats, write_skipped
from conceptforest.features.images import SkippedImage
from conceptforest.features.matrix import FEATURES_FILE, ID_COLUMNS, SIDECAR_FILE, FeatureMatrix
from conceptforest.features.meta import FeatureMeta

__all__ = ["NO_BACKBONE_ID", "list_images"]

NO_BACKBONE_ID = "none"  # the backbone id of a matrix that no CLIP made


def list_images(dataset: ImageDataset, out: Path) -> tuple[FeatureMatrix, ExtractionStats]:
    """The images as a matrix without concept scores, for a method that needs no CLIP: path, label, split and
    the content sha256 (nothing is decoded; the vision LLM reads each image itself). Files that cannot be read are
    listed in ``skipped.csv`` as extraction lists them."""
    started = time.perf_counter()
    rows: list[tuple[str, str, str, str]] = []
    skipped = list(dataset.skipped)
    for record in dataset.records:
        try:
            rows.append((str(record.path), record.label, record.split, file_sha256(record.path)))
        except OSError as exc:
            skipped.append(SkippedImage(str(record.path), f"cannot read the file: {exc.strerror or exc}"))
    frame = pd.DataFrame(rows, columns=list(ID_COLUMNS))
    meta = FeatureMeta(
        labels=dataset.labels,
        concepts=[],
        backbone_id=NO_BACKBONE_ID,
        tree_generator="none",
        source=str(dataset.source),
        n_images=len(dataset.records) + len(dataset.skipped),
        n_scored=len(frame),
        n_skipped=len(skipped),
    )
    out.mkdir(parents=True, exist_ok=True)
    for earlier in (FEATURES_FILE, SIDECAR_FILE):  # an earlier run's features in this folder describe other work
        (out / earlier).unlink(missing_ok=True)
    write_skipped(out / SKIPPED_FILE, skipped)
    stats = ExtractionStats(
        images=len(dataset.records), scored=len(frame), skipped=skipped, seconds=time.perf_counter() - started
    )
    return FeatureMatrix(frame=frame, meta=meta), stats
