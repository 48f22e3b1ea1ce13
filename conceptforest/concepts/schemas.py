"""The shapes of the LLM's answers, with bounded lengths and counts.

Validation repairs what is safe to repair (case, whitespace, duplicates, fenced JSON is handled by the client)
and rejects the rest with a message that is fed back to the LLM on the retry.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from conceptforest.concepts.tree import mentions, normalize_text

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=40, pattern=r"^[^/:=]+$"),
]
Value = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=80)]

MAX_PARTS = 12
MAX_SUBPARTS = 6
MAX_ATTRIBUTES = 8
MAX_VALUES = 5
RUNAWAY_FACTOR = 4


def _dedupe(items: list[Any]) -> list[Any]:
    """Remove repeats (the usual form of a runaway answer), keeping the first of each."""
    seen: set[str] = set()
    kept = []
    for item in items:
        key = normalize_text(item) if isinstance(item, str) else repr(item)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def _limit(info: ValidationInfo, name: str, default: int) -> int:
    context = info.context or {}
    return int(context.get(name, default))


def _trim(value: Any, limit: int, what: str) -> Any:
    """Dedupe a list and keep its first ``limit`` items; a list far past the limit is degenerate and refused."""
    if not isinstance(value, list):
        return value
    items = _dedupe(value)
    if len(items) > RUNAWAY_FACTOR * max(limit, 1):
        raise ValueError(f"the answer lists {len(items)} distinct {what}; give at most {limit}")
    return items[:limit]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PartAnswer(_Answer):
    name: Name
    subparts: list[Name] = Field(default_factory=list)

    @field_validator("subparts", mode="before")
    @classmethod
    def _subparts(cls, value: Any, info: ValidationInfo) -> Any:
        return _trim(value, _limit(info, "max_subparts", MAX_SUBPARTS), "sub-parts")


class PartsAnswer(_Answer):
    """Step 1: the parts of the domain."""

    parts: list[PartAnswer] = Field(min_length=1)

    @field_validator("parts", mode="before")
    @classmethod
    def _before(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        # a bare list of names is a usable answer: parts without sub-parts
        items = [{"name": item} if isinstance(item, str) else item for item in value]
        seen: set[str] = set()
        kept = []
        for item in items:
            name = normalize_text(str(item.get("name", ""))) if isinstance(item, dict) else None
            if name is None or name not in seen:
                kept.append(item)
                if name is not None:
                    seen.add(name)
        limit = _limit(info, "max_parts", MAX_PARTS)
        if len(kept) > RUNAWAY_FACTOR * max(limit, 1):
            raise ValueError(f"the answer lists {len(kept)} distinct parts; give at most {limit}")
        return kept[:limit]

    @field_validator("parts", mode="after")
    @classmethod
    def _parts(cls, parts: list[PartAnswer], info: ValidationInfo) -> list[PartAnswer]:
        kept: list[PartAnswer] = []
        for part in parts:
            if part.name not in {k.name for k in kept}:
                part.subparts = [s for s in part.subparts if s != part.name]
                kept.append(part)
        for label in (info.context or {}).get("labels", []):
            for part in kept:
                if any(mentions(n, label) for n in [part.name, *part.subparts]):
                    raise ValueError(f"part {part.name!r} names the kind {label!r}; name body parts only")
        return kept


class AttributesAnswer(_Answer):
    """Step 2: the attributes of one leaf part."""

    attributes: list[Name] = Field(min_length=1)

    @field_validator("attributes", mode="before")
    @classmethod
    def _before(cls, value: Any, info: ValidationInfo) -> Any:
        return _trim(value, _limit(info, "max_attributes", MAX_ATTRIBUTES), "attributes")


class PairValues(_Answer):
    part: str = Field(min_length=1, max_length=120)
    attribute: str = Field(min_length=1, max_length=40)
    values: list[Value] = Field(min_length=1)

    @field_validator("part", "attribute", mode="after")
    @classmethod
    def _norm(cls, value: str) -> str:
        return normalize_text(value)

    @field_validator("values", mode="before")
    @classmethod
    def _before(cls, value: Any, info: ValidationInfo) -> Any:
        return _trim(value, _limit(info, "max_values", MAX_VALUES), "values")


class ValuesAnswer(_Answer):
    """Step 3: one label's values for every (part, attribute).

    The validation context carries ``label``, ``labels`` and ``pairs`` (the expected (part path, attribute)
    pairs): every pair must be answered, and no value may name a label.
    """

    values: list[PairValues] = Field(min_length=1, max_length=400)

    @field_validator("values", mode="before")
    @classmethod
    def _keyed_form(cls, value: Any) -> Any:
        """Accept ``{"part: attribute": [values]}`` (the form the per-call schema asks for)."""
        if not isinstance(value, dict):
            return value
        entries = []
        for key, values in value.items():
            part, _, attribute = str(key).partition(":")
            entries.append({"part": part, "attribute": attribute, "values": values})
        return entries

    @field_validator("values", mode="after")
    @classmethod
    def _complete(cls, entries: list[PairValues], info: ValidationInfo) -> list[PairValues]:
        context = info.context or {}
        expected = [tuple(p) for p in context.get("pairs", [])]
        merged: dict[tuple[str, str], list[str]] = {}
        for entry in entries:
            key = (entry.part, entry.attribute)
            if expected and key not in expected:
                continue  # an extra pair the prompt did not ask for is dropped
            merged[key] = list(dict.fromkeys([*merged.get(key, []), *entry.values]))[
                : _limit(info, "max_values", MAX_VALUES)
            ]
        missing = [f"{p} {a}" for p, a in expected if (p, a) not in merged]
        if missing:
            raise ValueError(f"no values for: {'; '.join(missing)}. Give an entry for every part and attribute")
        for (part, attribute), values in merged.items():
            for value in values:
                for label in context.get("labels", []):
                    if mentions(value, label):
                        raise ValueError(
                            f"the value {value!r} for {part} {attribute} names the kind {label!r}; "
                            "describe the appearance without naming any kind"
                        )
        return [PairValues(part=p, attribute=a, values=v) for (p, a), v in merged.items()]


class SentenceItem(_Answer):
    id: str = Field(min_length=1, max_length=300)
    sentence: str = Field(min_length=3, max_length=200)


class SentencesAnswer(_Answer):
    """Step 4 (optional): a natural sentence for each concept id."""

    sentences: list[SentenceItem] = Field(min_length=1, max_length=400)

    @field_validator("sentences", mode="after")
    @classmethod
    def _complete(cls, items: list[SentenceItem], info: ValidationInfo) -> list[SentenceItem]:
        context = info.context or {}
        expected = list(context.get("ids", []))
        by_id = {item.id: item for item in items if not expected or item.id in expected}
        missing = [cid for cid in expected if cid not in by_id]
        if missing:
            raise ValueError(f"no sentence for ids: {missing}. Give one entry for every id, unchanged")
        for item in by_id.values():
            for label in context.get("labels", []):
                if mentions(item.sentence, label):
                    raise ValueError(
                        f"the sentence {item.sentence!r} names the kind {label!r}; describe appearance only"
                    )
        return list(by_id.values())


def pair_key(part_path: str, attribute: str) -> str:
    """How a (part, attribute) pair is named in a values answer: ``head/ears: shape``."""
    return f"{part_path}: {attribute}"


def values_schema(pairs: list[tuple[str, str]], max_values: int) -> dict[str, Any]:
    """A JSON schema with one required key per (part, attribute), so that a server which enforces schemas
    (llama.cpp's grammar, OpenAI's json_schema) cannot leave a pair out."""
    value_list = {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 80},
        "minItems": 1,
        "maxItems": max_values,
    }
    keys = [pair_key(part, attribute) for part, attribute in pairs]
    return {
        "type": "object",
        "properties": {
            "values": {
                "type": "object",
                "properties": {key: value_list for key in keys},
                "required": keys,
                "additionalProperties": False,
            }
        },
        "required": ["values"],
        "additionalProperties": False,
    }
