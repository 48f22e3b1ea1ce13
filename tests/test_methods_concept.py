"""Concept-matrix methods and controls: the sparse head's contract and signal, shapes, the bundle, chance, needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_estimator
from sklearn.utils.validation import check_is_fitted

from conceptforest.errors import EstimatorInputError
from conceptforest.features.backbone import Backbone, load_backbone
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.store import EmbeddingStore
from conceptforest.models.bundle import ModelBundle, build_manifest
from conceptforest.models.forest import ConceptForestClassifier
from conceptforest.models.methods.base import REGISTRY, MethodInputs, Need, NotComputed, run_methods
from conceptforest.models.methods.concept import (
    TOP_CONCEPTS,
    ConceptForestMethod,
    SparseConceptHead,
    SparseHeadMethod,
    class_weights,
)
from conceptforest.models.methods.controls import (
    DEFAULT_TREES,
    ChanceMethod,
    RandomWordsControl,
    ShuffledTreeControl,
    control_forest,
    random_word_sentences,
)
from tests.test_models import LABELS, made_up_matrix, signal_ids
from tests.test_tree import dog_tree

METHODS = ["forest", "logreg", "sparse", "probe", "random-words", "shuffled-tree", "chance"]


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone("conceptforest-tiny-random", device="cpu")


@pytest.fixture(scope="module")
def matrix() -> FeatureMatrix:
    return made_up_matrix(n=240)


def unit_vectors(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def make_inputs(matrix: FeatureMatrix, backbone: Backbone, tmp_path: Path, **overrides: Any) -> MethodInputs:
    options: dict[str, Any] = {
        "matrix": matrix,
        "backbone": backbone,
        "embeddings": unit_vectors(len(matrix.frame), backbone.embed_dim),
        "text_store": EmbeddingStore(tmp_path, backbone.backbone_id, "texts"),
        "tree": dog_tree(),
    }
    options.update(overrides)
    return MethodInputs(**options)


# -- the sparse head ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [5, 1])
def test_the_sparse_head_keeps_the_concepts_that_decide_the_label(target: int) -> None:
    matrix = made_up_matrix()  # three concepts (one per label) decide the label; 21 are noise
    head = SparseConceptHead(target_nec=target).fit(matrix.X("train"), matrix.y("train"))
    kept = {cid for cid, used in zip(matrix.concept_ids, np.any(head.coef_ != 0, axis=0), strict=True) if used}
    assert signal_ids(matrix) <= kept
    assert 0 < head.nec_ <= target and head.nec_ == np.count_nonzero(head.coef_) / len(LABELS)
    assert np.mean(head.predict(matrix.X("test")) == matrix.y("test").to_numpy()) > 0.8  # the signal is learnt


def test_the_sparse_head_picks_the_c_closest_to_the_target_from_below() -> None:
    matrix = made_up_matrix()
    head = SparseConceptHead(target_nec=3).fit(matrix.X("train"), matrix.y("train"))
    cs = [c for c, _ in head.path_]
    assert cs == sorted(cs) and len(cs) >= 2
    within = [(nec, c) for c, nec in head.path_ if 0 < nec <= 3]
    assert within and (head.nec_, head.C_) == max(within)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_the_sparse_head_follows_scikit_learns_contract() -> None:
    matrix = made_up_matrix(n=120)
    X, y = matrix.X("train"), matrix.y("train")
    head = SparseConceptHead(target_nec=4, random_state=3)
    with pytest.raises(NotFittedError):
        head.predict(X)
    assert clone(head).get_params() == head.get_params() and head.fit(X, y) is head
    check_is_fitted(head)
    assert list(head.classes_) == sorted(LABELS) and list(head.feature_names_in_) == matrix.concept_ids
    proba = head.predict_proba(matrix.X("test"))
    assert proba.shape == (len(matrix.X("test")), 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(head.predict(X), head.classes_[np.argmax(head.decision_function(X), axis=1)])
    assert np.array_equal(clone(head).fit(X, y).coef_, head.coef_)  # seeded: refitting repeats itself
    with pytest.raises(EstimatorInputError, match="1 class"):
        clone(head).fit(X, np.full(len(y), "pug"))
    check_estimator(SparseConceptHead())


def test_the_sparse_method_explains_with_weight_times_standardised_score(
    matrix: FeatureMatrix, backbone: Backbone, tmp_path: Path
) -> None:
    inputs = make_inputs(matrix, backbone, tmp_path)
    result = SparseHeadMethod().run(inputs)
    head = SparseConceptHead(random_state=inputs.seed).fit(matrix.X("train").to_numpy(), matrix.y("train").to_numpy())
    X = matrix.X("test").to_numpy(dtype=np.float64)
    z = (X - head.mean_) / head.scale_
    weights = class_weights(head.coef_, len(head.classes_))
    table = result.explanations
    assert table is not None and list(table.columns) == ["row", "label", "item", "score"]
    assert table.groupby("row").size().max() <= TOP_CONCEPTS
    assert set(table["row"]) == set(range(len(X)))
    for record in table.itertuples():
        assert record.label == result.predicted[record.row]
        k, j = list(head.classes_).index(record.label), matrix.concept_ids.index(record.item)
        assert weights[k, j] != 0 and record.score == pytest.approx(weights[k, j] * z[record.row, j])
    assert "NEC=" in result.note and "VLG-CBM" in result.note


# -- every method ---------------------------------------------------------------------------------------------------


def test_the_methods_register_in_the_comparison_order() -> None:
    assert [name for name in REGISTRY if name in METHODS] == METHODS


@pytest.mark.parametrize("name", METHODS)
def test_every_method_scores_each_evaluated_row_for_each_label(
    name: str, matrix: FeatureMatrix, backbone: Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_images(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("an image was re-encoded")

    monkeypatch.setattr(backbone, "encode_images", no_images)
    inputs = make_inputs(matrix, backbone, tmp_path)
    [result] = run_methods(inputs, [name])
    assert not isinstance(result, NotComputed), result.hint
    rows = int((matrix.frame["split"] == "test").sum())
    assert result.name == name and result.labels == tuple(matrix.labels)
    assert result.scores.shape == (rows, len(matrix.labels)) and np.isfinite(result.scores).all()
    assert list(result.predicted) == [matrix.labels[i] for i in np.argmax(result.scores, axis=1)]
    again = REGISTRY[name]().run(inputs)  # seeded: the same inputs give the same answer
    assert np.array_equal(again.scores, result.scores)


def test_the_forest_method_uses_the_bundles_model(matrix: FeatureMatrix, backbone: Backbone, tmp_path: Path) -> None:
    model = ConceptForestClassifier(n_estimators=15, random_state=4).fit(matrix.X("train"), matrix.y("train"))
    bundle = ModelBundle(model=model, manifest=build_manifest(model, matrix))
    result = ConceptForestMethod().run(make_inputs(matrix, backbone, tmp_path, bundle=bundle))
    assert np.array_equal(result.predicted, model.predict(matrix.X("test"))) and result.note == ""
    proba = model.predict_proba(matrix.X("test"))
    for j, label in enumerate(model.classes_):
        assert np.allclose(result.scores[:, matrix.labels.index(label)], proba[:, j])
    fitted_here = ConceptForestMethod(n_estimators=10).run(make_inputs(matrix, backbone, tmp_path))
    assert "no MODEL" in fitted_here.note


def test_a_model_of_other_concepts_is_a_not_computed_row(
    matrix: FeatureMatrix, backbone: Backbone, tmp_path: Path
) -> None:
    X = matrix.X("train").rename(columns=lambda c: f"other:{c}")
    model = ConceptForestClassifier(n_estimators=5).fit(X, matrix.y("train"))
    inputs = make_inputs(
        matrix, backbone, tmp_path, bundle=ModelBundle(model=model, manifest=build_manifest(model, matrix))
    )
    [row] = run_methods(inputs, ["forest"])
    assert isinstance(row, NotComputed) and "other concepts" in row.hint


def test_chance_names_the_most_frequent_train_label(backbone: Backbone, tmp_path: Path) -> None:
    base = made_up_matrix(n=120)
    frame = base.frame
    thinned = (frame["split"] == "train") & (frame["label"] != "beagle") & (np.arange(len(frame)) % 2 == 0)
    matrix = FeatureMatrix(frame=frame[~thinned].reset_index(drop=True), meta=base.meta)
    counts = matrix.y("train").value_counts()
    result = ChanceMethod().run(make_inputs(matrix, backbone, tmp_path))
    assert set(result.predicted) == {counts.idxmax()} and counts.idxmax() == "beagle"
    expected = [counts.get(label, 0) / counts.sum() for label in matrix.labels]
    assert np.allclose(result.scores, expected)


# -- needs and the embedding caches -------------------------------------------------------------------------------


def test_a_missing_tree_or_embeddings_is_a_not_computed_row_naming_the_flag(
    matrix: FeatureMatrix, backbone: Backbone, tmp_path: Path
) -> None:
    [shuffled] = run_methods(make_inputs(matrix, backbone, tmp_path, tree=None), ["shuffled-tree"])
    assert isinstance(shuffled, NotComputed) and shuffled.missing == (Need.TREE,) and "--tree" in shuffled.hint
    outcomes = run_methods(make_inputs(matrix, backbone, tmp_path, embeddings=None), ["probe", "random-words"])
    assert all(isinstance(o, NotComputed) and o.missing == (Need.IMAGE_EMBEDDINGS,) for o in outcomes)
    no_train = FeatureMatrix(frame=matrix.frame.assign(split="test"), meta=matrix.meta)
    missing = run_methods(make_inputs(no_train, backbone, tmp_path), ["logreg", "sparse", "chance"])
    assert all(isinstance(o, NotComputed) and Need.TRAINING_ROWS in o.missing for o in missing)


def test_control_sentences_are_encoded_once_per_backbone(
    matrix: FeatureMatrix, backbone: Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[str] = []
    original = backbone.encode_texts

    def counting(texts: list[str], *args: Any, **kwargs: Any) -> np.ndarray:
        encoded.extend(texts)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(backbone, "encode_texts", counting)
    inputs = make_inputs(matrix, backbone, tmp_path)
    first = RandomWordsControl(n_estimators=5).run(inputs)
    sentences = random_word_sentences(len(matrix.concept_ids), seed=inputs.seed)
    assert sorted(encoded) == sorted(set(sentences)) and f"{len(sentences)} sentences" in first.note
    tree_sentences = ShuffledTreeControl(n_estimators=5).run(inputs)
    count = len(encoded)
    RandomWordsControl(n_estimators=5).run(make_inputs(matrix, backbone, tmp_path))  # a second comparison
    ShuffledTreeControl(n_estimators=5).run(inputs)
    assert len(encoded) == count and tree_sentences.scores.shape[1] == len(matrix.labels)


def test_the_controls_take_the_trained_models_settings(
    matrix: FeatureMatrix, backbone: Backbone, tmp_path: Path
) -> None:
    model = ConceptForestClassifier(n_estimators=7, min_samples_leaf=3).fit(matrix.X("train"), matrix.y("train"))
    inputs = make_inputs(
        matrix, backbone, tmp_path, bundle=ModelBundle(model=model, manifest=build_manifest(model, matrix))
    )
    assert control_forest(inputs).get_params()["min_samples_leaf"] == 3
    result = RandomWordsControl().run(inputs)
    assert "7 trees" in result.note and "MODEL" in result.note
    assert control_forest(make_inputs(matrix, backbone, tmp_path)).n_estimators == DEFAULT_TREES
