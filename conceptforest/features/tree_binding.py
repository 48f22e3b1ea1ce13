"""The concept tree of a run, checked against the features made from it.

``concepts.json`` records the hash of the tree the features were made with. A tree edited or replaced afterwards
would shade pictures, write tree warnings and feed the shuffled-tree control with concepts the features never had,
so it is refused, as a table and sidecar or a model and manifest that do not belong together are.
"""

from __future__ import annotations

from pathlib import Path

from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.features.matrix import FeatureMatrix

__all__ = ["load_tree_of_features"]


def load_tree_of_features(path: str | Path | None, matrix: FeatureMatrix, run_dir: str | Path) -> ConceptTree | None:
    """The tree at ``path`` (None without one), refused unless it is the tree ``matrix`` was made with."""
    if path is None:
        return None
    tree = ConceptTree.load(path)
    recorded = matrix.tree_hash
    if recorded and tree.tree_hash() != recorded:
        raise BadInputError(
            f"The concept tree {str(path)!r} (hash {tree.tree_hash()[:12]}) is not the tree the features in "
            f"{str(run_dir)!r} were made with (hash {recorded[:12]}): it was edited or replaced after extraction, "
            "so its pictures, checks and shuffled-tree control would describe concepts the features do not have.",
            hint="give the tree the features were made with (--tree FILE; run keeps earlier trees as "
            "tree.previous-<time>.json), or make features and a model from this tree: conceptforest run IMAGES "
            "--tree FILE -o RUN.",
        )
    return tree
