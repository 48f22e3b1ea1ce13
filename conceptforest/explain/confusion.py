"""Confusion analysis: the matrix, the most-confused pairs, and why the model tells (or fails to tell) them apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import confusion_matrix


def confusion_tables(y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The confusion matrix raw and row-normalised (rows: true label, columns: predicted label)."""
    raw = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(labels))
    totals = raw.sum(axis=1, keepdims=True)
    normalised = np.divide(raw, totals, out=np.zeros_like(raw, dtype=float), where=totals > 0)
    return {
        "raw": pd.DataFrame(raw, index=list(labels), columns=list(labels)),
        "normalized": pd.DataFrame(normalised, index=list(labels), columns=list(labels)),
    }


def confused_pairs(raw: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """Unordered label pairs by how many images went either way between them, most confused first."""
    labels = list(raw.index)
    rows = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            a_as_b, b_as_a = int(raw.loc[a, b]), int(raw.loc[b, a])
            if a_as_b + b_as_a:
                rows.append(
                    {
                        "label_a": a,
                        "label_b": b,
                        "a_predicted_as_b": a_as_b,
                        "b_predicted_as_a": b_as_a,
                        "total": a_as_b + b_as_a,
                    }
                )
    table = pd.DataFrame(rows, columns=["label_a", "label_b", "a_predicted_as_b", "b_predicted_as_a", "total"])
    return table.sort_values("total", ascending=False, kind="stable").head(top).reset_index(drop=True)


def top_concepts_overlap(per_label: Mapping[str, pd.Series], a: str, b: str, k: int = 10) -> dict[str, Any]:
    """The top-``k`` concepts of two labels (by a per-label importance) and what they share."""
    top_a = list(per_label[a].sort_values(ascending=False).index[:k])
    top_b = list(per_label[b].sort_values(ascending=False).index[:k])
    shared = [c for c in top_a if c in top_b]
    return {
        "label_a": a,
        "label_b": b,
        "k": k,
        "shared": shared,
        "jaccard": len(shared) / len(set(top_a) | set(top_b)) if top_a or top_b else 0.0,
    }


def why_a_not_b(
    X: pd.DataFrame,
    y: ArrayLike,
    a: str,
    b: str,
    importance: pd.Series | None = None,
    top: int = 10,
) -> pd.DataFrame:
    """Concepts whose mean score differs most between images of ``a`` and of ``b``, with their importance."""
    labels = np.asarray(y)
    mean_a, mean_b = X[labels == a].mean(), X[labels == b].mean()
    table = pd.DataFrame(
        {
            "concept": X.columns,
            f"mean_{a}": mean_a.to_numpy(),
            f"mean_{b}": mean_b.to_numpy(),
            "difference": (mean_a - mean_b).to_numpy(),
        }
    )
    if importance is not None:
        table["importance"] = importance.reindex(X.columns).to_numpy()
    order = table["difference"].abs().sort_values(ascending=False, kind="stable").index
    return table.loc[order].head(top).reset_index(drop=True)
