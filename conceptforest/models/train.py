"""Fit a ConceptForestClassifier on a FeatureMatrix's training rows and evaluate it on held-out rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from conceptforest.errors import BadInputError
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.folder_lock import folder_lock
from conceptforest.models.bundle import ModelBundle, build_manifest, save_bundle
from conceptforest.models.forest import ConceptForestClassifier
from conceptforest.models.metrics import classification_metrics


def _rows_elsewhere(counts: pd.DataFrame, label: str) -> str:
    """``'3 test, 1 val'``: a label's rows outside the train split, or ``'none'``."""
    other = {split: int(n) for split, n in counts.loc[label].items() if split != "train" and n > 0}
    return ", ".join(f"{n} {split}" for split, n in other.items()) or "none"


def check_training_rows(matrix: FeatureMatrix, params: dict[str, Any] | None = None) -> None:
    """Refuse, before fitting, a matrix where some label has no training rows (or too few for the grid search's
    stratified folds), naming each such label and where its rows are."""
    frame = matrix.rows()
    if matrix.rows("train").empty:
        raise BadInputError(
            "The feature matrix has no training rows.",
            hint="extract features with a train split (the default split gives 70 % to train).",
        )
    labels = list(dict.fromkeys([*matrix.labels, *map(str, frame["label"].unique())]))
    counts = pd.crosstab(frame["label"].astype(str), frame["split"].astype(str)).reindex(labels, fill_value=0)
    train = counts["train"] if "train" in counts else pd.Series(0, index=labels)
    empty = [label for label in labels if train[label] == 0]
    if empty:
        where = "; ".join(f"{label!r} (rows in other splits: {_rows_elsewhere(counts, label)})" for label in empty)
        raise BadInputError(
            f"{len(empty)} label(s) have no training rows, so the model could never predict them: {where}.",
            hint="add readable images of these labels (see skipped.csv for the ones that could not be read), give "
            "them 'train' rows in the manifest's split column, or remove the labels from the tree.",
        )
    folds = int((params or {}).get("cv", 5))
    if (params or {}).get("param_grid"):
        short = [f"{label!r} has {int(train[label])}" for label in labels if train[label] < folds]
        if short:
            raise BadInputError(
                f"The grid search's {folds}-fold stratified cross-validation needs at least {folds} training rows "
                f"of every label: {', '.join(short)}.",
                hint="add images of these labels, lower cv, or train without param_grid.",
            )


def train_model(
    matrix: FeatureMatrix, out_dir: str | Path | None = None, *, eval_split: str = "test", **params: Any
) -> ModelBundle:
    """Fit on the ``train`` rows, evaluate on ``eval_split`` rows, and (with ``out_dir``) save the bundle.

    ``params`` go to :class:`ConceptForestClassifier`.

    Returns
    -------
    ModelBundle
        The fitted model and its manifest; ``bundle.metrics`` holds the held-out metrics (``eval_split``,
        ``random_weights``, ``synthetic_world`` (toy-world numbers), and accuracy with its interval, balanced
        accuracy, macro-F1, ... when that split has rows). ``manifest.model_sha256`` is set only when the bundle
        was saved.
    """
    check_training_rows(matrix, params)
    model = ConceptForestClassifier(**params).fit(matrix.X("train"), matrix.y("train"))
    metrics: dict[str, Any] = {
        "eval_split": eval_split,
        "random_weights": matrix.random_weights,
        "synthetic_world": matrix.synthetic_world,
    }
    if not matrix.rows(eval_split).empty:
        predicted = model.predict(matrix.X(eval_split))
        metrics.update(
            classification_metrics(matrix.y(eval_split), predicted, matrix.labels, random_state=model.random_state or 0)
        )
    if out_dir is not None:
        with folder_lock(Path(out_dir)):  # one writer per model folder
            return save_bundle(model, out_dir, matrix=matrix, metrics=metrics)
    return ModelBundle(model=model, manifest=build_manifest(model, matrix, metrics=metrics))
