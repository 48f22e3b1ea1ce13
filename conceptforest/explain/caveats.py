"""Warnings about what the numbers can mean: the backbone's weights, toy-world data, and shortcuts.

- random weights: the scores carry no visual meaning;
- the toy-world CLIP, or the world's own tree on another backbone: toy-world numbers, not photos;
- a shortcut: parts the tree gives every label alike that the model still leans on (see
  :mod:`conceptforest.explain.shortcuts`).
"""

from __future__ import annotations

from conceptforest.concepts.tree import ConceptTree
from conceptforest.explain.finding import Finding, warning
from conceptforest.explain.sections import Evaluation, Rollup
from conceptforest.explain.shortcuts import shared_parts, shortcut_sentence
from conceptforest.world.spec import WORLD_TREE_MARK

__all__ = ["backbone_warnings", "shortcut_warnings", "toy_world_data_warnings"]


def backbone_warnings(run: Evaluation) -> list[Finding]:
    """Random weights, or a backbone trained only on the synthetic world."""
    matrix = run.matrix
    if matrix.random_weights:
        sentence = (
            f"The backbone {matrix.backbone_id} has random weights: its concept scores carry no visual meaning, "
            f"so the {len(run.X)} evaluated images show that the pipeline runs, not what it can do."
        )
    elif matrix.synthetic_world:
        sentence = (
            f"The backbone {matrix.backbone_id} is the toy-world CLIP, trained only on conceptforest's synthetic "
            f"creature world: the numbers below are toy-world numbers, which show that the pipeline and its "
            f"explanations behave correctly when the model really sees, not accuracy on photos."
        )
    else:
        return []
    return [warning(sentence, "Summary", backbone_id=matrix.backbone_id)]


def toy_world_data_warnings(run: Evaluation, tree: ConceptTree | None) -> list[Finding]:
    """The world's true tree (so the world's drawings) on a backbone not already labelled (a real CLIP)."""
    note = tree.provenance.note if tree is not None else None
    if not note or WORLD_TREE_MARK not in note or run.matrix.weights_warning:
        return []
    return [
        warning(
            "The concept tree is the true tree of conceptforest's synthetic creature world, so the images are that "
            "world's drawings: every number below is a toy-world number, not accuracy on photos.",
            "Trees",
        )
    ]


def shortcut_warnings(run: Evaluation, rollup: Rollup) -> list[Finding]:
    """Parts the tree gives every label alike (constant parts, nuisances) that still matter when permuted.

    Nothing when every part is shared (a template tree gives every label every value: the tree then tells no
    labels apart, which the tree checks already say).
    """
    shared = shared_parts(run.matrix.concepts, run.matrix.labels)
    if run.matrix.meta.tree_generator == "template" or shared >= {c.part_path for c in run.matrix.concepts}:
        return []
    found = shortcut_sentence(rollup.part, shared, len(run.X))
    if found is None:
        return []
    sentence, parts = found
    return [warning(sentence, "Roll-up", parts=", ".join(parts))]
