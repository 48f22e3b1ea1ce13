"""Issue 7, report half: hostile text in figures, Markdown and CSV; file modes; stale folders; Graphviz; duplicates."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from conceptforest.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from conceptforest.cache import file_sha256
from conceptforest.explain import Report, explain_model, explain_shap, plots
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models import load_bundle, train_model
from tests.test_models import made_up_matrix
from tests.test_tree import dog_tree

HOSTILE_IMG = "<img src=x onerror=alert(1)>"
MATH_LABEL = "$x^$"


def _relabel(matrix: FeatureMatrix, old: str, new: str) -> None:
    matrix.frame["label"] = matrix.frame["label"].replace(old, new)
    concepts = [
        dataclasses.replace(c, labels=tuple(new if label == old else label for label in c.labels))
        for c in matrix.concepts
    ]
    labels = [new if label == old else label for label in matrix.labels]
    matrix.meta = matrix.with_meta(labels=labels, concepts=concepts).meta


def _rename_concept(matrix: FeatureMatrix, old: str, new: str) -> None:
    concepts = [
        dataclasses.replace(c, id=new, value=new.split("=", 1)[1]) if c.id == old else c for c in matrix.concepts
    ]
    matrix.meta = matrix.with_meta(concepts=concepts).meta
    matrix.frame = matrix.frame.rename(columns={old: new})


def _explain(matrix: FeatureMatrix, folder: Path, **options: object) -> Report:
    train_model(matrix, folder / "model", n_estimators=10)
    return explain_model(
        load_bundle(folder / "model"),
        matrix,
        folder / "report",
        n_repeats=2,
        shap_rows=30,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


# item 5: `$` is plain text in every figure


def test_dollar_signs_in_labels_and_concepts_do_not_crash_the_report(tmp_path: Path) -> None:
    matrix = made_up_matrix(n=120)
    _relabel(matrix, "husky", MATH_LABEL)
    _rename_concept(matrix, "head/ears:shape=v1", "head/ears:shape=$5 ^{ $")
    report = _explain(matrix, tmp_path, worst=3)
    assert (tmp_path / "report" / "index.html").exists()
    assert "Examples with SHAP" in report.section_titles
    assert MATH_LABEL in (tmp_path / "report" / "report.json").read_text()


def test_every_plot_draws_dollars_as_plain_text() -> None:
    matrix = made_up_matrix(n=60)
    _relabel(matrix, "husky", MATH_LABEL)
    _rename_concept(matrix, "head/ears:shape=v1", "head/ears:shape=$\\frac{$")
    model = train_model(matrix, n_estimators=10).model
    explanation = explain_shap(model, matrix.X("test").iloc[:5])
    table = pd.DataFrame({"concept": ["$a^$", "b$"], "mean": [0.2, 0.1]})
    normalized = pd.DataFrame(np.eye(2), index=[MATH_LABEL, "$_$"], columns=[MATH_LABEL, "$_$"])
    figures = [
        plots.importance_bars(table, "concept", "mean", title="$^$"),
        plots.confusion_heatmap(normalized),
        plots.class_beeswarm(explanation, MATH_LABEL),
        plots.contribution_pair(explanation, 0, MATH_LABEL, "pug"),
        plots.waterfall(explanation, 0, MATH_LABEL),
    ]
    for figure in figures:
        figure.savefig(io.BytesIO(), format="png")
        texts = [t.get_text() for t in figure.findobj(Text) if isinstance(t, Text)]
        assert any("$" in text for text in texts)
        plt.close(figure)


# item 16: report.md is escaped


def test_markdown_escape_neutralises_html_and_table_syntax() -> None:
    from conceptforest.explain.report import markdown_escape

    escaped = markdown_escape("<img src=x onerror=alert(1)> | `a` [l](u) *b* _c_ & \\")
    assert "<" not in escaped and ">" not in escaped and "&lt;img" in escaped
    assert "\\|" in escaped and "\\`" in escaped and "\\[" in escaped and "\\*" in escaped and "\\_" in escaped
    assert "&amp;" in escaped and "line\nbreak" not in markdown_escape("line\nbreak", inline=True)


def test_markdown_report_carries_no_raw_html_from_labels_files_or_concepts(tmp_path: Path) -> None:
    matrix = made_up_matrix(n=120)
    _relabel(matrix, "pug", HOSTILE_IMG)
    _rename_concept(matrix, "head/ears:shape=v2", "head/ears:shape=<b onmouseover=x>|`a`")
    skipped = pd.DataFrame({"path": ["<script>alert(2)</script>.jpg"], "reason": ["empty | file"]})
    _explain(matrix, tmp_path, skipped=skipped)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "<img" not in markdown and "<b " not in markdown and "<script" not in markdown
    assert "&lt;img src=x onerror=alert(1)&gt;" in markdown and "&lt;script&gt;" in markdown
    for line in markdown.splitlines():  # every table row keeps its column count
        if line.startswith("|") and "skipped" not in line:
            cells = line.replace("\\|", "").count("|")
            assert cells >= 2
    skipped_rows = [line for line in markdown.splitlines() if "alert(2)" in line]
    assert skipped_rows and all(row.replace("\\|", "").count("|") == 3 for row in skipped_rows)


# item 18: spreadsheet formulas in CSV cells


def test_csv_text_cells_are_neutralised_and_numbers_kept(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "=label": ["=1+1", "+2", "-cmd", "@sum", "\tx", "\ry", "plain", "-"],
            "value": [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0, 3.0, -4.0],
            "count": [-1, 2, 3, 4, 5, 6, 7, 8],
        }
    )
    Report("t").add_table("A", "cells", table).save(tmp_path)
    back = pd.read_csv(tmp_path / "tables" / "cells.csv", keep_default_na=False)
    assert list(back.columns) == ["'=label", "value", "count"]
    assert back["'=label"].tolist() == ["'=1+1", "'+2", "'-cmd", "'@sum", "'\tx", "'\ry", "plain", "'-"]
    assert back["value"].tolist() == [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0, 3.0, -4.0]
    assert back["count"].tolist()[0] == -1


# item 26: files respect the umask


def test_atomic_writes_respect_the_umask(tmp_path: Path, umask_022: None) -> None:
    for path in (
        atomic_write_bytes(tmp_path / "a.bin", b"x"),
        atomic_write_text(tmp_path / "b.txt", "x"),
        atomic_write_json(tmp_path / "c.json", {}),
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    os.umask(0o077)
    assert stat.S_IMODE(atomic_write_text(tmp_path / "d.txt", "x").stat().st_mode) == 0o600


def test_report_files_respect_the_umask(tmp_path: Path, umask_022: None) -> None:
    Report("t").add_table("A", "tab", pd.DataFrame({"a": [1]})).add_figure("A", "f", b"\x89PNG").save(tmp_path)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 5
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in written)


# item 12: a report written over an old one leaves nothing stale, and says what made it


def test_a_new_report_removes_the_old_reports_files(tmp_path: Path) -> None:
    old = Report("old").add_table("A", "old_only", pd.DataFrame({"a": [1]})).add_figure("A", "old_fig", b"\x89PNG")
    old.save(tmp_path)
    (tmp_path / "trees").mkdir()
    (tmp_path / "notes.txt").write_text("mine")  # not the report's: kept
    (tmp_path / "tables" / "mydata.csv").write_text("x\n1\n")  # the user's, in the report's own folder: kept
    (tmp_path / "figures" / "my_plot.png").write_bytes(b"\x89PNG mine")
    Report("new").add_table("A", "tab", pd.DataFrame({"a": [2]})).save(tmp_path)
    assert (tmp_path / "tables" / "mydata.csv").read_text() == "x\n1\n"
    assert (tmp_path / "figures" / "my_plot.png").read_bytes() == b"\x89PNG mine"
    assert not (tmp_path / "tables" / "old_only.csv").exists()
    assert not (tmp_path / "figures" / "old_fig.png").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["title"] == "new" and "tables/tab.csv" in data["files"]
    assert data["made_by"]["program"] == "conceptforest" and data["made_by"]["created_at"]


def test_a_report_killed_while_writing_leaves_no_old_index_beside_new_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Report("old").add_table("A", "tab", pd.DataFrame({"a": [1]})).save(tmp_path)
    assert (tmp_path / "index.html").exists()
    import conceptforest.explain.report as report_module

    real = atomic_write_text

    def killed(path: str | Path, text: str) -> Path:
        if Path(path).name == "report.md":
            raise KeyboardInterrupt
        return real(path, text)

    monkeypatch.setattr(report_module, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        Report("new").add_table("A", "tab", pd.DataFrame({"a": [2]})).save(tmp_path)
    assert not (tmp_path / "index.html").exists()


# item 19: the Trees section says when Graphviz is missing


def _path_without_dot() -> str:
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep) if not (Path(d) / "dot").exists()]
    return os.pathsep.join(keep)


def test_trees_section_explains_graphviz_when_dot_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also (item 12) explain clears an old report's tree files and records what made the report, and (item 1)
    a matrix without duplicates gets no data-quality section."""
    monkeypatch.setenv("PATH", _path_without_dot())
    assert shutil.which("dot") is None
    stale = tmp_path / "report" / "trees" / "label-gone.svg"
    stale.parent.mkdir(parents=True)
    stale.write_text("<svg/>")  # an earlier report's picture, listed with its sha256 in that report's record
    record = {"made_by": {"program": "conceptforest"}, "files": {"trees/label-gone.svg": file_sha256(stale)}}
    (tmp_path / "report" / "report.json").write_text(json.dumps(record))
    report = _explain(made_up_matrix(n=80), tmp_path, tree=dog_tree(), made_by={"model_dir": "m", "run_dir": "r"})
    assert "Trees" in report.section_titles and "Data quality" not in report.section_titles
    html = (tmp_path / "report" / "index.html").read_text()
    markdown = (tmp_path / "report" / "report.md").read_text()
    for text in (html, markdown):
        assert "apt-get install graphviz" in text and "trees/" in text
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "report" / "trees").iterdir()) == [
        "label-beagle.dot",
        "label-husky.dot",
        "label-pug.dot",
        "schema.dot",
    ]
    assert not list((tmp_path / "report" / "figures").glob("tree_*"))
    assert not (tmp_path / "report" / "tables" / "duplicate_files.csv").exists()
    made_by = json.loads((tmp_path / "report" / "report.json").read_text())["made_by"]
    assert made_by["model_dir"] == "m" and made_by["run_dir"] == "r" and made_by["tree_hash"] == "abc"
    assert "Made by" in html and "model_dir: m" in html


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_trees_section_embeds_pictures_when_dot_is_present(tmp_path: Path) -> None:
    report = _explain(made_up_matrix(n=80), tmp_path, tree=dog_tree())
    assert "Trees" in report.section_titles
    html = (tmp_path / "report" / "index.html").read_text()
    assert "apt-get install graphviz" not in html and "data:image/svg+xml;base64," in html
    assert (tmp_path / "report" / "figures" / "tree_schema.svg").exists()
    assert (tmp_path / "report" / "trees" / "schema.dot").exists()


