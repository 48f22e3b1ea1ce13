"""Classification metrics with bootstrap intervals: plain functions that return dicts and tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_recall_fscore_support


def bootstrap_interval(
    y_true: ArrayLike, y_pred: ArrayLike, *, n_resamples: int = 1000, level: float = 0.95, random_state: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of accuracy, resampling rows with replacement."""
    truth, predicted = np.asarray(y_true), np.asarray(y_pred)
    if len(truth) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(random_state)
    correct = truth == predicted
    samples = rng.integers(0, len(truth), size=(n_resamples, len(truth)))
    scores = correct[samples].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def classification_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[str], *, random_state: int = 0
) -> dict[str, Any]:
    """Accuracy (with a 95 % bootstrap interval), balanced accuracy, macro and weighted precision/recall/F1."""
    truth, predicted = np.asarray(y_true), np.asarray(y_pred)
    low, high = bootstrap_interval(truth, predicted, random_state=random_state)
    result: dict[str, Any] = {
        "n": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "accuracy_ci95": [low, high],
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
    }
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            truth, predicted, labels=list(labels), average=average, zero_division=0
        )
        result.update(
            {f"{average}_precision": float(precision), f"{average}_recall": float(recall), f"{average}_f1": float(f1)}
        )
    return result


def per_label_table(y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support of each label."""
    precision, recall, f1, support = precision_recall_fscore_support(
        np.asarray(y_true), np.asarray(y_pred), labels=list(labels), zero_division=0
    )
    return pd.DataFrame({"label": list(labels), "precision": precision, "recall": recall, "f1": f1, "support": support})
