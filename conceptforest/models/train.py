"""Fit a ConceptForestClassifier on a FeatureMatrix's training rows and evaluate it on held-out rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conceptforest.errors import BadInputError
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models.bundle import save_bundle
from conceptforest.models.forest import ConceptForestClassifier
from conceptforest.models.metrics import classification_metrics


def train_model(
    matrix: FeatureMatrix, out_dir: str | Path | None = None, *, eval_split: str = "test", **params: Any
) -> tuple[ConceptForestClassifier, dict[str, Any]]:
    """Fit on the ``train`` rows, evaluate on ``eval_split`` rows, and (with ``out_dir``) save the bundle.

    ``params`` go to :class:`ConceptForestClassifier`. Returns the model and its metrics.
    """
    train_rows = matrix.rows("train")
    if train_rows.empty:
        raise BadInputError(
            "The feature matrix has no training rows.",
            hint="extract features with a train split (the default split gives 70 % to train).",
        )
    model = ConceptForestClassifier(**params).fit(matrix.X("train"), matrix.y("train"))
    metrics: dict[str, Any] = {"eval_split": eval_split, "random_weights": bool(matrix.meta.get("random_weights"))}
    if not matrix.rows(eval_split).empty:
        predicted = model.predict(matrix.X(eval_split))
        metrics.update(
            classification_metrics(matrix.y(eval_split), predicted, matrix.labels, random_state=model.random_state or 0)
        )
    if out_dir is not None:
        save_bundle(model, out_dir, matrix=matrix, metrics=metrics)
    return model, metrics
