"""Direct classification with a vision LLM ("mllm"), its answer matching, and the checks the report shows.

The multimodal LLM sees each image and a prompt that lists the labels and asks for exactly one of them, with
**no example answer**: the approach this follows (robert-mcdermott/LLM-Image-Classification, LLaVA via Ollama)
put one example answer ("cat", "3") in its prompt, and that label was then over-predicted (recall 1.0, precision
0.31). Where the server allows it, the answer is constrained by a JSON schema ``enum`` of the labels.

Every answer is matched to a label in this order (:func:`match_answer`): ``exact``, ``normalised`` (case,
punctuation and ``_``/``-``/space ignored), ``sentence`` (exactly one label named as whole words inside the
answer; a label contained in a longer named label does not count), ``refused`` (a refusal phrase), else
``off-label``; an image without any answer (unreadable, server failure) is ``error``. The original parsed by exact
string equality only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import pandas as pd

from conceptforest.errors import BadInputError
from conceptforest.llm.vision_types import VisionAnswer, shown_answer
from conceptforest.models.methods.base import Method, MethodInputs, MethodResult, Need, register

__all__ = [
    "ANSWER_TYPES",
    "NO_ANSWER",
    "AnswerMatch",
    "DirectMLLM",
    "answer_bias",
    "answer_type_counts",
    "classification_prompt",
    "match_answer",
]

NO_ANSWER = "(no answer)"  # the predicted label of an unmatched answer: never one of the labels, so always wrong
ANSWER_TYPES = ("exact", "normalised", "sentence", "refused", "off-label", "error")
MATCHED_TYPES = frozenset({"exact", "normalised", "sentence"})
STEP = "mllm-classify"
_REFUSALS = (
    "i can't",
    "i cannot",
    "i can not",
    "i'm sorry",
    "i am sorry",
    "i'm unable",
    "i am unable",
    "unable to",
    "i won't",
    "i will not",
    "not able to",
    "as an ai",
    "i'm not able",
    "cannot determine",
    "can't determine",
    "cannot identify",
    "can't identify",
    "sorry",
)


class AnswerMatch(NamedTuple):
    """The label an answer names (``None`` when unmatched) and how it was found (one of :data:`ANSWER_TYPES`)."""

    label: str | None
    kind: str


def normalise(text: str) -> str:
    """Lower case, ``_``/``-`` as spaces, punctuation dropped, spaces collapsed.

    >>> normalise("  The RED-disc!! ")
    'the red disc'
    """
    text = re.sub(r"[_\-]+", " ", text.casefold())
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


def _named_labels(text: str, labels: Sequence[str]) -> list[str]:
    """The labels named as whole words in ``text``, less those contained in a longer named label."""
    spoken = f" {normalise(text)} "
    named = [label for label in labels if normalise(label) and f" {normalise(label)} " in spoken]
    return [
        label
        for label in named
        if not any(other != label and f" {normalise(label)} " in f" {normalise(other)} " for other in named)
    ]


def match_answer(text: str, labels: Sequence[str]) -> AnswerMatch:
    """Which label an answer names, and how (see the module docstring for the order).

    >>> match_answer("The answer is: RED-DISC!", ["red disc", "blue tile"])
    AnswerMatch(label='red disc', kind='sentence')
    >>> match_answer("I'm sorry, I can't help with that.", ["red disc"])
    AnswerMatch(label=None, kind='refused')
    """
    stripped = text.strip()
    if not stripped:
        return AnswerMatch(None, "error")
    if stripped in labels:
        return AnswerMatch(stripped, "exact")
    by_form = {normalise(label): label for label in labels}
    if normalise(stripped) in by_form:
        return AnswerMatch(by_form[normalise(stripped)], "normalised")
    named = _named_labels(stripped, labels)
    if len(named) == 1:
        return AnswerMatch(named[0], "sentence")
    lowered = stripped.casefold().replace("\u2019", "'")
    if any(phrase in lowered for phrase in _REFUSALS):
        return AnswerMatch(None, "refused")
    return AnswerMatch(None, "off-label")


def classification_prompt(labels: Sequence[str]) -> str:
    """The prompt: the labels listed one per line and a request for exactly one of them; no example answer."""
    listed = "\n".join(f"- {label}" for label in labels)
    return (
        "Look at the image and decide which one of these labels it shows.\n"
        f"Labels:\n{listed}\n"
        "Answer with exactly one label from the list, written as it appears there, and nothing else."
    )


def _label_scores(answer: VisionAnswer, chosen: str, labels: Sequence[str]) -> np.ndarray:
    """Softmax over the labels' log-probabilities where the server returned them, else 1 for the chosen label."""
    scores = np.zeros(len(labels))
    known = {
        label: value for label, value in (answer.logprobs or {}).items() if label in labels and math.isfinite(value)
    }
    ambiguous = sum(1 for value in known.values() if value == known.get(chosen)) > 1
    if chosen not in known or ambiguous:  # labels sharing their first token share a value: do not guess
        scores[list(labels).index(chosen)] = 1.0
        return scores
    values = np.array(list(known.values()))
    weights = np.exp(values - values.max())
    for label, weight in zip(known, weights / weights.sum(), strict=True):
        scores[list(labels).index(label)] = weight
    return scores


