"""The shortcut finding: parts the tree gives every label alike that still matter when permuted."""

from __future__ import annotations

import pandas as pd

from conceptforest.concepts.tree import Concept
from conceptforest.explain.shortcuts import shared_parts, shortcut_sentence

LABELS = ("a", "b")


def concept(part: str, value: str, labels: tuple[str, ...]) -> Concept:
    return Concept(f"{part}:colour={value}", part, "colour", value, f"the colour of the {part} is {value}", labels)


def part_table(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["group", "mean", "ci95_low", "ci95_high"])


def test_parts_every_label_has_in_every_value_are_shared() -> None:
    concepts = [
        concept("background", "blue", LABELS),
        concept("background", "grey", LABELS),
        concept("body", "red", ("a",)),
        concept("body", "blue", LABELS),  # one shared value does not make the part shared
    ]
    assert shared_parts(concepts, LABELS) == {"background"}


def test_a_shared_part_that_matters_is_named_with_its_rank_and_interval() -> None:
    table = part_table([("body", 0.30, 0.25, 0.35), ("background", 0.12, 0.08, 0.16), ("eye", 0.01, -0.01, 0.02)])
    found = shortcut_sentence(table, {"background", "eye"}, rows=100)
    assert found is not None
    sentence, parts = found
    assert parts == ["background"]
    assert "background (rank 2 of 3, accuracy drop 0.120, 95 % interval 0.080–0.160)" in sentence
    assert "eye" not in sentence


def test_no_finding_when_shared_parts_do_not_matter() -> None:
    table = part_table([("body", 0.30, 0.25, 0.35), ("background", 0.01, -0.01, 0.03)])
    assert shortcut_sentence(table, {"background"}, rows=100) is None
    assert shortcut_sentence(table, set(), rows=100) is None
    assert shortcut_sentence(part_table([]), {"background"}, rows=100) is None


def test_one_image_flipping_in_every_repeat_is_not_a_shortcut() -> None:
    table = part_table([("body", 0.30, 0.25, 0.35), ("eye", 1 / 120, 1 / 120, 1 / 120)])  # a tight interval above 0
    assert shortcut_sentence(table, {"eye"}, rows=120) is None
    assert shortcut_sentence(table, {"eye"}, rows=240) is not None  # two images' worth on twice the rows
