"""WDYS's class weights: the authors' three runnable configurations and our sum, and CLIP's text shortening.

See :mod:`conceptforest.models.methods.wdys` for the method and :class:`WdysClassWeight` for the configurations.
The texts are shortened to CLIP's context by the authors' ``encode_gemini_text`` rule (:func:`shorten_for_clip`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from conceptforest.concepts.descriptors import wordify
from conceptforest.errors import BadInputError
from conceptforest.models.methods.descriptions import _descriptor_set

if TYPE_CHECKING:
    from conceptforest.models.methods.base import MethodInputs

PHOTO_PROMPT = "A photo of {label}"  # the authors' wording (no article)
MAX_WORDS = 100  # the authors' MAX_WORDS
CHAR_THRESHOLD = 250  # the authors' CHAR_THRESHOLD (lowered by CHAR_STEP before each character cut)
CHAR_STEP = 50


class WdysClassWeight(StrEnum):
    """Which texts a class weight sums: one of the authors' three runnable configurations, or our sum."""

    DESCRIPTIONS = "descriptions"
    CLASS_NAME = "class-name"
    PHOTO = "photo"
    SUM = "sum"


# the normalised embeddings each configuration adds up before the final normalisation
WEIGHT_PARTS: dict[WdysClassWeight, tuple[str, ...]] = {
    WdysClassWeight.DESCRIPTIONS: ("descriptions",),
    WdysClassWeight.CLASS_NAME: ("name",),
    WdysClassWeight.PHOTO: ("name", "photo"),
    WdysClassWeight.SUM: ("name", "photo", "descriptions"),
}
WEIGHT_ORIGINS: dict[WdysClassWeight, str] = {
    WdysClassWeight.DESCRIPTIONS: "the authors' README configuration, --use_class_descriptions",
    WdysClassWeight.CLASS_NAME: "the authors' --use_class_name",
    WdysClassWeight.PHOTO: "the authors' --use_a_photo_of, which their substring match makes turn the class name "
    "on too",
    WdysClassWeight.SUM: "ours: the three parts summed, which the authors' main.py cannot run",
}


def clip_text_fits(tokenizer: Any) -> Callable[[str], bool]:
    """Whether a text fits the tokenizer's context (start and end tokens included), as ``clip.tokenize`` checks.

    open_clip's tokenizers cut long texts silently, so the count is taken before that: ``encode`` (CLIP's BPE
    tokenizer, without start/end tokens) or a Hugging Face ``tokenizer`` (with them). A tokenizer that offers
    neither is trusted to fit.
    """
    context = int(getattr(tokenizer, "context_length", 77) or 77)
    if callable(getattr(tokenizer, "encode", None)):
        return lambda text: len(tokenizer.encode(text)) + 2 <= context
    inner = getattr(tokenizer, "tokenizer", None)
    if callable(inner):
        return lambda text: len(inner(text)["input_ids"]) <= context
    return lambda text: True


def shorten_for_clip(text: str, fits: Callable[[str], bool]) -> tuple[str, bool]:
    """The authors' ``encode_gemini_text`` rule: a text that does not fit is cut to its first 100 words; while it
    still does not fit, the character threshold drops by 50 (from 250, so the first cut is to 200 characters,
    as their loop lowers it before cutting) and the text is cut to it. Returns the text and whether it was cut.

    Examples
    --------
    >>> shorten_for_clip("a b c", lambda t: len(t) <= 120)
    ('a b c', False)
    >>> shorten_for_clip("x" * 300, lambda t: len(t) <= 120)[0] == "x" * 100
    True
    """
    if fits(text):
        return text, False
    words = text.split()
    if len(words) > MAX_WORDS:
        text = " ".join(words[:MAX_WORDS])
    threshold = CHAR_THRESHOLD
    while not fits(text):
        threshold -= CHAR_STEP
        if threshold < 0:  # only a tokenizer that refuses even "" gets here; their loop would never end
            raise BadInputError("The text encoder accepts no text at all.", hint="check the backbone's tokenizer.")
        if len(text) > threshold:
            text = text[:threshold]
    return text, True


