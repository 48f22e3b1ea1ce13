"""The concept tree: a domain, its parts, their attributes, and each label's values.

A tree is plain JSON that a person can edit. Everything else (concept ids, sentences, the tree hash) is derived
from it, so an edited file reloads into a consistent tree.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conceptforest.atomic import atomic_write_text
from conceptforest.cache import stable_hash
from conceptforest.errors import BadInputError, TreeValidationError

MAX_PART_DEPTH = 3
DEFAULT_SENTENCE_TEMPLATE = "the {attribute} of the {part} is {value}"
SENTENCE_FIELDS = ("part", "part_path", "attribute", "value", "domain")
_FORBIDDEN_IN_NAMES = re.compile(r"[/:=]")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower-case, NFC-normalise and collapse whitespace; the canonical form of names and values."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip().lower()


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


class UsageTotals(BaseModel):
    """Token counts summed over a tree's LLM calls."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class CallRecord(BaseModel):
    """One LLM call made (or answered from the cache) while building a tree."""

    step: str
    subject: str
    cached: bool
    attempts: int = 1
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Provenance(BaseModel):
    """What made a tree."""

    generator: Literal["llm", "template", "manual"] = "manual"
    llm_model: str | None = None
    llm_base_url: str | None = None
    prompt_templates: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    package_version: str | None = None
    usage: UsageTotals = Field(default_factory=UsageTotals)
    calls: list[CallRecord] = Field(default_factory=list)
    note: str | None = None


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
        cleaned = [_SPACES.sub(" ", label).strip() for label in labels]
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
        check_sentence_template(template)
        return template

    @model_validator(mode="after")
    def _consistent(self) -> ConceptTree:
        leaves = self.leaf_attributes()
        for part in self.iter_parts():
            depth = part[0].count("/") + 1
            if depth > MAX_PART_DEPTH:
                raise ValueError(f"part {part[0]!r} is nested {depth} deep; the limit is {MAX_PART_DEPTH}")
        cleaned: dict[str, LabelValues] = {}
        for label, by_part in self.values.items():
            if label not in self.labels:
                raise ValueError(f"values are given for {label!r}, which is not in labels {self.labels}")
            cleaned[label] = {}
            for part_path, by_attribute in by_part.items():
                if part_path not in leaves:
                    raise ValueError(
                        f"label {label!r} has values for part {part_path!r}, which is not a leaf part "
                        f"(leaf parts: {sorted(leaves)})"
                    )
                cleaned[label][part_path] = {}
                for attribute, values in by_attribute.items():
                    if attribute not in leaves[part_path]:
                        raise ValueError(
                            f"label {label!r} has values for attribute {attribute!r} of part {part_path!r}, "
                            f"which has attributes {leaves[part_path]}"
                        )
                    kept = [normalize_text(v) for v in values if normalize_text(v)]
                    cleaned[label][part_path][attribute] = list(dict.fromkeys(kept))
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
        """The template sentence of one concept."""
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
                f"Concept tree file {str(path)!r} does not exist.",
                hint="give the path of a tree.json written by 'conceptforest concepts generate'.",
            )
        text = path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text) if path.suffix.lower() in {".yaml", ".yml"} else json.loads(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise BadInputError(
                f"Concept tree file {str(path)!r} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}",
                hint="fix the syntax (a trailing comma or a missing quote is the usual cause) and reload.",
            ) from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "tree") -> ConceptTree:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
            )
            raise TreeValidationError(
                f"Concept tree {source!r} is not a valid tree: {problems}.",
                hint="edit the file so that every value refers to a leaf part and one of its attributes.",
            ) from exc


def check_sentence_template(template: str) -> None:
    """Refuse a sentence template with unknown fields or a label placeholder."""
    fields = set(re.findall(r"{(\w*)}", template))
    if "label" in fields:
        raise ValueError("the sentence template must not contain {label}: sentences are class-free")
    unknown = fields - set(SENTENCE_FIELDS)
    if unknown:
        raise ValueError(f"the sentence template has unknown fields {sorted(unknown)}; known: {list(SENTENCE_FIELDS)}")
    if "value" not in fields:
        raise ValueError("the sentence template must contain {value}")


def format_tree(tree: ConceptTree) -> str:
    """A readable text dump of a tree, with counts."""
    concepts = tree.concepts()
    lines = [
        f"domain: {tree.domain}",
        f"labels ({len(tree.labels)}): {', '.join(tree.labels)}",
        f"generator: {tree.provenance.generator}"
        + (f" (model {tree.provenance.llm_model})" if tree.provenance.llm_model else ""),
        f"tree hash: {tree.tree_hash()[:16]}",
        f"concepts: {len(concepts)} distinct",
        "",
        "parts:",
    ]
    for path, part in tree.iter_parts():
        indent = "  " * path.count("/")
        attrs = f"  [{', '.join(part.attributes)}]" if part.attributes else ""
        lines.append(f"  {indent}{part.name}{attrs}")
    lines.append("")
    lines.append("values:")
    for label in tree.labels:
        lines.append(f"  {label}:")
        for part_path, by_attribute in tree.values.get(label, {}).items():
            for attribute, values in by_attribute.items():
                lines.append(f"    {part_path} {attribute}: {'; '.join(values)}")
    usage = tree.provenance.usage
    if usage.calls:
        lines += [
            "",
            f"LLM calls: {usage.calls} ({usage.cached_calls} from cache), "
            f"tokens: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion",
        ]
    missing = tree.missing_values()
    if missing:
        lines.append(f"missing values: {len(missing)} (label, part, attribute) triples")
    leaks = tree.leakage()
    if leaks:
        lines.append(f"WARNING: {len(leaks)} value(s) name a label (class-name leakage):")
        lines += [
            f"  {lk.label}: {lk.part_path} {lk.attribute} = {lk.value!r} names {lk.leaked_label!r}" for lk in leaks
        ]
    return "\n".join(lines) + "\n"
