"""Honest baselines and controls on the same split and the same cached image embeddings (nothing re-encoded).

- vanilla CLIP zero-shot ("a photo of a {label}.") and a small prompt ensemble (mean of the prompts' embeddings);
- a linear probe on the raw image embeddings: the ceiling a concept table should approach;
- controls: the same forest on random-word concepts (WaffleCLIP-style, as many as the tree has) and on a
  shuffled tree (values permuted across every part, attribute and label, so sentences lose their meaning).
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conceptforest.cache import conceptforest_home
from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.features.backbone import Backbone
from conceptforest.features.extract import sentence_embeddings
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.store import EmbeddingStore
from conceptforest.models.forest import ConceptForestClassifier

PROMPTS = (
    "a photo of a {label}.",
    "a blurry photo of a {label}.",
    "a close-up photo of a {label}.",
    "a photo of the {label}, a type of {domain}.",
    "a good photo of a {label}.",
)
_WORDS = (
    "apple",
    "river",
    "quiet",
    "marble",
    "window",
    "falcon",
    "copper",
    "meadow",
    "lantern",
    "violet",
    "cinder",
    "harbor",
    "pepper",
    "velvet",
    "glacier",
    "thimble",
    "saddle",
    "ember",
    "canyon",
    "walnut",
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


def linear_probe(train: np.ndarray, y_train: Sequence[str], test: np.ndarray, *, seed: int = 0) -> np.ndarray:
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, random_state=seed))
    predicted: np.ndarray = probe.fit(train, np.asarray(y_train)).predict(test)
    return predicted


def random_word_sentences(count: int, *, seed: int = 0) -> list[str]:
    """WaffleCLIP-style control concepts: random words and random characters, no visual meaning."""
    rng = random.Random(seed)
    return [
        f"a photo with {rng.choice(_WORDS)} {rng.choice(_WORDS)} {''.join(rng.choices(string.ascii_lowercase, k=5))}"
        for _ in range(count)
    ]


def shuffled_tree(tree: ConceptTree, *, seed: int = 0) -> ConceptTree:
    """The tree with every value moved to a random (label, part, attribute) slot: same size, meaning broken."""
    slots = [
        (label, part, attribute)
        for label, parts in tree.values.items()
        for part, attrs in parts.items()
        for attribute in attrs
    ]
    values = [list(tree.values[label][part][attribute]) for label, part, attribute in slots]
    random.Random(seed).shuffle(values)
    data = tree.model_dump()
    for (label, part, attribute), moved in zip(slots, values, strict=True):
        data["values"][label][part][attribute] = moved
    data["sentences"] = {}
    return ConceptTree.from_dict(data, source="shuffled control")


def _forest_on(
    embeddings: np.ndarray,
    sentences: Sequence[str],
    matrix: FeatureMatrix,
    split: str,
    backbone: Backbone,
    store: EmbeddingStore,
    seed: int,
    n_estimators: int,
) -> np.ndarray:
    scores = embeddings @ sentence_embeddings(list(sentences), backbone, store).T
    splits = matrix.frame["split"].to_numpy()
    forest = ConceptForestClassifier(n_estimators=n_estimators, random_state=seed)
    forest.fit(scores[splits == "train"], matrix.frame["label"].to_numpy()[splits == "train"])
    predicted: np.ndarray = forest.predict(scores[splits == split])
    return predicted


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
    """Predictions of every baseline and control on ``split`` rows, keyed by method name."""
    if backbone.backbone_id != matrix.backbone_id:
        raise BadInputError(
            f"Backbone {backbone.backbone_id!r} did not make these features ({matrix.backbone_id!r}).",
            hint="use the backbone the features were extracted with.",
        )
    embeddings = image_embeddings(matrix, backbone.backbone_id, cache_dir)
    store = EmbeddingStore(cache_dir or conceptforest_home() / "cache", backbone.backbone_id, "texts")
    splits = matrix.frame["split"].to_numpy()
    evaluated = embeddings[splits == split]
    predictions = zero_shot(evaluated, matrix.labels, backbone, store, domain=tree.domain)
    predictions["linear probe on image embeddings"] = linear_probe(
        embeddings[splits == "train"], matrix.frame["label"].to_numpy()[splits == "train"], evaluated, seed=seed
    )
    count = len(matrix.concept_ids)
    predictions["control: forest on random-word concepts"] = _forest_on(
        embeddings, random_word_sentences(count, seed=seed), matrix, split, backbone, store, seed, n_estimators
    )
    shuffled = [c.sentence for c in shuffled_tree(tree, seed=seed).concepts()]
    predictions["control: forest on a shuffled tree"] = _forest_on(
        embeddings, shuffled, matrix, split, backbone, store, seed, n_estimators
    )
    return predictions
