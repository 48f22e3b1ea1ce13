"""Findings first, input warnings at the top, misclassified images shown (issue 12)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conceptforest.concepts.template import template_tree
from conceptforest.explain import explain_model
from conceptforest.explain.findings import MethodRow, comparison_findings, group_findings, verdict
from conceptforest.explain.misclassified import THUMBNAIL_SIDE, relative_name, thumbnail_uri
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models import load_bundle, train_model
from conceptforest.models.methods.base import MethodResult
from conceptforest.models.methods.table import comparison_table
from tests.test_models import LABELS, made_up_matrix

# --- comparison findings ------------------------------------------------------------------------------------------


def result(name: str, display: str, predicted: list[str]) -> MethodResult:
    scores = np.zeros((len(predicted), len(LABELS)))
    return MethodResult(name, display, tuple(LABELS), np.asarray(predicted, dtype=object), scores)


def findings_of(forest_right: int, control_right: int, n: int = 90) -> list[str]:
    """Comparison sentences for a forest right on ``forest_right`` images and a control right on
    ``control_right`` of ``n`` (the control's errors include all of the forest's)."""
    truth = [LABELS[i % 3] for i in range(n)]
    wrong = [LABELS[(i + 1) % 3] for i in range(n)]
    forest = [t if i < forest_right else w for i, (t, w) in enumerate(zip(truth, wrong, strict=True))]
    control = [t if i < control_right else w for i, (t, w) in enumerate(zip(truth, wrong, strict=True))]
    outcomes = [
        result("forest", "concept forest", forest),
        result("shuffled-tree", "control: forest on a shuffled tree", control),
        result("probe", "linear probe on image embeddings", truth),
    ]
    table = comparison_table(outcomes, truth, LABELS, seed=0)
    return [finding.sentence for finding in comparison_findings(MethodRow.from_table(table))]


def test_a_forest_that_beats_the_control_and_one_that_does_not_give_different_findings() -> None:
    beats = findings_of(forest_right=85, control_right=40)
    ties = findings_of(forest_right=85, control_right=84)
    assert beats != ties
    control_beats, control_ties = beats[0], ties[0]
    assert "is better than control: forest on a shuffled tree, at accuracy 0.444" in control_beats
    assert "is not distinguishable from control: forest" in control_ties
    assert "accuracy 0.944" in control_beats and "accuracy 0.444" in control_beats  # 85/90 and 40/90
    assert "accuracy 0.933" in control_ties and "McNemar p = 1" in control_ties
    probe = beats[1]
    # the intervals (0.889-0.989 and 1.000-1.000) do not overlap, but 5 discordant images give McNemar p = 0.0625:
    # the paired test alone decides, so the probe is not distinguishable (it was "worse than" by the intervals)
    assert "not distinguishable from the ceiling, linear probe" in probe and "accuracy 1.000" in probe
    assert "McNemar p = 0.062, Holm-adjusted over 2 comparisons: 0.062" in probe and "94%" in probe


def test_verdict_follows_the_holm_adjusted_paired_test_not_the_intervals() -> None:
    forest = MethodRow("forest", "concept forest", 0.80, 0.75, 0.85)
    assert verdict(forest, MethodRow("x", "x", 0.60, 0.55, 0.65, mcnemar_p=0.2), 0.2) == "not distinguishable from"
    assert verdict(forest, MethodRow("x", "x", 0.95, 0.90, 0.99, mcnemar_p=0.01), 0.02) == "worse than"
    assert verdict(forest, MethodRow("x", "x", 0.78, 0.72, 0.84, mcnemar_p=0.01), 0.03) == "better than"
    assert verdict(forest, MethodRow("x", "x", 0.78, 0.72, 0.84, mcnemar_p=0.01), 0.06) == "not distinguishable from"


def test_importance_findings_name_the_groups_that_matter_and_those_that_do_not() -> None:
    table = pd.DataFrame(
        {
            "group": ["head/ears", "tail", "body/coat"],
            "mean": [0.31, 0.004, -0.002],
            "ci95_low": [0.25, -0.01, -0.02],
            "ci95_high": [0.36, 0.02, 0.01],
        }
    )
    matter, idle = group_findings(table, "parts")
    assert "1 of 3 parts lower accuracy" in matter.sentence and "head/ears (accuracy drop 0.310" in matter.sentence
    assert "2 of 3 parts do not measurably matter" in idle.sentence and "'tail', 'body/coat'" in idle.sentence
    flat = group_findings(table.assign(ci95_low=[-0.01, -0.01, -0.02]), "parts")
    assert len(flat) == 1 and "largest drop: head/ears, 0.310" in flat[0].sentence


# --- the report ---------------------------------------------------------------------------------------------------


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (300, 200)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def images_matrix(tmp_path: Path) -> tuple[FeatureMatrix, Path]:
    """The made-up matrix with image files under data/<label>/ (every third test image unreadable) and a few test
    labels swapped, so that some images are misclassified."""
    matrix = made_up_matrix(n=120)
    data = tmp_path / "data"
    frame = matrix.frame
    frame["path"] = [str(data / label / f"img{i}.png") for i, label in enumerate(frame["label"])]
    test_rows = np.flatnonzero(frame["split"].to_numpy() == "test")
    for position in test_rows[:4]:
        frame.loc[position, "label"] = LABELS[(LABELS.index(frame.loc[position, "label"]) + 1) % 3]
    for number, position in enumerate(test_rows):
        path = Path(frame.loc[position, "path"])
        if number % 3 == 1:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not an image")
        else:
            write_image(path, (40 * number % 255, 90, 160))
    return matrix.with_meta(source=str(data)), data


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeatureMatrix, Path]:
    tmp_path = tmp_path_factory.mktemp("findings")
    matrix, data = images_matrix(tmp_path)
    train_model(matrix, tmp_path / "model", n_estimators=20)
    tree = template_tree("dog", LABELS)  # every label the same values
    explain_model(
        load_bundle(tmp_path / "model"), matrix, tmp_path / "report", tree=tree, n_repeats=2, shap_rows=60, worst=4
    )
    return tmp_path / "report", matrix, data


def test_the_report_opens_with_findings_and_warns_about_the_degenerate_tree(
    report_dir: tuple[Path, FeatureMatrix, Path],
) -> None:
    folder, _, _ = report_dir
    html = (folder / "index.html").read_text()
    data = json.loads((folder / "report.json").read_text())
    assert data["sections"][0] == "Findings"
    body = html.split("<h1>", 1)[1]
    assert body.index('id="findings"') < body.index('id="summary"')
    tree_warning = next(w for w in data["warnings"] if w["values"]["check"] == "indistinguishable")
    assert "'husky', 'pug', 'beagle'" in tree_warning["sentence"] and tree_warning["anchor"] == "trees"
    assert "&#39;husky&#39;, &#39;pug&#39;, &#39;beagle&#39;" in html.split('id="summary"')[0]
    for finding in [*data["warnings"], *data["findings"]]:
        assert f'id="{finding["anchor"]}"' in html, finding
        assert re.search(r"\d", finding["sentence"]), finding["sentence"]  # every sentence names values
    kinds = {finding["kind"] for finding in data["findings"]}
    assert kinds == {"comparison", "importance", "confusion"}
    markdown = (folder / "report.md").read_text()
    assert markdown.index("## Findings") < markdown.index("## Summary")
    assert "**Warning:** All 3 labels have the same" in markdown and "([evidence](#trees))" in markdown


def test_the_roll_up_permutes_every_level_of_the_part_tree_and_the_note_says_how_verdicts_are_made(
    report_dir: tuple[Path, FeatureMatrix, Path],
) -> None:
    folder, _, _ = report_dir
    parts = pd.read_csv(folder / "tables" / "rollup_part.csv")
    assert set(parts["group"]) == {"head", "head/ears", "head/eyes", "tail", "body", "body/coat"}
    assert {"ci95_low", "ci95_high", "repeat_std", "images"} <= set(parts.columns)
    markdown = (folder / "report.md").read_text()
    findings = markdown.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "Holm-adjusted over the comparisons" in findings and "95 % bootstrap interval" in findings
    assert "95 % bootstrap interval of the drop over the test images" in markdown.split("## Roll-up", 1)[1]


def test_misclassified_examples_show_their_images_with_relative_names(
    report_dir: tuple[Path, FeatureMatrix, Path],
) -> None:
    folder, _, data = report_dir
    html = (folder / "index.html").read_text()
    shown = json.loads((folder / "report.json").read_text())["misclassified"]
    assert len(shown) == 4
    readable = [example for example in shown if _is_image(data, example)]
    assert 0 < len(readable) < len(shown)  # some files were left unreadable on purpose
    for example in shown:
        assert example["thumbnail"] == _is_image(data, example)
        assert re.fullmatch(r"(husky|pug|beagle)/img\d+\.png", example["path"]), example["path"]
        assert f"{example['path']}: true {example['true_label']} (p=" in html
    thumbnails = re.findall(r'<figure class="example"><img alt="[^"]*"\nsrc="data:image/jpeg;base64,([^"]+)"', html)
    assert len(thumbnails) == len(readable)
    for encoded in thumbnails:
        assert max(Image.open(io.BytesIO(base64.b64decode(encoded))).size) <= THUMBNAIL_SIDE
    assert str(data) not in html  # no absolute path on the page


def _is_image(data: Path, example: dict[str, object]) -> bool:
    return (data / str(example["path"])).read_bytes() != b"not an image"


def test_thumbnails_and_relative_names(tmp_path: Path) -> None:
    write_image(tmp_path / "big.png", (200, 10, 10), size=(640, 320))
    uri = thumbnail_uri(tmp_path / "big.png")
    assert uri is not None and uri.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size == (96, 48)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n")
    assert thumbnail_uri(tmp_path / "broken.png") is None and thumbnail_uri(tmp_path / "missing.png") is None
    assert relative_name(tmp_path / "data" / "a" / "x.png", tmp_path / "data") == "a/x.png"
    (tmp_path / "list.csv").write_text("path,label\n")
    assert relative_name(tmp_path / "imgs" / "x.png", tmp_path / "list.csv") == "imgs/x.png"
    assert relative_name("/elsewhere/x.png", tmp_path / "data") == "/elsewhere/x.png"
