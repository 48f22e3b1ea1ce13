"""The visual feedback of the optimisation, computed from CLIP scores alone (no LLM, no features/ import).

Faithful to the authors' ``utils.py`` (zhuole1025/LLMs_as_Visual_Explainers):
- a label's logit for an image is ``logit_scale`` times the mean cosine of the image with its sentences
  ``"{label}, {descriptor}"``; a label without descriptors is its bare name. The authors multiply by
  ``model.logit_scale``, the raw parameter (ln 100 = 4.605 for released CLIP weights), not its exponential (100):
  that is the default here (``raw``); ``exp`` is offered, and recorded as a departure, because the 0.9 rule below
  is then about 22 times narrower in cosine (far fewer labels are called confused);
- confusions (``confusion_thresh``): for each image, every other label whose probability reaches 0.9 of the true
  label's; counted per true label; the 5 most frequent are fed back in the authors' sentences
  ``"X is confused with: A, B"`` / ``"X is not confused with any other classes"``;
- word banks: after an iteration, a label's removed and added descriptors are judged by swapping that label's logit
  column alone into the previous iteration's logits and measuring accuracy; the last 10 of each are kept;
- groups: k-means on the labels' mean text embeddings, about ``group_size`` labels per group. The authors use
  ``k_means_constrained``; here scikit-learn's KMeans gives the centres and a greedy nearest-centre assignment
  caps each group's size (the same cap: ``max(1.2 * group_size, labels / groups)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from conceptforest.concepts.descriptors import wordify
from conceptforest.concepts.optimize_record import LogitScaleForm

__all__ = [
    "BANK_SIZE",
    "CONFUSION_RATIO",
    "LabelScorer",
    "accuracy",
    "confusions",
    "contributions",
    "feedback_text",
    "group_labels",
    "logit_scale_departure",
    "logit_scale_note",
    "search_sentence",
    "update_banks",
]

CONFUSION_RATIO = 0.9
TOP_CONFUSIONS = 5
BANK_SIZE = 10
GROUP_SIZE_FACTOR = 1.2

Encoder = Callable[[Sequence[str]], np.ndarray]

EXP_LOGIT_SCALE_DEPARTURE = (
    " Confusions and contributions use exp(logit_scale) (--logit-scale exp), not the authors' raw logit_scale "
    "parameter: the 0.9 p_true rule is then about 22 times narrower in cosine for released CLIP weights, so fewer "
    "labels are called confused."
)


def logit_scale_departure(form: LogitScaleForm) -> str:
    """The departure sentence a logit-scale form adds (none for the authors' raw parameter)."""
    return EXP_LOGIT_SCALE_DEPARTURE if form == "exp" else ""


def logit_scale_note(form: LogitScaleForm, value: float) -> str:
    """One sentence for the report: what multiplied the cosines fed into the confusions."""
    if form == "raw":
        return (
            f"Confusions were computed from logits = {value:.4g} x cosine: the raw logit_scale parameter, as the "
            "authors' utils.py (model.logit_scale); a label is confused when its probability reaches 0.9 of the "
            "true label's."
        )
    return (
        f"Confusions were computed from logits = {value:.4g} x cosine: exp(logit_scale), chosen with "
        "--logit-scale exp; the authors multiply by the raw parameter (about 22 times smaller for released CLIP "
        "weights), which calls many more labels confused."
    )


def search_sentence(label: str, descriptor: str) -> str:
    """The sentence scored during the search: ``"{label}, {descriptor}"`` (the authors' ``between_text``)."""
    return f"{wordify(label)}, {descriptor}"


class LabelScorer:
    """Per-label logits of a fixed set of images, for any descriptors; each sentence is encoded once."""

    def __init__(self, images: np.ndarray, encode: Encoder, logit_scale: float) -> None:
        norms = np.linalg.norm(images, axis=1, keepdims=True)
        self.images = (images / np.where(norms == 0, 1, norms)).astype(np.float32)
        self.encode = encode
        self.logit_scale = float(logit_scale)
        self._texts: dict[str, np.ndarray] = {}

    def _embed(self, sentences: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(s for s in sentences if s not in self._texts))
        if missing:
            vectors = np.asarray(self.encode(missing), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            self._texts.update(zip(missing, vectors, strict=True))
        return np.stack([self._texts[s] for s in sentences])

    def sentences(self, label: str, descriptors: Sequence[str]) -> list[str]:
        return [search_sentence(label, d) for d in descriptors] if descriptors else [wordify(label)]

    def sentence_logits(self, label: str, descriptors: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """(images, sentences) logits of one label's sentences."""
        texts = self._embed(self.sentences(label, descriptors))
        logits: np.ndarray = self.logit_scale * (self.images[rows] @ texts.T)
        return logits

    def logits(self, descriptors: Mapping[str, Sequence[str]], labels: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """(images, labels) logits: each label's mean over its sentences."""
        self._embed([s for label in labels for s in self.sentences(label, descriptors.get(label, ()))])
        columns = [self.sentence_logits(label, descriptors.get(label, ()), rows).mean(axis=1) for label in labels]
        return np.column_stack(columns) if columns else np.zeros((len(rows), 0), dtype=np.float32)

    def label_vectors(self, descriptors: Mapping[str, Sequence[str]], labels: Sequence[str]) -> np.ndarray:
        """Each label's mean sentence embedding (what the groups are clustered on)."""
        return np.stack(
            [self._embed(self.sentences(label, descriptors.get(label, ()))).mean(axis=0) for label in labels]
        )


def accuracy(logits: np.ndarray, truth: np.ndarray) -> float:
    """Share of images whose arg-max label is the true one (first label on ties, as ``argmax``)."""
    return float(np.mean(np.argmax(logits, axis=1) == truth)) if len(truth) else 0.0


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return out


def confusions(logits: np.ndarray, truth: np.ndarray, top: int = TOP_CONFUSIONS) -> list[list[int]]:
    """Per label, the labels its images are confused with, most frequent first (at most ``top``, count > 0).

    An image confuses its true label with every other label whose probability is at least
    :data:`CONFUSION_RATIO` times the true label's. Ties in count keep label order.
    """
    n_labels = logits.shape[1]
    probs = _softmax(logits.astype(np.float64))
    true_prob = probs[np.arange(len(truth)), truth]
    above = probs >= CONFUSION_RATIO * true_prob[:, None]
    counts = np.zeros((n_labels, n_labels))
    np.add.at(counts, truth, above.astype(np.float64))
    np.fill_diagonal(counts, -np.inf)
    limit = min(top, n_labels - 1)
    found = []
    for row in counts:
        order = np.argsort(-row, kind="stable")[:limit]
        found.append([int(j) for j in order if row[j] > 0])
    return found


def feedback_text(confused: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    """The feedback lines, the authors' sentences: ``"beagle is confused with: basset, foxhound"`` or ``"... is not
    confused with any other classes"``, one per label."""
    lines = []
    for name, others in zip(names, confused, strict=True):
        if others:
            lines.append(f"{name} is confused with: {', '.join(names[j] for j in others)}")
        else:
            lines.append(f"{name} is not confused with any other classes")
    return "\n".join(lines) + "\n"


def _swap_accuracy(base: np.ndarray, column: int, values: np.ndarray, truth: np.ndarray) -> float:
    swapped = base.copy()
    swapped[:, column] = values
    return accuracy(swapped, truth)


def update_banks(
    scorer: LabelScorer,
    labels: Sequence[str],
    before: Mapping[str, Sequence[str]],
    after: Mapping[str, Sequence[str]],
    truth: np.ndarray,
    helpful: dict[str, list[str]],
    harmful: dict[str, list[str]],
) -> None:
    """Judge each label's removed and added descriptors, as the authors' main loop does, updating the banks.

    With the previous iteration's logits as the base: removing what changed (the label keeps only the descriptors
    common to both) and adding the new ones (the label's new column) are each swapped in alone; removals that
    lowered accuracy and additions that raised it over the removal are helpful, the opposite harmful.
    """
    rows = np.arange(len(truth))
    base = scorer.logits(before, labels, rows)
    new = scorer.logits(after, labels, rows)
    base_accuracy = accuracy(base, truth)
    for index, label in enumerate(labels):
        old_items, new_items = list(before.get(label, ())), list(after.get(label, ()))
        same = [d for d in old_items if d in set(new_items)]
        removed = [d for d in old_items if d not in set(new_items)]
        added = [d for d in new_items if d not in set(old_items)]
        kept_only = scorer.sentence_logits(label, same, rows).mean(axis=1)
        remove_score = _swap_accuracy(base, index, kept_only, truth)
        add_score = _swap_accuracy(base, index, new[:, index], truth)
        good, bad = helpful.setdefault(label, []), harmful.setdefault(label, [])
        if remove_score != base_accuracy:
            target = good if remove_score < base_accuracy else bad
            target.extend(d for d in removed if d not in target)
        if add_score != remove_score:
            target = good if add_score > remove_score else bad
            target.extend(d for d in added if d not in target)
        helpful[label] = [d for d in good if d not in set(same)][-BANK_SIZE:]
        harmful[label] = [d for d in bad if d not in set(same)][-BANK_SIZE:]


def group_labels(vectors: np.ndarray, group_size: int, seed: int) -> list[list[int]]:
    """Label indices in groups of about ``group_size``: k-means centres, then each label to its nearest centre
    that still has room (closest pairs first). Groups are returned in order of their first label."""
    count = len(vectors)
    groups = max(1, round(count / max(group_size, 1)))
    if groups == 1:
        return [list(range(count))]
    from sklearn.cluster import KMeans

    size_max = min(math.ceil(max(group_size * GROUP_SIZE_FACTOR, count / groups)), count)
    centres = KMeans(n_clusters=groups, n_init=10, random_state=seed).fit(vectors).cluster_centers_
    distances = np.linalg.norm(vectors[:, None, :] - centres[None, :, :], axis=2)
    assigned = np.full(count, -1)
    sizes = np.zeros(groups, dtype=int)
    for flat in np.argsort(distances, axis=None, kind="stable"):
        label, group = divmod(int(flat), groups)
        if assigned[label] < 0 and sizes[group] < size_max:
            assigned[label] = group
            sizes[group] += 1
    members = [sorted(np.flatnonzero(assigned == g).tolist()) for g in range(groups)]
    return sorted((m for m in members if m), key=lambda m: m[0])


def contributions(
    scorer: LabelScorer, descriptors: Mapping[str, Sequence[str]], labels: Sequence[str], truth: np.ndarray
) -> list[tuple[str, str, float]]:
    """(label, descriptor, contribution) for every descriptor: the mean drop in the true label's log-probability
    over all the images when that descriptor is left out of its label (only that label's column changes)."""
    rows = np.arange(len(truth))
    logits = scorer.logits(descriptors, labels, rows).astype(np.float64)

    def true_log_prob(values: np.ndarray) -> float:
        shifted = values - values.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(log_probs[rows, truth].mean())

    full = true_log_prob(logits)
    found = []
    for index, label in enumerate(labels):
        items = list(descriptors.get(label, ()))
        if len(items) < 2:
            continue
        each = scorer.sentence_logits(label, items, rows).astype(np.float64)
        total = each.sum(axis=1)
        for position, item in enumerate(items):
            without = logits.copy()
            without[:, index] = (total - each[:, position]) / (len(items) - 1)
            found.append((label, item, full - true_log_prob(without)))
    return found
