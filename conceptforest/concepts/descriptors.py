"""DescriptorSet: a flat label -> descriptors mapping (DCLIP, CuPL, WaffleCLIP, a tree's values, optimised).

A descriptor set is the input of the description methods (classification by description): each label is
represented by its descriptors, each descriptor becomes a sentence, and a label's score is computed from the CLIP
similarities of its sentences. It is JSON on disk, editable by hand and validated on load, with provenance like a
concept tree's.

Sentence forms, as the authors' code writes them:
- ``dclip`` / ``optimized`` / ``manual``: the set's ``sentence_form``: ``"dclip"`` (the default), DCLIP's own
  ``"{label}, {modify(d)}"`` with DCLIP's rule (:func:`dclip_modifier`), ending in "." when ``full_stop`` is set
  (DCLIP adds it on ImageNet only); or ``"waffle"``, ``"A photo of a {label}, {modify(d)}."``, the form of
  WaffleCLIP's re-runs of DCLIP (the DCLIP numbers of WaffleCLIP's results tables);
- ``waffle``: WaffleCLIP's ``"A photo of a {label}, {modify(d)}."``;
- ``cupl``: the descriptors are whole sentences already (CuPL's LLM answers), used as they are;
- ``tree``: the tree's class-free concept sentences, used as they are (no label name in any sentence).
"""

from __future__ import annotations

import json
import warnings
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
SentenceForm = Literal["dclip", "waffle"]
SENTENCE_FORMS: tuple[str, ...] = ("dclip", "waffle")
DCLIP_FORM_STYLES: tuple[str, ...] = ("dclip", "optimized", "manual")  # the styles scored with DCLIP's modifier
PUBLISHED_NOTE = (
    "DCLIP's published descriptor file ({{label: [descriptors]}}, e.g. descriptors_imagenet.json) {name!r}; "
    "an empty list reads as [''], as DCLIP's load_gpt_descriptions does."
)
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


def dclip_sentence(label: str, descriptor: str, *, full_stop: bool = False) -> str:
    """DCLIP's text for one descriptor: ``"{label}, which (is|has) {descriptor}"`` (underscores in the label read
    as spaces, as DCLIP's ``wordify`` does), ending in "." with ``full_stop`` (DCLIP's ``after_text`` on ImageNet).

    An empty descriptor (DCLIP's ``['']`` for a label whose list is empty) gives ``"{label}, which has "``.
    """
    return f"{wordify(label)}, {dclip_modifier(descriptor)}" + ("." if full_stop else "")


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
    >>> ds.with_form("waffle").sentences("pug")[0]
    'A photo of a pug, which is a wrinkled face.'
    """

    style: DescriptorStyle
    labels: list[str] = Field(min_length=1)
    descriptors: dict[str, list[str]]
    provenance: Provenance = Field(default_factory=Provenance)
    optimization: OptimizationRecord | None = None  # style "optimized": the images used and the history
    sentence_form: SentenceForm = "dclip"  # dclip/optimized/manual styles: DCLIP's own form or WaffleCLIP's re-run
    full_stop: bool = False  # DCLIP's form ends in "." (DCLIP does so on ImageNet only)
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
            kept = list(seen)[:MAX_DESCRIPTORS] or ([""] if items == [""] else [])  # [''] is DCLIP's empty list
            cleaned[" ".join(strip_control(label).split())] = kept
        return cleaned

    @model_validator(mode="after")
    def _every_label_described(self) -> DescriptorSet:
        extra = sorted(set(self.descriptors) - set(self.labels))
        if extra:
            raise ValueError(f"descriptors for labels not in the label list: {', '.join(extra)}")
        empty = [label for label in self.labels if not self.descriptors.get(label)]
        if empty:
            raise ValueError(f"labels without descriptors: {', '.join(empty)}")
        if self.style not in DCLIP_FORM_STYLES and (self.sentence_form != "dclip" or self.full_stop):
            raise ValueError(
                f"sentence_form and full_stop apply to the {', '.join(DCLIP_FORM_STYLES)} styles, not {self.style}"
            )
        return self

    def sentences(self, label: str) -> list[str]:
        """The texts CLIP embeds for ``label``, in this set's style (and sentence form)."""
        items = self.descriptors[label]
        if self.style in ("cupl", "tree"):
            return list(items)
        if self.style == "waffle" or self.sentence_form == "waffle":
            return [waffle_sentence(label, d) for d in items]
        return [dclip_sentence(label, d, full_stop=self.full_stop) for d in items]

    def with_form(self, sentence_form: SentenceForm, *, full_stop: bool = False) -> DescriptorSet:
        """This set with another sentence form (validated: DCLIP-scored styles only)."""
        return type(self).model_validate({**self.model_dump(), "sentence_form": sentence_form, "full_stop": full_stop})

    def form_description(self) -> str:
        """The sentence form in words, for a method's note and a summary line."""
        if self.style == "waffle" or self.sentence_form == "waffle":
            return "WaffleCLIP's re-run form 'A photo of a {label}, which (is|has) {d}.'"
        if self.style not in DCLIP_FORM_STYLES:
            return "the sentences as they are"
        stop = "." if self.full_stop else ""
        return f"DCLIP's form '{{label}}, which (is|has) {{d}}{stop}'" + (" (ImageNet's full stop)" if stop else "")

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
        if data and all(isinstance(items, list) for items in data.values()):
            data = _published_set(data, path.name)
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


def _published_set(mapping: dict[str, Any], name: str) -> dict[str, Any]:
    """A ``{label: [descriptors]}`` file (DCLIP's and WaffleCLIP's published ones) as a ``dclip`` set's fields.

    A label with an empty list gets DCLIP's ``['']`` (its sentence is ``"{label}, which has "``), with a warning.
    """
    empty = [label for label, items in mapping.items() if not items]
    if empty:
        shown = ", ".join(map(repr, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        warnings.warn(
            f"{name}: {shown} ha{'s' if len(empty) == 1 else 've'} an empty descriptor list; read as [''] as DCLIP "
            "does (the label's one sentence is '{label}, which has ').",
            UserWarning,
            stacklevel=3,
        )
    descriptors = {label: list(items) or [""] for label, items in mapping.items()}
    provenance = {"generator": "manual", "note": PUBLISHED_NOTE.format(name=name)}
    return {"style": "dclip", "labels": list(mapping), "descriptors": descriptors, "provenance": provenance}
