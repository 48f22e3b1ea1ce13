"""The shape of the LLM's answer when it rewrites a group's descriptors (optimisation with visual feedback).

The authors' code asks for a Python list of ``"label: concept, concept"`` strings and parses it with a regular
expression; here the answer is JSON keyed by label (``{"labels": {"<label>": ["...", ...]}}``), with every label
of the group required by the schema, so a structured-output server must complete it. The list form
(``{"labels": [{"label": ..., "descriptors": [...]}]}``) is read too. The validation context carries ``labels``
(the group's labels, in order) and ``max_items``. Labels match ignoring case, spaces and underscores; labels not
asked about are dropped. A label the answer leaves out (or gives nothing usable) is listed in ``omitted``: the loop
keeps its current descriptors. Only an answer with no usable label fails (it goes back to the model with the
reason). Descriptors are cleaned like DCLIP's, repeats dropped, and a descriptor naming another label of the group
is dropped (the prompt forbids it).
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

    omitted: list[str] = Field(default_factory=list)  # labels asked about that the answer left out

    @model_validator(mode="before")
    @classmethod
    def _from_labels(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict) or "descriptors" in value:
            return value
        context = info.context or {}
        expected: list[str] = list(context.get("labels", []))
        limit = int(context.get("max_items", 30))
        by_key = {label_key(label): label for label in expected}
        found: dict[str, list[str]] = {}
        for name, raw in _entries(value.get("labels")):
            own = by_key.get(label_key(name))
            if own is None or own in found:
                continue
            others = [label for label in expected if label != own]
            items = trim_items(
                raw, limit, "descriptors", descriptor_item, DCLIP_MAX_CHARS, labels=others, key=str.casefold
            )
            if isinstance(items, list) and items:
                found[own] = items
        if not found:
            raise ValueError(
                "the answer has no usable descriptors for any label asked about; give every label its descriptors, "
                'as {"labels": {"<label>": ["descriptor", ...]}}'
            )
        return {"descriptors": found, "omitted": [label for label in expected if label not in found]}


def _entries(labels: Any) -> list[tuple[str, Any]]:
    """(label, descriptors) pairs of either answer form; anything else is not an answer."""
    if isinstance(labels, dict):
        return [(name, items) for name, items in labels.items() if isinstance(name, str)]
    if isinstance(labels, list):
        return [
            (entry["label"], entry.get("descriptors"))
            for entry in labels
            if isinstance(entry, dict) and isinstance(entry.get("label"), str)
        ]
    raise ValueError('the answer needs a "labels" object mapping every label asked about to its descriptors')


def group_schema(labels: list[str], count: int) -> dict[str, Any]:
    """The JSON schema sent to the server: an object keyed by the group's labels, every one required."""
    items = {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": DCLIP_MAX_CHARS},
        "minItems": 1,
        "maxItems": count,
    }
    keyed = {
        "type": "object",
        "properties": {label: items for label in labels},
        "required": list(labels),
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"labels": keyed},
        "required": ["labels"],
        "additionalProperties": False,
    }
