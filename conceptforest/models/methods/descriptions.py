"""Classification by description: DCLIP, CuPL, WaffleCLIP and descriptor averaging on the tree.

Each label is represented by several sentences; a label's score comes from the CLIP similarities of its sentences
with the image (cached image embeddings; each sentence encoded once per backbone):

- ``dclip`` (Menon & Vondrick): ``"{label}, which (is|has) {descriptor}"`` (DCLIP's own form; "." at the end
  with the set's ``full_stop``, as DCLIP on ImageNet), or WaffleCLIP's re-run form ``"A photo of a {label},
  which (is|has) {descriptor}."`` (the set's ``sentence_form``); score = mean cosine over the label's sentences.
  The per-image explanation lists the score of every descriptor of the two top labels.
- ``cupl`` (Pratt et al.): the LLM's sentences as they are; class weight = normalise(mean of normalised sentence
  embeddings); score = cosine with the class weight.
- ``waffle`` (Roth et al., WaffleCLIP): random-word and random-character descriptors, the same set for every label,
  in the sentence ``"A photo of a {label}, which (is|has) {descriptor}."``, averaged like DCLIP, over 7 seeds.
- ``tree-descriptors``: each label's own class-free concept sentences of the tree, averaged (the concept matrix's
  columns), the DCLIP recipe without the label name.
"""

from __future__ import annotations

import itertools
import math
import random
import string
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from conceptforest.concepts.descriptors import DescriptorSet, waffle_sentence
from conceptforest.errors import BadInputError
from conceptforest.models.methods.base import Method, MethodInputs, MethodResult, Need, register

EXPLANATION_COLUMNS = ("row", "label", "item", "score")
NO_CONCEPT_SCORE = -2.0  # below any cosine: a label with no concept of its own is never predicted
WAFFLE_SEEDS = 7  # WaffleCLIP's --reps for its reported runs (seeds 0..6)

# Our own small vocabulary (WaffleCLIP draws from word_list.pkl, 4330 words of its GPT descriptors).
_WORD_TEXT = """
    amber anchor apple arrow autumn badge bakery banner barrel basket beacon bench berry blanket bottle branch
    breeze bridge bronze bubble bucket butter button cabin cactus camera candle canvas carpet castle cellar chalk
    cherry chimney circle cliff clock cloud cobalt coffee comet copper coral cotton crater crystal curtain cushion
    dagger desert diamond dinner dragon drum dune eagle echo ember engine fabric falcon feather fence fiddle flame
    flannel forest fossil fountain garden garlic ginger glacier glove granite gravel guitar hammer harbor harvest
    helmet honey horizon island ivory jacket jungle kettle kitten ladder lantern lemon lilac linen lizard locket
    magnet mango maple marble meadow melon mirror mitten monsoon mosaic mustard napkin needle nickel noodle nutmeg
    oasis ocean olive onion orchard oyster paddle palace pencil pepper pebble pillow planet pocket pollen pottery
    puzzle quartz quill rabbit radar raisin ribbon river rocket saddle salmon satin scarf shadow shovel silver
    socket spiral spoon stable statue summit sunset teapot temple thimble thunder timber tunnel turnip umbrella
    valley velvet violet walnut whistle willow window winter wizard yogurt zipper
"""
_WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())
_CHARACTERS = string.ascii_lowercase + string.digits


def _waffle_shape(labels: Sequence[str] | None) -> tuple[int, int, int, int]:
    """(words per descriptor, word length, character groups, characters per group), from the labels' lengths.

    WaffleCLIP's rule: as many words as the labels have on average (at least 1), each cut to the labels' mean word
    length (words of the names with underscores read as spaces); a character descriptor has one group per average
    number of spaces plus one, of about the labels' longest space-separated token in all (its ``num_chars +=
    num_spaces - num_chars % num_spaces`` rounding kept), counted on the raw names as WaffleCLIP does: a
    ``golden_retriever`` is one group of 17 characters, not two. Without labels: a one-word, 8-letter label.
    """
    raw = [" ".join(label.split()) for label in labels or () if label.strip()] or ["abcdefgh"]
    named = [label.replace("_", " ").split() for label in raw]
    words = max(round(float(np.mean([len(w) for w in named]))), 1)
    length = max(round(float(np.mean([np.mean([len(x) for x in w]) for w in named]))), 1)
    groups = round(float(np.mean([label.count(" ") for label in raw]))) + 1  # spaces of the raw name
    chars = math.ceil(float(np.mean([max(len(x) for x in label.split(" ")) for label in raw])))
    chars += groups - chars % groups
    return words, length, groups, chars // groups


