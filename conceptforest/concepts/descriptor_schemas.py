"""The shapes of the LLM's answers when it describes labels (DCLIP descriptors, CuPL sentences).

As for the tree's answers (:mod:`conceptforest.concepts.schemas`), validation repairs what is safe to repair and
drops what cannot be: control characters and escapes are stripped, list bullets ("- ", "* ", "1.") that a model
copies from the prompt's examples are removed, repeats (ignoring case) are dropped, and an item that is empty, not a
string or too long is dropped while the others are kept. An answer fails (and is sent back to the model with the
reason) only when nothing usable is left, or when it is far longer than asked (a degenerate, looping answer).

The validation context carries ``max_items``, the most items kept.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from conceptforest.concepts.descriptors import MAX_DESCRIPTOR_CHARS
from conceptforest.concepts.schemas import clean_llm_text, trim_items

__all__ = [
    "DCLIP_MAX_CHARS",
    "CuplAnswer",
    "DclipAnswer",
    "cupl_schema",
    "dclip_schema",
    "descriptor_item",
]

DCLIP_MAX_CHARS = 120
CUPL_MAX_CHARS = MAX_DESCRIPTOR_CHARS
CUPL_MIN_CHARS = 8
_BULLET = re.compile(r"^(?:[-*\u2022\u2013]+\s*|\d{1,2}[.)]\s+)")
_SENTENCE_END = (".", "!", "?")


def _strip_bullet(text: str) -> str:
    return _BULLET.sub("", text).strip()


def descriptor_item(item: Any) -> str:
    """A DCLIP descriptor as DCLIP's own parser leaves it: the text after the "- ", without a closing full stop."""
    if not isinstance(item, str):
        raise ValueError(f"{item!r} is not a string")
    text = _strip_bullet(clean_llm_text(item)).rstrip(" .;,")
    if not text:
        raise ValueError(f"{item!r} is empty")
    if len(text) > DCLIP_MAX_CHARS:
        raise ValueError(f"{text[:40]!r}... is longer than {DCLIP_MAX_CHARS} characters")
    return text


def _sentence(item: Any) -> str:
    """A CuPL sentence, ending with a full stop as CuPL's own sentences do (it appends '.' to each answer)."""
    if not isinstance(item, str):
        raise ValueError(f"{item!r} is not a string")
    text = _strip_bullet(clean_llm_text(item))
    if len(text) < CUPL_MIN_CHARS:
        raise ValueError(f"{item!r} is not a sentence")
    if not text.endswith(_SENTENCE_END):
        text += "."
    if len(text) > CUPL_MAX_CHARS:
        raise ValueError(f"{text[:40]!r}... is longer than {CUPL_MAX_CHARS} characters")
    return text


def _limit(info: ValidationInfo, default: int) -> int:
    return int((info.context or {}).get("max_items", default))


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DclipAnswer(_Answer):
    """DCLIP: one label's visual features, each what would follow "- " in DCLIP's text answer."""

    descriptors: list[str] = Field(min_length=1)

    @field_validator("descriptors", mode="before")
    @classmethod
    def _before(cls, value: Any, info: ValidationInfo) -> Any:
        return trim_items(value, _limit(info, 12), "descriptors", descriptor_item, DCLIP_MAX_CHARS, key=str.casefold)


class CuplAnswer(_Answer):
    """CuPL: descriptive sentences answering one of CuPL's five questions about a label."""

    sentences: list[str] = Field(min_length=1)

    @field_validator("sentences", mode="before")
    @classmethod
    def _before(cls, value: Any, info: ValidationInfo) -> Any:
        return trim_items(value, _limit(info, 10), "sentences", _sentence, CUPL_MAX_CHARS, key=str.casefold)


def _list_schema(key: str, count: int, max_chars: int) -> dict[str, Any]:
    items = {"type": "string", "minLength": 1, "maxLength": max_chars}
    return {
        "type": "object",
        "properties": {key: {"type": "array", "items": items, "minItems": 1, "maxItems": count}},
        "required": [key],
        "additionalProperties": False,
    }


def dclip_schema(count: int) -> dict[str, Any]:
    """The JSON schema of a DCLIP answer asking for at most ``count`` descriptors (sent to the server)."""
    return _list_schema("descriptors", count, DCLIP_MAX_CHARS)


def cupl_schema(count: int) -> dict[str, Any]:
    """The JSON schema of a CuPL answer asking for at most ``count`` sentences (sent to the server)."""
    return _list_schema("sentences", count, CUPL_MAX_CHARS)
