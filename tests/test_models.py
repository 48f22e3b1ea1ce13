"""Stage 3 and the importance part of stage 4 on made-up concept matrices with a known signal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conceptforest.errors import BadInputError
from conceptforest.explain import concept_groups, gini_table, group_permutation_table, permutation_table
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.meta import FeatureMeta
from conceptforest.models import (
    ConceptForestClassifier,
    bootstrap_interval,
    classification_metrics,
    load_bundle,
    per_label_table,
    train_model,
)

LABELS = ["husky", "pug", "beagle"]
PARTS = ["head/ears", "head/eyes", "tail", "body/coat"]
SIGNAL_PART = "head/ears"


def made_up_matrix(n: int = 360, seed: int = 0) -> FeatureMatrix:
    """Three concepts of head/ears decide the label (the largest wins); 21 others are noise."""
    rng = np.random.default_rng(seed)
    concepts = []
    for part in PARTS:
        for attribute in ("shape", "colour"):
            for value in ("v1", "v2", "v3"):
                concepts.append(
                    {
                        "id": f"{part}:{attribute}={value}",
                        "part_path": part,
                        "attribute": attribute,
                        "value": value,
                        "sentence": f"the {attribute} of the {part} is {value}",
                        "labels": LABELS,
                    }
                )
    scores = rng.normal(0.2, 0.02, size=(n, len(concepts))).astype(np.float32)
    signal = [c["id"] for c in concepts if c["part_path"] == SIGNAL_PART and c["attribute"] == "shape"]
    y = rng.integers(0, 3, size=n)
    for i, label in enumerate(y):
        scores[i, [c["id"] for c in concepts].index(signal[label])] += 0.1
    frame = pd.DataFrame(scores, columns=[c["id"] for c in concepts])
    frame.insert(0, "sha256", [f"{i:064x}" for i in range(n)])
    frame.insert(0, "split", np.where(np.arange(n) % 4 == 0, "test", "train"))
    frame.insert(0, "label", [LABELS[i] for i in y])
    frame.insert(0, "path", [f"img{i}.jpg" for i in range(n)])
    meta = {
        "labels": LABELS,
        "concepts": concepts,
        "backbone_id": "made-up",
        "tree_hash": "abc",
        "random_weights": False,
        "split_seed": 0,
    }
    return FeatureMatrix(frame=frame, meta=FeatureMeta.model_validate(meta))


def concept_dicts(matrix: FeatureMatrix) -> list[dict[str, Any]]:
    """The matrix's concepts as the mappings ``concept_groups`` reads."""
    return [dataclasses.asdict(c) for c in matrix.concepts]


def signal_ids(matrix: FeatureMatrix) -> set[str]:
    return {c.id for c in matrix.concepts if c.part_path == SIGNAL_PART and c.attribute == "shape"}


def test_estimator_contract() -> None:
    matrix = made_up_matrix()
    X, y = matrix.X("train"), matrix.y("train")
    clf = ConceptForestClassifier(n_estimators=50, random_state=1)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    assert clone(clf).get_params() == clf.get_params()
    assert clf.fit(X, y) is clf
    assert list(clf.classes_) == sorted(LABELS)
    assert list(clf.feature_names_in_) == matrix.concept_ids and clf.n_features_in_ == len(matrix.concept_ids)
    proba = clf.predict_proba(matrix.X("test"))
    assert proba.shape == (len(matrix.X("test")), 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(matrix.X("test"))) <= set(LABELS)
    pipeline = make_pipeline(StandardScaler(), ConceptForestClassifier(n_estimators=30))
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    assert np.array_equal(clone(clf).fit(X, y).predict(X), clf.predict(X))  # seeded: refitting repeats itself
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(matrix.X("test").iloc[:, ::-1])


def test_grid_search_and_its_limits() -> None:
    matrix = made_up_matrix()
    clf = ConceptForestClassifier(n_estimators=20, param_grid={"max_depth": [2, None]}, cv=3)
    clf.fit(matrix.X("train"), matrix.y("train"))
    assert set(clf.best_params_) == {"max_depth"} and "mean_test_score" in clf.cv_results_
    tiny = matrix.rows("train").groupby("label").head(2)
    with pytest.raises(BadInputError, match="has 2 training row"):
        ConceptForestClassifier(param_grid={"max_depth": [2]}, cv=3).fit(tiny[matrix.concept_ids], tiny["label"])
    with pytest.raises(BadInputError, match="at least 2 labels"):
        ConceptForestClassifier().fit(tiny[matrix.concept_ids][:2], ["husky", "husky"])


