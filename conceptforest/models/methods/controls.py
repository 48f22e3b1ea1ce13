"""The ceiling and the floors: a linear probe on image embeddings, two meaningless-concept controls, chance.

- the linear probe on the raw image embeddings is what a concept table should approach;
- the same forest on random-word concepts (WaffleCLIP-style, as many as the matrix has concepts) and on a shuffled
  tree (values permuted across every label, part and attribute, so sentences lose their meaning) tell whether the
  concepts carry meaning beyond "many CLIP directions";
- chance names the most frequent train label for every image.

Every method reads the run's cached image embeddings (``inputs.image_embeddings``) and encodes each sentence once
per backbone (``inputs.text_embeddings``).
"""

from __future__ import annotations

import random
import string
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.models.forest import ConceptForestClassifier
from conceptforest.models.methods.base import Method, MethodInputs, MethodResult, Need, register
from conceptforest.models.methods.concept import scores_in_label_order

__all__ = [
    "ChanceMethod",
    "LinearProbeMethod",
    "RandomWordsControl",
    "ShuffledTreeControl",
    "control_forest",
    "random_word_sentences",
    "shuffled_tree",
]

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
DEFAULT_TREES = 200


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


def _train_labels(inputs: MethodInputs) -> np.ndarray:
    y: np.ndarray = inputs.matrix.y("train").to_numpy()
    if len(np.unique(y)) < 2:
        raise BadInputError(
            f"The train rows hold {len(np.unique(y))} label(s); a trained method needs at least 2.",
            hint="check the split: every label needs training images.",
        )
    return y


def control_forest(inputs: MethodInputs, n_estimators: int | None = None) -> ConceptForestClassifier:
    """An unfitted forest configured like the trained MODEL (its tuned parameters, no grid search), else default.

    ``n_estimators`` overrides the number of trees; without a MODEL it defaults to :data:`DEFAULT_TREES`.
    """
    params: dict[str, Any] = {"n_estimators": DEFAULT_TREES}
    if inputs.bundle is not None:
        model = inputs.bundle.model
        params = {**model.get_params(), **getattr(model, "best_params_", {}), "param_grid": None}
    if n_estimators is not None:
        params["n_estimators"] = n_estimators
    params["random_state"] = inputs.seed
    return ConceptForestClassifier(**params)


class _SentenceForest(Method):
    """The forest on the cosine similarities of the cached image embeddings with other concept sentences."""

    def __init__(self, n_estimators: int | None = None) -> None:
        self.n_estimators = n_estimators

    @abstractmethod
    def sentences(self, inputs: MethodInputs) -> Sequence[str]:
        """The control's concept sentences."""

    def run(self, inputs: MethodInputs) -> MethodResult:
        y = _train_labels(inputs)
        text = inputs.text_embeddings(self.sentences(inputs))
        train = inputs.image_embeddings(inputs.train_mask) @ text.T
        evaluated = inputs.image_embeddings() @ text.T
        forest = control_forest(inputs, self.n_estimators).fit(train, y)
        predicted = forest.predict(evaluated)
        scores = scores_in_label_order(forest.predict_proba(evaluated), forest.classes_, inputs.labels, predicted)
        settings = "the trained MODEL's settings" if inputs.bundle is not None else "default settings"
        return self.result(
            inputs, scores, note=f"{len(text)} sentences; forest of {forest.n_estimators} trees with {settings}."
        )


@register
class LinearProbeMethod(Method):
    """L2 logistic regression (C=1, no C search) on standardised image embeddings."""

    name = "probe"
    display = "linear probe on image embeddings"
    needs = frozenset({Need.IMAGE_EMBEDDINGS, Need.TRAINING_ROWS})

    def run(self, inputs: MethodInputs) -> MethodResult:
        y = _train_labels(inputs)
        probe: Pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, random_state=inputs.seed))
        probe.fit(inputs.image_embeddings(inputs.train_mask), y)
        evaluated = inputs.image_embeddings()
        predicted = probe.predict(evaluated)
        scores = scores_in_label_order(probe.predict_proba(evaluated), probe.classes_, inputs.labels, predicted)
        return self.result(
            inputs, scores, note="standardised embeddings, C=1 (CLIP's linear probes search C on a validation split)."
        )


