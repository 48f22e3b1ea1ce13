from __future__ import annotations

import json
from pathlib import Path

import pytest

from conceptforest.concepts.tree import ConceptTree, Part, concept_id, format_tree, mentions
from conceptforest.errors import BadInputError, TreeValidationError


def dog_tree(**overrides: object) -> ConceptTree:
    data: dict[str, object] = {
        "domain": "Dog",
        "labels": ["husky", "pug", "beagle"],
        "parts": [
            Part(
                name="head",
                parts=[Part(name="ears", attributes=["shape"]), Part(name="eyes", attributes=["colour"])],
            ),
            Part(name="tail", attributes=["shape"]),
        ],
        "values": {
            "husky": {
                "head/ears": {"shape": ["Erect and  pointed"]},
                "head/eyes": {"colour": ["blue"]},
                "tail": {"shape": ["curled"]},
            },
            "pug": {
                "head/ears": {"shape": ["small and folded"]},
                "head/eyes": {"colour": ["dark brown"]},
                "tail": {"shape": ["curled"]},
            },
            "beagle": {
                "head/ears": {"shape": ["long and floppy"]},
                "head/eyes": {"colour": ["dark brown"]},
                "tail": {"shape": ["straight", "straight"]},
            },
        },
    }
    data.update(overrides)
    return ConceptTree.model_validate(data)


def test_concept_ids_are_stable_normalised_and_deduplicated() -> None:
    tree = dog_tree()
    concepts = tree.concepts()
    ids = [c.id for c in concepts]
    assert ids == [
        "head/ears:shape=erect and pointed",
        "head/ears:shape=small and folded",
        "head/ears:shape=long and floppy",
        "head/eyes:colour=blue",
        "head/eyes:colour=dark brown",
        "tail:shape=curled",
        "tail:shape=straight",
    ]
    assert len(ids) == len(set(ids))
    shared = {c.id: c for c in concepts}["tail:shape=curled"]
    assert shared.labels == ("husky", "pug")
    assert shared.part == "tail" and shared.attribute == "shape" and shared.value == "curled"
    assert [c.id for c in dog_tree().concepts()] == ids  # rebuilding gives the same ids


def test_default_sentences_are_class_free() -> None:
    tree = dog_tree()
    sentences = {c.id: c.sentence for c in tree.concepts()}
    assert sentences["head/ears:shape=erect and pointed"] == "the shape of the ears is erect and pointed"
    for sentence in sentences.values():
        assert not any(mentions(sentence, label) for label in tree.labels)


def test_sentence_template_is_configurable_and_refuses_the_label() -> None:
    tree = dog_tree(sentence_template="a photo of a {domain} whose {part} {attribute} is {value}")
    assert tree.concepts()[0].sentence == "a photo of a dog whose ears shape is erect and pointed"
    with pytest.raises(TreeValidationError, match="label"):
        ConceptTree.from_dict({**dog_tree().model_dump(), "sentence_template": "a {label} with {value}"})
    with pytest.raises(TreeValidationError, match="unknown fields"):
        ConceptTree.from_dict({**dog_tree().model_dump(), "sentence_template": "{colour} {value}"})


def test_leakage_check_fires_on_a_value_that_names_a_label() -> None:
    assert dog_tree().leakage() == []
    data = dog_tree().model_dump()
    data["values"]["pug"]["tail"]["shape"] = ["like a husky's tail"]
    data["values"]["beagle"]["head/eyes"]["colour"] = ["as dark as pugs' eyes"]
    leaks = ConceptTree.from_dict(data).leakage()
    assert {(lk.label, lk.leaked_label) for lk in leaks} == {("pug", "husky"), ("beagle", "pug")}
    assert "class-name leakage" in format_tree(ConceptTree.from_dict(data))


def test_mentions_matches_whole_words_only() -> None:
    assert mentions("a Pug-like face", "pug")
    assert mentions("two boxers", "boxer")
    assert not mentions("a boxy head", "boxer")
    assert not mentions("labelled", "lab")


def test_save_load_roundtrip_and_hand_edit(tmp_path: Path) -> None:
    tree = dog_tree()
    path = tree.save(tmp_path / "tree.json")
    loaded = ConceptTree.load(path)
    assert loaded.tree_hash() == tree.tree_hash()
    data = json.loads(path.read_text())
    data["values"]["pug"]["tail"]["shape"] = ["short and kinked"]
    data["provenance"]["note"] = "edited by hand"
    path.write_text(json.dumps(data))
    edited = ConceptTree.load(path)
    assert "tail:shape=short and kinked" in {c.id for c in edited.concepts()}
    assert edited.tree_hash() != tree.tree_hash()


def test_tree_hash_ignores_provenance() -> None:
    tree = dog_tree()
    other = tree.model_copy(deep=True)
    other.provenance.note = "different"
    other.provenance.created_at = "2000-01-01T00:00:00+00:00"
    assert other.tree_hash() == tree.tree_hash()


def test_yaml_input_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tree.yaml"
    path.write_text(
        "domain: bird\nlabels: [robin, crow]\nparts:\n  - name: beak\n    attributes: [colour]\n"
        "values:\n  robin: {beak: {colour: [yellow]}}\n  crow: {beak: {colour: [black]}}\n"
    )
    tree = ConceptTree.load(path)
    assert [c.id for c in tree.concepts()] == ["beak:colour=yellow", "beak:colour=black"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["values"]["pug"].update({"legs": {"shape": ["short"]}}), "not a leaf part"),
        (lambda d: d["values"]["pug"]["tail"].update({"colour": ["tan"]}), "attribute 'colour'"),
        (lambda d: d["values"].update({"poodle": {}}), "not in labels"),
        (lambda d: d.update(labels=["husky", "Husky", "pug"]), "appears twice"),
        (lambda d: d["parts"].append({"name": "a/b", "attributes": ["x"]}), "reserve"),
        (
            lambda d: d["parts"].append({"name": "leg", "attributes": ["x"], "parts": [{"name": "paw"}]}),
            "both sub-parts and attributes",
        ),
        (
            lambda d: d["parts"].append(
                {"name": "a", "parts": [{"name": "b", "parts": [{"name": "c", "parts": [{"name": "d"}]}]}]}
            ),
            "nested 4 deep",
        ),
    ],
)
def test_invalid_trees_are_refused_with_a_clear_message(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = dog_tree().model_dump()
    mutate(data)
    with pytest.raises(TreeValidationError, match=message):
        ConceptTree.from_dict(data)


def test_broken_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        ConceptTree.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"domain": "dog",}')
    with pytest.raises(BadInputError, match=r"bad.json.*not valid JSON"):
        ConceptTree.load(bad)


def test_missing_values_are_listed() -> None:
    data = dog_tree().model_dump()
    del data["values"]["pug"]["tail"]
    assert ConceptTree.from_dict(data).missing_values() == [("pug", "tail", "shape")]


def test_format_tree_has_counts() -> None:
    text = format_tree(dog_tree())
    assert "labels (3): husky, pug, beagle" in text
    assert "concepts: 7 distinct" in text
    assert concept_id("tail", "shape", "curled") not in text  # the dump lists values, not ids
