from __future__ import annotations

from pathlib import Path

import pytest

from conceptforest.concepts import render as render_module
from conceptforest.concepts.render import build_graph, importance_colour, render_tree, slugify
from conceptforest.errors import BadInputError
from tests.test_tree import dog_tree

needs_dot = pytest.mark.skipif(not render_module.dot_available(), reason="Graphviz 'dot' is not installed")


def test_dot_is_written_even_without_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_module, "dot_available", lambda: False)
    result = render_tree(dog_tree(), tmp_path, formats=["svg", "png"])
    names = sorted(p.name for p in result.written)
    assert names == ["label-beagle.dot", "label-husky.dot", "label-pug.dot", "schema.dot"]
    assert not list(tmp_path.glob("*.svg"))
    assert len(result.warnings) == 1 and "apt-get install graphviz" in result.warnings[0]
    text = (tmp_path / "label-husky.dot").read_text()
    assert text.startswith("digraph") and '"erect and pointed"' in text


@needs_dot
def test_svg_and_png_are_valid_files(tmp_path: Path) -> None:
    result = render_tree(dog_tree(), tmp_path, formats=["svg", "png", "dot"])
    assert result.warnings == []
    for stem in ("schema", "label-husky", "label-pug", "label-beagle"):
        svg = (tmp_path / f"{stem}.svg").read_text()
        assert "<svg" in svg and svg.rstrip().endswith("</svg>")
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{stem}.dot").exists()
    assert "erect and pointed" in (tmp_path / "label-husky.svg").read_text()
    assert "erect and pointed" not in (tmp_path / "schema.svg").read_text()


@needs_dot
def test_hostile_text_is_escaped_in_svg(tmp_path: Path) -> None:
    data = dog_tree().model_dump()
    data["values"]["pug"]["tail"]["shape"] = ['<script>alert(1)</script> "quoted" \\ back']
    tree = type(dog_tree()).from_dict(data)
    render_tree(tree, tmp_path, formats=["svg"], labels=["pug"])
    svg = (tmp_path / "label-pug.svg").read_text()
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_importance_shades_nodes(tmp_path: Path) -> None:
    graph = build_graph(dog_tree(), "husky", importance={"head/ears:shape=erect and pointed": 2.0, "tail": 1.0})
    text = graph.to_string()
    assert importance_colour(1.0) in text  # the most important concept is darkest
    assert importance_colour(0.5) in text  # the part "tail" at half the top weight
    assert importance_colour(1.0) != importance_colour(0.0) == "#ffffff"


def test_label_selection_unknown_format_and_file_names(tmp_path: Path) -> None:
    result = render_tree(dog_tree(), tmp_path, formats=["dot"], labels=["pug"])
    assert sorted(p.name for p in result.written) == ["label-pug.dot", "schema.dot"]
    with pytest.raises(BadInputError, match="not in the tree"):
        render_tree(dog_tree(), tmp_path, labels=["poodle"])
    with pytest.raises(BadInputError, match="Unknown picture format"):
        render_tree(dog_tree(), tmp_path, formats=["gif"])
    assert slugify("Chihuahua (long coat)") == "chihuahua-long-coat"
    assert slugify("épagneul breton") == "épagneul-breton"
    assert slugify("///").startswith("unnamed-")  # never empty