def waffle_descriptors(
    count_words: int = 15, count_chars: int = 15, *, seed: int = 0, labels: Sequence[str] | None = None
) -> list[str]:
    """WaffleCLIP's random descriptors: ``count_words`` of random words and ``count_chars`` of random characters.

    One set for every label (WaffleCLIP gives all classes the same set). Deterministic per ``seed`` (and the
    labels' lengths, which set the word count and length as in WaffleCLIP; see :func:`_waffle_shape`). Word and
    character descriptors alternate, as WaffleCLIP appends them in pairs.

    Departures from WaffleCLIP's code: words come from a small embedded vocabulary (not its ``word_list.pkl``),
    characters from a-z and 0-9 (not the characters of its GPT descriptors), Python's seeded ``random`` replaces
    NumPy's global state, and the descriptors of one set are distinct where the vocabulary allows (WaffleCLIP may
    repeat one; a :class:`DescriptorSet` would drop the repeat).

    Examples
    --------
    >>> items = waffle_descriptors(2, 2, seed=1)
    >>> len(items), items == waffle_descriptors(2, 2, seed=1)
    (4, True)
    """
    if count_words < 0 or count_chars < 0 or count_words + count_chars == 0:
        raise BadInputError(
            f"WaffleCLIP needs a positive number of descriptors (got {count_words} word and {count_chars} "
            "character descriptors).",
            hint="ask for at least one random word or character descriptor (WaffleCLIP uses 15 and 15).",
        )
    rng = random.Random(seed)
    words_per, length, groups, per_group = _waffle_shape(labels)
    seen: set[str] = set()

    def draw(make: str) -> str:
        text = ""
        for _ in range(100):  # re-draw a repeat; a tiny vocabulary may still repeat after that
            if make == "words":
                text = " ".join(rng.choice(_WORDS)[:length] for _ in range(words_per))
            else:
                text = ", ".join("".join(rng.choices(_CHARACTERS, k=per_group)) for _ in range(groups))
            if text not in seen:
                break
        seen.add(text)
        return text

    items: list[str] = []
    for index in range(max(count_words, count_chars)):
        if index < count_words:
            items.append(draw("words"))
        if index < count_chars:
            items.append(draw("chars"))
    return items


def _descriptor_set(inputs: MethodInputs, style: str, display: str) -> tuple[DescriptorSet, list[str]]:
    """The ``style`` set and, per run label, its spelling there; refusing a missing set or an undescribed label.

    Labels match ignoring case and repeated spaces.
    """
    found = inputs.descriptors.get(style)
    command = f"'conceptforest concepts describe --style {style} --labels labels.txt -o {style}.json'"
    if found is None:
        given = ", ".join(sorted(inputs.descriptors)) or "none"
        if style == "optimized":
            command = "'conceptforest concepts optimize IMAGES --llm MODEL -o RUN/descriptors-optimized.json'"
        raise BadInputError(
            f"{display} needs a descriptor set of style {style!r}; the descriptor sets given are: {given}.",
            hint=f"--descriptors FILE written by {command}.",
        )
    by_key = {" ".join(label.split()).casefold(): label for label in found.labels}
    chosen = [by_key.get(" ".join(label.split()).casefold(), "") for label in inputs.labels]
    missing = [label for label, own in zip(inputs.labels, chosen, strict=True) if not own]
    if missing:
        raise BadInputError(
            f"The {style!r} descriptor set does not describe the label(s) {', '.join(map(repr, missing))}.",
            hint=f"regenerate it for these labels with {command}, or add them by hand.",
        )
    return found, chosen


