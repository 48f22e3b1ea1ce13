"""WDYS, "What Do You See?" (Abdelhamed, Afifi, Go, arXiv 2405.15668): CLIP zero-shot fused with a vision LLM.

A vision LLM describes each image and guesses its class; CLIP's text tower embeds both; the query is
``normalise(sum of the normalised parts)`` (image embedding, description, guess) and the class weight
``normalise(label-name embedding + "A photo of {label}" + mean of the label's description embeddings)``; the logit
is their dot product. This follows the authors' ``wdys_zs_classification.py`` (class ``WDYS``: ``classify``,
``build_classifier_model``, ``encode_gemini_text``) and the prompts of their paper.

Departures from the authors' code, stated in every result's note as well:

- the vision LLM is any :class:`~conceptforest.llm.vision_types.VisionLLM` (theirs: Gemini Pro), and the image
  embedding is the run's cached one (with the backbone's own preprocessing; their recomputing path skips CLIP's
  mean/std);
- labels are read as words (``golden_retriever`` -> ``golden retriever``) in the label-name text, the photo
  prompt and the guess prompt's label list (joined with ", ");
- an answer with an error leaves that part out of that image's query (their code needs every answer);
- the descriptor set is the run's ``cupl`` set (else ``dclip`` sentences); with none, the class weight has only
  the two label texts (their code refuses a missing description set).

:func:`run_wdys` gives the method's result together with its ablation table (image only, + description,
+ guess, all three; one accuracy each against the same class weights); :func:`wdys_ablation` computes the table
alone. The registered method :class:`Wdys` returns the result and writes the ablation's accuracies into its note.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conceptforest.concepts.descriptors import wordify
from conceptforest.errors import BadInputError
from conceptforest.llm.vision_types import VisionAnswer
from conceptforest.models.methods.base import Method, MethodInputs, MethodResult, Need, register
from conceptforest.models.methods.descriptions import EXPLANATION_COLUMNS, _descriptor_set

DESCRIBE_PROMPT = "What do you see? Describe any object precisely, including its type or class."
GUESS_PROMPT = (
    "You are given an image and a list of class labels. Classify the image given the class labels. "
    "Answer using a single word if possible. Here are the class labels: {labels}"
)
DESCRIBE_TEMPERATURE = 0.0
GUESS_TEMPERATURE = 0.3
PHOTO_PROMPT = "A photo of {label}"  # the authors' wording (no article)
MAX_WORDS = 100  # the authors' MAX_WORDS
CHAR_THRESHOLD = 250  # the authors' CHAR_THRESHOLD (lowered by CHAR_STEP before each character cut)
CHAR_STEP = 50
PARTS = ("image", "description", "guess")
# the ablation's queries, in the order of the paper's table
ABLATION: tuple[tuple[str, ...], ...] = (
    ("image",),
    ("image", "description"),
    ("image", "guess"),
    ("image", "description", "guess"),
)
ABLATION_COLUMNS = ("query", "accuracy", "images", "answers left out")


@dataclass(frozen=True)
class WdysAnswers:
    """The vision LLM's answers for the split's images, in row order: one description and one guess each."""

    descriptions: tuple[VisionAnswer, ...]
    guesses: tuple[VisionAnswer, ...]

    @property
    def tokens(self) -> int:
        return sum(answer.tokens for answer in (*self.descriptions, *self.guesses))


@dataclass(frozen=True)
class WdysParts:
    """The query's parts, one ``(images, dim)`` array each (a zero row where that image's answer is left out).

    ``texts`` holds, per part, the text CLIP embedded (after shortening) or None where it was left out;
    ``errors`` the vision LLM's error per left-out answer; ``shortened`` how many texts (answers and class
    descriptions) were cut to fit CLIP's context.
    """

    vectors: dict[str, np.ndarray]
    texts: dict[str, tuple[str | None, ...]]
    errors: dict[str, tuple[str | None, ...]]
    shortened: int = 0

    def left_out(self, part: str) -> int:
        return sum(error is not None for error in self.errors.get(part, ()))


@dataclass(frozen=True)
class WdysRun:
    """What :func:`run_wdys` returns: the method's result, its ablation table (see :func:`wdys_ablation`), the
    vision LLM's answers and the class weights."""

    result: MethodResult
    ablation: pd.DataFrame
    answers: WdysAnswers
    weights: np.ndarray  # the class weights, one row per label


def image_paths(inputs: MethodInputs) -> list[Path]:
    """The split's image files, as the feature matrix records them (``features extract`` stores each record's
    path: absolute, or relative to the folder the extraction ran in)."""
    return [Path(str(path)) for path in inputs.matrix.frame["path"].to_numpy()[inputs.split_mask]]


def guess_prompt(labels: Sequence[str]) -> str:
    """The guess prompt with the labels (read as words) joined by ", "."""
    return GUESS_PROMPT.format(labels=", ".join(wordify(label) for label in labels))


