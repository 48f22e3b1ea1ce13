"""Zero-shot and description methods: fidelity to their authors' formulas, on the tiny random backbone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from open_clip import OPENAI_IMAGENET_TEMPLATES, build_zero_shot_classifier

from conceptforest.concepts.descriptors import DescriptorSet, dclip_modifier, waffle_sentence
from conceptforest.errors import BadInputError
from conceptforest.features.backbone import Backbone, load_backbone
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.store import EmbeddingStore
from conceptforest.models.methods.base import MethodInputs, MethodResult, NotComputed, run_methods
from conceptforest.models.methods.descriptions import (
    NO_CONCEPT_SCORE,
    CuPL,
    DescriptorClip,
    TreeDescriptors,
    WaffleClip,
    cupl_weights,
    waffle_descriptors,
)
from conceptforest.models.methods.zeroshot import (
    ClipZeroShot,
    PromptEnsemble,
    ensemble_weights,
    resolve_templates,
    template_sets,
)

LABELS = ["husky", "pug", "golden retriever"]
DCLIP = {
    "husky": ["a thick double coat", "has blue eyes", "pointed ears"],
    "pug": ["a wrinkled face", "curled tail"],
    "golden retriever": ["golden fur", "often friendly", "a feathered tail", "used as a guide dog"],
}


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone("conceptforest-tiny-random", device="cpu")


def made_up_matrix(n: int = 24, seed: int = 0) -> FeatureMatrix:
    """Concepts owned by one or two labels (the last label owns none); every fourth row is a test row."""
    rng = np.random.default_rng(seed)
    concepts = [
        {"id": "ears:shape=pointed", "sentence": "pointed ears", "labels": ["husky"]},
        {"id": "eyes:colour=blue", "sentence": "blue eyes", "labels": ["husky"]},
        {"id": "face:texture=wrinkled", "sentence": "a wrinkled face", "labels": ["pug"]},
        {"id": "tail:shape=curled", "sentence": "a curled tail", "labels": ["pug", "husky"]},
    ]
    frame = pd.DataFrame(rng.uniform(-0.2, 0.4, size=(n, len(concepts))), columns=[c["id"] for c in concepts])
    frame.insert(0, "sha256", [f"{i:064x}" for i in range(n)])
    frame.insert(0, "split", np.where(np.arange(n) % 4 == 0, "test", "train"))
    frame.insert(0, "label", [LABELS[i % 3] for i in range(n)])
    frame.insert(0, "path", [f"img{i}.jpg" for i in range(n)])
    meta = {"labels": LABELS, "concepts": concepts, "backbone_id": "made-up", "tree_hash": "abc"}
    return FeatureMatrix(frame=frame, meta=meta)


def unit_rows(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    normalised: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalised


def inputs_for(backbone: Backbone, tmp_path: Path, **descriptors: DescriptorSet) -> MethodInputs:
    matrix = made_up_matrix()
    return MethodInputs(
        matrix=matrix,
        backbone=backbone,
        embeddings=unit_rows(len(matrix.frame), backbone.embed_dim),
        text_store=EmbeddingStore(tmp_path, backbone.backbone_id, "texts"),
        descriptors=dict(descriptors),
    )


def cosines(backbone: Backbone, images: np.ndarray, sentences: Sequence[str]) -> np.ndarray:
    """Cosine of every image with every sentence, encoded here without the cache."""
    texts = backbone.encode_texts(list(sentences)).astype(np.float64)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    result: np.ndarray = images.astype(np.float64) @ texts.T
    return result


def test_clip_scores_are_cosines_with_the_photo_prompt(backbone: Backbone, tmp_path: Path) -> None:
    inputs = inputs_for(backbone, tmp_path)
    result = ClipZeroShot().run(inputs)
    images = inputs.image_embeddings()
    expected = cosines(backbone, images, [f"a photo of a {label}." for label in LABELS])
    np.testing.assert_allclose(result.scores, expected, atol=1e-5)
    assert result.scores.shape == (int(inputs.split_mask.sum()), len(LABELS))
    assert list(result.predicted) == [LABELS[i] for i in np.argmax(expected, axis=1)]
    assert result.uses_label_names


def test_ensemble_weights_equal_open_clips_zero_shot_classifier(backbone: Backbone, tmp_path: Path) -> None:
    templates = template_sets()["imagenet80"]
    assert len(templates) == 80 and templates == tuple(OPENAI_IMAGENET_TEMPLATES)
    ours = ensemble_weights(LABELS, templates, backbone.encode_texts)
    theirs = build_zero_shot_classifier(backbone.model, backbone.tokenizer, LABELS, templates, num_classes_per_batch=2)
    np.testing.assert_allclose(ours, theirs.numpy().T, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    # the method uses the same weights through the text cache; a string template list works too
    inputs = inputs_for(backbone, tmp_path)
    result = PromptEnsemble().run(inputs)
    np.testing.assert_allclose(result.scores, inputs.image_embeddings() @ ours.T, atol=1e-5)
    strings = ["itap of a {label}.", "art of the {}."]
    theirs = build_zero_shot_classifier(backbone.model, backbone.tokenizer, LABELS, ["itap of a {}.", "art of the {}."])
    mine = PromptEnsemble(templates=strings).run(inputs)
    np.testing.assert_allclose(mine.scores, inputs.image_embeddings() @ theirs.numpy(), atol=1e-5)
    assert "2 templates" in mine.note


def test_bad_templates_are_refused_with_the_fix() -> None:
    with pytest.raises(BadInputError, match="imagenet80"):
        resolve_templates("imagenet-81")
    with pytest.raises(BadInputError, match="at least one"):
        resolve_templates([])
    with pytest.raises(BadInputError, match="domain"):
        ensemble_weights(["pug"], ["a {label}, a type of {domain}."], lambda texts: np.ones((len(texts), 4)))


def test_dclip_score_is_the_mean_of_its_descriptor_cosines(backbone: Backbone, tmp_path: Path) -> None:
    described = DescriptorSet(style="dclip", labels=LABELS, descriptors=DCLIP)
    inputs = inputs_for(backbone, tmp_path, dclip=described)
    result = DescriptorClip().run(inputs)
    images = inputs.image_embeddings()
    for index, label in enumerate(LABELS):
        sentences = [f"{label}, {dclip_modifier(d)}" for d in DCLIP[label]]
        direct = cosines(backbone, images, sentences)
        np.testing.assert_allclose(result.scores[:, index], direct.mean(axis=1), atol=1e-5)
    assert result.uses_label_names
    # explanation: every descriptor of each image's two top labels, with its own cosine
    evidence = result.explanations
    assert evidence is not None and list(evidence.columns) == ["row", "label", "item", "score"]
    for row in range(len(images)):
        top2 = [LABELS[i] for i in np.argsort(-result.scores[row])[:2]]
        mine = evidence[evidence["row"] == row]
        assert list(dict.fromkeys(mine["label"])) == top2
        for label in top2:
            own = mine[mine["label"] == label]
            assert list(own["item"]) == DCLIP[label]
            direct = cosines(backbone, images[row : row + 1], [f"{label}, {dclip_modifier(d)}" for d in DCLIP[label]])
            np.testing.assert_allclose(own["score"], direct[0], atol=1e-5)


def test_dclip_modifier_on_dclips_own_examples() -> None:
    assert dclip_modifier("a small, stocky body") == "which is a small, stocky body"
    assert dclip_modifier("an orange beak") == "which is an orange beak"
    assert dclip_modifier("antennae on the head") == "which is antennae on the head"  # DCLIP's quirk, kept
    assert dclip_modifier("has a long neck") == "which has a long neck"
    assert dclip_modifier("often found near water") == "which often found near water"
    assert dclip_modifier("typically brown") == "which typically brown"
    assert dclip_modifier("may have spots") == "which may have spots"
    assert dclip_modifier("can be seen in trees") == "which can be seen in trees"
    assert dclip_modifier("used for hunting") == "which is used for hunting"
    assert dclip_modifier("black and white feathers") == "which has black and white feathers"
    described = DescriptorSet(style="dclip", labels=["tench"], descriptors={"tench": ["olive-green body"]})
    assert described.sentences("tench") == ["tench, which has olive-green body"]


def test_cupl_weights_are_the_normalised_mean_of_normalised_sentences(backbone: Backbone, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = {s: rng.normal(size=6) * rng.uniform(0.5, 4) for s in ("a", "b", "c", "d", "e")}
    groups = [["a", "b", "c"], ["d", "e"]]
    weights = cupl_weights(groups, lambda texts: np.stack([vectors[t] for t in texts]))
    for row, group in zip(weights, groups, strict=True):
        mean = np.mean([vectors[s] / np.linalg.norm(vectors[s]) for s in group], axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-6)
    sentences = {label: [f"A {label} looks like {d}." for d in DCLIP[label]] for label in LABELS}
    inputs = inputs_for(backbone, tmp_path, cupl=DescriptorSet(style="cupl", labels=LABELS, descriptors=sentences))
    result = CuPL().run(inputs)
    expected = cupl_weights([sentences[label] for label in LABELS], backbone.encode_texts)
    np.testing.assert_allclose(result.scores, inputs.image_embeddings() @ expected.T, atol=1e-5)


def test_waffle_descriptors_counts_and_determinism() -> None:
    items = waffle_descriptors(seed=4)
    assert len(items) == 30 and len(set(items)) == 30
    words, chars = items[0::2], items[1::2]  # pairs, as WaffleCLIP appends them
    assert all(w.isalpha() for w in words)
    assert all(c.replace(", ", "").isalnum() for c in chars)
    assert items == waffle_descriptors(seed=4)
    assert items != waffle_descriptors(seed=5)
    assert len(waffle_descriptors(3, 0)) == 3 and len(waffle_descriptors(0, 2)) == 2
    # WaffleCLIP sizes the descriptors from the labels: two-word labels give two words and two character groups
    two = waffle_descriptors(2, 2, seed=0, labels=["golden retriever", "border collie"])
    assert len(two[0].split()) == 2 and two[1].count(", ") == 1
    with pytest.raises(BadInputError, match="WaffleCLIP uses 15 and 15"):
        waffle_descriptors(0, 0)


def test_waffle_uses_one_descriptor_set_for_every_label_over_seeds(backbone: Backbone, tmp_path: Path) -> None:
    inputs = inputs_for(backbone, tmp_path)
    encoded: list[str] = []
    real = inputs.text_embeddings

    def recording(sentences: Sequence[str]) -> np.ndarray:
        encoded.extend(sentences)
        return real(sentences)

    inputs.text_embeddings = recording  # type: ignore[method-assign]
    result = WaffleClip().run(inputs)
    per_seed = 30 * len(LABELS)
    assert len(encoded) == WaffleClip.seeds * per_seed
    first = encoded[:per_seed]
    per_label = {
        label: [s.split(", ", 1)[1] for s in first if s.startswith(f"A photo of a {label}, ")] for label in LABELS
    }
    assert all(len(items) == 30 for items in per_label.values())
    assert per_label["husky"] == per_label["pug"] == per_label["golden retriever"]
    # scores: seed 0's DCLIP-style mean; accuracy_std: the spread of per-seed accuracies
    images, truth = inputs.image_embeddings(), inputs.matrix.y("test").to_numpy()
    accuracies = []
    for seed in range(WaffleClip.seeds):
        items = waffle_descriptors(seed=seed, labels=LABELS)
        scores = np.column_stack(
            [cosines(backbone, images, [waffle_sentence(label, d) for d in items]).mean(axis=1) for label in LABELS]
        )
        if seed == 0:
            np.testing.assert_allclose(result.scores, scores, atol=1e-5)
        accuracies.append(np.mean(np.asarray(LABELS)[np.argmax(scores, axis=1)] == truth))
    assert result.accuracy_std == pytest.approx(np.std(accuracies), abs=1e-9)
    assert "7 seeds" in result.note


def test_tree_descriptors_average_each_labels_own_columns() -> None:
    matrix = made_up_matrix()
    result = TreeDescriptors().run(MethodInputs(matrix=matrix))
    X = matrix.X("test").to_numpy()
    np.testing.assert_allclose(result.scores[:, 0], X[:, [0, 1, 3]].mean(axis=1))
    np.testing.assert_allclose(result.scores[:, 1], X[:, [2, 3]].mean(axis=1))
    assert (result.scores[:, 2] == NO_CONCEPT_SCORE).all() and "golden retriever" not in set(result.predicted)
    assert "golden retriever" in result.note and not result.uses_label_names
    assert result.explanations is not None and set(result.explanations["item"]) <= {
        "pointed ears",
        "blue eyes",
        "a wrinkled face",
        "a curled tail",
    }


def test_missing_descriptors_become_not_computed_rows_naming_the_flag(backbone: Backbone, tmp_path: Path) -> None:
    outcomes = run_methods(inputs_for(backbone, tmp_path), ["clip", "dclip", "cupl", "tree-descriptors"])
    by_name = {outcome.name: outcome for outcome in outcomes}
    assert isinstance(by_name["clip"], MethodResult) and isinstance(by_name["tree-descriptors"], MethodResult)
    for name in ("dclip", "cupl"):
        missing = by_name[name]
        assert isinstance(missing, NotComputed) and "--descriptors" in missing.hint
    # only a CuPL set given: DCLIP says which style it lacks; CuPL runs
    cupl = DescriptorSet(style="cupl", labels=LABELS, descriptors={label: [f"a {label}."] for label in LABELS})
    outcomes = run_methods(inputs_for(backbone, tmp_path, cupl=cupl), ["dclip", "cupl"])
    dclip, computed = outcomes
    assert isinstance(dclip, NotComputed) and "'dclip'" in dclip.hint and "--descriptors" in dclip.hint
    assert "cupl" in dclip.hint and isinstance(computed, MethodResult)
    # a set that lacks a label of the run names it
    partial = DescriptorSet(style="dclip", labels=["husky", "pug"], descriptors={k: DCLIP[k] for k in ("husky", "pug")})
    (refused,) = run_methods(inputs_for(backbone, tmp_path, dclip=partial), ["dclip"])
    assert isinstance(refused, NotComputed) and "'golden retriever'" in refused.hint
