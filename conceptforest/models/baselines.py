"""What is left of the hand-wired baselines: the cached image embeddings of a run, and a legacy wrapper.

The probe and the controls are registered methods now (:mod:`conceptforest.models.methods.controls`);
``random_word_sentences`` and ``shuffled_tree`` are re-exported from there. ``zero_shot`` and
``baseline_predictions`` remain until their callers loop over the method registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from conceptforest.cache import conceptforest_home
from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.features.backbone import Backbone
from conceptforest.features.extract import sentence_embeddings
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.store import EmbeddingStore
from conceptforest.models.methods.controls import random_word_sentences, shuffled_tree

__all__ = ["baseline_predictions", "image_embeddings", "random_word_sentences", "shuffled_tree", "zero_shot"]

PROMPTS = (
    "a photo of a {label}.",
    "a blurry photo of a {label}.",
    "a close-up photo of a {label}.",
    "a photo of the {label}, a type of {domain}.",
    "a good photo of a {label}.",
)


def image_embeddings(matrix: FeatureMatrix, backbone_id: str, cache_dir: str | Path | None = None) -> np.ndarray:
    """The cached image embeddings of the matrix's rows, by the content sha256 each row records.

    Byte-identical images (several rows with one sha256, under one label or several) share one embedding.
    """
    store = EmbeddingStore(cache_dir or conceptforest_home() / "cache", backbone_id, "images")
    keys = matrix.frame["sha256"].tolist()
    found = store.get(keys)
    missing = set(keys) - set(found)
    if missing:
        rows = sum(1 for key in keys if key in missing)
        raise BadInputError(
            f"{len(missing)} image embedding(s) of this run ({rows} row(s)) are not in the cache "
            f"{str(store.folder)!r}.",
            hint="re-run 'features extract' with the same --cache-dir (it only re-encodes what is missing), or "
            "pass the --cache-dir the features were extracted with.",
        )
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32)


def zero_shot(
    embeddings: np.ndarray,
    labels: Sequence[str],
    backbone: Backbone,
    store: EmbeddingStore,
    *,
    domain: str,
    prompts: Sequence[str] = PROMPTS,
) -> dict[str, np.ndarray]:
    """Predicted labels from the first prompt alone and from the prompt ensemble."""
    per_prompt = [
        sentence_embeddings([p.format(label=label, domain=domain) for label in labels], backbone, store)
        for p in prompts
    ]
    ensemble = np.mean(per_prompt, axis=0)
    ensemble /= np.linalg.norm(ensemble, axis=1, keepdims=True)
    names = np.asarray(labels)
    return {
        "vanilla CLIP zero-shot": names[np.argmax(embeddings @ per_prompt[0].T, axis=1)],
        "CLIP zero-shot, prompt ensemble": names[np.argmax(embeddings @ ensemble.T, axis=1)],
    }


def baseline_predictions(
    matrix: FeatureMatrix,
    tree: ConceptTree,
    backbone: Backbone,
    *,
    split: str = "test",
    cache_dir: str | Path | None = None,
    seed: int = 0,
    n_estimators: int = 200,
) -> dict[str, np.ndarray]:
    """Predictions of the zero-shot baselines, the linear probe and both controls on ``split`` rows, by name.

    A thin wrapper over the registered methods (``probe``, ``random-words``, ``shuffled-tree``), kept until its
    callers use :func:`conceptforest.models.methods.run_methods`.
    """
    from conceptforest.models.methods.base import MethodInputs
    from conceptforest.models.methods.controls import LinearProbeMethod, RandomWordsControl, ShuffledTreeControl

    if backbone.backbone_id != matrix.backbone_id:
        raise BadInputError(
            f"Backbone {backbone.backbone_id!r} did not make these features ({matrix.backbone_id!r}).",
            hint="use the backbone the features were extracted with.",
        )
    store = EmbeddingStore(cache_dir or conceptforest_home() / "cache", backbone.backbone_id, "texts")
    inputs = MethodInputs(
        matrix=matrix,
        split=split,
        seed=seed,
        backbone=backbone,
        embeddings=image_embeddings(matrix, backbone.backbone_id, cache_dir),
        text_store=store,
        tree=tree,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
    )
    predictions = zero_shot(inputs.image_embeddings(), matrix.labels, backbone, store, domain=tree.domain)
    for method in (LinearProbeMethod(), RandomWordsControl(n_estimators), ShuffledTreeControl(n_estimators)):
        predictions[method.display] = method.run(inputs).predicted
    return predictions
