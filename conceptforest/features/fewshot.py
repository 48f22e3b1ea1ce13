"""The few labelled images an optimisation with visual feedback may look at, as cached CLIP embeddings.

Only training images are chosen, at most ``shots`` per label (a seeded draw from each label's training images in
path order); validation and test images are never opened. Images are embedded through the same cache as feature
extraction, so nothing is encoded twice and a later ``features extract`` reuses them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from conceptforest.cache import embedding_root
from conceptforest.concepts.optimize import FewShotImages
from conceptforest.defaults import DEFAULT_MAX_PIXELS
from conceptforest.errors import BadInputError
from conceptforest.features.backbone import Backbone
from conceptforest.features.dataset import ImageDataset, ImageRecord
from conceptforest.features.extract import ExtractionStats, Extractor, sentence_embeddings
from conceptforest.features.images import SkippedImage
from conceptforest.features.store import EmbeddingStore

__all__ = ["choose_shots", "few_shot_images"]

DEFAULT_LOGIT_SCALE = 100.0  # CLIP's trained value, used when a model has none


def choose_shots(dataset: ImageDataset, shots: int, seed: int) -> list[ImageRecord]:
    """At most ``shots`` training images per label (all of them when ``shots`` < 1), seeded, in label order."""
    rng = np.random.default_rng(seed)
    chosen: list[ImageRecord] = []
    for label in dataset.labels:
        records = sorted(
            (r for r in dataset.records if r.label == label and r.split == "train"), key=lambda r: str(r.path)
        )
        order = rng.permutation(len(records))
        picked = order if shots < 1 else order[:shots]
        chosen.extend(records[i] for i in sorted(picked))
    return chosen


def _logit_scale(backbone: Backbone) -> float:
    scale = getattr(backbone.model, "logit_scale", None)
    try:
        return float(scale.exp().item()) if scale is not None else DEFAULT_LOGIT_SCALE
    except (AttributeError, RuntimeError, TypeError):
        return DEFAULT_LOGIT_SCALE


def few_shot_images(
    dataset: ImageDataset,
    backbone: Backbone,
    *,
    shots: int = 16,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
) -> tuple[FewShotImages, list[SkippedImage]]:
    """The chosen training images' embeddings (cached) with a text encoder bound to ``backbone``'s text cache.

    Returns the images and the files that were skipped (unreadable images are listed, never fatal).
    """
    records = choose_shots(dataset, shots, seed)
    if not records:
        raise BadInputError(
            f"{str(dataset.source)!r} has no training images to optimise on.",
            hint="the optimisation reads only train-split images: check the manifest's split column.",
        )
    root = embedding_root(cache_dir)
    stats = ExtractionStats(images=len(records))
    extractor = Extractor(
        backbone,
        EmbeddingStore(root, backbone.backbone_id, "images"),
        batch_size=batch_size,
        max_pixels=DEFAULT_MAX_PIXELS,
        workers=min(4, os.cpu_count() or 1),
    )
    try:
        kept, vectors = extractor.embed_chunk(records, stats)
    finally:
        extractor.close()
    texts = EmbeddingStore(root, backbone.backbone_id, "texts")

    def encode(sentences: Sequence[str]) -> np.ndarray:
        return sentence_embeddings(list(sentences), backbone, texts)

    index = {label: i for i, label in enumerate(dataset.labels)}
    images = FewShotImages(
        embeddings=vectors,
        truth=np.asarray([index[record.label] for record, _ in kept], dtype=np.int64),
        labels=list(dataset.labels),
        sha256=[key for _, key in kept],
        backbone_id=backbone.backbone_id,
        logit_scale=_logit_scale(backbone),
        encode=encode,
        shots=shots,
        draw_seed=seed,
    )
    return images, list(stats.skipped)
