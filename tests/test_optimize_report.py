"""The report section of an optimised descriptor set: accuracy curve, best/worst descriptors, changes, escaping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conceptforest.concepts.optimize import OptimizeSettings, optimize_descriptors
from conceptforest.explain.optimization_section import SECTION, add_optimization, best_and_worst
from conceptforest.explain.report import Report
from tests.llm_stub import StubServer
from tests.test_optimize import LABELS, client, few_shot, neutral, scripted


def hostile(body: dict[str, Any]) -> dict[str, Any]:
    answer = scripted(good={0}, candidates=2)(body)
    for entry in answer["labels"]:
        entry["descriptors"].append("<script>alert(1)</script> $x$ look")
    return answer


def test_the_section_shows_the_curve_the_descriptors_and_escapes_them(stub: StubServer, tmp_path: Path) -> None:
    stub.state.answers["optimize_initial"] = neutral
    stub.state.answers["optimize_mutation"] = hostile
    described = optimize_descriptors(
        few_shot(), client(stub, tmp_path), settings=OptimizeSettings(iterations=2, candidates=2), progress=False
    )
    assert described.optimization is not None and described.optimization.best_iteration == 2
    report = Report("optimised")
    add_optimization(report, described)
    index = report.save(tmp_path / "report")
    html = index.read_text()
    assert SECTION in html and "<script>alert(1)</script>" not in html
    assert html.count("data:image/png;base64") == 2  # the accuracy curve and the descriptor bars
    changes = (tmp_path / "report" / "tables" / "optimization_changes.csv").read_text()
    assert all(f"good{k} look" in changes for k in range(len(LABELS)))
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["optimization"]["best_iteration"] == 2
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert SECTION in markdown and "<script>" not in markdown


def test_few_descriptors_are_shown_once_not_as_best_and_worst() -> None:
    import pandas as pd

    table = pd.DataFrame({"label": ["a"] * 4, "descriptor": list("wxyz"), "contribution": [0.1, -0.2, 0.3, 0.0]})
    assert list(best_and_worst(table, "a")["descriptor"]) == ["y", "w", "z", "x"]
    many = pd.DataFrame({"label": ["a"] * 8, "descriptor": list("abcdefgh"), "contribution": range(8)})
    assert list(best_and_worst(many, "a")["descriptor"]) == ["h", "g", "f", "c", "b", "a"]


def test_a_set_without_a_record_adds_nothing() -> None:
    from conceptforest.features.synthetic import demo_descriptor_sets

    report = Report("plain")
    add_optimization(report, demo_descriptor_sets()[0])
    assert SECTION not in report.to_markdown()
