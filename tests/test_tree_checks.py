"""Input warnings on a concept tree (issue 12): labels it cannot tell apart, the prompt's example copied, few
concepts; printed by ``concepts generate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tests.llm_stub as llm_stub
from conceptforest.cli import app
from conceptforest.concepts import tree_checks
from conceptforest.concepts.prompts import PromptTemplate, load_prompt
from conceptforest.concepts.tree import ConceptTree, Part
from conceptforest.concepts.tree_checks import check_tree, prompt_example_values
from tests.llm_stub import StubServer

runner = CliRunner()
DIGITS = ["zero", "one", "two"]


def tree_of(values: dict[str, dict[str, list[str]]], labels: list[str] | None = None) -> ConceptTree:
    """A tree with one leaf part 'stroke' whose attributes are the keys of each label's values."""
    attributes = sorted({attribute for by_attribute in values.values() for attribute in by_attribute})
    return ConceptTree(
        domain="digit",
        labels=labels or list(values),
        parts=[Part(name="stroke", attributes=attributes)],
        values={label: {"stroke": by_attribute} for label, by_attribute in values.items()},
    )


DISTINCT = {
    "zero": {"shape": ["closed loop", "oval"], "width": ["wide", "round"], "count": ["one stroke"]},
    "one": {"shape": ["vertical bar", "straight"], "width": ["narrow", "thin"], "count": ["single line"]},
    "two": {"shape": ["curve and base", "swan neck"], "width": ["medium", "flat base"], "count": ["two turns"]},
}


def kinds(tree: ConceptTree) -> list[str]:
    return [warning.kind for warning in check_tree(tree)]


def test_a_tree_whose_labels_differ_gives_no_warning() -> None:
    assert check_tree(tree_of(DISTINCT)) == []


def test_identical_labels_are_named() -> None:
    same = {"shape": ["round", "closed"], "width": ["wide", "thin"], "count": ["one"]}
    tree = tree_of({**DISTINCT, "one": same, "two": same})
    [warning] = check_tree(tree)
    assert warning.kind == "indistinguishable" and warning.labels == ("one", "two")
    assert "'one', 'two'" in warning.message and "5 concept values" in warning.message
    assert "zero" not in warning.message


def test_nearly_identical_labels_are_named_with_what_tells_them_apart() -> None:
    near = {key: list(items) for key, items in DISTINCT["zero"].items()}
    near["count"] = ["two strokes"]  # 4 of 6 values shared: Jaccard 0.67, not near enough
    assert "near_identical" not in kinds(tree_of({**DISTINCT, "one": near}))
    shapes = ["closed loop", "oval", "slanted", "tall", "dotted", "ringed", "upright", "hollow"]
    zero = {"shape": shapes, "width": ["wide"]}
    one = {"shape": shapes, "width": ["wide", "thin"]}  # 9 of 10 values shared: Jaccard 0.9
    [warning] = [w for w in check_tree(tree_of({**DISTINCT, "zero": zero, "one": one})) if w.kind == "near_identical"]
    assert warning.labels == ("zero", "one") and "'stroke:width=thin'" in warning.message
    assert "Jaccard 0.90" in warning.message


def test_labels_with_few_concepts_are_named_with_their_counts() -> None:
    sparse = {**DISTINCT, "two": {"shape": ["swan neck"]}}
    [warning] = [w for w in check_tree(tree_of(sparse)) if w.kind == "few_concepts"]
    assert warning.labels == ("two",) and "'two' (1)" in warning.message
    assert check_tree(tree_of(sparse), min_concepts=1) == []


def test_values_copied_from_the_prompt_example_are_flagged() -> None:
    examples = prompt_example_values()
    assert "erect and pointed" in examples  # read from the packaged values prompt
    copied = {**DISTINCT, "one": {**DISTINCT["one"], "shape": ["Erect and  Pointed"]}}
    [warning] = [w for w in check_tree(tree_of(copied)) if w.kind == "prompt_example"]
    assert warning.labels == ("one",) and "repeats the prompt's own example" in warning.message
    # a one-word example ("short") is an ordinary word: flagged only when every label has it
    one_word = {label: {**v, "width": [*v["width"], "short"]} for label, v in DISTINCT.items()}
    assert [w.labels for w in check_tree(tree_of(one_word)) if w.kind == "prompt_example"] == [tuple(DIGITS)]
    once = {**DISTINCT, "zero": {**DISTINCT["zero"], "width": ["short"]}}
    assert "prompt_example" not in kinds(tree_of(once))


def test_the_example_is_read_from_the_prompt_template_not_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    real = load_prompt("values")
    edited = real.user.replace("erect and pointed", "zigzag and glowing")
    assert edited != real.user

    def fake(step: str, version: str = "v1") -> PromptTemplate:
        template = load_prompt(step, version)
        return PromptTemplate(step, version, template.system, edited) if step == "values" else template

    monkeypatch.setattr(tree_checks, "load_prompt", fake)
    tree_checks.prompt_example_values.cache_clear()
    try:
        assert "zigzag and glowing" in prompt_example_values()
        assert "erect and pointed" not in prompt_example_values()
    finally:
        tree_checks.prompt_example_values.cache_clear()


def write_labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(DIGITS) + "\n")
    return path


def test_generate_with_the_template_tree_warns_that_it_cannot_tell_the_labels_apart(tmp_path: Path) -> None:
    out = tmp_path / "tree.json"
    args = ["concepts", "generate", "--domain", "digit", "--labels", str(write_labels(tmp_path)), "--llm", "none"]
    result = runner.invoke(app, [*args, "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert out.exists()
    assert "Warning: All 3 labels have the same" in result.output
    assert "'zero', 'one', 'two'" in result.output and "template tree" in result.output


def copying_llm(step: str, body: dict[str, Any]) -> dict[str, Any]:
    """A small LLM that answers every label with the prompt's own example values."""
    answer = ORIGINAL_ANSWER(step, body)
    if step == "values":
        return {"values": {key: ["erect and pointed"] for key in answer["values"]}}
    return answer


ORIGINAL_ANSWER = llm_stub.canned_answer


def test_generate_warns_when_the_llm_copies_the_prompt_example_for_every_label(
    stub: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llm_stub, "canned_answer", copying_llm)
    out = tmp_path / "tree.json"
    args = ["concepts", "generate", "--domain", "digit", "--labels", str(write_labels(tmp_path))]
    llm = ["--llm", "stub-model", "--llm-base-url", stub.base_url]
    result = runner.invoke(app, [*args, *llm, "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    tree = json.loads(out.read_text())
    assert tree["provenance"]["generator"] == "llm"
    assert "All 3 labels have the same" in result.output and "'zero', 'one', 'two'" in result.output
    assert "repeats the prompt's own example" in result.output
    assert "fewer than 5 concept values" not in result.output  # 3 leaf parts x 2 attributes, all the same value