def mean_similarities(
    images: np.ndarray, sentences: Sequence[Sequence[str]], inputs: MethodInputs
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each label's mean cosine over its sentences, and every sentence's cosine (one array per label).

    All sentences are encoded in one call (each once per backbone, cached).
    """
    flat = [sentence for group in sentences for sentence in group]
    similarities = images @ inputs.text_embeddings(flat).T if flat else np.zeros((len(images), 0))
    bounds = np.cumsum([0, *(len(group) for group in sentences)])
    per_label = [similarities[:, start:end] for start, end in itertools.pairwise(bounds)]
    scores = np.column_stack([s.mean(axis=1) for s in per_label]) if per_label else np.zeros((len(images), 0))
    return scores, per_label


def top_label_evidence(
    scores: np.ndarray,
    per_label: Sequence[np.ndarray],
    items: Sequence[Sequence[str]],
    labels: Sequence[str],
    top: int = 2,
) -> pd.DataFrame:
    """Long table (row, label, item, score): every item's score for each image's ``top`` labels.

    ``row`` is the image's position within the split; rows are ordered by image, then rank, then item.
    """
    if not len(scores) or not len(labels):
        return pd.DataFrame({column: [] for column in EXPLANATION_COLUMNS})
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, : min(top, len(labels))]
    parts = []
    for rank in range(ranked.shape[1]):
        for index, label in enumerate(labels):
            rows = np.flatnonzero(ranked[:, rank] == index)
            if not len(rows) or not len(items[index]):
                continue
            values = per_label[index][rows]
            parts.append(
                pd.DataFrame(
                    {
                        "row": np.repeat(rows, len(items[index])),
                        "label": label,
                        "item": np.tile(np.asarray(items[index], dtype=object), len(rows)),
                        "score": values.ravel(),
                        "_rank": rank,
                    }
                )
            )
    frame = pd.concat(parts, ignore_index=True).sort_values(["row", "_rank"], kind="stable")
    return frame.drop(columns="_rank").reset_index(drop=True)


@register
class DescriptorClip(Method):
    """DCLIP, classification by description: score = mean cosine of ``"{label}, which (is|has) {d}"`` sentences.

    As the authors' code (``modify_descriptor``, mean aggregation; a published file's empty list read as
    ``['']``). The sentence form is the set's (``concepts describe --dclip-form/--full-stop``): DCLIP's own
    ``"{label}, which (is|has) {d}"`` by default, with DCLIP's ImageNet "." when ``full_stop`` is set, or the
    ``"A photo of a {label}, which (is|has) {d}."`` of WaffleCLIP's re-runs of DCLIP; the note names it. One
    departure: scores are plain cosines (DCLIP multiplies by 100; the arg-max is the same).
    """

    name = "dclip"
    display = "DCLIP (descriptors, label in every sentence)"
    needs = frozenset({Need.IMAGE_EMBEDDINGS, Need.DESCRIPTORS})
    uses_label_names = True

    def run(self, inputs: MethodInputs) -> MethodResult:
        described, own = _descriptor_set(inputs, "dclip", self.display)
        scores, evidence, count = mean_of_descriptors(inputs, described, own)
        note = f"{count} descriptors; sentences in {described.form_description()}; scores are cosines"
        return self.result(inputs, scores, explanations=evidence, note=note)


def mean_of_descriptors(
    inputs: MethodInputs, described: DescriptorSet, own: Sequence[str]
) -> tuple[np.ndarray, pd.DataFrame, int]:
    """DCLIP's scoring of a set: each label's mean cosine over its sentences (``own``: each run label's spelling
    in the set), the per-image evidence of the top two labels, and the number of descriptors."""
    sentences = [described.sentences(label) for label in own]
    scores, per_label = mean_similarities(inputs.image_embeddings(), sentences, inputs)
    items = [described.descriptors[label] for label in own]
    evidence = top_label_evidence(scores, per_label, items, inputs.labels)
    return scores, evidence, sum(len(group) for group in items)


def check_unseen(inputs: MethodInputs, described: DescriptorSet, display: str) -> None:
    """Refuse to score images an optimised set was tuned on (its record lists their sha256)."""
    record = described.optimization
    if record is None:
        return
    seen = set(record.image_sha256)
    frame = inputs.matrix.frame
    keys = frame["sha256"].to_numpy()
    evaluated = sum(1 for key in keys[inputs.split_mask] if key in seen)
    if evaluated:
        raise BadInputError(
            f"{display}: the optimised set was tuned on {evaluated} of the {inputs.split!r} images evaluated here.",
            hint="evaluate the test split (the default): the optimisation reads training images only.",
        )
    held_out = sum(1 for key in keys[frame["split"].to_numpy() != "train"] if key in seen)
    if held_out:
        raise BadInputError(
            f"{display}: the optimised set was tuned on {held_out} of this run's val/test images.",
            hint="optimise on the run folder itself ('concepts optimize RUN ...' uses its train split and leaves "
            "out train copies of val/test images).",
        )
    if record.backbone_id != inputs.matrix.backbone_id:
        raise BadInputError(
            f"{display}: the optimised set was tuned with backbone {record.backbone_id!r}, not the run's "
            f"{inputs.matrix.backbone_id!r}.",
            hint="optimise with the run's backbone (--clip/--pretrained/--checkpoint as for 'features extract').",
        )


@register
class OptimizedDescriptions(Method):
    """Descriptions optimised with visual feedback (Han et al.), scored like DCLIP.

    A label's score is the mean cosine of ``"{label}, which (is|has) {d}"`` over its optimised descriptors: the
    authors' final test uses DCLIP's sentence form, while their search scores ``"{label}, {d}"``. Refused when the
    evaluated images include any image the set was optimised on.
    """

    name = "optimized"
    display = "descriptions optimised with visual feedback (DCLIP scoring)"
    needs = frozenset({Need.IMAGE_EMBEDDINGS, Need.DESCRIPTORS})
    uses_label_names = True

    def run(self, inputs: MethodInputs) -> MethodResult:
        described, own = _descriptor_set(inputs, "optimized", self.display)
        check_unseen(inputs, described, self.display)
        scores, evidence, count = mean_of_descriptors(inputs, described, own)
        record = described.optimization
        history = (
            f"; train accuracy {record.best_accuracy:.3f} at iteration {record.best_iteration} of "
            f"{len(record.iterations)} on {len(record.image_sha256)} images"
            if record is not None
            else ""
        )
        note = f"{count} descriptors{history}; sentences in {described.form_description()}"
        return self.result(inputs, scores, explanations=evidence, note=note)


@register
class CuPL(Method):
    """CuPL: class weight = normalise(mean of the normalised embeddings of the label's LLM sentences).

    The sentences are used as the descriptor set holds them (CuPL's LLM answers), as the authors' code does.
    """

    name = "cupl"
    display = "CuPL (LLM sentences, label in every sentence)"
    needs = frozenset({Need.IMAGE_EMBEDDINGS, Need.DESCRIPTORS})
    uses_label_names = True

    def run(self, inputs: MethodInputs) -> MethodResult:
        described, own = _descriptor_set(inputs, "cupl", self.display)
        sentences = [described.sentences(label) for label in own]
        weights = cupl_weights(sentences, inputs.text_embeddings)
        scores = inputs.image_embeddings() @ weights.T
        count = sum(len(group) for group in sentences)
        return self.result(inputs, scores, note=f"{count} sentences")


def cupl_weights(sentences: Sequence[Sequence[str]], encode: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
    """One class weight per label: ``normalise(mean_i normalise(encode(sentence_i)))`` (CuPL's recipe).

    All sentences are encoded in one call; ``encode`` maps a list of sentences to one embedding row each.
    """
    flat = [sentence for group in sentences for sentence in group]
    embedded = np.asarray(encode(flat), dtype=np.float64)
    embedded /= np.linalg.norm(embedded, axis=1, keepdims=True)
    bounds = np.cumsum([0, *(len(group) for group in sentences)])
    means = np.stack([embedded[start:end].mean(axis=0) for start, end in itertools.pairwise(bounds)])
    weights: np.ndarray = (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)
    return weights


@register
class WaffleClip(Method):
    """WaffleCLIP: DCLIP's averaging over random descriptors shared by every label, run over several seeds.

    Seeds ``inputs.seed .. inputs.seed + seeds - 1``; the accuracy's mean and (population) standard deviation over
    seeds is reported, as WaffleCLIP prints it (``accuracy_mean``/``accuracy_std``: the comparison table's
    ``accuracy_seed_mean`` and ``accuracy_std`` columns). The predicted labels and scores are those of the first
    seed (one genuine WaffleCLIP run; averaging scores over seeds would be a larger ensemble, not WaffleCLIP), so
    the table's accuracy, interval, McNemar p, balanced accuracy and macro-F1 are all the first seed's.
    Descriptors: :func:`waffle_descriptors` (its departures from the authors' generator are listed there).
    """

    name = "waffle"
    display = "WaffleCLIP (random descriptors, label in every sentence)"
    needs = frozenset({Need.IMAGE_EMBEDDINGS})
    uses_label_names = True
    seeds: ClassVar[int] = WAFFLE_SEEDS
    count_words: ClassVar[int] = 15
    count_chars: ClassVar[int] = 15

    def run(self, inputs: MethodInputs) -> MethodResult:
        if "waffle" in inputs.descriptors:
            return self._given_set(inputs)
        images = inputs.image_embeddings()
        truth = inputs.matrix.frame["label"].to_numpy()[inputs.split_mask]
        names = np.asarray(inputs.labels, dtype=object)
        first = np.zeros((len(images), len(names)))
        accuracies = []
        for seed in range(inputs.seed, inputs.seed + self.seeds):
            items = waffle_descriptors(self.count_words, self.count_chars, seed=seed, labels=inputs.labels)
            sentences = [[waffle_sentence(label, item) for item in items] for label in inputs.labels]
            scores, _ = mean_similarities(images, sentences, inputs)
            first = scores if seed == inputs.seed else first
            if len(scores):
                accuracies.append(float(np.mean(names[np.argmax(scores, axis=1)] == truth)))
        mean, std = (float(np.mean(accuracies)), float(np.std(accuracies))) if accuracies else (float("nan"), None)
        note = (
            f"{self.count_words}+{self.count_chars} random descriptors; accuracy over {self.seeds} seeds "
            f"{mean:.3f} ± {std or 0:.3f} (accuracy_seed_mean, accuracy_std); the row's accuracy, interval and "
            f"tests are of seed {inputs.seed}'s predictions; "
            "our word list and a-z0-9 characters, not WaffleCLIP's GPT-derived vocabulary"
        )
        return self.result(inputs, first, note=note, accuracy_std=std, accuracy_mean=mean if accuracies else None)

    def _given_set(self, inputs: MethodInputs) -> MethodResult:
        """One run on the user's waffle descriptor set (``concepts describe --style waffle``), no seeds."""
        given, spellings = _descriptor_set(inputs, "waffle", self.display)
        sentences = [given.sentences(spelling) for spelling in spellings]
        scores, _ = mean_similarities(inputs.image_embeddings(), sentences, inputs)
        return self.result(inputs, scores, note="the given waffle descriptor set (one seed)")


@register
class TreeDescriptors(Method):
    """Descriptor averaging on the tree: a label's score = mean of its own concepts' columns of the matrix.

    DCLIP's averaging applied to the tree's class-free sentences (no label name in any sentence); a label with no
    concept of its own scores :data:`NO_CONCEPT_SCORE` and is never predicted.
    """

    name = "tree-descriptors"
    display = "descriptor averaging on the tree's class-free sentences"
    needs = frozenset({Need.CONCEPT_MATRIX})
    uses_label_names = False

    def run(self, inputs: MethodInputs) -> MethodResult:
        values = inputs.matrix.X(inputs.split).to_numpy(dtype=np.float64)
        concepts = inputs.matrix.concepts
        own = [[i for i, concept in enumerate(concepts) if label in concept.labels] for label in inputs.labels]
        per_label = [values[:, columns] for columns in own]
        scores = (
            np.column_stack(
                [s.mean(axis=1) if s.shape[1] else np.full(len(values), NO_CONCEPT_SCORE) for s in per_label]
            )
            if per_label
            else np.zeros((len(values), 0))
        )
        items = [[concepts[i].sentence or concepts[i].id for i in columns] for columns in own]
        evidence = top_label_evidence(scores, per_label, items, inputs.labels)
        bare = [label for label, columns in zip(inputs.labels, own, strict=True) if not columns]
        note = f"labels with no concept of their own (never predicted): {', '.join(bare)}" if bare else ""
        return self.result(inputs, scores, explanations=evidence, note=note)
