"""The report's statistics (issue 19, items 7-9): importance intervals over test images, a roll-up through every
level of the part tree, and verdicts from one test with Holm's correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import permutation_importance

from conceptforest.explain.findings import MethodRow, comparison_findings, holm_adjust, verdict
from conceptforest.explain.importance import concept_groups, group_permutation_table, permutation_table
from conceptforest.models import train_model
from tests.test_models import concept_dicts, made_up_matrix, signal_ids

# --- item 7: the importance interval is over test images --------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> tuple[object, pd.DataFrame, pd.Series, dict[str, list[str]]]:
    matrix = made_up_matrix(n=800)  # 200 test images
    model = train_model(matrix, n_estimators=30).model
    groups = {"head/ears:shape": sorted(signal_ids(matrix))}
    return model, matrix.X("test"), matrix.y("test"), groups


def _width(table: pd.DataFrame) -> float:
    return float(table["ci95_high"].iloc[0] - table["ci95_low"].iloc[0])


def test_the_group_interval_widens_when_the_test_set_shrinks(trained) -> None:  # type: ignore[no-untyped-def]
    model, X, y, groups = trained
    # one repeat: the spread of repeats is zero, an interval over images is not
    full = group_permutation_table(model, X, y, groups, n_repeats=1)
    quarter = group_permutation_table(model, X.iloc[:50], y.iloc[:50], groups, n_repeats=1)
    assert 0 < _width(full) < _width(quarter)
    # measured: 0.195 on 200 images, 0.360 on 50 (a quarter of the images: about twice as wide)
    assert 1.4 < _width(quarter) / _width(full) < 3.0
    assert full["images"].iloc[0] == 200 and quarter["images"].iloc[0] == 50


def test_the_single_concept_interval_widens_when_the_test_set_shrinks(trained) -> None:  # type: ignore[no-untyped-def]
    model, X, y, groups = trained
    full = permutation_table(model, X, y, n_repeats=1).set_index("concept")
    quarter = permutation_table(model, X.iloc[:50], y.iloc[:50], n_repeats=1).set_index("concept")
    signal = groups["head/ears:shape"]
    full_width = (full.loc[signal, "ci95_high"] - full.loc[signal, "ci95_low"]).to_numpy()
    quarter_width = (quarter.loc[signal, "ci95_high"] - quarter.loc[signal, "ci95_low"]).to_numpy()
    assert (full_width > 0).all() and (quarter_width > full_width).all()


def test_the_single_concept_means_are_sklearns(trained) -> None:  # type: ignore[no-untyped-def]
    model, X, y, _ = trained
    table = permutation_table(model, X, y, n_repeats=4, random_state=3).set_index("concept")
    expected = permutation_importance(model, X, np.asarray(y), scoring="accuracy", n_repeats=4, random_state=3)
    assert np.allclose(table.loc[list(X.columns), "mean"], expected.importances_mean, atol=1e-12)
    assert np.allclose(table.loc[list(X.columns), "repeat_std"], expected.importances_std, atol=1e-12)


def test_the_interval_is_seeded_and_holds_the_mean(trained) -> None:  # type: ignore[no-untyped-def]
    model, X, y, groups = trained
    first = group_permutation_table(model, X, y, groups, n_repeats=3, random_state=5)
    again = group_permutation_table(model, X, y, groups, n_repeats=3, random_state=5)
    pd.testing.assert_frame_equal(first, again)
    assert (first["ci95_low"] <= first["mean"]).all() and (first["mean"] <= first["ci95_high"]).all()


# --- item 8: the roll-up goes through every level of the part tree -----------------------------------------------


def test_part_groups_include_every_inner_part() -> None:
    matrix = made_up_matrix(n=40)
    groups = concept_groups(concept_dicts(matrix), "part_tree")
    assert list(groups) == ["head", "head/ears", "head/eyes", "tail", "body", "body/coat"]
    assert groups["head"] == groups["head/ears"] + groups["head/eyes"]
    assert groups["body"] == groups["body/coat"] and len(groups["tail"]) == 6


# --- item 9: one test, Holm's correction ---------------------------------------------------------------------------


def test_holm_adjusts_in_step_down_order() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running maximum 0.02, 0.03, 0.06, 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []


def test_the_verdict_is_the_holm_adjusted_mcnemar_test_alone() -> None:
    forest = MethodRow("forest", "concept forest", 0.80, 0.75, 0.85)
    apart = MethodRow("x", "x", 0.60, 0.55, 0.65, mcnemar_p=0.2)  # intervals apart, the paired test does not reject
    assert verdict(forest, apart, adjusted_p=0.2) == "not distinguishable from"
    assert verdict(forest, apart, adjusted_p=0.01) == "better than"
    assert verdict(forest, MethodRow("x", "x", 0.95, 0.90, 0.99), adjusted_p=0.001) == "worse than"
    assert verdict(forest, MethodRow("x", "x", 0.78, 0.72, 0.84), adjusted_p=None) == "not distinguishable from"


def test_six_comparisons_each_at_p_003_are_not_enough_after_holm() -> None:
    forest = MethodRow("forest", "concept forest", 0.80, 0.75, 0.85)
    names = ["shuffled-tree", "random-words", "chance", "clip", "ensemble", "probe"]
    rows = [forest, *(MethodRow(n, n, 0.70, 0.62, 0.78, mcnemar_p=0.03) for n in names)]
    found = comparison_findings(rows)
    assert len(found) == 6
    for finding in found:
        assert finding.values["verdict"] == "not distinguishable from", finding.sentence
        assert finding.values["mcnemar_p_holm"] == pytest.approx(0.18)
        assert "Holm-adjusted over 6 comparisons: 0.18" in finding.sentence
    one = comparison_findings([forest, MethodRow("clip", "CLIP", 0.70, 0.62, 0.78, mcnemar_p=0.03)])
    assert one[0].values["verdict"] == "better than"
