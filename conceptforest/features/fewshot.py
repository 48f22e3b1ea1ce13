"""The few labelled images an optimisation with visual feedback may look at, as cached CLIP embeddings.

Only training images are chosen, at most ``shots`` per label (a seeded draw from each label's training images in
path order); validation and test images are never opened. Images are embedded through the same cache as feature
extraction, so nothing is encoded twice and a later ``features extract`` reuses them.

The logit scale that multiplies the cosines in the confusions is, by default, the model's raw ``logit_scale``
parameter (ln 100 = 4.605 for released CLIP weights), as the authors' ``utils.py`` multiplies by
``model.logit_scale``; ``logit_scale="exp"`` takes its exponential (100), CLIP's training scale.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from conceptforest.cache import embedding_root
from conceptforest.concepts.optimize import FewShotImages
from conceptforest.concepts.optimize_record import LogitScaleForm
from conceptforest.defaults import DEFAULT_MAX_PIXELS
from conceptforest.errors import BadInputError
from conceptforest.features.backbone import Backbone
from conceptforest.features.dataset import ImageDataset, ImageRecord
from conceptforest.features.extract import ExtractionStats, Extractor, sentence_embeddings
from conceptforest.features.images import SkippedImage
from conceptforest.features.store import EmbeddingStore

__all__ = ["backbone_logit_scale", "choose_shots", "few_shot_images"]

DEFAULT_LOGIT_SCALE_PARAMETER = math.log(100.0)  # released CLIP's raw parameter, used when a model has none


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


def backbone_logit_scale(backbone: Backbone, form: LogitScaleForm = "raw") -> float:
    """The number the confusions multiply cosines by: the model's raw ``logit_scale`` parameter (the authors'),
    or its exponential with ``form="exp"``; released CLIP's (ln 100) when the model has none."""
    if form not in ("raw", "exp"):
        raise BadInputError(f"Unknown logit-scale form {form!r}.", hint="use 'raw' (the authors') or 'exp'.")
    parameter = getattr(backbone.model, "logit_scale", None)
    try:
        raw = float(parameter.item()) if parameter is not None else DEFAULT_LOGIT_SCALE_PARAMETER
    except (AttributeError, RuntimeError, TypeError, ValueError):
        raw = DEFAULT_LOGIT_SCALE_PARAMETER
    value = raw if form == "raw" else math.exp(raw)
    if not math.isfinite(value) or value <= 0:
        raise BadInputError(
            f"The backbone's logit scale ({form}: {value:g}) is not a positive number: the confusions and the "
            "accuracy would be meaningless.",
            hint="use --logit-scale exp (always positive), or a CLIP model with trained weights.",
        )
    return value


def few_shot_images(
    dataset: ImageDataset,
    backbone: Backbone,
    *,
    shots: int = 16,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    logit_scale: LogitScaleForm = "raw",
) -> tuple[FewShotImages, list[SkippedImage]]:
    """The chosen training images' embeddings (cached) with a text encoder bound to ``backbone``'s text cache.

    ``logit_scale`` says which form of the model's logit scale the confusions use (:func:`backbone_logit_scale`).
    Returns the images and the files that were skipped (unreadable images are listed, never fatal).
    """
    scale = backbone_logit_scale(backbone, logit_scale)
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
        logit_scale=scale,
        logit_scale_form=logit_scale,
        encode=encode,
        shots=shots,
        draw_seed=seed,
    )
    return images, list(stats.skipped)
