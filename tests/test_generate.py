"""Whole-tree generation through the real client and the stub server."""

from __future__ import annotations

from pathlib import Path

import pytest

from conceptforest.concepts.generate import GenerationLimits, extend_tree, generate_tree, read_labels
from conceptforest.concepts.template import template_tree
from conceptforest.concepts.tree import ConceptTree, mentions
from conceptforest.errors import BadInputError, LLMError
from tests.conftest import SECRET_KEY
from tests.llm_stub import StubServer

LABELS = ["husky", "pug", "beagle"]


def generate(make_client, labels=LABELS, **kwargs) -> ConceptTree:  # type: ignore[no-untyped-def]
    return generate_tree("dog", labels, make_client(), progress=False, **kwargs)


def test_generation_follows_the_four_step_decomposition(stub: StubServer, make_client) -> None:
    tree = generate(make_client)
    # 1 parts call, 3 leaf parts (head/ears, head/eyes, tail), 3 labels
    assert stub.state.steps() == [
        "parts",
        "attributes",
        "attributes",
        "attributes",
        "values",
        "values",
        "values",
    ]
    assert list(tree.leaf_attributes()) == ["head/ears", "head/eyes", "tail"]
    assert tree.missing_values() == []
    assert tree.leakage() == []
    concepts = tree.concepts()
    assert len(concepts) == len({c.id for c in concepts}) > 0
    assert all(not any(mentions(c.sentence, label) for label in LABELS) for c in concepts)
    # values are asked relative to the other labels
    values_prompt = stub.state.requests[4]["body"]["messages"][1]["content"]
    assert "The other kinds are: pug, beagle." in values_prompt


def test_provenance_records_model_templates_params_and_tokens(stub: StubServer, make_client) -> None:
    tree = generate(make_client)
    prov = tree.provenance
    assert prov.generator == "llm" and prov.llm_model == "stub-model"
    assert prov.llm_base_url == stub.base_url
    assert set(prov.prompt_templates) == {"parts", "attributes", "values"}
    assert prov.prompt_templates["parts"].startswith("parts.v1@")
    assert prov.params["max_parts"] == 6 and prov.params["temperature"] == 0.0
    assert prov.usage.calls == 7 and prov.usage.cached_calls == 0
    assert prov.usage.prompt_tokens == sum(c.prompt_tokens for c in prov.calls) > 0
    assert prov.usage.completion_tokens == sum(c.completion_tokens for c in prov.calls) > 0
    assert prov.usage.cost_usd is None
    priced = generate_tree(
        "dog", LABELS, make_client(price_per_1k_prompt=1.0, price_per_1k_completion=2.0), progress=False
    )
    assert priced.provenance.usage.cached_calls == 7
    assert priced.provenance.usage.cost_usd == 0.0  # everything came from the cache


def test_rerun_makes_zero_requests_and_gives_the_same_tree(stub: StubServer, make_client) -> None:
    first = generate(make_client)
    count = len(stub.state.requests)
    second = generate(make_client)
    assert len(stub.state.requests) == count
    assert second.tree_hash() == first.tree_hash()
    assert second.provenance.usage.cached_calls == second.provenance.usage.calls == 7


def test_changed_limits_miss_the_cache(stub: StubServer, make_client) -> None:
    generate(make_client)
    count = len(stub.state.requests)
    generate(make_client, limits=GenerationLimits(max_parts=4))
    assert len(stub.state.requests) > count


def test_a_failed_run_keeps_its_answers_and_the_rerun_continues(stub: StubServer, make_client) -> None:
    # the first label's values succeed, then every values answer ignores the schema
    stub.state.add_fault("ok", step="values")
    stub.state.add_fault("schema_ignored", step="values", times=3)
    with pytest.raises(LLMError, match="step 'values' for label 'pug'"):
        generate(make_client)
    stub.state.requests.clear()
    tree = generate(make_client)
    assert stub.state.steps() == ["values", "values"]  # only pug and beagle are asked again
    assert tree.missing_values() == []


def test_extending_asks_only_about_new_labels(stub: StubServer, make_client) -> None:
    tree = generate(make_client)
    stub.state.requests.clear()
    bigger = extend_tree(tree, ["husky", "poodle", "corgi"], make_client(), progress=False)
    assert stub.state.steps() == ["values", "values"]
    assert bigger.labels == [*LABELS, "poodle", "corgi"]
    for label in LABELS:
        assert bigger.values[label] == tree.values[label]
    assert bigger.missing_values() == []
    assert bigger.provenance.note == "extended with labels ['poodle', 'corgi']"
    assert len(bigger.provenance.calls) == 7 + 2
    same = extend_tree(bigger, ["pug"], make_client(), progress=False)
    assert same.tree_hash() == bigger.tree_hash()


def test_llm_sentences_are_asked_in_step_four(stub: StubServer, make_client) -> None:
    tree = generate(make_client, llm_sentences=True)
    assert stub.state.steps()[-1] == "sentences"
    concepts = tree.concepts()
    assert all(c.sentence.startswith("a photo showing the ") for c in concepts)
    assert set(tree.sentences) == {c.id for c in concepts}
    assert "sentences" in tree.provenance.prompt_templates
    stub.state.requests.clear()
    bigger = extend_tree(tree, ["poodle"], make_client(), progress=False)
    assert stub.state.steps() == ["values", "sentences"]
    assert set(bigger.sentences) == {c.id for c in bigger.concepts()}


def test_the_api_key_is_used_but_never_written(
    stub: StubServer, make_client, tmp_path: Path, isolated_home: Path
) -> None:
    client = make_client(api_key=SECRET_KEY)
    tree = generate_tree("dog", LABELS, client, progress=False)
    tree.save(tmp_path / "tree.json")
    assert stub.state.requests[0]["headers"]["authorization"] == f"Bearer {SECRET_KEY}"
    assert SECRET_KEY not in repr(client)
    for folder in (tmp_path, isolated_home):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET_KEY not in path.read_text(errors="replace"), path


def test_llm_none_builds_the_labelled_template_tree(stub: StubServer) -> None:
    tree = generate_tree("dog", LABELS, None, progress=False)
    assert tree.provenance.generator == "template"
    assert "no LLM" in (tree.provenance.note or "")
    assert stub.state.requests == []
    ids = {c.id for c in tree.concepts()}
    assert "surface:colour=red" in ids
    assert all(c.labels == tuple(LABELS) for c in tree.concepts())  # the template knows nothing of labels
    bigger = extend_tree(tree, ["poodle"], None, progress=False)
    assert bigger.labels == [*LABELS, "poodle"] and bigger.provenance.generator == "template"
    assert template_tree("dog", LABELS).tree_hash() == tree.tree_hash()


def test_fewer_than_two_labels_is_refused() -> None:
    with pytest.raises(BadInputError, match="at least 2 labels"):
        generate_tree("dog", ["husky"], None)


def test_extending_an_llm_tree_without_an_llm_is_refused(stub: StubServer, make_client) -> None:
    tree = generate(make_client)
    with pytest.raises(BadInputError, match="needs an LLM"):
        extend_tree(tree, ["poodle"], None)


def test_read_labels() -> None:
    assert read_labels("# dogs\nhusky\n\n pug  # small\nbeagle\n") == ["husky", "pug", "beagle"]
    assert read_labels('["a", "b"]') == ["a", "b"]