# item 1: byte-identical files under different labels


def test_report_lists_byte_identical_files_under_different_labels(tmp_path: Path) -> None:
    matrix = made_up_matrix(n=120)
    frame = matrix.frame
    first_pug = int(np.flatnonzero(frame["label"] == "pug")[0])
    first_husky = int(np.flatnonzero(frame["label"] == "husky")[0])
    second_husky = int(np.flatnonzero(frame["label"] == "husky")[1])
    digest = "ab" * 32
    frame.loc[[first_pug, first_husky], "sha256"] = digest
    frame.loc[first_pug, "path"] = "pug/<img src=x>.jpg"
    frame.loc[second_husky, "sha256"] = frame.loc[int(np.flatnonzero(frame["label"] == "husky")[2]), "sha256"]
    report = _explain(matrix, tmp_path)
    assert "Data quality" in report.section_titles
    table = pd.read_csv(tmp_path / "report" / "tables" / "duplicate_files.csv")
    assert sorted(table["label"]) == ["husky", "pug"] and set(table["sha256"]) == {digest[:12]}
    assert list(table.columns) == ["path", "label", "split", "sha256"]
    html = (tmp_path / "report" / "index.html").read_text()
    assert "&lt;img src=x&gt;.jpg" in html and "<img src=x>" not in html
    assert "<img src=x>" not in (tmp_path / "report" / "report.md").read_text()


def test_the_html_page_escapes_a_hostile_label_in_every_new_part(tmp_path: Path) -> None:
    matrix = made_up_matrix(n=120)
    _relabel(matrix, "pug", HOSTILE_IMG)
    _explain(matrix, tmp_path)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "<img src=x" not in html  # per-label summaries, galleries, why-A-not-B columns, findings
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 5
    assert "<script" not in html
