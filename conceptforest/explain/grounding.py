"""Grounding check: does CLIP actually detect each concept?

For every concept, the ROC AUC of its score for the train images of labels that have the concept (positives)
against the train images of labels that do not (negatives). An AUC well above 0.5 means CLIP's score separates
images that should show the concept from those that should not; near 0.5 means the concept is not seen (it may
still be important to the forest through correlation, which is exactly what an analyst needs to know).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from conceptforest.features.matrix import FeatureMatrix

DETECTED_AUC = 0.6


def grounding_table(matrix: FeatureMatrix, split: str = "train") -> pd.DataFrame:
    """Per concept: ``auc``, ``positives``, ``negatives`` and ``detected`` (AUC ≥ 0.6); worst first.

    A concept that every label has, or none has, on ``split`` has no negatives or positives: its AUC is NaN.
    """
    rows = matrix.rows(split)
    labels = rows["label"].to_numpy()
    records = []
    for concept in matrix.concepts:
        positive = np.isin(labels, concept.labels)
        scores = rows[concept.id].to_numpy(dtype=np.float64)
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        auc = float(roc_auc_score(positive, scores)) if n_pos and n_neg else float("nan")
        records.append(
            {
                "concept": concept.id,
                "auc": auc,
                "positives": n_pos,
                "negatives": n_neg,
                "detected": bool(auc >= DETECTED_AUC) if not np.isnan(auc) else False,
            }
        )
    table = pd.DataFrame(records, columns=["concept", "auc", "positives", "negatives", "detected"])
    return table.sort_values("auc", kind="stable", na_position="last").reset_index(drop=True)


def grounding_summary(table: pd.DataFrame) -> str:
    """One sentence: how many concepts CLIP detects, and the worst few."""
    scored = table.dropna(subset=["auc"])
    if scored.empty:
        return "No concept could be checked: every concept is shared by all labels or by none on the train split."
    detected = int(scored["detected"].sum())
    worst = ", ".join(f"{r.concept} ({r.auc:.2f})" for r in scored.head(3).itertuples(index=False))
    return (
        f"CLIP detects {detected} of {len(scored)} checkable concepts (train-split ROC AUC ≥ {DETECTED_AUC}, labels "
        f"that have the concept against those that do not); median AUC {scored['auc'].median():.2f}. "
        f"Least detected: {worst}."
    )