def normalise(rows: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    result: np.ndarray = rows / np.where(norms == 0, 1.0, norms)
    return result


def encode_shortened(inputs: MethodInputs, texts: Sequence[str]) -> tuple[np.ndarray, list[str], int]:
    """Normalised embeddings of ``texts`` after shortening, the texts embedded, and how many were shortened."""
    if inputs.backbone is None:
        raise BadInputError("WDYS needs the CLIP backbone.", hint="the run's backbone (--clip/--pretrained).")
    fits = clip_text_fits(inputs.backbone.tokenizer)
    done = [shorten_for_clip(text, fits) for text in texts]
    kept = [text for text, _ in done]
    vectors = inputs.text_embeddings(kept) if kept else np.zeros((0, inputs.backbone.embed_dim), np.float32)
    return normalise(np.asarray(vectors, dtype=np.float64)), kept, sum(cut for _, cut in done)


def descriptor_style(inputs: MethodInputs) -> str | None:
    """The style of the class descriptions: ``cupl`` if given, else ``dclip``, else None."""
    return next((style for style in ("cupl", "dclip") if style in inputs.descriptors), None)


def descriptor_sentences(inputs: MethodInputs) -> tuple[str | None, list[list[str]] | None]:
    """The style and per-label sentences of the class descriptions (see :func:`descriptor_style`), or none."""
    style = descriptor_style(inputs)
    if style is None:
        return None, None
    described, own = _descriptor_set(inputs, style, "WDYS")
    return style, [described.sentences(label) for label in own]


def resolve_class_weight(chosen: WdysClassWeight | None, style: str | None) -> WdysClassWeight:
    """The configuration to run: ``chosen``, else ``descriptions`` with a description set and ``photo`` without.

    A configuration that needs descriptions is refused without a set (the authors' code refuses it too).
    """
    if chosen is None:
        return WdysClassWeight.DESCRIPTIONS if style else WdysClassWeight.PHOTO
    if style is None and "descriptions" in WEIGHT_PARTS[chosen]:
        raise BadInputError(
            f"The WDYS class weight {chosen.value!r} needs a description set, and none was given.",
            hint="pass --descriptors FILE (a cupl or dclip set from 'concepts describe'), or "
            "--wdys-class-weight photo or class-name.",
        )
    return chosen


@dataclass(frozen=True)
class WdysClassWeights:
    """The class weights of one configuration: ``vectors`` has one normalised row per label; ``style`` and
    ``descriptions`` name the description set and how many sentences were averaged (None and 0 when unused);
    ``shortened`` counts the texts cut to fit CLIP's context."""

    choice: WdysClassWeight
    vectors: np.ndarray
    style: str | None = None
    descriptions: int = 0
    shortened: int = 0
    defaulted: bool = False  # the configuration is the default, not chosen

    @property
    def note(self) -> str:
        """``class weight: <choice> (<origin>): <what is summed>``, for the method's note and the report."""
        texts = {
            "name": "label name",
            "photo": repr(PHOTO_PROMPT),
            "descriptions": f"mean of {self.descriptions} {self.style} descriptions",
        }
        summed = " + ".join(texts[part] for part in WEIGHT_PARTS[self.choice])
        unset = ""
        if self.defaulted and self.style is None:
            unset = " (the default: no description set given; --descriptors FILE turns on the authors' README "
            "configuration, descriptions)"
        return f"class weight: {self.choice.value} ({WEIGHT_ORIGINS[self.choice]}): {summed}{unset}"


def _mean_descriptions(inputs: MethodInputs, descriptions: Sequence[Sequence[str]]) -> tuple[np.ndarray, int]:
    """Per label, the mean of its normalised description embeddings; and how many texts were shortened."""
    flat = [text for group in descriptions for text in group]
    embedded, _, cut = encode_shortened(inputs, flat)
    bounds = np.cumsum([0, *(len(group) for group in descriptions)])
    return np.stack([embedded[start:end].mean(axis=0) for start, end in itertools.pairwise(bounds)]), cut


def class_weights(inputs: MethodInputs) -> WdysClassWeights:
    """``W_c = normalise(sum of the configuration's parts)``, one row per label, each part an L2-normalised
    embedding: the label name, "A photo of {label}", the mean of the label's description embeddings (see
    :class:`WdysClassWeight`; the configuration is ``inputs.wdys_class_weight``, else the default)."""
    choice = resolve_class_weight(inputs.wdys_class_weight, descriptor_style(inputs))
    names = [wordify(label) for label in inputs.labels]
    label_texts = {"name": names, "photo": [PHOTO_PROMPT.format(label=name) for name in names]}
    style, count, summed, shortened = None, 0, [], 0
    for part in WEIGHT_PARTS[choice]:
        if part == "descriptions":
            style, sentences = descriptor_sentences(inputs)
            vectors, cut = _mean_descriptions(inputs, sentences or [])
            count = sum(len(group) for group in sentences or [])
        else:
            vectors, _, cut = encode_shortened(inputs, label_texts[part])
        summed.append(vectors)
        shortened += cut
    return WdysClassWeights(
        choice,
        normalise(np.sum(summed, axis=0)),
        style=style,
        descriptions=count,
        shortened=shortened,
        defaulted=inputs.wdys_class_weight is None,
    )
