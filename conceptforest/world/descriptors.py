"""Descriptor sets of the world, written from its specification (no LLM): the true ones and poor ones.

The true DCLIP set gives each class its distinguishing part values as noun phrases ("a red body", "striped
wings"); the true CuPL set says the same in sentences. The poor set gives every class the same few vague
phrases, a starting point that description optimisation has to improve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conceptforest.world.captions import PLURAL_PARTS
from conceptforest.world.spec import WorldSpec

if TYPE_CHECKING:
    from conceptforest.concepts.descriptors import DescriptorSet

__all__ = [
    "POOR_DESCRIPTORS",
    "class_phrases",
    "part_phrase",
    "poor_descriptor_set",
    "true_descriptor_sets",
    "world_vocabulary",
]

TRUE_NOTE = "written from the world specification (no LLM): each class's true part values"
POOR_NOTE = "deliberately poor starting descriptors for the world (the same vague phrases for every class)"
POOR_DESCRIPTORS = ("a small creature", "a drawing of an animal", "two eyes")


def part_phrase(part: str, value: str) -> str:
    """``red body``, ``striped wings``: a part value as a noun phrase without an article, so that DCLIP's rule
    reads "..., which has red body" (an article would make it "which is a red body")."""
    return f"{value} {part}"


def _article(part: str) -> str:
    return "" if part in PLURAL_PARTS else "a "


def world_vocabulary(spec: WorldSpec) -> list[str]:
    """Every part value of the world as a noun phrase, in specification order."""
    return [part_phrase(key.part, value) for key in spec.slots() for value in spec.values(key)]


def class_phrases(spec: WorldSpec, label: str) -> list[str]:
    """The noun phrases of a class's true distinguishing values, in specification order (its DCLIP descriptors)."""
    world_class = spec.world_class(label)
    return [part_phrase(key.part, world_class.value(key)) for key in spec.slots()]


def true_descriptor_sets(spec: WorldSpec) -> list[DescriptorSet]:
    """A DCLIP-style and a CuPL-style set with each class's true distinguishing values."""
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.provenance import Provenance

    dclip: dict[str, list[str]] = {}
    cupl: dict[str, list[str]] = {}
    for world_class in spec.classes:
        dclip[world_class.name] = class_phrases(spec, world_class.name)
        cupl[world_class.name] = [
            f"The {world_class.name} has {_article(key.part)}{world_class.value(key)} {key.part}."
            for key in spec.slots()
        ]
    labels = spec.labels
    provenance = Provenance(note=TRUE_NOTE)
    return [
        DescriptorSet(style="dclip", labels=labels, descriptors=dclip, provenance=provenance),
        DescriptorSet(style="cupl", labels=labels, descriptors=cupl, provenance=provenance),
    ]


def poor_descriptor_set(spec: WorldSpec) -> DescriptorSet:
    """The same vague descriptors for every class (style ``dclip``)."""
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.provenance import Provenance

    descriptors = {label: list(POOR_DESCRIPTORS) for label in spec.labels}
    return DescriptorSet(
        style="dclip", labels=spec.labels, descriptors=descriptors, provenance=Provenance(note=POOR_NOTE)
    )
