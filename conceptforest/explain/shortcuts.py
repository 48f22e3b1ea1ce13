"""The shortcut finding: the model leans on parts that the concept tree says every label shares.

A part whose every concept the tree gives to every label cannot, by the tree, tell labels apart: a constant part
or a nuisance (a background, the lighting). When permuting such a part still lowers accuracy beyond its interval,
the model found something in the images that differs between labels there, such as one label's photos sharing a
background (the Clever-Hans effect). The finding names those parts; it cannot say whether the difference is real
or a quirk of how the images were collected, which only the analyst can judge.

A part must also cost at least :data:`MIN_IMAGES` evaluated images' worth of accuracy: the permutation interval
measures the shuffling's randomness only, so one image that flips in every repeat gives a tight interval above
zero (seen on a 120-image split), and one image is not evidence of a shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from conceptforest.concepts.tree import Concept

__all__ = ["MIN_IMAGES", "shared_parts", "shortcut_sentence"]

MIN_IMAGES = 2


def shared_parts(concepts: Sequence[Concept], labels: Sequence[str]) -> set[str]:
    """Part paths all of whose concepts every label has."""
    everyone = set(labels)
    by_part: dict[str, bool] = {}
    for concept in concepts:
        shared = set(concept.labels) >= everyone
        by_part[concept.part_path] = by_part.get(concept.part_path, True) and shared
    return {part for part, shared in by_part.items() if shared}


def shortcut_sentence(part_table: pd.DataFrame, shared: set[str], rows: int) -> tuple[str, list[str]] | None:
    """The warning's sentence and the parts it names, or None when no shared part measurably matters.

    ``part_table`` is the grouped permutation table by part (group, mean, ci95_low, ci95_high), computed on
    ``rows`` evaluated images.
    """
    if part_table.empty or not shared:
        return None
    ranked = part_table.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
    matters = (ranked["ci95_low"] > 0) & (ranked["mean"] * rows >= MIN_IMAGES - 1e-9)  # float sums of 1/rows
    leaning = ranked[ranked["group"].astype(str).isin(shared) & matters]
    if leaning.empty:
        return None
    shown = "; ".join(
        f"{row.group} (rank {index + 1} of {len(ranked)}, accuracy drop {row.mean:.3f}, 95 % interval "
        f"{row.ci95_low:.3f}–{row.ci95_high:.3f})"
        for index, row in zip(leaning.index, leaning.itertuples(index=False), strict=True)
    )
    sentence = (
        f"The model leans on parts that the concept tree gives every label alike, so by the tree they cannot tell "
        f"labels apart: {shown}. It found a difference between labels there in these images: a nuisance (such "
        f"as a background shared by one label's images) or a shortcut; check how the images were collected."
    )
    return sentence, [str(group) for group in leaning["group"]]