def ask_wdys(inputs: MethodInputs) -> WdysAnswers:
    """Ask the vision LLM for a description (temperature 0) and a guess (temperature 0.3) of each split image."""
    if inputs.vision_llm is None:
        raise BadInputError("WDYS needs a vision LLM.", hint="--mllm MODEL (with --mllm-base-url URL).")
    paths = image_paths(inputs)
    described = inputs.vision_llm.ask(
        paths, DESCRIBE_PROMPT, step="wdys-describe", temperature=DESCRIBE_TEMPERATURE, progress=inputs.progress
    )
    guessed = inputs.vision_llm.ask(
        paths, guess_prompt(inputs.labels), step="wdys-guess", temperature=GUESS_TEMPERATURE, progress=inputs.progress
    )
    if len(described) != len(paths) or len(guessed) != len(paths):
        raise BadInputError(
            f"The vision LLM returned {len(described)} descriptions and {len(guessed)} guesses for "
            f"{len(paths)} images.",
            hint="the vision client must return one answer per image, in order.",
        )
    return WdysAnswers(tuple(described), tuple(guessed))


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


def _encode_shortened(inputs: MethodInputs, texts: Sequence[str]) -> tuple[np.ndarray, list[str], int]:
    """Normalised embeddings of ``texts`` after shortening, the texts embedded, and how many were shortened."""
    if inputs.backbone is None:
        raise BadInputError("WDYS needs the CLIP backbone.", hint="the run's backbone (--clip/--pretrained).")
    fits = clip_text_fits(inputs.backbone.tokenizer)
    done = [shorten_for_clip(text, fits) for text in texts]
    kept = [text for text, _ in done]
    vectors = inputs.text_embeddings(kept) if kept else np.zeros((0, inputs.backbone.embed_dim), np.float32)
    return normalise(np.asarray(vectors, dtype=np.float64)), kept, sum(cut for _, cut in done)


def answer_parts(inputs: MethodInputs, answers: WdysAnswers) -> WdysParts:
    """The query's three parts for the split's images; an answer with an error (or no text) is left out."""
    image = normalise(np.asarray(inputs.image_embeddings(), dtype=np.float64))
    vectors, texts, errors, shortened = {"image": image}, {}, {}, 0
    for part, given in (("description", answers.descriptions), ("guess", answers.guesses)):
        usable = [i for i, a in enumerate(given) if a.error is None and a.text.strip()]
        encoded, kept, cut = _encode_shortened(inputs, [given[i].text.strip() for i in usable])
        block = np.zeros_like(image)
        if usable:
            block[usable] = encoded
        row_texts: list[str | None] = [None] * len(given)
        for i, text in zip(usable, kept, strict=True):
            row_texts[i] = text
        vectors[part], texts[part], shortened = block, tuple(row_texts), shortened + cut
        kept_rows = set(usable)
        errors[part] = tuple(None if i in kept_rows else (a.error or "empty answer") for i, a in enumerate(given))
    return WdysParts(vectors, texts, errors, shortened)


def descriptor_sentences(inputs: MethodInputs) -> tuple[str | None, list[list[str]] | None]:
    """The style and per-label sentences of the class descriptions: ``cupl`` if given, else ``dclip``, else none."""
    for style in ("cupl", "dclip"):
        if style in inputs.descriptors:
            described, own = _descriptor_set(inputs, style, "WDYS")
            return style, [described.sentences(label) for label in own]
    return None, None


def class_weights(inputs: MethodInputs, descriptions: Sequence[Sequence[str]] | None) -> tuple[np.ndarray, int]:
    """``W_c = normalise(e(label) + e("A photo of {label}") + mean_i e(description_i))``, one row per label (each
    ``e`` L2-normalised; the description part left out when ``descriptions`` is None). Also returns how many
    description texts were shortened to fit CLIP's context."""
    names = [wordify(label) for label in inputs.labels]
    name_vectors, _, cut_names = _encode_shortened(inputs, names)
    photo_vectors, _, cut_photos = _encode_shortened(inputs, [PHOTO_PROMPT.format(label=name) for name in names])
    total, shortened = name_vectors + photo_vectors, cut_names + cut_photos
    if descriptions is not None:
        flat = [text for group in descriptions for text in group]
        embedded, _, cut = _encode_shortened(inputs, flat)
        bounds = np.cumsum([0, *(len(group) for group in descriptions)])
        means = [embedded[start:end].mean(axis=0) for start, end in itertools.pairwise(bounds)]
        total, shortened = total + np.stack(means), shortened + cut
    return normalise(total), shortened


def fuse(parts: WdysParts, use: Sequence[str] = PARTS) -> tuple[np.ndarray, np.ndarray]:
    """The query ``normalise(sum of the parts in use)`` and the norm of that sum, per image."""
    total = sum((parts.vectors[part] for part in use), start=np.zeros_like(parts.vectors["image"]))
    norms = np.linalg.norm(total, axis=1)
    return normalise(total), norms


def _accuracy(inputs: MethodInputs, logits: np.ndarray) -> float:
    truth = inputs.matrix.frame["label"].to_numpy()[inputs.split_mask]
    if not len(truth):
        return float("nan")
    predicted = np.asarray(inputs.labels, dtype=object)[np.argmax(logits, axis=1)]
    return float(np.mean(predicted == truth))


