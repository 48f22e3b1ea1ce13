"""DescriptorSet: a flat label -> descriptors mapping (DCLIP, CuPL, WaffleCLIP, a tree's values, optimised).

A descriptor set is the input of the description methods (classification by description): each label is
represented by its descriptors, each descriptor becomes a sentence, and a label's score is computed from the CLIP
similarities of its sentences. It is JSON on disk, editable by hand and validated on load, with provenance like a
concept tree's.

Sentence forms, as the authors' code writes them:
- ``dclip`` / ``optimized`` / ``manual``: ``"{label}, {modify(d)}"`` with DCLIP's rule
  (:func:`dclip_modifier`), WaffleCLIP's ``"A photo of a {label}, {modify(d)}."`` for ``waffle``;
- ``cupl``: the descriptors are whole sentences already (CuPL's LLM answers), used as they are;
- ``tree``: the tree's class-free concept sentences, used as they are (no label name in any sentence).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from conceptforest.atomic import atomic_write_json
from conceptforest.concepts.optimize_record import OptimizationRecord
from conceptforest.concepts.provenance import Provenance
from conceptforest.errors import BadInputError
from conceptforest.text import strip_control

DescriptorStyle = Literal["dclip", "cupl", "waffle", "tree", "optimized", "manual"]
STYLES: tuple[str, ...] = ("dclip", "cupl", "waffle", "tree", "optimized", "manual")
MAX_DESCRIPTORS = 200
MAX_DESCRIPTOR_CHARS = 300
FORMAT_VERSION = 1


def wordify(label: str) -> str:
    """A label as words: folder names such as ``golden_retriever`` read as ``golden retriever`` (DCLIP's rule)."""
    return label.replace("_", " ")


def dclip_modifier(descriptor: str) -> str:
    """DCLIP's ``modify_descriptor``: how a descriptor joins its label.

    Faithful to the authors' code, including its quirk: any descriptor starting with the letter "a" (not only the
    article: "antennae" too) gets "which is".
    """
    if descriptor.startswith("a"):
        return f"which is {descriptor}"
    if descriptor.startswith(("has", "often", "typically", "may", "can")):
        return f"which {descriptor}"
    if descriptor.startswith("used"):
        return f"which is {descriptor}"
    return f"which has {descriptor}"


def dclip_sentence(label: str, descriptor: str) -> str:
    """DCLIP's text for one descriptor: ``"{label}, which (is|has) {descriptor}"`` (underscores in the label read
    as spaces, as DCLIP's ``wordify`` does)."""
    return f"{wordify(label)}, {dclip_modifier(descriptor)}"


def waffle_sentence(label: str, descriptor: str) -> str:
    """WaffleCLIP's text: ``"A photo of a {label}, {modify(d)}."``."""
    return f"A photo of a {wordify(label)}, {dclip_modifier(descriptor)}."


class DescriptorSet(BaseModel):
    """Label -> descriptors, in the label order given.

    Examples
    --------
    >>> ds = DescriptorSet(style="dclip", labels=["pug"], descriptors={"pug": ["a wrinkled face", "curled tail"]})
    >>> ds.sentences("pug")
    ['pug, which is a wrinkled face', 'pug, which has curled tail']
    """

    style: DescriptorStyle
    labels: list[str] = Field(min_length=1)
    descriptors: dict[str, list[str]]
    provenance: Provenance = Field(default_factory=Provenance)
    optimization: OptimizationRecord | None = None  # style "optimized": the images used and the history
    format_version: int = FORMAT_VERSION

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        cleaned = [" ".join(strip_control(label).split()) for label in labels]
        if any(not label for label in cleaned):
            raise ValueError("a label is empty")
        counts = Counter(label.casefold() for label in cleaned)  # linear: 60,000 labels are checked at once
        repeated = sorted(label for label, count in counts.items() if count > 1)
        if repeated:
            raise ValueError(f"labels repeat: {', '.join(repeated)}")
        return cleaned

    @field_validator("descriptors")
    @classmethod
    def _descriptors(cls, descriptors: dict[str, list[str]]) -> dict[str, list[str]]:
        cleaned: dict[str, list[str]] = {}
        for label, items in descriptors.items():
            seen: dict[str, None] = {}
            for item in items:
                text = " ".join(strip_control(str(item)).split())
                if text and len(text) <= MAX_DESCRIPTOR_CHARS:
                    seen.setdefault(text, None)
            cleaned[" ".join(strip_control(label).split())] = list(seen)[:MAX_DESCRIPTORS]
        return cleaned

    @model_validator(mode="after")
    def _every_label_described(self) -> DescriptorSet:
        extra = sorted(set(self.descriptors) - set(self.labels))
        if extra:
            raise ValueError(f"descriptors for labels not in the label list: {', '.join(extra)}")
        empty = [label for label in self.labels if not self.descriptors.get(label)]
        if empty:
            raise ValueError(f"labels without descriptors: {', '.join(empty)}")
        return self

    def sentences(self, label: str) -> list[str]:
        """The texts CLIP embeds for ``label``, in this set's style."""
        items = self.descriptors[label]
        if self.style in ("cupl", "tree"):
            return list(items)
        if self.style == "waffle":
            return [waffle_sentence(label, d) for d in items]
        return [dclip_sentence(label, d) for d in items]

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: str | Path) -> DescriptorSet:
        """Read and validate a descriptor set; any problem is one clear error naming the file."""
        path = Path(path)
        hint = "give a descriptors.json written by 'conceptforest concepts describe' (or fix the hand edit)."
        if not path.is_file():
            raise BadInputError(f"The descriptor set {str(path)!r} does not exist or is not a file.", hint=hint)
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BadInputError(f"The descriptor set {str(path)!r} is not valid UTF-8 JSON: {exc}.", hint=hint) from exc
        if not isinstance(data, dict):
            raise BadInputError(f"The descriptor set {str(path)!r} is not a JSON object.", hint=hint)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'set'}: {e['msg']}" for e in exc.errors()[:5])
            raise BadInputError(f"The descriptor set {str(path)!r} is not valid: {problems}.", hint=hint) from exc

    @classmethod
    def from_tree(cls, tree: Any) -> DescriptorSet:
        """Each label's own concepts as descriptors (the tree's class-free sentences), style ``tree``."""
        descriptors: dict[str, list[str]] = {label: [] for label in tree.labels}
        for concept in tree.concepts():
            for label in concept.labels:
                descriptors[label].append(concept.sentence)
        provenance = Provenance(generator="manual", note=f"from the concept tree {tree.tree_hash()[:12]}")
        return cls(style="tree", labels=list(tree.labels), descriptors=descriptors, provenance=provenance)