def test_a_learnable_signal_is_learnt_and_found() -> None:
    matrix = made_up_matrix()
    trained = train_model(matrix, n_estimators=200)
    model, metrics = trained.model, trained.metrics
    assert metrics["accuracy"] > 0.9 and metrics["n"] == len(matrix.rows("test"))
    low, high = metrics["accuracy_ci95"]
    assert low <= metrics["accuracy"] <= high
    X_test, y_test = matrix.X("test"), matrix.y("test")
    permutation = permutation_table(model, X_test, y_test, n_repeats=5)
    assert set(permutation["concept"][:3]) == signal_ids(matrix)
    assert (permutation["ci95_low"] <= permutation["mean"]).all()
    assert (permutation["mean"] <= permutation["ci95_high"]).all()
    assert set(gini_table(model, matrix.concept_ids)["concept"][:3]) == signal_ids(matrix)
    parts = group_permutation_table(model, X_test, y_test, concept_groups(concept_dicts(matrix), "part"), n_repeats=5)
    assert parts["group"][0] == SIGNAL_PART
    assert parts["mean"][0] > 0.3 and parts["mean"][1:].abs().max() < 0.1
    noise = [c for c in matrix.concept_ids if c not in signal_ids(matrix)]
    control = ConceptForestClassifier(n_estimators=100).fit(matrix.X("train")[noise], matrix.y("train"))
    chance = matrix.y("test").value_counts(normalize=True).max()
    assert control.score(matrix.X("test")[noise], matrix.y("test")) < chance + 0.15  # a control stays near chance
    kinds = group_permutation_table(
        model, X_test, y_test, concept_groups(concept_dicts(matrix), "attribute"), n_repeats=3
    )
    assert kinds["group"][0] == "shape"


def test_group_permutation_is_seeded() -> None:
    matrix = made_up_matrix(n=120)
    model = train_model(matrix, n_estimators=30).model
    groups = concept_groups(concept_dicts(matrix), "part_attribute")
    first = group_permutation_table(model, matrix.X("test"), matrix.y("test"), groups, n_repeats=3, random_state=7)
    again = group_permutation_table(model, matrix.X("test"), matrix.y("test"), groups, n_repeats=3, random_state=7)
    pd.testing.assert_frame_equal(first, again)
    assert len(groups) == len(PARTS) * 2 and all(len(ids) == 3 for ids in groups.values())


def test_metrics() -> None:
    truth = ["a", "a", "b", "b"]
    assert classification_metrics(truth, truth, ["a", "b"])["accuracy"] == 1.0
    result = classification_metrics(truth, ["a", "b", "b", "b"], ["a", "b"])
    assert result["accuracy"] == 0.75 and result["balanced_accuracy"] == 0.75
    assert 0 <= result["accuracy_ci95"][0] <= 0.75 <= result["accuracy_ci95"][1] <= 1
    table = per_label_table(truth, ["a", "b", "b", "b"], ["a", "b"])
    assert table.set_index("label").loc["a", "recall"] == 0.5 and list(table["support"]) == [2, 2]
    assert bootstrap_interval(truth, truth) == (1.0, 1.0)


def test_bundle_round_trip_and_manifest(tmp_path: Path) -> None:
    matrix = made_up_matrix()
    trained = train_model(matrix, tmp_path / "model", n_estimators=40)
    model, metrics = trained.model, trained.metrics
    bundle = load_bundle(tmp_path / "model")
    assert bundle.manifest == trained.manifest
    assert np.array_equal(bundle.model.predict_proba(matrix.X("test")), model.predict_proba(matrix.X("test")))
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["concept_ids"] == matrix.concept_ids and manifest["labels"] == sorted(LABELS)
    assert manifest["backbone_id"] == "made-up" and manifest["tree_hash"] == "abc"
    assert manifest["metrics"]["accuracy"] == metrics["accuracy"]
    assert manifest["seeds"] == {"random_state": 0, "split_seed": 0}
    assert manifest["versions"]["scikit-learn"]
    bundle.check_matrix(matrix)


def test_bundle_refuses_mismatched_matrices(tmp_path: Path) -> None:
    matrix = made_up_matrix()
    train_model(matrix, tmp_path / "model", n_estimators=10)
    bundle = load_bundle(tmp_path / "model")
    other = made_up_matrix().with_meta(backbone_id="another-backbone")
    with pytest.raises(BadInputError, match="backbone is 'another-backbone'"):
        bundle.check_matrix(other)
    fewer = made_up_matrix()
    fewer = fewer.with_meta(concepts=fewer.concepts[1:])
    with pytest.raises(BadInputError, match="concepts differ"):
        bundle.check_matrix(fewer)
    relabelled = made_up_matrix().with_meta(labels=[*LABELS, "poodle"])
    with pytest.raises(BadInputError, match=r"labels \['poodle'\] are unknown"):
        bundle.check_matrix(relabelled)


class Payload:
    """A type no model file of ours contains."""

    def __init__(self) -> None:
        self.command = "echo pwned"


def test_loading_a_file_with_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    matrix = made_up_matrix()
    train_model(matrix, tmp_path / "model", n_estimators=5)
    sio.dump({"model": Payload()}, tmp_path / "model" / "model.skops")
    with pytest.raises(BadInputError, match=r"types conceptforest does not trust: \['tests.test_models.Payload'\]"):
        load_bundle(tmp_path / "model")
    with pytest.raises(BadInputError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
