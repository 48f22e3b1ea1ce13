"""Input warnings on a concept tree: labels it cannot tell apart, values copied from the prompt's example, labels
with few concepts.

A small LLM may answer every label with the same values (often the example of the prompt itself); the tree then
validates, features are paid for, and the forest can only learn from CLIP's correlations. These checks say so when
the tree is written (``concepts generate``) and at the top of the report. They work on concepts (id, value and the
labels that have it), so the report can run them from a feature matrix's concepts when the tree file is not given.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from conceptforest.concepts.prompts import STEPS, load_prompt
from conceptforest.concepts.tree import Concept, ConceptTree, normalize_text

__all__ = [
    "MIN_CONCEPTS_PER_LABEL",
    "NEAR_IDENTICAL",
    "TreeWarning",
    "check_concepts",
    "check_tree",
    "prompt_example_values",
]

# a label with fewer distinct concepts than this is warned about
MIN_CONCEPTS_PER_LABEL = 5
# two labels whose concept sets overlap at least this much (Jaccard) are "nearly identical"
NEAR_IDENTICAL = 0.8
# pairwise comparison stops being worth its cost past this many labels (identical sets are still found)
MAX_LABELS_FOR_PAIRS = 400
NAMES_SHOWN = 10

WarningKind = Literal["indistinguishable", "near_identical", "prompt_example", "few_concepts"]


@dataclass(frozen=True)
class TreeWarning:
    """One problem of a tree's input quality, with the labels and values that show it."""

    kind: WarningKind
    message: str
    labels: tuple[str, ...]
    values: tuple[str, ...] = ()


def names(items: Sequence[str], shown: int = NAMES_SHOWN) -> str:
    """``a, b, c`` (quoted with repr, so odd characters stay visible) and ``and N more`` past ``shown``."""
    listed = ", ".join(repr(item) for item in items[:shown])
    return listed + (f" and {len(items) - shown} more" if len(items) > shown else "")


@functools.lru_cache(maxsize=1)
def prompt_example_values() -> frozenset[str]:
    """The values shown as examples in the packaged prompt templates (the ``"values"`` of their JSON examples),
    normalised as tree values are."""
    found: set[str] = set()
    for step in STEPS:
        template = load_prompt(step)
        for line in template.user.splitlines():
            found.update(_example_values(line.strip()))
    return frozenset(found)


def _example_values(line: str) -> Iterator[str]:
    if not line.startswith("{"):
        return
    try:
        example = json.loads(line)
    except ValueError:
        return
    values = example.get("values") if isinstance(example, dict) else None
    if isinstance(values, dict):
        for items in values.values():
            if isinstance(items, list):
                yield from (normalize_text(item) for item in items if isinstance(item, str))


def _label_sets(labels: Sequence[str], concepts: Sequence[Concept]) -> dict[str, frozenset[str]]:
    sets: dict[str, set[str]] = {label: set() for label in labels}
    for concept in concepts:
        for label in concept.labels:
            sets.setdefault(label, set()).add(concept.id)
    return {label: frozenset(ids) for label, ids in sets.items()}


def _identical(sets: dict[str, frozenset[str]], template: bool) -> list[TreeWarning]:
    groups: dict[frozenset[str], list[str]] = {}
    for label, ids in sets.items():
        groups.setdefault(ids, []).append(label)
    warnings = []
    why = " (the template tree gives every label the same generic vocabulary by design)" if template else ""
    fix = "Generate a tree with an LLM (--llm MODEL)" if template else "Regenerate the tree with a stronger LLM"
    for ids, members in groups.items():
        if len(members) < 2 or not ids:
            continue
        every = "All" if len(members) == len(sets) else "These"
        warnings.append(
            TreeWarning(
                "indistinguishable",
                f"{every} {len(members)} labels have the same {len(ids)} concept values in the tree, so the tree "
                f"cannot tell them apart{why}: {names(members)}. {fix} or edit their values.",
                tuple(members),
                tuple(sorted(ids)[:NAMES_SHOWN]),
            )
        )
    return warnings


