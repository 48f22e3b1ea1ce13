"""Captions for the world CLIP's training: one or two visible parts, in several phrasings.

Class names never appear in a caption. One phrasing is conceptforest's own concept sentence ("the colour of the
beak is orange"); the others are short noun phrases, so the model does not learn one template only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from conceptforest.world.render import Creature
from conceptforest.world.spec import AttributeKey

__all__ = ["caption", "phrase", "sentence"]

PLURAL_PARTS = frozenset({"wings", "legs"})


def sentence(key: AttributeKey, value: str) -> str:
    """conceptforest's default concept sentence for a slot."""
    return f"the {key.attribute} of the {key.part} is {value}"


def phrase(key: AttributeKey, value: str, style: int) -> str:
    """One of four phrasings of a slot's value (``style`` 0-3)."""
    verb = "are" if key.part in PLURAL_PARTS else "is"
    article = "" if key.part in PLURAL_PARTS else "a "
    if style == 0:
        return sentence(key, value)
    if style == 1:
        return f"{value} {key.part}"
    if style == 2:
        return f"a creature with {article}{value} {key.part}"
    return f"its {key.part} {verb} {value}"


def caption(creature: Creature, keys: Sequence[AttributeKey], rng: np.random.Generator) -> str:
    """A caption of ``creature`` naming the values of ``keys`` (one or two), in a random phrasing."""
    style = int(rng.integers(4))
    parts = [phrase(key, creature.values[key], style) for key in keys]
    return " and ".join(parts)