@register
class RandomWordsControl(_SentenceForest):
    """Control: the forest on WaffleCLIP-style random-word sentences, as many as the matrix has concepts."""

    name = "random-words"
    display = "control: forest on random-word concepts"
    needs = frozenset({Need.IMAGE_EMBEDDINGS, Need.TRAINING_ROWS})

    def sentences(self, inputs: MethodInputs) -> Sequence[str]:
        return random_word_sentences(len(inputs.matrix.concept_ids), seed=inputs.seed)


@register
class ShuffledTreeControl(_SentenceForest):
    """Control: the forest on the sentences of the tree with its values shuffled across labels and attributes."""

    name = "shuffled-tree"
    display = "control: forest on a shuffled tree"
    needs = frozenset({Need.IMAGE_EMBEDDINGS, Need.TREE, Need.TRAINING_ROWS})

    def sentences(self, inputs: MethodInputs) -> Sequence[str]:
        if inputs.tree is None:
            raise BadInputError("The shuffled-tree control needs the concept tree.", hint="pass --tree FILE.")
        return [concept.sentence for concept in shuffled_tree(inputs.tree, seed=inputs.seed).concepts()]


@register
class DescriptorForest(_SentenceForest):
    """The concept forest on a DCLIP descriptor set: each distinct descriptor, without its label, is a concept.

    The issue's "forest on DCLIP descriptors": the features a forest learns from are the cosines of the cached
    image embeddings with the descriptors as class-free sentences (deduplicated across labels), so the row says
    whether the LLM's flat descriptors carry more than the tree's structured concepts.
    """

    name = "forest-descriptors"
    display = "concept forest on DCLIP descriptors (class-free)"
    needs = frozenset({Need.IMAGE_EMBEDDINGS, Need.DESCRIPTORS, Need.TRAINING_ROWS})
    style: ClassVar[str] = "dclip"
    made_by: ClassVar[str] = "'conceptforest concepts describe --style dclip'"

    def sentences(self, inputs: MethodInputs) -> Sequence[str]:
        described = inputs.descriptors.get(self.style)
        if described is None:
            raise BadInputError(
                f"{self.display} needs a {self.style} descriptor set.",
                hint=f"pass --descriptors FILE of style {self.style} (written by {self.made_by}).",
            )
        items = (item for label in described.labels for item in described.descriptors[label])
        return list(dict.fromkeys(item for item in items if item))  # DCLIP's [''] of an empty list is no concept


@register
class OptimizedDescriptorForest(DescriptorForest):
    """The concept forest on descriptors optimised with visual feedback: each distinct optimised descriptor,
    without its label, is a concept (the forest trains on the train rows; the set's images are checked not to be
    among the evaluated ones)."""

    name = "forest-optimized"
    display = "concept forest on optimised descriptors (class-free)"
    style: ClassVar[str] = "optimized"
    made_by: ClassVar[str] = "'conceptforest concepts optimize RUN --llm MODEL -o RUN/descriptors-optimized.json'"

    def sentences(self, inputs: MethodInputs) -> Sequence[str]:
        from conceptforest.models.methods.descriptions import check_unseen

        found = super().sentences(inputs)
        described = inputs.descriptors[self.style]
        check_unseen(inputs, described, self.display)
        return found


@register
class ChanceMethod(Method):
    """The most frequent train label for every image; its scores are the train label frequencies."""

    name = "chance"
    display = "chance (most frequent label)"
    needs = frozenset({Need.TRAINING_ROWS})

    def run(self, inputs: MethodInputs) -> MethodResult:
        counts = inputs.matrix.y("train").value_counts()
        prior = np.array([counts.get(label, 0) for label in inputs.labels], dtype=np.float64) / counts.sum()
        scores = np.tile(prior, (int(inputs.split_mask.sum()), 1))
        return self.result(inputs, scores, note="ties between equally frequent labels go to the first in label order.")
