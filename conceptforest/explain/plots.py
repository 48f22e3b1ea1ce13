"""Figures for reports. Each takes computed results and returns a matplotlib Figure; nothing here computes.

All text drawn comes from labels, file names and concept values, so it is plain text: every string goes through
:func:`~conceptforest.explain.escape.plot_text` (``$`` escaped), and figures are built and saved under
:func:`plain_text_rc` (no TeX, whatever the user's matplotlibrc says).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, ParamSpec

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from conceptforest.explain.escape import plot_text
from conceptforest.explain.shap_values import ConceptShap

_P = ParamSpec("_P")
ANNOTATED_LABELS = 25  # past this many labels the confusion heatmap shows colours only
MAX_HEATMAP_INCHES = 14.0


def plain_text_rc() -> contextlib.AbstractContextManager[None]:
    """Settings under which text is drawn as written: no TeX, and ``\\$`` (see ``plot_text``) drawn as ``$``."""
    return matplotlib.rc_context({"text.usetex": False, "text.parse_math": True})


def close(figure: Figure) -> None:
    plt.close(figure)


def plain_text(build: Callable[_P, Figure]) -> Callable[_P, Figure]:
    """Run a figure builder under :func:`plain_text_rc`."""

    @functools.wraps(build)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Figure:
        with plain_text_rc():
            return build(*args, **kwargs)

    return wrapper


def _short(text: Any, width: int = 60) -> str:
    """Cut to ``width`` characters, then escape for matplotlib (so an escape is never cut in half)."""
    text = str(text)
    return plot_text(text if len(text) <= width else text[: width - 1] + "…")


@plain_text
def importance_bars(
    table: pd.DataFrame,
    name_column: str,
    value_column: str,
    *,
    error: tuple[str, str] | None = None,
    top: int = 15,
    title: str = "",
) -> Figure:
    """Horizontal bars of the top rows, largest on top; ``error`` names the low/high interval columns."""
    rows = table.head(top).iloc[::-1]
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2))
    values = rows[value_column].to_numpy(dtype=float)
    xerr = None
    if error is not None:
        xerr = np.vstack([values - rows[error[0]].to_numpy(dtype=float), rows[error[1]].to_numpy(dtype=float) - values])
        xerr = np.clip(xerr, 0, None)
    # positions, not names, on the axis: two names cut to the same text stay two bars
    axis.barh(range(len(rows)), values, xerr=xerr, color="#d7301f", alpha=0.8)
    axis.set_yticks(range(len(rows)), [_short(n) for n in rows[name_column]])
    axis.set_title(plot_text(title))
    axis.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    return figure


@plain_text
def confusion_heatmap(normalized: pd.DataFrame) -> Figure:
    """The row-normalised matrix; past :data:`ANNOTATED_LABELS` labels the cells carry no numbers and the figure
    stops growing (the numbers are in the confusion table)."""
    annotate = len(normalized) <= ANNOTATED_LABELS
    size = min(max(4.0, 0.6 * len(normalized) + 2), MAX_HEATMAP_INCHES)
    font = 8 if annotate else max(3, 8 - len(normalized) // 20)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(normalized.to_numpy(), cmap="Reds", vmin=0, vmax=1)
    axis.set_xticks(
        range(len(normalized.columns)),
        [_short(c, 20) for c in normalized.columns],
        rotation=45 if annotate else 90,
        ha="right" if annotate else "center",
        fontsize=font,
    )
    axis.set_yticks(range(len(normalized.index)), [_short(c, 20) for c in normalized.index], fontsize=font)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (i, j), value in np.ndenumerate(normalized.to_numpy()):
        if annotate and value > 0:
            axis.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value > 0.5 else "black"
            )
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    return figure


@plain_text
def class_beeswarm(explanation: ConceptShap, label: str, *, top: int = 12) -> Figure:
    """Per-class SHAP distribution: one row per concept, dots coloured by the concept's score."""
    values = explanation.for_class(label)
    order = np.argsort(-np.abs(values).mean(axis=0))[:top][::-1]
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(order) + 1.4))
    rng = np.random.default_rng(0)
    for row, column in enumerate(order):
        data = explanation.data.iloc[:, column].to_numpy(dtype=float)
        span = np.ptp(data) or 1.0
        axis.scatter(
            values[:, column],
            row + rng.uniform(-0.25, 0.25, len(data)),
            c=(data - data.min()) / span,
            cmap="coolwarm",
            s=10,
            vmin=0,
            vmax=1,
        )
    axis.set_yticks(range(len(order)), [_short(explanation.concept_ids[c]) for c in order], fontsize=8)
    axis.axvline(0, color="#999", linewidth=0.8)
    axis.set_xlabel(f"SHAP value for '{_short(label, 30)}' (colour: concept score, blue low, red high)")
    figure.tight_layout()
    return figure


