"""Issue 12, second half: per label without repetition, beeswarms, why-A-not-B noise, the size benchmark."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from conceptforest.concepts.tree import ConceptTree
from conceptforest.explain import explain_model, why_a_not_b
from conceptforest.explain.per_label import signed_concepts
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models import load_bundle, train_model
from tests.test_models import LABELS, made_up_matrix

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "report_size.py"


def tree_for(matrix: FeatureMatrix) -> ConceptTree:
    """A tree whose concept ids are the matrix's (head/ears:shape=v1 ...), every label with every value."""
    parts: dict[str, dict[str, list[str]]] = {}
    for concept in matrix.concepts:
        parts.setdefault(concept.part_path, {}).setdefault(concept.attribute, []).append(concept.value)
    nested: dict[str, dict[str, object]] = {}
    for path, attributes in parts.items():
        head, _, leaf = path.partition("/")
        if leaf:
            nested.setdefault(head, {"name": head, "parts": []})["parts"].append(  # type: ignore[union-attr]
                {"name": leaf, "attributes": list(attributes)}
            )
        else:
            nested[head] = {"name": head, "attributes": list(attributes)}
    return ConceptTree.model_validate(
        {"domain": "dog", "labels": LABELS, "parts": list(nested.values()), "values": dict.fromkeys(LABELS, parts)}
    )


def build(folder: Path, matrix: FeatureMatrix, tree: ConceptTree | None) -> Path:
    train_model(matrix, folder / "model", n_estimators=10)
    explain_model(load_bundle(folder / "model"), matrix, folder / "report", tree=tree, n_repeats=2, shap_rows=40)
    return folder / "report"


def _path_without_dot() -> str:
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep) if not (Path(d) / "dot").exists()]
    return os.pathsep.join(keep)


def _check_per_label(report: Path, suffix: str) -> None:
    html = (report / "index.html").read_text()
    per_label = html.split('id="per-label"', 1)[1].split("<section", 1)[0]
    data = json.loads((report / "report.json").read_text())
    markdown = (report / "report.md").read_text()
    assert [block["label"] for block in data["per_label"]] == LABELS
    for number, block in enumerate(data["per_label"]):
        label = block["label"]
        assert f'id="label-{number}"><summary>{label} (recall' in per_label
        assert f"### {label} (recall" in markdown
        assert block["tree_file"] == f"label-trees/label-{label}.{suffix}"
        assert (report / block["tree_file"]).is_file()
        assert 1 <= len(block["thumbnails"]) <= 3
        concepts = [c["concept"] for c in block["concepts"]]
        assert len(concepts) == len(set(concepts))  # no concept twice
        assert 0 <= block["accuracy"] <= 1 and block["accuracy"] == block["recall"]
    files = json.loads((report / "report.json").read_text())["files"]
    assert all(f"label-trees/label-{label}.dot" in files for label in LABELS)


def test_each_label_gets_its_own_shaded_tree_with_a_legend(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' is not installed")
    matrix = made_up_matrix(n=120)
    report = build(tmp_path, matrix, tree_for(matrix))
    _check_per_label(report, "svg")
    html = (report / "index.html").read_text()
    per_label = html.split('id="per-label"', 1)[1].split("<section", 1)[0]
    assert per_label.count('class="legend"') == len(LABELS)
    assert per_label.count("data:image/svg+xml;base64,") == len(LABELS)
    # each tree is shaded by its own label's weights: the pictures differ
    pictures = {(report / f"label-trees/label-{label}.dot").read_text().split("\n", 1)[1] for label in LABELS}
    assert len(pictures) == len(LABELS)
    assert "cluster_legend" in (report / "label-trees/label-husky.dot").read_text()


def test_without_graphviz_each_label_gets_its_dot_file_and_the_page_says_how_to_draw_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_without_dot())
    assert shutil.which("dot") is None
    matrix = made_up_matrix(n=120)
    report = build(tmp_path, matrix, tree_for(matrix))
    _check_per_label(report, "dot")
    per_label = (report / "index.html").read_text().split('id="per-label"', 1)[1].split("<section", 1)[0]
    assert "apt-get install graphviz" in per_label and "label-trees/" in per_label
    assert "apt-get install graphviz" in (report / "report.md").read_text()


def test_few_concepts_are_shown_once_not_as_top_and_bottom_of_the_same_list() -> None:
    signed = pd.Series({"a": 0.3, "b": -0.2, "c": 0.1, "d": -0.05})
    magnitude = signed.abs() + 0.01
    table = signed_concepts(signed, magnitude, top=10)
    assert sorted(table["concept"]) == ["a", "b", "c", "d"]
    assert table[table["effect"] == "raises"]["concept"].tolist() == ["a", "c"]
    assert table[table["effect"] == "lowers"]["concept"].tolist() == ["b", "d"]
    many = pd.Series(np.linspace(-1, 1, 40), index=[f"c{i}" for i in range(40)])
    assert len(signed_concepts(many, many.abs(), top=5)) == 10


