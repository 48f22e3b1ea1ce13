"""SHAP values of the concept forest, computed apart from any plotting (as shap separates them).

Checked against the ground-truth world (``benchmarks/faithfulness.py``, toy-world numbers): SHAP's global, part and
(part, attribute) rankings find the distinguishing parts (precision at k 0.94-1.00); per label and per image at
single-concept level it falls short (0.88): a concept every label shares, whose cosine moves with the other parts,
outranks one of the label's own values. Changing the slot SHAP ranks first lowers the prediction's probability most
(0.61 against 0.00 for the last) but moves the label on only a third of the images, since the other parts still
match the class: the FunnyBirds-style agreement is 0.33, short of 0.9.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class ConceptShap:
    """SHAP values for rows of X: ``values[row, concept, class]``, plus base values and what they explain."""

    values: np.ndarray
    base_values: np.ndarray
    data: pd.DataFrame
    classes: list[str]

    @property
    def concept_ids(self) -> list[str]:
        return list(map(str, self.data.columns))

    def for_class(self, label: str) -> np.ndarray:
        return self.values[:, :, self.classes.index(label)]

    def mean_abs(self) -> pd.DataFrame:
        """Per-class mean |SHAP| of each concept (rows: concepts, columns: classes)."""
        return pd.DataFrame(np.abs(self.values).mean(axis=0), index=self.concept_ids, columns=self.classes)

    def grouped(self, groups: Mapping[str, Sequence[str]]) -> ConceptShap:
        """SHAP values summed over concept groups (e.g. parts); exact, because SHAP values are additive."""
        index = {c: i for i, c in enumerate(self.concept_ids)}
        summed = np.stack(
            [self.values[:, [index[c] for c in members], :].sum(axis=1) for members in groups.values()], axis=1
        )
        data = pd.DataFrame({name: self.data[list(members)].mean(axis=1) for name, members in groups.items()})
        return ConceptShap(values=summed, base_values=self.base_values, data=data, classes=self.classes)


def explain_shap(model: Any, X: pd.DataFrame) -> ConceptShap:
    """TreeExplainer on the fitted forest; values have shape (rows, concepts, classes) and sum, with the base
    values, to ``predict_proba``."""
    import shap

    data = X.astype(np.float32)
    explainer = shap.TreeExplainer(model.forest_)
    values = np.asarray(explainer.shap_values(data.to_numpy()))
    classes = [str(c) for c in model.classes_]
    if values.ndim == 3 and values.shape[0] == len(classes) and values.shape[2] != len(classes):
        values = np.transpose(values, (1, 2, 0))  # older shap: a list per class
    base = np.asarray(explainer.expected_value, dtype=float).reshape(-1)
    return ConceptShap(values=values, base_values=base, data=data, classes=classes)


# the report explains at most this many rows with SHAP (explain_model's shap_rows). Tree SHAP costs about
# rows x trees x leaves x depth², so a larger split is explained on a sample taken evenly across its labels, and
# the report says so
REPORT_SHAP_ROWS = 300


@dataclass(frozen=True)
class ShapRows:
    """Which rows the report's SHAP step explained (``positions`` in the split, ascending), of ``available``."""

    used: int
    available: int
    positions: tuple[int, ...] = ()

    @property
    def subsampled(self) -> bool:
        return self.used < self.available

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_explained": self.used,
            "rows_available": self.available,
            "subsampled": self.subsampled,
            "rule": "all rows up to shap_rows, else shap_rows rows taken in turn from each label (row order kept)",
            "algorithm": "exact Tree SHAP (shap.TreeExplainer, tree_path_dependent)",
        }

    def note(self, split: str) -> str:
        """One sentence for the report: which rows the SHAP values (and every mean |SHAP|) come from."""
        if not self.subsampled:
            return f"SHAP values (and every mean |SHAP| in this report) cover all {self.available} {split!r} rows."
        return (
            f"SHAP values (and every mean |SHAP| in this report) cover {self.used} of the {self.available} "
            f"{split!r} rows, taken in turn from each label, to bound the time of exact Tree SHAP; "
            "explain_model(shap_rows=...) in Python explains more."
        )


def report_shap_rows(labels: Sequence[Any], limit: int = REPORT_SHAP_ROWS) -> ShapRows:
    """The report's subsampling rule: every row when there are at most ``limit``; else ``limit`` rows taken in
    turn from each label (each label's rows in order), so that a split sorted by label is not explained on its
    first labels only. Positions are returned ascending."""
    available, limit = len(labels), max(0, limit)
    if available <= limit:
        return ShapRows(used=available, available=available, positions=tuple(range(available)))
    by_label: dict[Any, list[int]] = {}
    for position, label in enumerate(labels):
        by_label.setdefault(label, []).append(position)
    queues = [iter(rows) for rows in by_label.values()]
    chosen: list[int] = []
    while len(chosen) < limit:
        for queue in queues:
            taken = next(queue, None)
            if taken is not None and len(chosen) < limit:
                chosen.append(taken)
    return ShapRows(used=limit, available=available, positions=tuple(sorted(chosen)))


def explain_report_shap(
    model: Any, X: pd.DataFrame, y: Sequence[Any], limit: int = REPORT_SHAP_ROWS
) -> tuple[ConceptShap, ShapRows]:
    """:func:`explain_shap` on the rows :func:`report_shap_rows` picks; returns the values and the rows used."""
    rows = report_shap_rows(list(y), limit)
    return explain_shap(model, X.iloc[list(rows.positions)]), rows
