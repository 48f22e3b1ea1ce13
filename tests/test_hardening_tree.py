"""Regression tests for issue 7, items 6, 13 (tree files), 14 and 17: hostile labels, templates and tree files."""

from __future__ import annotations

import json
import random
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from conceptforest.concepts import render as render_module
from conceptforest.concepts.render import render_tree
from conceptforest.concepts.template import template_tree
from conceptforest.concepts.tree import ConceptTree, check_sentence_template, format_tree
from conceptforest.errors import BadInputError, ConceptforestError, TreeValidationError
from conceptforest.text import safe_filename, strip_control
from tests.test_tree import dog_tree

ESCAPES = ["\x1b[31m", "\x1b]0;pwned\x07", "\x1b]8;;http://evil\x1b\\", "\x07", "\x9b2J", "\u202e", "\x00", "\x7f"]


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in {"Cc", "Cs"} or c in "\u202a\u202b\u202c\u202d\u202e" for c in text)


def _strings(obj: Any) -> list[str]:
    """Every string in a nested structure, keys included."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [*_strings(k), *_strings(v)]]
    if isinstance(obj, list | tuple):
        return [s for item in obj for s in _strings(item)]
    return []


# -- text helpers --------------------------------------------------------------------------------------------


def test_strip_control_removes_escapes_and_controls() -> None:
    assert strip_control("\x1b[1;31mred\x1b[0m dog") == "red dog"
    assert strip_control("a\x1b]0;title\x07b") == "ab"
    assert strip_control("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b") == "alinkb"
    assert strip_control("tab\there\nnew\r\nline") == "tab here new  line"
    assert strip_control("bell\x07 nul\x00 del\x7f c1\x85 \x9b2J") == "bell nul del c1  "
    assert strip_control("rtl \u202eevil\u202c") == "rtl evil"
    assert strip_control("lone \ud800 surrogate") == "lone  surrogate"
    kept = "épagneul 柴犬 हिन्दी 👩‍👩‍👧 a\u00a0b {value}"
    assert strip_control(kept) == kept


@pytest.mark.parametrize(
    "name",
    ["狗" * 90, "a" * 240, "x" * 119 + "é", "..", ".", "", "///", "CON", "\x1b[31m", 'a/b\\c:d*e?f"g<h>i|j', " - "],
)
def test_safe_filename_is_bounded_safe_and_never_empty(name: str) -> None:
    result = safe_filename(name)
    assert result and result not in {".", ".."}
    assert len(result.encode("utf-8")) <= 120
    assert not set(result) & set('/\\:*?"<>|\x00 ')
    assert not _has_control(result)
    assert result.lower() not in {"con", "prn", "aux", "nul"}
    assert safe_filename(name) == result  # stable


def test_safe_filename_is_unique_within_taken_and_keeps_short_names() -> None:
    taken: set[str] = set()
    names = ["Chihuahua (long coat)", "chihuahua long coat", "a" * 300, "a" * 299 + "b", "épagneul breton"]
    results = [safe_filename(n, taken) for n in names]
    assert results[0] == "chihuahua-long-coat" and results[4] == "épagneul-breton"
    assert len(set(results)) == len(results) and taken == set(results)
    assert results[2] != results[3] and all(len(r.encode()) <= 120 for r in results)
    assert safe_filename("x" * 50, max_bytes=20).startswith("x" * 11 + "-")
    # the same name twice in one folder still gets two names
    again: set[str] = set()
    assert safe_filename("dup", again) != safe_filename("dup", again)


# -- item 6: rendering long and non-ASCII labels -------------------------------------------------------------


def _tree_with_labels(labels: list[str]) -> ConceptTree:
    data = dog_tree().model_dump()
    data["labels"] = labels
    data["values"] = {label: data["values"]["husky"] for label in labels}
    return ConceptTree.from_dict(data)


@pytest.mark.parametrize("with_dot", [False, True])
def test_long_and_cjk_labels_render_to_bounded_unique_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_dot: bool
) -> None:
    if with_dot and not render_module.dot_available():
        pytest.skip("Graphviz 'dot' is not installed")
    if not with_dot:
        monkeypatch.setattr(render_module, "dot_available", lambda: False)
    labels = ["柴犬" * 45, "a" * 240, "a" * 239 + "b", "A/B", "a:b", "..", "husky"]
    result = render_tree(_tree_with_labels(labels), tmp_path, formats=["svg", "dot"])
    dots = sorted(p.name for p in result.written if p.suffix == ".dot")
    assert len(dots) == len(labels) + 1 and len(set(dots)) == len(dots)
    assert "label-husky.dot" in dots
    for path in result.written:
        assert path.exists() and len(path.name.encode("utf-8")) <= 200
    assert any(name.startswith("label-柴犬") for name in dots)


# -- item 14: sentence templates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{value} {value.foo}",
        "{value} {value[9]}",
        "{value} {value.upper}",
        "{value} {value:>400000000}",
        "{value:>40}",
        "{value!r}",
        "{value} {}",
        "{value} {0}",
        "{value} {part!s:^9}",
        "the {value",
        "the value}",
        "the {value} {attribute.__class__}",
    ],
)
def test_sentence_template_format_syntax_is_refused(template: str) -> None:
    data = {**dog_tree().model_dump(), "sentence_template": template}
    with pytest.raises(TreeValidationError, match="allowed placeholders") as info:
        ConceptTree.from_dict(data, source="t.json")
    assert "{value}" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="allowed placeholders"):
        check_sentence_template(template)


def test_sentence_template_plain_placeholders_and_doubled_braces_work() -> None:
    tree = dog_tree(sentence_template="{{photo}} of a {domain}: {part_path} {part} {attribute} is {value}")
    assert tree.concepts()[0].sentence == "{photo} of a dog: head ears ears shape is erect and pointed"
    assigned = dog_tree()
    assigned.sentence_template = "{value.upper}"  # assignment skips validation; sentences still refuse it
    with pytest.raises(TreeValidationError, match="allowed placeholders"):
        assigned.concepts()
    with pytest.raises(TreeValidationError, match="longer than"):
        ConceptTree.from_dict({**dog_tree().model_dump(), "sentence_template": "{value} " + "x" * 5000})


# -- item 17: control characters never stay in a tree --------------------------------------------------------


def _hostile_tree_data() -> dict[str, Any]:
    bad = "".join(ESCAPES)
    data = dog_tree().model_dump()
    data["domain"] = f"dog{bad}"
    data["labels"] = [f"husky{ESCAPES[0]}", "pug", "beagle"]
    data["values"][f"husky{ESCAPES[0]}"] = data["values"].pop("husky")
    data["values"]["pug"]["tail"]["shape"] = [f"curly{bad}tail", "short\x1b[2J"]
    data["parts"][1]["name"] = f"tail{ESCAPES[1]}"
    data["values"]["pug"][f"tail{ESCAPES[1]}"] = data["values"]["pug"].pop("tail")
    data["sentences"] = {"head/ears:shape=small and folded": f"ears that are small{bad}"}
    data["sentence_template"] = f"the {{attribute}} of the {{part}} is {{value}}{ESCAPES[0]}"
    data["provenance"]["llm_model"] = f"model{bad}"
    data["provenance"]["note"] = f"note{bad}"
    return data


def test_control_characters_are_stripped_when_a_tree_is_validated() -> None:
    tree = ConceptTree.from_dict(_hostile_tree_data())
    assert tree.domain == "dog" and tree.labels[0] == "husky"
    assert tree.values["pug"]["tail"]["shape"] == ["curlytail", "short"]
    assert tree.sentences == {"head/ears:shape=small and folded": "ears that are small"}
    strings = _strings(tree.model_dump()) + [c.sentence for c in tree.concepts()] + [format_tree(tree)]
    assert not [s for s in strings if _has_control(s.replace("\n", ""))]


def test_control_characters_are_stripped_on_load_and_survive_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(_hostile_tree_data()), encoding="utf-8")
    tree = ConceptTree.load(path)
    saved = tree.save(tmp_path / "again.json")
    assert "\\u001b" not in saved.read_text() and "\x1b" not in saved.read_text()
    assert ConceptTree.load(saved).tree_hash() == tree.tree_hash()


def test_template_tree_strips_control_characters_and_reports_bad_labels() -> None:
    tree = template_tree("dog\x1b[31m", ["husky\x07", "pug"])
    assert tree.domain == "dog" and tree.labels == ["husky", "pug"]
    with pytest.raises(TreeValidationError, match="appears twice"):
        template_tree("dog", ["husky", "Husky"])


# -- item 13: bad tree files ---------------------------------------------------------------------------------


def _load_error(path: Path) -> ConceptforestError:
    with pytest.raises(ConceptforestError) as info:
        ConceptTree.load(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message and len(message) < 2000
    return info.value


def test_non_utf8_tree_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "tree.json"
    path.write_bytes(json.dumps(dog_tree().model_dump()).replace("dog", "d\xf6g").encode("latin-1"))
    error = _load_error(path)
    assert isinstance(error, BadInputError) and "UTF-8" in str(error)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tree.json"
    path.write_bytes(b"\xef\xbb\xbf" + dog_tree().to_json().encode())
    assert ConceptTree.load(path).tree_hash() == dog_tree().tree_hash()


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize("depth", [2_000, 200_000])
def test_deeply_nested_tree_file_is_a_clear_error(tmp_path: Path, suffix: str, depth: int) -> None:
    path = tmp_path / f"tree{suffix}"
    path.write_text('{"domain": "dog", "labels": ' + "[" * depth + "]" * depth + "}")
    assert "nested" in str(_load_error(path))


def test_deep_but_parseable_params_are_refused_before_validation(tmp_path: Path) -> None:
    data = dog_tree().model_dump()
    nested: Any = "x"
    for _ in range(300):
        nested = {"a": nested}
    data["provenance"]["params"] = nested
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(data))
    assert "nested" in str(_load_error(path))


def test_yaml_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 8):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    lines += ["domain: dog", "labels: *a7", "parts: []"]
    path = tmp_path / "tree.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "expands" in str(_load_error(path))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bad.yaml", "domain: dog\nlabels: [a, b\nparts: {"),
        ("bad.yml", "!!python/object/apply:os.system ['echo hi']"),
        ("bad.json", '{"domain": "dog",}'),
        ("empty.json", ""),
        ("empty.yaml", ""),
        ("list.json", "[1, 2]"),
        ("bigint.json", '{"format_version": 1' + "0" * 5000 + "}"),
        ("nan.json", '{"domain": NaN, "labels": [], "parts": []}'),
        ("keys.yaml", "domain: dog\nlabels: [a]\nparts: []\nvalues: {1: {2: {3: [4]}}}\n"),
        ("date.yaml", "domain: 2020-01-01\nlabels: [a]\nparts: []\n"),
        ("escape.json", '{"domain": "\\u001b[31m", "labels": ["a"], "parts": []}'),
    ],
)
def test_broken_tree_files_give_one_clear_error(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    _load_error(path)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_mangled_tree_files_never_raise_anything_else(tmp_path: Path, suffix: str) -> None:
    import yaml

    data = _hostile_tree_data()
    good = (json.dumps(data) if suffix == ".json" else yaml.safe_dump(data, allow_unicode=True)).encode()
    rng = random.Random(7)
    path = tmp_path / f"tree{suffix}"
    for _ in range(150):
        mangled = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(len(mangled))
            action = rng.choice(["flip", "cut", "insert"])
            if action == "flip":
                mangled[where] = rng.randrange(256)
            elif action == "cut":
                del mangled[where : where + rng.randint(1, 40)]
            else:
                mangled[where:where] = rng.choice([b"[", b"{", b"&a ", b"*a", b"\xff", b'"', b"\\u0000", b"!!"])
        path.write_bytes(bytes(mangled))
        try:
            tree = ConceptTree.load(path)
        except ConceptforestError as exc:
            assert path.name in str(exc) and "\n" not in str(exc)
        else:
            assert not [s for s in _strings(tree.model_dump()) if _has_control(s)]
