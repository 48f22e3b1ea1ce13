"""How well a CLIP sees the world: zero-shot recognition of each attribute's value on fresh images.

For every (part, attribute) slot, each image is given the value whose concept sentence ("the colour of the beak
is orange") has the highest cosine with it; accuracy is the share of images where that is the true value. Measured
on creatures with uniformly drawn values (none of the held-out combinations) and, separately, on creatures that
each show one combination kept out of the world CLIP's training (compositional generalisation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from conceptforest.world.captions import sentence
from conceptforest.world.render import Creature
from conceptforest.world.sample import random_creature
from conceptforest.world.spec import AttributeKey, WorldSpec

__all__ = ["AttributeAccuracy", "attribute_accuracy", "held_out_creatures", "seen_creatures"]

ImageEncoder = Callable[[Sequence[Creature]], np.ndarray]  # creatures -> L2-normalised embeddings
TextEncoder = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class AttributeAccuracy:
    """Zero-shot accuracy per slot on one set of images."""

    per_slot: dict[str, float]
    images: int

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.per_slot.values())))

    @property
    def worst(self) -> tuple[str, float]:
        slot = min(self.per_slot, key=lambda key: self.per_slot[key])
        return slot, self.per_slot[slot]

    def as_dict(self) -> dict[str, object]:
        worst_slot, worst = self.worst
        return {
            "images": self.images,
            "mean": round(self.mean, 4),
            "worst_slot": worst_slot,
            "worst": round(worst, 4),
            "per_slot": {k: round(v, 4) for k, v in self.per_slot.items()},
        }


def seen_creatures(spec: WorldSpec, n: int, seed: int) -> list[Creature]:
    """``n`` random creatures, none showing a held-out combination."""
    rng = np.random.default_rng(seed)
    found: list[Creature] = []
    while len(found) < n:
        creature = random_creature(spec, rng)
        if not spec.is_held_out(creature.values):
            found.append(creature)
    return found


def held_out_creatures(spec: WorldSpec, n: int, seed: int) -> list[Creature]:
    """``n`` random creatures, each forced to show one of the held-out combinations (in turn)."""
    rng = np.random.default_rng(seed)
    found: list[Creature] = []
    for index in range(n):
        creature = random_creature(spec, rng)
        combination = spec.held_out_combinations[index % len(spec.held_out_combinations)]
        for key_text, value in combination.items():
            creature = creature.with_value(AttributeKey.parse(key_text), value)
        found.append(creature)
    return found


def attribute_accuracy(
    spec: WorldSpec, creatures: Sequence[Creature], encode_images: ImageEncoder, encode_texts: TextEncoder
) -> AttributeAccuracy:
    """Zero-shot accuracy of each distinguishing slot and the background on ``creatures``."""
    embeddings = encode_images(creatures)
    per_slot: dict[str, float] = {}
    for key in spec.varied_slots():
        values = spec.values(key)
        texts = encode_texts([sentence(key, value) for value in values])
        chosen = np.argmax(embeddings @ texts.T, axis=1)
        truth = np.array([values.index(c.values[key]) for c in creatures])
        per_slot[str(key)] = float(np.mean(chosen == truth))
    return AttributeAccuracy(per_slot, len(creatures))
