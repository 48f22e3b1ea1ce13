"""The report section of a descriptor set optimised with visual feedback, drawn from the record it carries.

Shows the accuracy on the optimisation's own training images per iteration (the set kept after each iteration,
and the best so far, which never drops), per label the three descriptors that help most and the three that help
least (their contribution: the drop in the true label's log-probability when each is left out), and what each
label gained and lost from the start to the set returned. The note says which logit scale fed the confusions
(the authors' raw ``logit_scale`` parameter by default).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.concepts.optimize_feedback import logit_scale_note
from conceptforest.concepts.optimize_record import OptimizationRecord
from conceptforest.explain.escape import plot_text
from conceptforest.explain.plots import plain_text
from conceptforest.explain.report import Report

__all__ = ["SECTION", "accuracy_curve", "add_optimization", "descriptor_bars"]

SECTION = "Optimised descriptions"
SHOWN_LABELS = 12  # bar panels drawn; every label is in the table
BEST_AND_WORST = 3


def _cut(text: str, width: int = 45) -> str:
    return plot_text(text if len(text) <= width else text[: width - 1] + "…")


@plain_text
def accuracy_curve(record: OptimizationRecord) -> Figure:
    """Train accuracy per iteration: the current set after each iteration (it may drop), and the best so far."""
    steps = [it.iteration for it in record.iterations]
    kept = [it.train_accuracy for it in record.iterations]
    best = [it.best_accuracy for it in record.iterations]
    if record.start_accuracy is not None:
        steps, kept, best = [0, *steps], [record.start_accuracy, *kept], [record.start_accuracy, *best]
    figure, axis = plt.subplots(figsize=(6.5, 3.2))
    axis.plot(steps, kept, marker="o", label="current set after the iteration")
    axis.plot(steps, best, marker="s", linestyle="--", label="best so far (what is returned)")
    axis.set_xlabel("iteration (0 = the start set)" if record.start_accuracy is not None else "iteration")
    axis.set_ylabel("accuracy on the training images used")
    axis.set_xticks(steps)
    axis.set_ylim(-0.02, 1.02)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def best_and_worst(table: pd.DataFrame, label: str) -> pd.DataFrame:
    """A label's three most and three least helpful descriptors (all of them when it has six or fewer)."""
    rows = table[table["label"] == label].sort_values("contribution", ascending=False, kind="stable")
    if len(rows) <= 2 * BEST_AND_WORST:
        return rows
    return pd.concat([rows.head(BEST_AND_WORST), rows.tail(BEST_AND_WORST)])


@plain_text
def descriptor_bars(table: pd.DataFrame, labels: list[str]) -> Figure:
    """One panel per label: its best and worst descriptors by contribution (positive helps)."""
    columns = 3 if len(labels) > 2 else len(labels)
    rows_count = -(-len(labels) // columns)
    figure, axes = plt.subplots(rows_count, columns, figsize=(4.2 * columns, 2.4 * rows_count), squeeze=False)
    for axis in axes.ravel()[len(labels) :]:
        axis.set_visible(False)
    for axis, label in zip(axes.ravel(), labels, strict=False):
        rows = best_and_worst(table, label).iloc[::-1]
        values = rows["contribution"].to_numpy(dtype=float)
        axis.barh(range(len(rows)), values, color=["#1a9850" if v > 0 else "#d73027" for v in values])
        axis.set_yticks(range(len(rows)), [_cut(str(d)) for d in rows["descriptor"]])
        axis.axvline(0, color="black", linewidth=0.6)
        axis.set_title(_cut(label, 40), fontsize=9)
        axis.tick_params(axis="both", labelsize=7)
    figure.supxlabel("contribution: drop in the true label's log-probability without the descriptor", fontsize=8)
    figure.tight_layout()
    return figure


def _changes(record: OptimizationRecord, described: DescriptorSet) -> pd.DataFrame:
    """Per label: descriptors added and removed between the start and the set returned (by the iterations)."""
    rows = []
    for label in described.labels:
        added: list[str] = []
        removed: list[str] = []
        for iteration in record.iterations[: max(record.best_iteration, 0)]:
            for change in iteration.changes:
                if change.label == label:
                    added.extend(change.added)
                    removed.extend(change.removed)
        final = set(described.descriptors[label])
        rows.append(
            {
                "label": label,
                "descriptors": len(described.descriptors[label]),
                "added": "; ".join(d for d in dict.fromkeys(added) if d in final),
                "removed": "; ".join(d for d in dict.fromkeys(removed) if d not in final),
            }
        )
    return pd.DataFrame(rows)


def add_optimization(report: Report, described: DescriptorSet) -> None:
    """The section for ``described`` when it carries an optimisation record; nothing otherwise."""
    record = described.optimization
    if record is None:
        return
    start = f"; the start set scored {record.start_accuracy:.3f}" if record.start_accuracy is not None else ""
    report.add_text(
        SECTION,
        f"{record.method}: {len(record.iterations)} iteration(s) of {record.iterations_asked} asked, "
        f"{record.candidates} candidate(s) per step, on {len(record.image_sha256)} training image(s) "
        f"({max(record.images_per_label.values(), default=0)} at most per label); the set returned is from "
        f"iteration {record.best_iteration}, with accuracy {record.best_accuracy:.3f} on those images{start}. "
        "These images are never among the evaluated ones (the methods check their sha256). Contributions are "
        "computed with the search's sentences ('{label}, {descriptor}') and logits; the method rows score DCLIP's "
        "form. " + logit_scale_note(record.logit_scale_form, record.logit_scale),
    )
    if record.stopped:
        report.add_text(SECTION, f"Stopped early: {record.stopped}.", note=True)
    report.add_figure(SECTION, "optimization_accuracy", accuracy_curve(record), caption="Accuracy per iteration")
    table = pd.DataFrame([c.model_dump() for c in record.contributions])
    if not table.empty:
        labels = [label for label in described.labels if label in set(table["label"])]
        report.add_figure(
            SECTION,
            "optimization_descriptors",
            descriptor_bars(table, labels[:SHOWN_LABELS]),
            caption=f"Best and worst descriptors per label ({min(len(labels), SHOWN_LABELS)} of {len(labels)} "
            "labels drawn; every descriptor is in tables/optimization_contributions.csv)",
        )
        ordered = table.sort_values(["label", "contribution"], ascending=[True, False], kind="stable")
        report.add_table(SECTION, "optimization_contributions", ordered, caption="Contribution of every descriptor")
    report.add_table(SECTION, "optimization_changes", _changes(record, described), caption="What each label gained")
    report.add_text(SECTION, record.departures, note=True)
    report.add_json("optimization", record.model_dump(mode="json", exclude={"iterations"}))