def _ablation_table(inputs: MethodInputs, parts: WdysParts, weights: np.ndarray) -> pd.DataFrame:
    rows = []
    for use in ABLATION:
        query, _ = fuse(parts, use)
        rows.append((" + ".join(use), _accuracy(inputs, query @ weights.T), len(query), sum(map(parts.left_out, use))))
    return pd.DataFrame(rows, columns=list(ABLATION_COLUMNS))


def wdys_ablation(inputs: MethodInputs, answers: WdysAnswers | None = None) -> pd.DataFrame:
    """The ablation table: one row per query (image; image + description; image + guess; all three) with its
    accuracy on the split against the same class weights, the number of images and of answers left out.

    The image-only row is zero-shot CLIP against WDYS's class weights. ``answers`` default to asking the vision
    LLM (:func:`ask_wdys`; its cache makes a repeat free).
    """
    answers = ask_wdys(inputs) if answers is None else answers
    _, descriptions = descriptor_sentences(inputs)
    weights, _ = class_weights(inputs, descriptions)
    return _ablation_table(inputs, answer_parts(inputs, answers), weights)


def contributions(parts: WdysParts, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each part's share of every logit: ``(part_i . W_c) / |sum of parts_i|``, ``(images, labels)`` per part.

    The logit is the normalised query's dot product with ``W_c``, a sum of dot products, so the shares sum to
    it exactly.
    """
    _, norms = fuse(parts)
    scale = 1.0 / np.where(norms == 0, 1.0, norms)
    return {part: (parts.vectors[part] @ weights.T) * scale[:, None] for part in PARTS}


def explain(parts: WdysParts, weights: np.ndarray, labels: Sequence[str], top: int = 2) -> pd.DataFrame:
    """Long table (row, label, item, score): for each image's ``top`` labels, each part's share of the logit.

    Items are ``image``, ``description: <text>`` and ``guess: <text>`` (the text CLIP embedded); a left-out
    answer appears as ``description (left out: <error>)`` with score 0, so each label's scores sum to its logit.
    """
    shares = contributions(parts, weights)
    logits = sum((shares[part] for part in PARTS), start=np.zeros((len(parts.vectors["image"]), len(labels))))
    ranked = np.argsort(-logits, axis=1, kind="stable")[:, : min(top, len(labels))]
    records: list[tuple[int, str, str, float]] = []
    for row, chosen in enumerate(ranked):
        for index in chosen:
            for part in PARTS:
                text = parts.texts.get(part, ())[row] if part != "image" else None
                error = parts.errors.get(part, ())[row] if part != "image" else None
                item = part if part == "image" else f"{part}: {text}"
                if error is not None:
                    item = f"{part} (left out: {error[:200]})"
                records.append((row, labels[index], item, float(shares[part][row, index])))
    return pd.DataFrame(records, columns=list(EXPLANATION_COLUMNS))


def run_wdys(inputs: MethodInputs, answers: WdysAnswers | None = None) -> WdysRun:
    """WDYS on the split: the result (scores = logits of the three-part query), its explanation and ablation."""
    answers = ask_wdys(inputs) if answers is None else answers
    style, descriptions = descriptor_sentences(inputs)
    weights, cut_weights = class_weights(inputs, descriptions)
    parts = answer_parts(inputs, answers)
    query, _ = fuse(parts)
    ablation = _ablation_table(inputs, parts, weights)
    count = sum(len(group) for group in descriptions or ())
    weight_note = (
        f"label + {PHOTO_PROMPT!r} + mean of {count} {style} descriptions"
        if style
        else f"label + {PHOTO_PROMPT!r} only (no descriptor set given: pass --descriptors for the description part)"
    )
    accuracies = ", ".join(f"{q} {a:.3f}" for q, a in zip(ablation["query"], ablation["accuracy"], strict=True))
    note = (
        f"class weight: {weight_note}; left out (vision LLM errors): {parts.left_out('description')} "
        f"description(s), {parts.left_out('guess')} guess(es); {parts.shortened + cut_weights} text(s) shortened "
        f"to CLIP's context; ablation accuracy: {accuracies}; vision LLM {getattr(inputs.vision_llm, 'model', '?')}. "
        "Departures: a failed answer leaves its part out for that image; underscores in labels read as spaces; "
        "the image embedding is the run's cached one"
    )
    result = Wdys().result(
        inputs, query @ weights.T, explanations=explain(parts, weights, inputs.labels), tokens=answers.tokens, note=note
    )
    return WdysRun(result=result, ablation=ablation, answers=answers, weights=weights)


@register
class Wdys(Method):
    """WDYS: CLIP zero-shot with the query fused from the image, the vision LLM's description and its guess.

    See the module docstring for the formula and the departures from the authors' code; the ablation table comes
    from :func:`run_wdys` or :func:`wdys_ablation` (its accuracies are also in the note).
    """

    name = "wdys"
    display = "WDYS: image + vision-LLM description + guess"
    needs = frozenset({Need.IMAGE_EMBEDDINGS, Need.VISION_LLM})
    uses_label_names = True
    default = True

    def run(self, inputs: MethodInputs) -> MethodResult:
        return run_wdys(inputs).result
