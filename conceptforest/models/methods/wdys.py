"""WDYS, "What Do You See?" (Abdelhamed, Afifi, Go, arXiv 2405.15668): CLIP zero-shot fused with a vision LLM.

A vision LLM describes each image and guesses its class; CLIP's text tower embeds both; the query is
``normalise(sum of the normalised parts)`` (image embedding, description, guess) and the class weight
``normalise(sum of the parts its configuration names)``; the logit is their dot product. This follows the authors'
``wdys_zs_classification.py`` (class ``WDYS``: ``classify``, ``build_classifier_model``, ``encode_gemini_text``),
their ``main.py`` and the prompts of their paper.

The class weight (:class:`WdysClassWeight`, ``--wdys-class-weight``): the authors' ``main.py`` runs with exactly
one class part, giving three configurations, plus our sum:

- ``descriptions``: the mean of the label's description embeddings (their README's run,
  ``--use_class_descriptions``); the default when a description set is given;
- ``class-name``: the label-name embedding (``--use_class_name``);
- ``photo``: ``--use_a_photo_of``, which by their substring match (``'class_name' in 'a_photo_of_class_name'``)
  also turns the class name on, so the weight is label name + "A photo of {label}" (as their precomputed-feature
  path sums them; their ``--recompute_features`` path stops with a shape error on this configuration). The
  default without a description set: of the two configurations that need none it is the one with CLIP's prompt
  template (Radford et al. report "A photo of a {label}." beats the bare name on ImageNet by 1.3 points), and it
  is what this tool computed before without a description set;
- ``sum``: label name + "A photo of {label}" + mean description: ours, a configuration their code cannot run.

Departures from the authors' code, stated in every result's note as well:

- the vision LLM is any :class:`~conceptforest.llm.vision_types.VisionLLM` (theirs: Gemini Pro), and the image
  embedding is the run's cached one (with the backbone's own preprocessing; their recomputing path skips CLIP's
  mean/std);
- labels are read as words (``golden_retriever`` -> ``golden retriever``) in the label-name text, the photo
  prompt and the guess prompt's label list (joined with ", ");
- an answer with an error leaves that part out of that image's query (their code needs every answer);
- the descriptor set is the run's ``cupl`` set (else ``dclip`` sentences); a configuration that needs one is
  refused without it, as theirs is;
- the ``sum`` class weight is ours (above).

:func:`run_wdys` gives the method's result together with its ablation table (image only, + description,
+ guess, all three; one accuracy each against the method's own class weights); :func:`wdys_ablation` computes the
table alone. The registered method :class:`Wdys` returns the result and writes the ablation's accuracies and the
class weight's configuration into its note. The class weights and the text shortening live in
:mod:`conceptforest.models.methods.wdys_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from conceptforest.concepts.descriptors import wordify
from conceptforest.errors import BadInputError
from conceptforest.llm.vision_types import VisionAnswer
from conceptforest.models.methods.base import Method, MethodInputs, MethodResult, Need, register
from conceptforest.models.methods.descriptions import EXPLANATION_COLUMNS
from conceptforest.models.methods.wdys_weights import (
    CHAR_STEP,
    CHAR_THRESHOLD,
    MAX_WORDS,
    PHOTO_PROMPT,
    WdysClassWeight,
    WdysClassWeights,
    class_weights,
    clip_text_fits,
    encode_shortened,
    normalise,
    shorten_for_clip,
)

__all__ = [  # the class weights and the text shortening live in wdys_weights; these names stay importable here
    "CHAR_STEP",
    "CHAR_THRESHOLD",
    "MAX_WORDS",
    "PHOTO_PROMPT",
    "Wdys",
    "WdysAnswers",
    "WdysClassWeight",
    "WdysParts",
    "WdysRun",
    "answer_parts",
    "ask_wdys",
    "class_weights",
    "clip_text_fits",
    "explain",
    "guess_prompt",
    "image_paths",
    "run_wdys",
    "shorten_for_clip",
    "wdys_ablation",
]

DESCRIBE_PROMPT = "What do you see? Describe any object precisely, including its type or class."
GUESS_PROMPT = (
    "You are given an image and a list of class labels. Classify the image given the class labels. "
    "Answer using a single word if possible. Here are the class labels: {labels}"
)
DESCRIBE_TEMPERATURE = 0.0
GUESS_TEMPERATURE = 0.3
PARTS = ("image", "description", "guess")
# the ablation's queries, in the order of the paper's table
ABLATION: tuple[tuple[str, ...], ...] = (
    ("image",),
    ("image", "description"),
    ("image", "guess"),
    ("image", "description", "guess"),
)
ABLATION_COLUMNS = ("query", "accuracy", "images", "answers left out", "class weight")


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
    class_weight: WdysClassWeight  # their configuration


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


def answer_parts(inputs: MethodInputs, answers: WdysAnswers) -> WdysParts:
    """The query's three parts for the split's images; an answer with an error (or no text) is left out."""
    image = normalise(np.asarray(inputs.image_embeddings(), dtype=np.float64))
    vectors, texts, errors, shortened = {"image": image}, {}, {}, 0
    for part, given in (("description", answers.descriptions), ("guess", answers.guesses)):
        usable = [i for i, a in enumerate(given) if a.error is None and a.text.strip()]
        encoded, kept, cut = encode_shortened(inputs, [given[i].text.strip() for i in usable])
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


def _ablation_table(inputs: MethodInputs, parts: WdysParts, weights: WdysClassWeights) -> pd.DataFrame:
    rows = []
    for use in ABLATION:
        query, _ = fuse(parts, use)
        accuracy = _accuracy(inputs, query @ weights.vectors.T)
        rows.append((" + ".join(use), accuracy, len(query), sum(map(parts.left_out, use)), weights.choice.value))
    return pd.DataFrame(rows, columns=list(ABLATION_COLUMNS))


def wdys_ablation(inputs: MethodInputs, answers: WdysAnswers | None = None) -> pd.DataFrame:
    """The ablation table: one row per query (image; image + description; image + guess; all three) with its
    accuracy on the split against the method's own class weights (:func:`class_weights`, named in the
    ``class weight`` column), the number of images and of answers left out.

    The image-only row is zero-shot CLIP against WDYS's class weights. ``answers`` default to asking the vision
    LLM (:func:`ask_wdys`; its cache makes a repeat free).
    """
    weights = class_weights(inputs)  # before asking: a configuration refused costs no request
    answers = ask_wdys(inputs) if answers is None else answers
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
    weights = class_weights(inputs)  # before asking: a configuration refused costs no request
    answers = ask_wdys(inputs) if answers is None else answers
    parts = answer_parts(inputs, answers)
    query, _ = fuse(parts)
    ablation = _ablation_table(inputs, parts, weights)
    accuracies = ", ".join(f"{q} {a:.3f}" for q, a in zip(ablation["query"], ablation["accuracy"], strict=True))
    note = (
        f"{weights.note}; left out (vision LLM errors): {parts.left_out('description')} "
        f"description(s), {parts.left_out('guess')} guess(es); {parts.shortened + weights.shortened} text(s) "
        f"shortened to CLIP's context; ablation accuracy (same class weight): {accuracies}; vision LLM "
        f"{getattr(inputs.vision_llm, 'model', '?')}. Departures: a failed answer leaves its part out for that "
        "image; underscores in labels read as spaces; the image embedding is the run's cached one"
        + ("; the three-part class weight is ours" if weights.choice is WdysClassWeight.SUM else "")
    )
    logits = query @ weights.vectors.T
    explanations = explain(parts, weights.vectors, inputs.labels)
    result = Wdys().result(inputs, logits, explanations=explanations, tokens=answers.tokens, note=note)
    return WdysRun(result, ablation, answers, weights.vectors, weights.choice)


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