@register
class DirectMLLM(Method):
    """Ask a vision LLM which label each image shows (see the module docstring).

    ``explanations`` has one row per image: ``row`` (position in the split), ``label`` (the answer type, one of
    :data:`ANSWER_TYPES`), ``item`` (the raw answer, or ``"error: ..."`` when none came; past 300 characters its
    start and its length) and ``score`` (the score of the predicted label; 0 when unmatched). Unmatched answers are
    predicted as :data:`NO_ANSWER` with an all-zero score row, so they count as wrong. Image paths are read from the
    matrix's ``path`` column as extraction recorded them (absolute, or relative to the folder the extraction ran in).
    """

    name = "mllm"
    display = "vision LLM, direct classification"
    needs = frozenset({Need.VISION_LLM})
    uses_label_names = True
    default: ClassVar[bool] = True

    def run(self, inputs: MethodInputs) -> MethodResult:
        assert inputs.vision_llm is not None  # run_methods checks the need
        labels = inputs.labels
        rows = inputs.matrix.rows(inputs.split)
        paths = [Path(str(path)).expanduser() for path in rows["path"]]
        answers = inputs.vision_llm.ask(
            paths,
            classification_prompt(labels),
            step=STEP,
            temperature=0.0,
            choices=labels,
            progress=inputs.progress,
        )
        if len(answers) != len(rows):
            raise BadInputError(
                f"The vision LLM gave {len(answers)} answers for {len(rows)} images.", hint="report this as a bug."
            )
        if answers and all(answer.error for answer in answers):
            raise BadInputError(
                f"The vision LLM gave no answer for any of the {len(answers)} images; the first: {answers[0].error}",
                hint="check the image paths (relative paths resolve from the folder extraction ran in) and the "
                "server (--mllm, --mllm-base-url).",
            )
        scores = np.zeros((len(answers), len(labels)))
        predicted: list[str] = []
        records: list[tuple[int, str, str, float]] = []
        for row, answer in enumerate(answers):
            match = AnswerMatch(None, "error") if answer.error else match_answer(answer.text, labels)
            if match.label is not None:
                scores[row] = _label_scores(answer, match.label, labels)
            predicted.append(match.label or NO_ANSWER)
            raw = shown_answer(f"error: {answer.error}" if answer.error else answer.text)
            best = float(scores[row, labels.index(match.label)]) if match.label is not None else 0.0
            records.append((row, match.kind, raw, best))
        explanations = pd.DataFrame(records, columns=["row", "label", "item", "score"])
        counts = answer_type_counts(explanations)
        unmatched = {
            str(r.answer_type): int(r.count) for r in counts.itertuples() if r.answer_type not in MATCHED_TYPES
        }
        note = (
            f"{inputs.vision_llm.model}: labels listed in the prompt (a JSON-schema enum where the server allows it), "
            "no example answer; unmatched answers count as wrong ("
            + ", ".join(f"{count} {kind}" for kind, count in unmatched.items())
            + "); score = softmax of label log-probabilities where returned, else 1 for the answer."
        )
        return MethodResult(
            name=self.name,
            display=self.display,
            labels=tuple(labels),
            predicted=np.asarray(predicted, dtype=object),
            scores=scores,
            explanations=explanations,
            tokens=sum(answer.tokens for answer in answers),
            uses_label_names=True,
            note=note,
        )


def answer_type_counts(explanations: pd.DataFrame) -> pd.DataFrame:
    """How many answers of each type (``answer_type``, ``count``, every type listed) from mllm's explanations."""
    counts = explanations["label"].value_counts() if len(explanations) else pd.Series(dtype=int)
    return pd.DataFrame(
        {"answer_type": list(ANSWER_TYPES), "count": [int(counts.get(kind, 0)) for kind in ANSWER_TYPES]}
    )


def answer_bias(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> pd.DataFrame:
    """Per label: times predicted, times true, their ratio, and whether it is over-predicted (the "cat" effect).

    A label is ``flagged`` when it was predicted at least twice as often as it occurs and at least 5 times.
    ``ratio`` is predicted / true (infinite when a predicted label never occurs; NaN when neither).
    """
    truth_counts = pd.Series(list(truth), dtype=object).value_counts()
    predicted_counts = pd.Series(list(predicted), dtype=object).value_counts()
    rows = []
    for label in labels:
        n_pred, n_true = int(predicted_counts.get(label, 0)), int(truth_counts.get(label, 0))
        ratio = n_pred / n_true if n_true else (float("inf") if n_pred else float("nan"))
        rows.append((label, n_pred, n_true, ratio, n_pred >= 2 * n_true and n_pred >= 5))
    return pd.DataFrame(rows, columns=["label", "predicted", "true", "ratio", "flagged"])
