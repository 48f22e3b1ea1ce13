"""The world's specification: parts, attributes, values, classes and nuisances, read from data.

The packaged world (``conceptforest/data/world.json``) is what the demo, the world CLIP and the faithfulness
benchmark use. Its true concept tree follows from it (:meth:`WorldSpec.true_tree`): every class's part values,
one part that every class shares (a constant concept), and the background, a nuisance that every class shows in
every value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from conceptforest.errors import BadInputError
from conceptforest.text import strip_control

if TYPE_CHECKING:
    from conceptforest.concepts.tree import ConceptTree

__all__ = [
    "BACKGROUND",
    "NUISANCE_PART",
    "WORLD_TREE_MARK",
    "AttributeKey",
    "WorldClass",
    "WorldPart",
    "WorldSpec",
    "load_world",
]

NUISANCE_PART = "background"
WORLD_TREE_MARK = "conceptforest's synthetic creature world"  # the report's toy-world warning looks for it
WORLD_NOTE = f"the true concept tree of {WORLD_TREE_MARK} (a toy world drawn with PIL, not photos)"


@dataclass(frozen=True, order=True)
class AttributeKey:
    """One (part, attribute) slot, written ``part/attribute``."""

    part: str
    attribute: str

    def __str__(self) -> str:
        return f"{self.part}/{self.attribute}"

    @classmethod
    def parse(cls, text: str) -> AttributeKey:
        part, _, attribute = text.partition("/")
        return cls(part, attribute)


BACKGROUND = AttributeKey(NUISANCE_PART, "colour")


class WorldPart(BaseModel):
    """A drawn part and the values each of its attributes can take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    attributes: dict[str, list[str]]


class WorldClass(BaseModel):
    """A made-up class: one value for every (part, attribute) of the world's distinguishing parts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    values: dict[str, dict[str, str]]

    def value(self, key: AttributeKey) -> str:
        return self.values[key.part][key.attribute]


class WorldSpec(BaseModel):
    """The whole world as data: see ``conceptforest/data/world.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = 1
    domain: str
    note: str = ""
    parts: list[WorldPart]
    constant_parts: list[WorldPart] = Field(default_factory=list)
    nuisances: dict[str, list[str]]
    held_out_combinations: list[dict[str, str]] = Field(default_factory=list)
    classes: list[WorldClass]

    @model_validator(mode="after")
    def _consistent(self) -> WorldSpec:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError("two classes share a name")
        for name in names:  # class names become folder names
            if not name.strip() or name != strip_control(name) or any(c in name for c in "/\\") or ".." in name:
                raise ValueError(f"class name {name!r} cannot be a folder name (empty, '/', '\\', '..' or control)")
        combos = {tuple(c.value(k) for k in self.slots()) for c in self.classes}
        if len(combos) != len(self.classes):
            raise ValueError("two classes have the same part values, so no image could tell them apart")
        for world_class in self.classes:
            for key in self.slots():
                allowed = self.values(key)
                value = world_class.values.get(key.part, {}).get(key.attribute)
                if value not in allowed:
                    raise ValueError(f"class {world_class.name!r}: {key} is {value!r}, not one of {allowed}")
        for combination in self.held_out_combinations:
            for key_text, value in combination.items():
                if value not in self.values(AttributeKey.parse(key_text)):
                    raise ValueError(f"held-out combination {combination}: {key_text} has no value {value!r}")
        if NUISANCE_PART not in self.nuisances:
            raise ValueError(f"the nuisances must include {NUISANCE_PART!r}")
        return self

    def slots(self) -> list[AttributeKey]:
        """The distinguishing (part, attribute) slots, in specification order."""
        return [AttributeKey(part.name, attribute) for part in self.parts for attribute in part.attributes]

    def varied_slots(self) -> list[AttributeKey]:
        """The slots whose value differs between creatures: the distinguishing ones and the background."""
        return [*self.slots(), BACKGROUND]

    def all_slots(self) -> list[AttributeKey]:
        """Distinguishing, constant and nuisance slots (the nuisance as ``background/colour``)."""
        constant = [AttributeKey(p.name, a) for p in self.constant_parts for a in p.attributes]
        return [*self.slots(), *constant, BACKGROUND]

    def values(self, key: AttributeKey) -> list[str]:
        """The values a slot can take."""
        if key.part == NUISANCE_PART:
            return list(self.nuisances[NUISANCE_PART])
        for part in [*self.parts, *self.constant_parts]:
            if part.name == key.part and key.attribute in part.attributes:
                return list(part.attributes[key.attribute])
        raise KeyError(str(key))

    @property
    def labels(self) -> list[str]:
        return [c.name for c in self.classes]

    def world_class(self, label: str) -> WorldClass:
        for world_class in self.classes:
            if world_class.name == label:
                return world_class
        raise KeyError(label)

    def is_held_out(self, values: dict[AttributeKey, str]) -> bool:
        """Whether a creature's values contain one of the combinations kept out of the world CLIP's training."""
        return any(
            all(values.get(AttributeKey.parse(k)) == v for k, v in combination.items())
            for combination in self.held_out_combinations
        )

    def distinguishing_concepts(self) -> set[str]:
        """Concept ids (``part:attribute=value``) of values that some classes have and others lack."""
        from conceptforest.concepts.tree import concept_id

        found: set[str] = set()
        for key in self.slots():
            used = {c.value(key) for c in self.classes}
            if len(used) > 1:
                found.update(concept_id(key.part, key.attribute, value) for value in used)
        return found

    def true_tree(self) -> ConceptTree:
        """The world's concept tree in conceptforest's own format (a ``ConceptTree``)."""
        from conceptforest._version import package_version
        from conceptforest.concepts.tree import ConceptTree, Part, Provenance

        parts = [Part(name=p.name, attributes=list(p.attributes)) for p in [*self.parts, *self.constant_parts]]
        parts.append(Part(name=NUISANCE_PART, attributes=["colour"]))
        values: dict[str, Any] = {}
        for world_class in self.classes:
            label_values: dict[str, dict[str, list[str]]] = {
                part: {attribute: [value] for attribute, value in attrs.items()}
                for part, attrs in world_class.values.items()
            }
            for part in self.constant_parts:
                label_values[part.name] = {a: list(v) for a, v in part.attributes.items()}
            label_values[NUISANCE_PART] = {"colour": list(self.nuisances[NUISANCE_PART])}
            values[world_class.name] = label_values
        data = {
            "domain": self.domain,
            "labels": self.labels,
            "parts": parts,
            "values": values,
            "provenance": Provenance(generator="manual", package_version=package_version(), note=WORLD_NOTE),
        }
        tree: ConceptTree = ConceptTree.from_dict(data, source="world specification")
        return tree


def load_world(path: str | Path | None = None) -> WorldSpec:
    """The packaged world, or a specification file of the same form."""
    if path is None:
        text = resources.files("conceptforest").joinpath("data", "world.json").read_text("utf-8")
        source = "the packaged world.json"
    else:
        text = Path(path).read_text("utf-8")
        source = str(path)
    try:
        return WorldSpec.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"The world specification {source} is not valid JSON: {exc}.",
            hint="compare it with conceptforest/data/world.json.",
        ) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise BadInputError(
            f"The world specification {source} is not valid at {where}: {first['msg']}.",
            hint="compare it with conceptforest/data/world.json.",
        ) from exc
