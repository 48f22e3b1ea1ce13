"""The concept tree: a domain, its parts, their attributes, and each label's values.

A tree is plain JSON that a person can edit. Everything else (concept ids, sentences, the tree hash) is derived
from it, so an edited file reloads into a consistent tree.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conceptforest.atomic import atomic_write_text
from conceptforest.cache import stable_hash
from conceptforest.concepts.provenance import CallRecord, Provenance, UsageTotals
from conceptforest.concepts.tree_files import check_tree_data, one_line, read_tree_file
from conceptforest.concepts.tree_text import SENTENCE_FIELDS, check_sentence_template, format_tree
from conceptforest.errors import BadInputError, TreeValidationError
from conceptforest.text import strip_control

__all__ = [
    "DEFAULT_SENTENCE_TEMPLATE",
    "SENTENCE_FIELDS",
    "CallRecord",
    "Concept",
    "ConceptTree",
    "Leakage",
    "Part",
    "Provenance",
    "UsageTotals",
    "check_sentence_template",
    "clean_label",
    "concept_id",
    "format_tree",
    "mentions",
    "normalize_text",
]

MAX_PART_DEPTH = 3
MAX_PROBLEMS_SHOWN = 5
DEFAULT_SENTENCE_TEMPLATE = "the {attribute} of the {part} is {value}"
_FORBIDDEN_IN_NAMES = re.compile(r"[/:=]")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Strip control characters, lower-case, NFC-normalise and collapse whitespace: the canonical form of names
    and values."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", strip_control(text))).strip().lower()


def clean_label(label: str) -> str:
    """A label without control characters, with single spaces (case is kept)."""
    return _SPACES.sub(" ", strip_control(label)).strip()


def clean_sentence(sentence: str) -> str:
    """A sentence without control characters, with single spaces (case is kept)."""
    return _SPACES.sub(" ", strip_control(sentence)).strip()


def _check_name(kind: str, name: str) -> str:
    name = normalize_text(name)
    if not name:
        raise ValueError(f"a {kind} name is empty")
    if _FORBIDDEN_IN_NAMES.search(name):
        raise ValueError(f"{kind} name {name!r} contains one of '/', ':' or '=', which concept ids reserve")
    return name


class Part(BaseModel):
    """A visual part. Leaf parts carry attributes; inner parts carry sub-parts."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parts: list[Part] = Field(default_factory=list)
    attributes: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name("part", value)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, values: list[str]) -> list[str]:
        cleaned = [_check_name("attribute", v) for v in values]
        return list(dict.fromkeys(cleaned))

    @model_validator(mode="after")
    def _leaf_or_inner(self) -> Part:
        if self.parts and self.attributes:
            raise ValueError(
                f"part {self.name!r} has both sub-parts and attributes; attributes belong to leaf parts only"
            )
        return self


LabelValues = dict[str, dict[str, list[str]]]
"""For one label: part path -> attribute -> values."""


@dataclass(frozen=True)
class Concept:
    """One distinct (part, attribute, value) with its class-free sentence and the labels that have it."""

    id: str
    part_path: str
    attribute: str
    value: str
    sentence: str
    labels: tuple[str, ...]

    @property
    def part(self) -> str:
        return self.part_path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Leakage:
    """A value that names a label: the label name would leak into a class-free sentence."""

    label: str
    part_path: str
    attribute: str
    value: str
    leaked_label: str


@functools.lru_cache(maxsize=64)
def _checked_template(template: str) -> None:
    try:
        check_sentence_template(template)
    except ValueError as exc:
        raise TreeValidationError(str(exc), hint="use only the plain placeholders listed.") from exc


def concept_id(part_path: str, attribute: str, value: str) -> str:
    """The stable id of a concept, e.g. ``head/ears:shape=erect and pointed``."""
    return f"{part_path}:{attribute}={value}"


def mentions(text: str, name: str) -> bool:
    """Whether ``name`` occurs in ``text`` as whole words (case-insensitive), plural forms included."""
    words = re.escape(normalize_text(name))
    return re.search(rf"(?<!\w){words}(?:s|es)?(?!\w)", normalize_text(text)) is not None


