"""Fidelity details of the description methods (issue 19): WaffleCLIP's row, DCLIP's sentence forms, WaffleCLIP's
character groups and DCLIP's published descriptor files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conceptforest.concepts.descriptors import DescriptorSet, dclip_sentence
from conceptforest.errors import BadInputError
from conceptforest.models.methods.base import MethodResult
from conceptforest.models.methods.descriptions import waffle_descriptors
from conceptforest.models.methods.table import comparison_table, mcnemar_exact

# -- item 3: the comparison row of a method run over seeds -------------------------------------------------------


def seeded_result(predicted: list[str], seed_mean: float, seed_std: float) -> MethodResult:
    labels = ("a", "b")
    return MethodResult(
        name="waffle",
        display="WaffleCLIP",
        labels=labels,
        predicted=np.asarray(predicted, dtype=object),
        scores=np.eye(2)[[labels.index(p) for p in predicted]],
        accuracy_mean=seed_mean,
        accuracy_std=seed_std,
    )


def test_a_seeded_rows_accuracy_lies_inside_its_own_interval_when_seeds_disagree() -> None:
    truth = ["a", "b"] * 20  # 40 images
    forest = MethodResult(
        name="forest",
        display="forest",
        labels=("a", "b"),
        predicted=np.asarray(["a"] * 40, dtype=object),  # 20 of 40 right
        scores=np.zeros((40, 2)),
    )
    # seed 0 is right on all 40 images; the seeds' mean is 0.40 (the other seeds were mostly wrong)
    waffle = seeded_result(list(truth), seed_mean=0.40, seed_std=0.25)
    table = comparison_table([forest, waffle], truth, ["a", "b"]).set_index("name")
    row = table.loc["waffle"]
    assert row["ci95_low"] <= row["accuracy"] <= row["ci95_high"], row.to_dict()
    assert row["accuracy"] == pytest.approx(1.0)  # seed 0's, the predictions the interval and the test are of
    assert row["accuracy_seed_mean"] == pytest.approx(0.40) and row["accuracy_std"] == pytest.approx(0.25)
    assert row["mcnemar_p_vs_forest"] == pytest.approx(mcnemar_exact(np.asarray(truth), forest.predicted, truth))
    # a method run once has no seed columns
    assert np.isnan(table.loc["forest", "accuracy_seed_mean"]) and np.isnan(table.loc["forest", "accuracy_std"])


# -- item 5: DCLIP's two sentence forms ---------------------------------------------------------------------------


def test_dclip_form_waffle_form_and_imagenet_full_stop() -> None:
    items = {"pug": ["a wrinkled face", "curled tail"]}
    own = DescriptorSet(style="dclip", labels=["pug"], descriptors=items)
    assert own.sentence_form == "dclip" and not own.full_stop
    assert own.sentences("pug") == ["pug, which is a wrinkled face", "pug, which has curled tail"]
    stop = DescriptorSet(style="dclip", labels=["pug"], descriptors=items, full_stop=True)
    assert stop.sentences("pug") == ["pug, which is a wrinkled face.", "pug, which has curled tail."]
    waffle = DescriptorSet(style="dclip", labels=["pug"], descriptors=items, sentence_form="waffle")
    assert waffle.sentences("pug") == [
        "A photo of a pug, which is a wrinkled face.",
        "A photo of a pug, which has curled tail.",
    ]
    assert dclip_sentence("golden_retriever", "golden fur", full_stop=True) == "golden retriever, which has golden fur."
    with pytest.raises(ValueError, match="sentence_form"):
        DescriptorSet(style="cupl", labels=["pug"], descriptors={"pug": ["A pug."]}, sentence_form="waffle")


def test_the_sentence_form_survives_a_round_trip(tmp_path: Path) -> None:
    items = {"pug": ["curled tail"]}
    written = DescriptorSet(style="dclip", labels=["pug"], descriptors=items, sentence_form="waffle").save(
        tmp_path / "d.json"
    )
    loaded = DescriptorSet.load(written)
    assert loaded.sentence_form == "waffle" and loaded.sentences("pug") == ["A photo of a pug, which has curled tail."]
    assert loaded.with_form("dclip", full_stop=True).sentences("pug") == ["pug, which has curled tail."]


# -- item 6: WaffleCLIP's character groups, DCLIP's published files -----------------------------------------------


def test_waffle_character_groups_count_spaces_in_the_raw_label_as_waffleclip() -> None:
    # WaffleCLIP: words from the wordified names (2 words of round(mean(7.5, 6)) = 7 letters); character groups
    # from the raw names: no space -> one group; ceil(mean(16, 13)) = 15 characters, rounded up to 16
    labels = ["golden_retriever", "border_collie"]
    words, chars = waffle_descriptors(1, 1, seed=0, labels=labels)
    assert len(words.split()) == 2 and all(len(word) <= 7 for word in words.split())
    assert ", " not in chars and len(chars) == 16
    # spaced labels keep two groups: ceil(mean(9, 6)) = 8 characters, rounded up to 10, two groups of 5
    _, spaced = waffle_descriptors(1, 1, seed=0, labels=["golden retriever", "border collie"])
    assert [len(group) for group in spaced.split(", ")] == [5, 5]


def test_dclips_published_file_loads_with_an_empty_list_as_dclip_does(tmp_path: Path) -> None:
    path = tmp_path / "descriptors_food101.json"
    path.write_text(json.dumps({"apple_pie": ["a golden crust", "sliced apples"], "bread pudding": []}))
    with pytest.warns(UserWarning, match=r"'bread pudding'.*empty") as caught:
        loaded = DescriptorSet.load(path)
    assert len(caught) == 1
    assert loaded.style == "dclip" and loaded.labels == ["apple_pie", "bread pudding"]
    assert loaded.descriptors["bread pudding"] == [""]
    # DCLIP's load_gpt_descriptions: v = [''] -> "{label}, " + make_descriptor_sentence('') = "which has "
    assert loaded.sentences("bread pudding") == ["bread pudding, which has "]
    assert loaded.sentences("apple_pie") == ["apple pie, which is a golden crust", "apple pie, which has sliced apples"]
    assert loaded.provenance.note is not None and "published" in loaded.provenance.note


def test_a_published_file_that_is_not_a_label_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"pug": "curled tail"}))
    with pytest.raises(BadInputError, match="not valid"):
        DescriptorSet.load(path)


def test_the_forest_on_descriptors_takes_no_concept_from_dclips_empty_descriptor(tmp_path: Path) -> None:
    from conceptforest.models.methods.base import MethodInputs
    from conceptforest.models.methods.controls import DescriptorForest
    from tests.test_methods_zeroshot import made_up_matrix

    path = tmp_path / "descriptors_places365.json"
    path.write_text(json.dumps({"husky": ["pointed ears"], "pug": [], "golden retriever": ["golden fur"]}))
    with pytest.warns(UserWarning, match="'pug'"):
        published = DescriptorSet.load(path)
    inputs = MethodInputs(matrix=made_up_matrix(), descriptors={"dclip": published})
    assert DescriptorForest().sentences(inputs) == ["pointed ears", "golden fur"]


def test_dclip_scores_the_sets_sentence_form_and_its_note_names_it(tmp_path: Path) -> None:
    from conceptforest.features.backbone import load_backbone
    from conceptforest.models.methods.descriptions import DescriptorClip
    from tests.test_methods_zeroshot import DCLIP, LABELS, cosines, inputs_for

    backbone = load_backbone("conceptforest-tiny-random", device="cpu")
    own = DescriptorSet(style="dclip", labels=LABELS, descriptors=DCLIP)
    for described, sentence in (
        (own, lambda label, d: dclip_sentence(label, d)),
        (own.with_form("dclip", full_stop=True), lambda label, d: dclip_sentence(label, d) + "."),
        (own.with_form("waffle"), lambda label, d: f"A photo of a {dclip_sentence(label, d)}."),
    ):
        inputs = inputs_for(backbone, tmp_path, dclip=described)
        result = DescriptorClip().run(inputs)
        for index, label in enumerate(LABELS):
            direct = cosines(backbone, inputs.image_embeddings(), [sentence(label, d) for d in DCLIP[label]])
            np.testing.assert_allclose(result.scores[:, index], direct.mean(axis=1), atol=1e-5)
        assert described.form_description() in result.note
    assert "DCLIP's form '{label}, which (is|has) {d}'" in own.form_description()
    assert "A photo of a" in own.with_form("waffle").form_description()
    assert "ImageNet" in own.with_form("dclip", full_stop=True).form_description()