def _waterfall_axis(axis: Any, values: np.ndarray, names: list[str], base: float, top: int) -> float:
    """shap's waterfall on one axis: from the base value, the ``top`` largest contributions (largest on top) and
    the rest summed in one bar at the bottom, to the model's output; returns the output."""
    order = np.argsort(-np.abs(values), kind="stable")
    items = [(f"{len(order) - top} other concepts", float(values[order[top:]].sum()))] if len(order) > top else []
    items += [(names[i], float(values[i])) for i in order[:top][::-1]]
    left = base
    for position, (_, value) in enumerate(items):
        axis.barh(position, value, left=left, color="#d7301f" if value > 0 else "#2b8cbe", height=0.7)
        left += value
    axis.set_yticks(range(len(items)), [_short(name, 45) for name, _ in items])
    axis.axvline(base, color="#999", linewidth=0.8, linestyle=":")
    axis.axvline(left, color="#333", linewidth=0.8)
    axis.set_xlabel(f"E[f(x)] = {base:.3f}  ->  f(x) = {left:.3f}", fontsize=8)
    axis.tick_params(axis="y", labelsize=7)
    return left


@plain_text
def contribution_pair(
    explanation: ConceptShap, row: int, true_label: str, predicted_label: str, *, top: int = 8
) -> Figure:
    """One image's concept contributions to its true label and to the predicted label: two shap-style waterfalls
    on one shared probability scale (red pushes towards the label, blue away)."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.35 * (top + 1) + 1.8), sharex=True)
    names = list(explanation.concept_ids)
    for axis, label in zip(axes, (true_label, predicted_label), strict=True):
        column = explanation.classes.index(label)
        base = float(explanation.base_values[column])
        output = _waterfall_axis(axis, explanation.values[row, :, column], names, base, top)
        axis.set_title(f"towards '{_short(label, 30)}': P = {output:.3f}", fontsize=9)
    figure.tight_layout()
    return figure


@plain_text
def waterfall(explanation: ConceptShap, row: int, label: str, *, top: int = 10) -> Figure:
    """shap's waterfall of one row's contributions to ``label``: from the base value to the predicted probability."""
    import shap

    column = explanation.classes.index(label)
    single = shap.Explanation(
        values=explanation.values[row, :, column],
        base_values=float(explanation.base_values[column]),
        data=explanation.data.iloc[row].to_numpy(dtype=float),
        feature_names=[_short(c, 50) for c in explanation.concept_ids],
    )
    shap.plots.waterfall(single, max_display=top, show=False)
    figure = plt.gcf()
    figure.suptitle(f"P({_short(label, 40)})", fontsize=10)
    return figure


@plain_text
def descriptor_pair(explanation: pd.DataFrame, title: str, *, top: int = 10) -> Figure:
    """One image's descriptor scores for its top-2 labels, side by side (DCLIP's "S(d) = ..." explanations).

    ``explanation`` has the columns ``label``, ``item`` and ``score`` for one image.
    """
    labels = list(dict.fromkeys(explanation["label"]))[:2]
    figure, axes = plt.subplots(1, max(len(labels), 1), figsize=(11, 0.32 * top + 1.6), squeeze=False)
    for axis, label in zip(axes[0], labels, strict=False):
        rows = explanation[explanation["label"] == label].nlargest(top, "score").iloc[::-1]
        axis.barh(range(len(rows)), rows["score"], color="#d7301f")
        axis.set_yticks(range(len(rows)), [_short(item, 45) for item in rows["item"]])
        low = float(explanation["score"].min())
        axis.set_xlim(low - 0.02 * abs(low), float(explanation["score"].max()) * 1.01)
        axis.set_title(f"'{_short(label, 30)}': mean {rows['score'].mean():.4f}", fontsize=9)
        axis.tick_params(axis="y", labelsize=7)
    figure.suptitle(_short(title, 90), fontsize=9)
    figure.tight_layout()
    return figure