def _near_identical(sets: dict[str, frozenset[str]]) -> list[TreeWarning]:
    if len(sets) > MAX_LABELS_FOR_PAIRS:
        return []
    warnings = []
    for (a, set_a), (b, set_b) in combinations(sets.items(), 2):
        union = set_a | set_b
        if not union or set_a == set_b:
            continue
        jaccard = len(set_a & set_b) / len(union)
        if jaccard >= NEAR_IDENTICAL:
            differ = sorted(set_a ^ set_b)
            warnings.append(
                TreeWarning(
                    "near_identical",
                    f"Labels {a!r} and {b!r} share {len(set_a & set_b)} of their {len(union)} concept values "
                    f"(Jaccard {jaccard:.2f}); they differ only in {names(differ, 3)}.",
                    (a, b),
                    tuple(differ[:NAMES_SHOWN]),
                )
            )
    return warnings


def _copied_examples(labels: Sequence[str], concepts: Sequence[Concept]) -> list[TreeWarning]:
    """Values equal to a prompt example (one warning per value): examples of two or more words, or any example
    that every label has (a one-word example such as "short" is an ordinary value otherwise)."""
    examples = prompt_example_values()
    places: dict[str, list[Concept]] = {}
    for concept in concepts:
        value = normalize_text(concept.value)
        if value not in examples:
            continue
        if len(value.split()) < 2 and not (len(labels) > 1 and set(concept.labels) >= set(labels)):
            continue
        places.setdefault(value, []).append(concept)
    warnings = []
    for value, found in places.items():
        having = {label for concept in found for label in concept.labels}
        members = [label for label in labels if label in having]
        where = names([f"{c.part_path} {c.attribute}" for c in found], 5)
        warnings.append(
            TreeWarning(
                "prompt_example",
                f"The value {value!r} repeats the prompt's own example ({len(found)} place(s): {where}); "
                f"{len(members)} label(s) have it: {names(members)}. Check that the LLM did not copy the example "
                "instead of describing the labels.",
                tuple(members),
                (value,),
            )
        )
    return warnings


def _few_concepts(sets: dict[str, frozenset[str]], minimum: int) -> list[TreeWarning]:
    few = [(label, len(ids)) for label, ids in sets.items() if len(ids) < minimum]
    if not few:
        return []
    listed = ", ".join(f"{label!r} ({count})" for label, count in few[:NAMES_SHOWN])
    more = f" and {len(few) - NAMES_SHOWN} more" if len(few) > NAMES_SHOWN else ""
    return [
        TreeWarning(
            "few_concepts",
            f"{len(few)} label(s) have fewer than {minimum} concept values in the tree: {listed}{more}. Few concepts "
            "give the forest little to work with; raise --max-values or --max-attributes.",
            tuple(label for label, _ in few),
        )
    ]


def check_concepts(
    labels: Sequence[str],
    concepts: Sequence[Concept],
    *,
    template: bool = False,
    min_concepts: int = MIN_CONCEPTS_PER_LABEL,
) -> list[TreeWarning]:
    """Every input warning on ``concepts`` (each with the labels that have it): identical and nearly identical
    label value sets, values that repeat the prompt's example, and labels with fewer than ``min_concepts``
    concepts. ``template`` says the concepts come from the template tree (identical by design, and from no
    prompt)."""
    sets = _label_sets(labels, concepts)
    return [
        *_identical(sets, template),
        *_near_identical(sets),
        *([] if template else _copied_examples(labels, concepts)),  # template values come from no prompt
        *_few_concepts(sets, min_concepts),
    ]


def check_tree(tree: ConceptTree, *, min_concepts: int = MIN_CONCEPTS_PER_LABEL) -> list[TreeWarning]:
    """The input warnings of a tree (see :func:`check_concepts`).

    Examples
    --------
    >>> from conceptforest.concepts.tree import Part
    >>> same = {"shape": ["round"]}
    >>> tree = ConceptTree(domain="digit", labels=["0", "1"], parts=[Part(name="stroke", attributes=["shape"])],
    ...                    values={"0": {"stroke": same}, "1": {"stroke": same}})
    >>> [w.kind for w in check_tree(tree)]
    ['indistinguishable', 'few_concepts']
    """
    template = tree.provenance.generator == "template"
    return check_concepts(tree.labels, tree.concepts(), template=template, min_concepts=min_concepts)