def test_its_score_says_whether_a_raising_concept_counts_by_its_presence_or_absence() -> None:
    from conceptforest.explain.per_label import score_contrast

    data = pd.DataFrame({"a": [0.9, 0.8, 0.1, 0.2], "b": [0.1, 0.2, 0.9, 0.7]})
    own = np.array([True, True, False, False])
    contrast = score_contrast(data, own)
    assert contrast is not None and contrast["a"] > 0 > contrast["b"]
    table = signed_concepts(pd.Series({"a": 0.3, "b": 0.2}), pd.Series({"a": 0.3, "b": 0.2}), 5, contrast)
    assert dict(zip(table["concept"], table["its_score"], strict=True)) == {"a": "higher", "b": "lower"}
    assert score_contrast(data, np.ones(4, dtype=bool)) is None  # no other images to compare with
    assert set(signed_concepts(pd.Series({"a": 0.3}), pd.Series({"a": 0.3}), 5)["its_score"]) == {""}


def test_a_report_with_four_concepts_lists_each_once_per_label(tmp_path: Path) -> None:
    matrix = made_up_matrix(n=120)
    keep = [c for c in matrix.concept_ids if c.startswith("head/ears:shape")] + [matrix.concept_ids[-1]]
    matrix.meta = matrix.with_meta(concepts=[c for c in matrix.concepts if c.id in keep]).meta
    matrix.frame = matrix.frame[["path", "label", "split", "sha256", *keep]]
    report = build(tmp_path, matrix, None)
    for number in range(len(LABELS)):
        table = pd.read_csv(report / "tables" / f"label_{number}_concepts.csv")
        assert len(table) <= 4 and table["concept"].is_unique
        assert set(table["effect"]) <= {"raises", "lowers"}
    html = (report / "index.html").read_text()
    assert "no per-label tree pictures" in html and "no per-label tree pictures" in (report / "report.md").read_text()


def test_every_label_gets_its_beeswarm_up_to_twenty(tmp_path: Path) -> None:
    report = build(tmp_path, made_up_matrix(n=120), None)
    section = (report / "index.html").read_text().split('id="examples-with-shap"', 1)[1].split("<section", 1)[0]
    assert all(f"SHAP values for {label}" in section for label in LABELS)
    assert sorted(p.name for p in (report / "figures").glob("beeswarm_*")) == [
        f"beeswarm_{n}.png" for n in range(len(LABELS))
    ]


def test_why_a_not_b_says_whether_each_difference_is_beyond_the_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.array(["a"] * 50 + ["b"] * 50)
    X = pd.DataFrame({"signal": rng.normal(0, 1, 100) + (y == "a") * 3.0, "noise": rng.normal(0, 1, 100)})
    table = why_a_not_b(X, y, "a", "b")
    assert {"ci95_low", "ci95_high", "p_welch", "beyond_noise"} <= set(table.columns)
    rows = table.set_index("concept")
    assert rows.loc["signal", "beyond_noise"] == "yes" and rows.loc["signal", "p_welch"] < 1e-6
    assert rows.loc["signal", "ci95_low"] < rows.loc["signal", "difference"] < rows.loc["signal", "ci95_high"]
    assert rows.loc["noise", "beyond_noise"] == "no"
    single = why_a_not_b(X.iloc[:51], y[:51], "a", "b")
    assert set(single["beyond_noise"]) == {"too few images"}


def test_the_report_explains_how_to_read_the_why_tables(tmp_path: Path) -> None:
    report = build(tmp_path, made_up_matrix(n=120), None)
    html = (report / "index.html").read_text()
    tables = sorted((report / "tables").glob("why_*.csv"))
    assert tables, "the made-up data has confused pairs"
    for path in tables:
        assert "beyond_noise" in pd.read_csv(path).columns
    assert "How to read a &#39;why A and not B&#39; table" in html
    assert "How to read a 'why A and not B' table" in (report / "report.md").read_text().replace("\\", "")
    assert re.search(r"position:\s*sticky", html) and "<details" in html


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("report_size", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_size_benchmark_runs_on_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    result = _benchmark().main(
        ["--labels", "4", "--images", "60", "--baseline-labels", "3", "--baseline-images", "40", "--trees", "5"]
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    for size in ("baseline", "large"):
        assert result[size]["index_html_bytes"] > 0 and result[size]["build_s"] > 0
    assert result["large"]["labels"] == 4 and result["baseline"]["images"] == 40
