"""The LLM-free template tree: a generic part/attribute vocabulary, the same for every label.

It knows nothing about the labels (every label gets every value), so it is an honest control for what an LLM
tree adds, and the offline default when no LLM is at hand. Provenance labels it ``generator="template"``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from conceptforest._version import package_version
from conceptforest.concepts.tree import DEFAULT_SENTENCE_TEMPLATE, ConceptTree, Part, Provenance

TEMPLATE_NOTE = "template tree: a generic vocabulary given to every label; no LLM was used"


def template_vocabulary() -> dict[str, dict[str, list[str]]]:
    """Part -> attribute -> values, from the packaged vocabulary file."""
    text = resources.files("conceptforest").joinpath("data", "template_vocabulary.json").read_text("utf-8")
    parts: dict[str, dict[str, list[str]]] = json.loads(text)["parts"]
    return parts


def template_tree(
    domain: str, labels: Sequence[str], *, sentence_template: str = DEFAULT_SENTENCE_TEMPLATE
) -> ConceptTree:
    """A tree of the generic vocabulary for ``labels``, built without an LLM.

    Raises
    ------
    TreeValidationError
        A label is empty or given twice, or the sentence template is refused.
    """
    vocabulary = template_vocabulary()
    parts = [Part(name=name, attributes=list(attrs)) for name, attrs in vocabulary.items()]
    values: dict[str, Any] = {label: vocabulary for label in labels}
    data = {
        "domain": domain,
        "labels": list(labels),
        "parts": parts,
        "values": values,
        "sentence_template": sentence_template,
        "provenance": Provenance(generator="template", package_version=package_version(), note=TEMPLATE_NOTE),
    }
    return ConceptTree.from_dict(data, source="template tree")