class ConceptTree(BaseModel):
    """A domain's parts, their attributes, and for each label the values of each (part, attribute).

    The file form is JSON (YAML is accepted on input); see :meth:`load` and :meth:`save`.

    Examples
    --------
    >>> tree = ConceptTree(
    ...     domain="dog",
    ...     labels=["husky", "pug"],
    ...     parts=[Part(name="head", parts=[Part(name="ears", attributes=["shape"])])],
    ...     values={"husky": {"head/ears": {"shape": ["erect and pointed"]}},
    ...             "pug": {"head/ears": {"shape": ["small and folded"]}}},
    ... )
    >>> [c.id for c in tree.concepts()]
    ['head/ears:shape=erect and pointed', 'head/ears:shape=small and folded']
    >>> tree.concepts()[0].sentence
    'the shape of the ears is erect and pointed'
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = 1
    domain: str
    labels: list[str]
    parts: list[Part]
    values: dict[str, LabelValues] = Field(default_factory=dict)
    sentence_template: str = DEFAULT_SENTENCE_TEMPLATE
    sentences: dict[str, str] = Field(
        default_factory=dict, description="Optional hand- or LLM-written sentences, keyed by concept id."
    )
    provenance: Provenance = Field(default_factory=Provenance)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = normalize_text(value)
        if not value:
            raise ValueError("the domain is empty")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        cleaned = [clean_label(label) for label in labels]
        if any(not label for label in cleaned):
            raise ValueError("a label is empty")
        seen: dict[str, str] = {}
        for label in cleaned:
            key = normalize_text(label)
            if key in seen:
                raise ValueError(f"label {label!r} appears twice (as {seen[key]!r})")
            seen[key] = label
        return cleaned

    @field_validator("sentence_template")
    @classmethod
    def _template(cls, template: str) -> str:
        template = strip_control(template)
        check_sentence_template(template)
        return template

    @field_validator("sentences")
    @classmethod
    def _sentences(cls, sentences: dict[str, str]) -> dict[str, str]:
        return {strip_control(cid): clean_sentence(text) for cid, text in sentences.items()}

    @model_validator(mode="after")
    def _consistent(self) -> ConceptTree:
        leaves = self.leaf_attributes()
        for part in self.iter_parts():
            depth = part[0].count("/") + 1
            if depth > MAX_PART_DEPTH:
                raise ValueError(f"part {part[0]!r} is nested {depth} deep; the limit is {MAX_PART_DEPTH}")
        cleaned: dict[str, LabelValues] = {}
        for raw_label, by_part in self.values.items():
            label = clean_label(raw_label)
            if label not in self.labels:
                raise ValueError(f"values are given for {label!r}, which is not in labels {self.labels}")
            by_label = cleaned.setdefault(label, {})
            for raw_path, by_attribute in by_part.items():
                part_path = "/".join(normalize_text(name) for name in raw_path.split("/"))
                if part_path not in leaves:
                    raise ValueError(
                        f"label {label!r} has values for part {part_path!r}, which is not a leaf part "
                        f"(leaf parts: {sorted(leaves)})"
                    )
                by_attr = by_label.setdefault(part_path, {})
                for raw_attribute, values in by_attribute.items():
                    attribute = normalize_text(raw_attribute)
                    if attribute not in leaves[part_path]:
                        raise ValueError(
                            f"label {label!r} has values for attribute {attribute!r} of part {part_path!r}, "
                            f"which has attributes {leaves[part_path]}"
                        )
                    kept = [*by_attr.get(attribute, []), *(normalize_text(v) for v in values)]
                    by_attr[attribute] = list(dict.fromkeys(v for v in kept if v))
        self.values = cleaned
        return self

    # -- structure -------------------------------------------------------------------------------------------

    def iter_parts(self) -> Iterator[tuple[str, Part]]:
        """Every part as (path, part), depth first."""

        def walk(parts: list[Part], prefix: str) -> Iterator[tuple[str, Part]]:
            for part in parts:
                path = f"{prefix}/{part.name}" if prefix else part.name
                yield path, part
                yield from walk(part.parts, path)

        yield from walk(self.parts, "")

    def leaf_attributes(self) -> dict[str, list[str]]:
        """Leaf part path -> its attributes, in tree order."""
        return {path: part.attributes for path, part in self.iter_parts() if not part.parts}

    def missing_values(self) -> list[tuple[str, str, str]]:
        """(label, part path, attribute) triples that have no value yet."""
        missing = []
        for label in self.labels:
            for part_path, attributes in self.leaf_attributes().items():
                for attribute in attributes:
                    if not self.values.get(label, {}).get(part_path, {}).get(attribute):
                        missing.append((label, part_path, attribute))
        return missing

    # -- concepts --------------------------------------------------------------------------------------------

    def concepts(self) -> list[Concept]:
        """Every distinct concept, deduplicated across labels, in tree order (part, attribute, first label)."""
        found: dict[str, dict[str, Any]] = {}
        for part_path, attributes in self.leaf_attributes().items():
            for attribute in attributes:
                for label in self.labels:
                    for value in self.values.get(label, {}).get(part_path, {}).get(attribute, []):
                        cid = concept_id(part_path, attribute, value)
                        entry = found.setdefault(
                            cid,
                            {"part_path": part_path, "attribute": attribute, "value": value, "labels": []},
                        )
                        entry["labels"].append(label)
        return [
            Concept(
                id=cid,
                part_path=e["part_path"],
                attribute=e["attribute"],
                value=e["value"],
                sentence=self.sentences.get(cid) or self.sentence_for(e["part_path"], e["attribute"], e["value"]),
                labels=tuple(e["labels"]),
            )
            for cid, e in found.items()
        ]

    def sentence_for(self, part_path: str, attribute: str, value: str) -> str:
        """The template sentence of one concept (the template is re-checked: it may have been assigned)."""
        _checked_template(self.sentence_template)
        return self.sentence_template.format(
            part=part_path.rsplit("/", 1)[-1],
            part_path=part_path.replace("/", " "),
            attribute=attribute,
            value=value,
            domain=self.domain,
        )

    def leakage(self) -> list[Leakage]:
        """Values and sentences that name a label (class-name leakage)."""
        found = []
        for label, by_part in self.values.items():
            for part_path, by_attribute in by_part.items():
                for attribute, values in by_attribute.items():
                    for value in values:
                        for other in self.labels:
                            if mentions(value, other):
                                found.append(Leakage(label, part_path, attribute, value, other))
        for cid, sentence in self.sentences.items():
            for other in self.labels:
                if mentions(sentence, other):
                    part_attr, _, value = cid.partition("=")
                    part_path, _, attribute = part_attr.partition(":")
                    found.append(Leakage("(sentence)", part_path, attribute, sentence, other))
        return found

    def tree_hash(self) -> str:
        """sha256 of everything that defines the concepts (not the provenance)."""
        return stable_hash(
            {
                "format_version": self.format_version,
                "domain": self.domain,
                "labels": self.labels,
                "parts": [p.model_dump() for p in self.parts],
                "values": self.values,
                "sentence_template": self.sentence_template,
                "sentences": self.sentences,
            }
        )

    # -- files -----------------------------------------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the tree as JSON, atomically."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> ConceptTree:
        """Read a tree from JSON or YAML, with a clear error naming the file and the problem."""
        path = Path(path)
        if not path.is_file():
            raise BadInputError(
                f"Concept tree file {str(path)!r} does not exist (or is not a regular file).",
                hint="give the path of a tree.json written by 'conceptforest concepts generate'.",
            )
        return cls._validated(read_tree_file(path), source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "tree") -> ConceptTree:
        """Validate plain data (e.g. parsed JSON) into a tree, with a clear error naming ``source``."""
        check_tree_data(data, source)
        return cls._validated(data, source=source)

    @classmethod
    def _validated(cls, data: Any, *, source: str) -> ConceptTree:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
            problems = [
                one_line(f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}")
                for err in errors[:MAX_PROBLEMS_SHOWN]
            ]
            more = f"; and {len(errors) - MAX_PROBLEMS_SHOWN} more" if len(errors) > MAX_PROBLEMS_SHOWN else ""
            raise TreeValidationError(
                f"Concept tree {source!r} is not a valid tree: {'; '.join(problems)}{more}.",
                hint="edit the file so that every value refers to a leaf part and one of its attributes.",
            ) from exc
