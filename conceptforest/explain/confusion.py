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


ALPHA = 0.05
WHY_HOW_TO_READ = (
    "How to read a 'why A and not B' table: each row is a concept whose mean score differs between the images of A "
    "and those of B (difference = mean for A - mean for B; positive: A's images show it more). ci95_low-ci95_high is "
    "Welch's 95 % interval of that difference and p_welch its Welch t-test p-value; beyond_noise is 'yes' when the "
    "p-value stays below 0.05 after a Bonferroni correction for the n_compared concepts compared, 'no' when the "
    "difference is within the noise between images, and 'too few images' when a label has fewer than two. "
    "importance is how much the model uses the concept for A (per-class mean |SHAP|): a concept that differs beyond "
    "the noise and is used is a reason the model tells A from B; one that is used but within the noise is why it "
    "confuses them."
)


def welch_test(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Per column: Welch's 95 % interval of mean(first) - mean(second) and the two-sided p-value (NaN when a group
    has fewer than two rows; p = 0 for a non-zero difference between two constant groups)."""
    from scipy import stats

    n_a, n_b = len(first), len(second)
    difference = (first.mean() - second.mean()).to_numpy(dtype=float)
    if n_a < 2 or n_b < 2:
        nan = np.full(len(difference), np.nan)
        return pd.DataFrame({"ci95_low": nan, "ci95_high": nan, "p_welch": nan}, index=first.columns)
    var_a = first.var(ddof=1).to_numpy(dtype=float) / n_a
    var_b = second.var(ddof=1).to_numpy(dtype=float) / n_b
    se = np.sqrt(var_a + var_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
        df = np.where(se > 0, df, n_a + n_b - 2)
        t = np.where(se > 0, difference / np.where(se > 0, se, 1.0), np.where(difference != 0, np.inf, 0.0))
    p = 2 * stats.t.sf(np.abs(t), df)
    half = stats.t.ppf(1 - ALPHA / 2, df) * se
    return pd.DataFrame(
        {"ci95_low": difference - half, "ci95_high": difference + half, "p_welch": p}, index=first.columns
    )


def why_a_not_b(
    X: pd.DataFrame,
    y: ArrayLike,
    a: str,
    b: str,
    importance: pd.Series | None = None,
    top: int = 10,
) -> pd.DataFrame:
    """Concepts whose mean score differs most between images of ``a`` and of ``b``, with their importance and
    whether the difference is larger than the noise (Welch's interval and t-test, Bonferroni over the concepts
    compared; see :data:`WHY_HOW_TO_READ`)."""
    labels = np.asarray(y)
    images_a, images_b = X[labels == a], X[labels == b]
    mean_a, mean_b = images_a.mean(), images_b.mean()
    noise = welch_test(images_a, images_b)
    compared = len(X.columns)
    p = noise["p_welch"].to_numpy()
    beyond = np.where(np.isnan(p), "too few images", np.where(p * compared < ALPHA, "yes", "no"))
    table = pd.DataFrame(
        {
            "concept": X.columns,
            f"mean_{a}": mean_a.to_numpy(),
            f"mean_{b}": mean_b.to_numpy(),
            "difference": (mean_a - mean_b).to_numpy(),
            "ci95_low": noise["ci95_low"].to_numpy(),
            "ci95_high": noise["ci95_high"].to_numpy(),
            "p_welch": p,
            "n_compared": compared,
            "beyond_noise": beyond,
        }
    )
    if importance is not None:
        table["importance"] = importance.reindex(X.columns).to_numpy()
    order = table["difference"].abs().sort_values(ascending=False, kind="stable").index
    return table.loc[order].head(top).reset_index(drop=True)
