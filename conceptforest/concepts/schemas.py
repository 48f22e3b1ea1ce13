"""The shapes of the LLM's answers, with bounded lengths and counts.

Validation repairs what is safe to repair (case, whitespace, control characters, the reserved characters
``/ : =`` in names, duplicates; fenced JSON is handled by the client) and drops what cannot be repaired: one bad
item never costs the others. An answer fails only when nothing usable is left or a required entry is missing;
its message is fed back to the LLM on the retry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from conceptforest.concepts.tree import mentions, normalize_text
from conceptforest.text import strip_control

MAX_NAME_CHARS = 40
MAX_VALUE_CHARS = 80
MAX_PARTS = 12
MAX_SUBPARTS = 6
MAX_ATTRIBUTES = 8
MAX_VALUES = 5
RUNAWAY_FACTOR = 4

_SLASH_BETWEEN_WORDS = re.compile(r"(?<=\w)\s*/\s*(?=\w)")
_RESERVED = re.compile(r"[/:=]")


def clean_llm_text(text: str) -> str:
    """``text`` without ANSI escape sequences and control characters (C0 and C1); tabs and newlines become
    spaces, and runs of whitespace one space."""
    return " ".join(strip_control(text).split())


def repair_name(text: str) -> str:
    """A part or attribute name in canonical form, with the characters concept ids reserve replaced:
    ``size/shape`` becomes ``size or shape``, ``colour:hue`` and ``tone=dark`` lose the ``:`` and ``=``."""
    text = _SLASH_BETWEEN_WORDS.sub(" or ", clean_llm_text(text))
    return normalize_text(_RESERVED.sub(" ", text))


def _clean_name(item: Any) -> Any:
    return repair_name(item) if isinstance(item, str) else item


def _clean_value(item: Any) -> Any:
    return normalize_text(clean_llm_text(item)) if isinstance(item, str) else item


def _clean_plain(item: Any) -> Any:
    return clean_llm_text(item) if isinstance(item, str) else item


Name = Annotated[str, BeforeValidator(_clean_name), StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
Value = Annotated[str, BeforeValidator(_clean_value), StringConstraints(min_length=1, max_length=MAX_VALUE_CHARS)]


def _usable_text(item: Any, clean: Callable[[Any], Any], max_chars: int) -> str:
    """``item`` cleaned, or ``ValueError`` saying why it cannot be used."""
    cleaned = clean(item)
    if not isinstance(cleaned, str):
        raise ValueError(f"{item!r} is not a string")
    if not cleaned:
        raise ValueError(f"{item!r} is empty")
    if len(cleaned) > max_chars:
        raise ValueError(f"{cleaned[:40]!r}... is longer than {max_chars} characters")
    return cleaned


def _first_error(exc: ValidationError | ValueError) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return str(error["msg"]).removeprefix("Value error, ")
    return str(exc)


def _limit(info: ValidationInfo, name: str, default: int) -> int:
    context = info.context or {}
    return int(context.get(name, default))


def _labels(info: ValidationInfo) -> list[str]:
    return list((info.context or {}).get("labels", []))


def trim_items(
    value: Any,
    limit: int,
    what: str,
    clean: Callable[[Any], Any] = _clean_name,
    max_chars: int = MAX_NAME_CHARS,
    labels: list[str] | None = None,
    key: Callable[[str], str] = normalize_text,
) -> Any:
    """Clean a list's items, drop the unusable ones and repeats (equal under ``key``), and keep the first ``limit``.

    Every list answer goes through here (trees and descriptor sets). A list whose items are all unusable is refused
    with the first reason; a list far past the limit is degenerate and refused too; an item naming one of
    ``labels`` is unusable.
    """
    if not isinstance(value, list):
        return value
    kept: dict[str, str] = {}
    reasons: list[str] = []
    for item in value:
        try:
            text = _usable_text(item, clean, max_chars)
            named = next((label for label in labels or [] if mentions(text, label)), None)
            if named is not None:
                raise ValueError(f"{text!r} names the kind {named!r}; describe the appearance without naming any kind")
        except ValueError as exc:
            reasons.append(str(exc))
            continue
        kept.setdefault(key(text), text)
    if value and not kept:
        raise ValueError(f"none of the {what} is usable: {reasons[0]}")
    if len(kept) > RUNAWAY_FACTOR * max(limit, 1):
        raise ValueError(f"the answer lists {len(kept)} distinct {what}; give at most {limit}")
    return list(kept.values())[:limit]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PartAnswer(_Answer):
    name: Name
    subparts: list[Name] = Field(default_factory=list)

    @field_validator("subparts", mode="before")
    @classmethod
    def _subparts(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, list):
            value = [item for item in value if not any(mentions(str(item), lb) for lb in _labels(info))]
        return trim_items(value, _limit(info, "max_subparts", MAX_SUBPARTS), "sub-parts")


class PartsAnswer(_Answer):
    """Step 1: the parts of the domain. Unusable parts, and parts that name a label, are dropped."""

    parts: list[PartAnswer] = Field(min_length=1)

    @field_validator("parts", mode="before")
    @classmethod
    def _before(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        kept: dict[str, PartAnswer] = {}
        reasons: list[str] = []
        for item in value:
            # a bare name is a usable answer: a part without sub-parts
            try:
                part = PartAnswer.model_validate(
                    {"name": item} if isinstance(item, str) else item, context=info.context
                )
            except ValidationError as exc:
                reasons.append(f"part {item!r}: {_first_error(exc)}")
                continue
            named = next((label for label in _labels(info) if mentions(part.name, label)), None)
            if named is not None:
                reasons.append(f"part {part.name!r} names the kind {named!r}; name body parts only")
            elif part.name not in kept:
                part.subparts = [s for s in part.subparts if s != part.name]
                kept[part.name] = part
        if value and not kept:
            raise ValueError(f"none of the parts is usable: {reasons[0]}")
        limit = _limit(info, "max_parts", MAX_PARTS)
        if len(kept) > RUNAWAY_FACTOR * max(limit, 1):
            raise ValueError(f"the answer lists {len(kept)} distinct parts; give at most {limit}")
        return list(kept.values())[:limit]


class AttributesAnswer(_Answer):
    """Step 2: the attributes of one leaf part."""

    attributes: list[Name] = Field(min_length=1)

    @field_validator("attributes", mode="before")
    @classmethod
    def _before(cls, value: Any, info: ValidationInfo) -> Any:
        return trim_items(value, _limit(info, "max_attributes", MAX_ATTRIBUTES), "attributes")


class PairValues(_Answer):
    """One (part path, attribute) and its values; values that name a label (context ``labels``) are dropped."""

    part: str = Field(min_length=1, max_length=120)
    attribute: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    values: list[Value] = Field(min_length=1)

    @field_validator("part", "attribute", mode="before")
    @classmethod
    def _norm(cls, value: Any) -> Any:
        return _clean_value(value)

    @field_validator("values", mode="before")
    @classmethod
    def _before(cls, value: Any, info: ValidationInfo) -> Any:
        limit = _limit(info, "max_values", MAX_VALUES)
        return trim_items(value, limit, "values", _clean_value, MAX_VALUE_CHARS, _labels(info))


def _entries(value: Any) -> Any:
    """``{"part: attribute": [values]}`` (the form the per-call schema asks for) as a list of entries."""
    if not isinstance(value, dict):
        return value
    entries = []
    for key, values in value.items():
        part, _, attribute = str(key).partition(":")
        entries.append({"part": part, "attribute": attribute, "values": values})
    return entries


def _entry_key(entry: Any) -> tuple[str, str]:
    if not isinstance(entry, dict):
        return ("", "")
    return (_clean_value(str(entry.get("part", ""))), _clean_value(str(entry.get("attribute", ""))))


class ValuesAnswer(_Answer):
    """Step 3: one label's values for every (part, attribute).

    The validation context carries ``label``, ``labels`` and ``pairs`` (the expected (part path, attribute)
    pairs): every pair must be answered, and no value may name a label (such values are dropped).
    """

    values: list[PairValues] = Field(min_length=1, max_length=400)

    @field_validator("values", mode="before")
    @classmethod
    def _complete(cls, value: Any, info: ValidationInfo) -> Any:
        entries = _entries(value)
        if not isinstance(entries, list):
            return entries
        context = info.context or {}
        expected = [(str(p), str(a)) for p, a in context.get("pairs", [])]
        merged: dict[tuple[str, str], list[str]] = {}
        problems: dict[tuple[str, str], str] = {}
        for raw in entries:
            try:
                entry = PairValues.model_validate(raw, context=context)
            except ValidationError as exc:
                problems.setdefault(_entry_key(raw), _first_error(exc))
                continue
            key = (entry.part, entry.attribute)
            if expected and key not in expected:
                continue  # an extra pair the prompt did not ask for is dropped
            merged[key] = list(dict.fromkeys([*merged.get(key, []), *entry.values]))[
                : _limit(info, "max_values", MAX_VALUES)
            ]
        missing = [
            f"{p} {a}" + (f" ({problems[(p, a)]})" if (p, a) in problems else "")
            for p, a in expected
            if (p, a) not in merged
        ]
        if missing:
            raise ValueError(f"no values for: {'; '.join(missing)}. Give an entry for every part and attribute")
        return [PairValues.model_construct(part=p, attribute=a, values=v) for (p, a), v in merged.items()]


class SentenceItem(_Answer):
    id: str = Field(min_length=1, max_length=300)
    sentence: str = Field(min_length=3, max_length=200)

    @field_validator("id", "sentence", mode="before")
    @classmethod
    def _clean(cls, value: Any) -> Any:
        return _clean_plain(value)


class SentencesAnswer(_Answer):
    """Step 4 (optional): a natural sentence for each concept id. Sentences that name a label are dropped."""

    sentences: list[SentenceItem] = Field(min_length=1, max_length=400)

    @field_validator("sentences", mode="before")
    @classmethod
    def _complete(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        expected = list((info.context or {}).get("ids", []))
        by_id: dict[str, SentenceItem] = {}
        problems: list[str] = []
        for raw in value:
            try:
                item = SentenceItem.model_validate(raw)
            except ValidationError as exc:
                problems.append(f"{raw!r}: {_first_error(exc)}"[:200])
                continue
            named = next((label for label in _labels(info) if mentions(item.sentence, label)), None)
            if named is not None:
                problems.append(f"the sentence {item.sentence!r} names the kind {named!r}; describe appearance only")
            elif not expected or item.id in expected:
                by_id.setdefault(item.id, item)
        missing = [cid for cid in expected if cid not in by_id]
        if missing:
            why = f" ({'; '.join(problems[:3])})" if problems else ""
            raise ValueError(f"no sentence for ids: {missing}{why}. Give one entry for every id, unchanged")
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
