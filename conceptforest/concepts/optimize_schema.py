"""The shape of the LLM's answer when it rewrites a group's descriptors (optimisation with visual feedback).

The authors' code asks for a Python list of ``"label: concept, concept"`` strings and parses it with a regular
expression; here the answer is JSON (``{"labels": [{"label": ..., "descriptors": [...]}]}``) checked by pydantic.
The validation context carries ``labels`` (the group's labels, in order) and ``max_items``. Labels match ignoring
case, spaces and underscores; labels not asked about are dropped; a missing label fails the answer (it goes back
to the model with the reason). Descriptors are cleaned like DCLIP's, repeats dropped, and a descriptor naming
another label of the group is dropped (the prompt forbids it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from conceptforest.concepts.descriptor_schemas import DCLIP_MAX_CHARS, descriptor_item
from conceptforest.concepts.schemas import trim_items

__all__ = ["GroupAnswer", "group_schema", "label_key"]


def label_key(label: str) -> str:
    return " ".join(label.replace("_", " ").split()).casefold()


class GroupAnswer(BaseModel):
    """Every label of one group with its full new descriptor list, keyed by the group's own spelling."""

    model_config = ConfigDict(extra="ignore")

    descriptors: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_labels(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict) or "descriptors" in value:
            return value
        context = info.context or {}
        expected: list[str] = list(context.get("labels", []))
        limit = int(context.get("max_items", 30))
        entries = value.get("labels")
        if not isinstance(entries, list):
            raise ValueError('the answer needs a "labels" list of {"label": ..., "descriptors": [...]} objects')
        by_key = {label_key(label): label for label in expected}
        found: dict[str, list[str]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
                continue
            own = by_key.get(label_key(entry["label"]))
            if own is None or own in found:
                continue
            others = [label for label in expected if label != own]
            items = trim_items(
                entry.get("descriptors"),
                limit,
                "descriptors",
                descriptor_item,
                DCLIP_MAX_CHARS,
                labels=others,
                key=str.casefold,
            )
            if isinstance(items, list) and items:
                found[own] = items
        missing = [label for label in expected if label not in found]
        if missing:
            raise ValueError(
                f"the answer has no usable descriptors for: {', '.join(missing)}; give every label asked about"
            )
        return {"descriptors": found}


def group_schema(labels: list[str], count: int) -> dict[str, Any]:
    """The JSON schema sent to the server: one entry per label, the label restricted to the group's names."""
    entry = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": list(labels)},
            "descriptors": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": DCLIP_MAX_CHARS},
                "minItems": 1,
                "maxItems": count,
            },
        },
        "required": ["label", "descriptors"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"labels": {"type": "array", "items": entry, "minItems": len(labels)}},
        "required": ["labels"],
        "additionalProperties": False,
    }
