"""The method registry, the comparison table and the grounding check."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from conceptforest.explain.grounding import grounding_summary, grounding_table
from conceptforest.models.methods import (
    REGISTRY,
    Method,
    MethodInputs,
    MethodResult,
    Need,
    NotComputed,
    register,
    run_methods,
)
from conceptforest.models.methods.table import comparison_table, mcnemar_exact
from tests.test_models import LABELS, SIGNAL_PART, made_up_matrix


class EchoTruth(Method):
    """A made-up method for the tests: scores 1 on the true label of every even row, the first label otherwise."""

    name: ClassVar[str] = "test-echo"
    display: ClassVar[str] = "test: echo the truth on even rows"
    needs: ClassVar[frozenset[Need]] = frozenset({Need.CONCEPT_MATRIX})
    default: ClassVar[bool] = False

    def run(self, inputs: MethodInputs) -> MethodResult:
        truth = inputs.matrix.frame["label"].to_numpy()[inputs.split_mask]
        scores = np.zeros((len(truth), len(inputs.labels)))
        for row, label in enumerate(truth):
            scores[row, inputs.labels.index(label) if row % 2 == 0 else 0] = 1.0
        return self.result(inputs, scores)


@pytest.fixture
def echo_method():  # type: ignore[no-untyped-def]
    register(EchoTruth)
    yield EchoTruth
    REGISTRY.pop(EchoTruth.name, None)


def test_mcnemar_matches_an_exact_binomial_test() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 200)
    first = np.where(rng.random(200) < 0.7, truth, (truth + 1) % 3)
    second = np.where(rng.random(200) < 0.55, truth, (truth + 2) % 3)
    b = int(np.sum((first == truth) & (second != truth)))
    c = int(np.sum((first != truth) & (second == truth)))
    assert mcnemar_exact(truth, first, second) == pytest.approx(binomtest(b, b + c, 0.5).pvalue)
    assert mcnemar_exact(truth, first, first) == 1.0


def test_a_registered_method_shows_up_in_the_comparison_with_no_other_change(echo_method: type[Method]) -> None:
    matrix = made_up_matrix(n=120)
    inputs = MethodInputs(matrix=matrix)
    outcomes = run_methods(inputs, ["forest", "test-echo"])
    assert [o.name for o in outcomes] == ["forest", "test-echo"]
    echo = outcomes[1]
    assert isinstance(echo, MethodResult) and echo.scores.shape == (int(inputs.split_mask.sum()), 3)
    truth = matrix.y("test").to_numpy()
    table = comparison_table(outcomes, truth.tolist(), matrix.labels)
    row = table.set_index("name").loc["test-echo"]
    expected = float(np.mean(echo.predicted == truth))
    assert row["accuracy"] == pytest.approx(expected)
    assert 0.0 <= row["mcnemar_p_vs_forest"] <= 1.0 and row["status"] == "computed"


def test_unmet_needs_are_a_row_naming_the_flag() -> None:
    inputs = MethodInputs(matrix=made_up_matrix(n=80))
    outcomes = {o.name: o for o in run_methods(inputs, ["clip", "shuffled-tree", "dclip"])}
    for name, flag in (("clip", "--clip"), ("shuffled-tree", "--tree"), ("dclip", "--descriptors")):
        outcome = outcomes[name]
        assert isinstance(outcome, NotComputed), name
        assert flag in outcome.hint, (name, outcome.hint)
    table = comparison_table(list(outcomes.values()), made_up_matrix(n=80).y("test").tolist(), ["a", "b", "c"])
    assert table["status"].str.startswith("not computed").all()


def test_unknown_method_names_are_a_clear_error() -> None:
    from conceptforest.errors import BadInputError

    with pytest.raises(BadInputError, match="no-such-method"):
        run_methods(MethodInputs(matrix=made_up_matrix(n=40)), ["no-such-method"])


def test_grounding_finds_the_concepts_that_carry_signal() -> None:
    matrix = made_up_matrix(n=300)
    # In the made-up data, head/ears:shape=v{i+1} is raised for label i: give each label that concept alone.
    signal = {f"{SIGNAL_PART}:shape=v{i + 1}": label for i, label in enumerate(LABELS)}
    concepts = [replace(c, labels=(signal.get(c.id, LABELS[0]),)) for c in matrix.concepts]
    table = grounding_table(matrix.with_meta(concepts=concepts)).set_index("concept")
    for concept in signal:
        assert table.loc[concept, "auc"] > 0.9 and table.loc[concept, "detected"], concept
    noise = [c for c in table.index if c not in signal]
    assert table.loc[noise, "auc"].between(0.3, 0.7).all()
    assert "CLIP detects 3 of 24" in grounding_summary(table.reset_index())


def test_grounding_auc_equals_sklearns_roc_auc() -> None:
    from sklearn.metrics import roc_auc_score

    matrix = made_up_matrix(n=120)
    first = matrix.concept_ids[0]
    concepts = [replace(c, labels=(matrix.labels[0],)) for c in matrix.concepts]
    table = grounding_table(matrix.with_meta(concepts=concepts)).set_index("concept")
    train = matrix.rows("train")
    expected = roc_auc_score(train["label"] == matrix.labels[0], train[first])
    assert table.loc[first, "auc"] == pytest.approx(expected)


def test_comparison_table_has_cost_and_label_name_columns() -> None:
    result = MethodResult(
        name="x",
        display="x",
        labels=("a", "b"),
        predicted=np.array(["a", "b", "a", "a"], dtype=object),
        scores=np.eye(2)[[0, 1, 0, 0]],
        seconds=2.0,
        tokens=40,
        uses_label_names=True,
    )
    table = comparison_table([result], ["a", "b", "b", "a"], ["a", "b"])
    row = table.iloc[0]
    assert row["seconds_per_image"] == pytest.approx(0.5) and row["tokens_per_image"] == pytest.approx(10)
    assert bool(row["label_names_in_text"]) and row["accuracy"] == pytest.approx(0.75)
    assert isinstance(table, pd.DataFrame)


def test_underscored_labels_read_as_words_in_every_text() -> None:
    from conceptforest.concepts.describe import cupl_questions
    from conceptforest.concepts.descriptors import dclip_sentence, waffle_sentence
    from conceptforest.models.methods.zeroshot import fill_template

    assert dclip_sentence("golden_retriever", "floppy ears") == "golden retriever, which has floppy ears"
    assert waffle_sentence("golden_retriever", "x").startswith("A photo of a golden retriever,")
    assert fill_template("a photo of a {label}.", "golden_retriever") == "a photo of a golden retriever."
    assert all("golden retriever" in question for question in cupl_questions("golden_retriever"))


def test_embeddings_missing_from_the_cache_are_rows_saying_why(tmp_path: Path) -> None:
    from conceptforest.features.backbone import load_backbone
    from conceptforest.models.methods.context import method_inputs

    backbone = load_backbone("conceptforest-tiny-random")
    matrix = made_up_matrix(n=80).with_meta(backbone_id=backbone.backbone_id)
    inputs = method_inputs(matrix, backbone=backbone, cache_dir=tmp_path / "empty")
    outcomes = {o.name: o for o in run_methods(inputs, ["clip", "probe", "logreg"])}
    for name in ("clip", "probe"):
        row = outcomes[name]
        assert isinstance(row, NotComputed) and "not in the cache" in row.hint, row
    assert isinstance(outcomes["logreg"], MethodResult)


def test_a_mean_over_seeds_has_its_own_column_beside_the_first_seeds_accuracy() -> None:
    result = MethodResult(
        name="w",
        display="w",
        labels=("a", "b"),
        predicted=np.array(["a", "a"], dtype=object),
        scores=np.eye(2)[[0, 0]],
        accuracy_std=0.1,
        accuracy_mean=0.25,
    )
    row = comparison_table([result], ["a", "b"], ["a", "b"]).iloc[0]
    assert row["accuracy"] == pytest.approx(0.5) and row["accuracy_seed_mean"] == pytest.approx(0.25)
    assert row["accuracy_std"] == pytest.approx(0.1)


class DefaultEcho(EchoTruth):
    name: ClassVar[str] = "test-default-echo"
    display: ClassVar[str] = "test: a default method"
    default: ClassVar[bool] = True


def test_a_registered_default_method_reaches_the_report_with_no_other_change(tmp_path: Path) -> None:
    from conceptforest.explain import explain_model
    from conceptforest.models import train_model

    matrix = made_up_matrix(n=120)
    bundle = train_model(matrix, tmp_path / "model", n_estimators=10)
    register(DefaultEcho)
    try:
        explain_model(bundle, matrix, tmp_path / "report", n_repeats=2, shap_rows=20)
    finally:
        REGISTRY.pop(DefaultEcho.name, None)
    import json

    rows = {m["name"]: m for m in json.loads((tmp_path / "report" / "report.json").read_text())["methods"]}
    assert rows["test-default-echo"]["status"] == "computed"
    assert "test: a default method" in (tmp_path / "report" / "index.html").read_text()


def test_the_forest_on_dclip_descriptors_uses_each_descriptor_once_without_its_label(tmp_path: Path) -> None:
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.features.backbone import load_backbone
    from conceptforest.features.store import EmbeddingStore

    backbone = load_backbone("conceptforest-tiny-random")
    matrix = made_up_matrix(n=90)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(len(matrix.frame), backbone.embed_dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    described = DescriptorSet(
        style="dclip",
        labels=list(LABELS),
        descriptors={
            "husky": ["pointed ears", "blue eyes"],
            "pug": ["flat face", "blue eyes"],
            "beagle": ["long ears"],
        },
    )
    encoded: list[str] = []
    inputs = MethodInputs(
        matrix=matrix,
        backbone=backbone,
        embeddings=embeddings,
        text_store=EmbeddingStore(tmp_path, backbone.backbone_id, "texts"),
        descriptors={"dclip": described},
    )
    original = inputs.text_embeddings

    def recording(sentences):  # type: ignore[no-untyped-def]
        encoded.extend(sentences)
        return original(sentences)

    inputs.text_embeddings = recording  # type: ignore[method-assign]
    [result] = run_methods(inputs, ["forest-descriptors"])
    assert isinstance(result, MethodResult) and result.scores.shape == (int(inputs.split_mask.sum()), 3)
    assert encoded == ["pointed ears", "blue eyes", "flat face", "long ears"]
    [missing] = run_methods(MethodInputs(matrix=matrix), ["forest-descriptors"])
    assert isinstance(missing, NotComputed) and "--descriptors" in missing.hint


class RefusedByServer(EchoTruth):
    name: ClassVar[str] = "test-refused"
    display: ClassVar[str] = "test: a server that refuses the model"

    def run(self, inputs: MethodInputs) -> MethodResult:
        from conceptforest.errors import LLMError

        raise LLMError("the server refused model 'x'", hint="check --mllm")


def test_an_llm_error_in_one_method_is_a_row_not_the_end_of_the_comparison() -> None:
    register(RefusedByServer)
    try:
        outcomes = run_methods(MethodInputs(matrix=made_up_matrix(n=60)), ["test-refused", "chance"])
    finally:
        REGISTRY.pop(RefusedByServer.name, None)
    assert isinstance(outcomes[0], NotComputed) and "refused model" in outcomes[0].hint
    assert isinstance(outcomes[1], MethodResult)


def test_labels_sharing_a_first_token_do_not_share_a_score() -> None:
    from conceptforest.llm.vision_types import VisionAnswer
    from conceptforest.models.methods.vision import _label_scores

    answer = VisionAnswer(sha256="", text="red square", logprobs={"red circle": -0.1, "red square": -0.1})
    scores = _label_scores(answer, "red square", ["red circle", "red square"])
    assert scores.tolist() == [0.0, 1.0]
