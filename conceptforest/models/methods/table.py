"""The comparison table: every method's outcome on one split, side by side, with a paired test against the forest."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binom

from conceptforest.models.methods.base import MethodOutcome, MethodResult, NotComputed
from conceptforest.models.metrics import classification_metrics

REFERENCE = "forest"
COLUMNS = (
    "method",
    "name",
    "accuracy",
    "ci95_low",
    "ci95_high",
    "accuracy_seed_mean",
    "accuracy_std",
    "balanced_accuracy",
    "macro_f1",
    "mcnemar_p_vs_forest",
    "seconds_per_image",
    "tokens_per_image",
    "label_names_in_text",
    "status",
)


def mcnemar_exact(truth: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """Exact (binomial) McNemar p-value: do two classifiers' errors on the same images differ?

    Only the discordant images count: ``b`` where only ``first`` is right, ``c`` where only ``second`` is; the
    two-sided p-value is ``min(1, 2 * P(X <= min(b, c)))`` for ``X ~ Binomial(b + c, 1/2)``; 1.0 when none differ.
    """
    right_first = np.asarray(first) == np.asarray(truth)
    right_second = np.asarray(second) == np.asarray(truth)
    b = int(np.sum(right_first & ~right_second))
    c = int(np.sum(~right_first & right_second))
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), b + c, 0.5)))


def comparison_table(
    outcomes: Sequence[MethodOutcome], truth: Sequence[str], labels: Sequence[str], *, seed: int = 0
) -> pd.DataFrame:
    """One row per method: accuracy with its 95 % bootstrap interval, balanced accuracy, macro-F1, the exact
    McNemar p-value against the concept forest on the same images, the cost per image, and whether the method's
    texts contain the label names (description methods do, by design; the tree's sentences do not). Methods that
    could not run are rows whose ``status`` says what is missing and which flag adds it.

    Every figure of a row is of the same predictions: for a method run over several seeds (WaffleCLIP), those of
    its first seed; its accuracy's mean and standard deviation over the seeds are ``accuracy_seed_mean`` and
    ``accuracy_std`` (NaN for a method run once), never in the ``accuracy`` column beside the first seed's interval.
    """
    truth_array = np.asarray(truth, dtype=object)
    reference = next((o for o in outcomes if isinstance(o, MethodResult) and o.name == REFERENCE), None)
    rows = [_row(outcome, truth_array, labels, reference, seed) for outcome in outcomes]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _row(
    outcome: MethodOutcome, truth: np.ndarray, labels: Sequence[str], reference: MethodResult | None, seed: int
) -> dict[str, object]:
    if isinstance(outcome, NotComputed):
        return {"method": outcome.display, "name": outcome.name, "status": f"not computed: {outcome.hint}"}
    metrics = classification_metrics(truth, outcome.predicted, list(labels), random_state=seed)
    n = max(len(truth), 1)
    p_value = (
        mcnemar_exact(truth, reference.predicted, outcome.predicted)
        if reference is not None and outcome.name != REFERENCE
        else np.nan
    )
    return {
        "method": outcome.display,
        "name": outcome.name,
        "accuracy": metrics["accuracy"],
        "ci95_low": metrics["accuracy_ci95"][0],
        "ci95_high": metrics["accuracy_ci95"][1],
        "accuracy_seed_mean": outcome.accuracy_mean if outcome.accuracy_mean is not None else np.nan,
        "accuracy_std": outcome.accuracy_std if outcome.accuracy_std is not None else np.nan,
        "balanced_accuracy": metrics["balanced_accuracy"],
        "macro_f1": metrics["macro_f1"],
        "mcnemar_p_vs_forest": p_value,
        "seconds_per_image": outcome.seconds / n,
        "tokens_per_image": outcome.tokens / n,
        "label_names_in_text": outcome.uses_label_names,
        "status": "computed" + (f"; {outcome.note}" if outcome.note else ""),
    }
