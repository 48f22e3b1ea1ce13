"""The report's findings: plain sentences computed from the numbers on the page, each linked to its evidence.

Four kinds, in the order the report shows them:

- ``warning``: weak inputs (random backbone weights, a tree that cannot tell labels apart or copies the prompt's
  example, concepts CLIP does not detect, parts the tree gives every label alike that the model leans on (a
  nuisance or shortcut), labels with few images, skipped files, byte-identical images under different labels);
- ``comparison``: the concept forest against each control, zero-shot CLIP and the linear probe (the ceiling):
  better than / not distinguishable from / worse than, from one test: the exact paired McNemar test, its p-values
  Holm-adjusted over the comparisons made (:data:`VERDICT_NOTE`);
- ``importance``: the parts (every level of the part tree) and attribute kinds whose permutation lowers accuracy
  beyond the 95 % bootstrap interval over test images, and those whose interval reaches zero;
- ``confusion``: the most-confused label pairs and, of the concepts the model uses most for them, those that
  separate them least.

Every sentence names the values that made it; none is fixed text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from conceptforest.concepts.tree import ConceptTree
from conceptforest.concepts.tree_checks import check_concepts, check_tree, names
from conceptforest.explain.caveats import backbone_warnings, shortcut_warnings, toy_world_data_warnings
from conceptforest.explain.confusion import confused_pairs
from conceptforest.explain.copies import copy_warnings, find_copies
from conceptforest.explain.finding import Finding, Value, warning
from conceptforest.explain.grounding import DETECTED_AUC
from conceptforest.explain.report import Report, section_anchor
from conceptforest.explain.sections import Evaluation, Rollup

__all__ = [
    "VERDICT_NOTE",
    "Finding",
    "MethodRow",
    "add_findings",
    "comparison_findings",
    "compute_findings",
    "holm_adjust",
    "verdict",
]

Verdict = Literal["better than", "not distinguishable from", "worse than"]

SECTION = "Findings"
ALPHA = 0.05
REFERENCE = "forest"
# the rows the forest is compared with, in the order the findings name them: (method name, role); the concept
# controls' names already say "control:"
ROLE_PREFIX = {"control": "", "floor": "the floor, ", "zero-shot": "", "ceiling": "the ceiling, "}
COMPARED = (
    ("shuffled-tree", "control"),
    ("random-words", "control"),
    ("chance", "floor"),
    ("clip", "zero-shot"),
    ("ensemble", "zero-shot"),
    ("probe", "ceiling"),
)
TOP_GROUPS = 3
CONFUSED_PAIRS = 2
LEAST_SEPARATING = 3
MIN_IMAGES_PER_LABEL = 10
MIN_EVALUATED_PER_LABEL = 5
LOW_GROUNDING = 0.5  # warn when CLIP detects fewer than this fraction of the checkable concepts
VERDICT_NOTE = (
    "How to read the findings: a verdict (better than, not distinguishable from, worse than) comes from one test, "
    "the exact McNemar test on the images both methods saw, its p-values Holm-adjusted over the comparisons the "
    f"findings make (the forest against each control, zero-shot CLIP and the probe); better or worse means an "
    f"adjusted p below {ALPHA}. The accuracy intervals are shown for reading, not used for the verdict. A part or "
    "attribute kind 'lowers accuracy' when the 95 % bootstrap interval of its permutation drop over the test images "
    "lies above zero; that interval says how far the drop could move on another test set of this size, and is "
    "not corrected for the number of parts."
)


@dataclass(frozen=True)
class MethodRow:
    """A computed row of the method comparison: accuracy, its 95 % bootstrap interval, McNemar's p against the
    forest (None for the forest itself)."""

    name: str
    display: str
    accuracy: float
    ci95_low: float
    ci95_high: float
    mcnemar_p: float | None = None

    @classmethod
    def from_table(cls, comparison: pd.DataFrame) -> list[MethodRow]:
        """The computed rows of :func:`~conceptforest.models.methods.table.comparison_table`'s table."""
        computed = comparison[comparison["status"].astype(str).str.startswith("computed")]
        return [
            cls(
                name=str(row.name),
                display=str(row.method),
                accuracy=float(row.accuracy),
                ci95_low=float(row.ci95_low),
                ci95_high=float(row.ci95_high),
                mcnemar_p=None if pd.isna(row.mcnemar_p_vs_forest) else float(row.mcnemar_p_vs_forest),
            )
            for row in computed.itertuples(index=False)
        ]


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the i-th smallest of m is multiplied by m - i + 1,
    then each is raised to the largest before it in that order (and capped at 1)."""
    order = np.argsort(np.asarray(p_values, dtype=float), kind="stable")
    adjusted = [0.0] * len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * float(p_values[index])))
        adjusted[int(index)] = running
    return adjusted


def verdict(forest: MethodRow, other: MethodRow, adjusted_p: float | None, alpha: float = ALPHA) -> Verdict:
    """Better or worse when the exact McNemar test, Holm-adjusted over the comparisons made (``adjusted_p``),
    rejects at ``alpha``; else not distinguishable. The accuracy intervals are shown, not used."""
    if adjusted_p is not None and adjusted_p < alpha and forest.accuracy != other.accuracy:
        return "better than" if forest.accuracy > other.accuracy else "worse than"
    return "not distinguishable from"


def _accuracy(row: MethodRow) -> str:
    return f"accuracy {row.accuracy:.3f}, 95 % interval {row.ci95_low:.3f}–{row.ci95_high:.3f}"


def _consequence(role: str, said: Verdict, forest: MethodRow, other: MethodRow) -> str:
    if role == "control":
        if said == "better than":
            return "; the forest uses what its concepts say, not only how many there are"
        return "; on this split the tree's concepts do no better than concepts without that meaning"
    if role == "ceiling" and other.accuracy > 0:
        return f"; the forest keeps {forest.accuracy / other.accuracy:.0%} of the probe's accuracy"
    return ""


def _p_values(other: MethodRow, adjusted: float | None, comparisons: int) -> str:
    if other.mcnemar_p is None or adjusted is None:
        return ""
    return f"; McNemar p = {other.mcnemar_p:.2g}, Holm-adjusted over {comparisons} comparisons: {adjusted:.2g}"


def comparison_findings(rows: Sequence[MethodRow], anchor: str = section_anchor("Method comparison")) -> list[Finding]:
    """The forest against each control, zero-shot CLIP and the linear probe present in ``rows``; the verdicts
    come from the exact McNemar p-values Holm-adjusted over these comparisons (:data:`VERDICT_NOTE`)."""
    by_name = {row.name: row for row in rows}
    forest = by_name.get(REFERENCE)
    if forest is None:
        return []
    compared = [(by_name[name], role) for name, role in COMPARED if name in by_name]
    tested = [other for other, _ in compared if other.mcnemar_p is not None]
    adjusted = dict(zip((o.name for o in tested), holm_adjust([o.mcnemar_p or 0.0 for o in tested]), strict=True))
    found = []
    for other, role in compared:
        said = verdict(forest, other, adjusted.get(other.name))
        sentence = (
            f"The concept forest ({_accuracy(forest)}) is {said} {ROLE_PREFIX[role]}{other.display}, at "
            f"{_accuracy(other)}{_p_values(other, adjusted.get(other.name), len(tested))}"
            f"{_consequence(role, said, forest, other)}."
        )
        values: dict[str, Value] = {
            "method": other.name,
            "role": role,
            "verdict": said,
            "forest_accuracy": forest.accuracy,
            "forest_ci95_low": forest.ci95_low,
            "forest_ci95_high": forest.ci95_high,
            "accuracy": other.accuracy,
            "ci95_low": other.ci95_low,
            "ci95_high": other.ci95_high,
        }
        if other.mcnemar_p is not None:
            values.update(mcnemar_p=other.mcnemar_p, mcnemar_p_holm=adjusted[other.name], comparisons=len(tested))
        found.append(Finding("comparison", sentence, anchor, values))
    return found


def group_findings(table: pd.DataFrame, what: str, anchor: str = section_anchor("Roll-up")) -> list[Finding]:
    """The groups (parts, attribute kinds) whose permutation lowers accuracy beyond the 95 % bootstrap interval
    over test images, most first, and those whose interval reaches zero. ``table`` is a grouped permutation table
    (group, mean, ci95_low/high)."""
    if table.empty:
        return []
    ranked = table.sort_values("mean", ascending=False, kind="stable")
    matter, idle = ranked[ranked["ci95_low"] > 0], ranked[ranked["ci95_low"] <= 0]
    total = len(ranked)
    found = []
    if matter.empty:
        top = ranked.iloc[0]
        found.append(
            Finding(
                "importance",
                f"Permuting any one of the {total} {what} lowers accuracy by no more than its 95 % interval over "
                f"test images allows (largest drop: {top['group']}, {top['mean']:.3f}, interval "
                f"{top['ci95_low']:.3f}–{top['ci95_high']:.3f}).",
                anchor,
                {"level": what, "group": str(top["group"]), "mean": float(top["mean"])},
            )
        )
    else:
        shown = "; ".join(
            f"{r.group} (accuracy drop {r.mean:.3f}, 95 % interval over test images {r.ci95_low:.3f}–{r.ci95_high:.3f})"
            for r in matter.head(TOP_GROUPS).itertuples(index=False)
        )
        found.append(
            Finding(
                "importance",
                f"{len(matter)} of {total} {what} lower accuracy when permuted; the most: {shown}.",
                anchor,
                {"level": what, "matter": len(matter), "total": total, "top": str(matter.iloc[0]["group"])},
            )
        )
    if not idle.empty and not matter.empty:
        largest = float(idle["mean"].abs().max())
        found.append(
            Finding(
                "importance",
                f"{len(idle)} of {total} {what} do not measurably matter (their intervals over test images reach "
                "zero; the largest "
                f"drop among them is {largest:.3f}): {names([str(g) for g in idle['group']], 5)}.",
                anchor,
                {"level": what, "idle": len(idle), "total": total, "largest_idle_drop": largest},
            )
        )
    return found


def _least_separating(run: Evaluation, per_class: pd.DataFrame, a: str, b: str) -> list[tuple[str, float]]:
    """Of the concepts the model uses most for ``a`` and ``b`` (per-class mean |SHAP|), those whose scores differ
    least between their images, as (concept, standardised mean difference)."""
    used = set(per_class[a].nlargest(run.top_k).index) | set(per_class[b].nlargest(run.top_k).index)
    labels = run.y.astype(str).to_numpy()
    rows_a, rows_b = run.X[labels == a], run.X[labels == b]
    if rows_a.empty or rows_b.empty:
        return []
    columns = [c for c in run.X.columns if c in used]
    pooled = np.sqrt((rows_a[columns].var(ddof=0) + rows_b[columns].var(ddof=0)) / 2).replace(0, np.nan)
    difference = ((rows_a[columns].mean() - rows_b[columns].mean()).abs() / pooled).dropna()
    return [(str(c), float(d)) for c, d in difference.sort_values(kind="stable").head(LEAST_SEPARATING).items()]


def confusion_findings(run: Evaluation, per_class: pd.DataFrame) -> list[Finding]:
    """The most-confused pairs, how many images went each way, and the concepts that separate them least."""
    labels = list(run.matrix.labels)
    truth, predicted = run.y.astype(str).to_numpy(), np.asarray(run.predicted).astype(str)
    raw = pd.DataFrame(confusion_matrix(truth, predicted, labels=labels), index=labels, columns=labels)
    anchor = section_anchor("Confusion")
    pairs = confused_pairs(raw, top=CONFUSED_PAIRS)
    if pairs.empty:
        return [
            Finding(
                "confusion",
                f"No two labels are confused: all {len(truth)} images of the {run.split!r} split are predicted right.",
                anchor,
                {"images": len(truth)},
            )
        ]
    found = []
    for pair in pairs.itertuples(index=False):
        a, b = str(pair.label_a), str(pair.label_b)
        n_a, n_b = int(raw.loc[a].sum()), int(raw.loc[b].sum())
        sentence = (
            f"{a} and {b} are confused {pair.total} times: {pair.a_predicted_as_b} of {n_a} {a} images were "
            f"predicted {b}, {pair.b_predicted_as_a} of {n_b} {b} images {a}."
        )
        least = _least_separating(run, per_class, a, b)
        if least:
            listed = ", ".join(f"{concept} ({d:.2f})" for concept, d in least)
            sentence += (
                f" Of the concepts the model uses most for them, these separate them least (standardised "
                f"difference of their mean scores): {listed}."
            )
        values: dict[str, Value] = {"label_a": a, "label_b": b, "total": int(pair.total)}
        values.update({f"least_separating_{i}": concept for i, (concept, _) in enumerate(least, 1)})
        found.append(Finding("confusion", sentence, anchor, values))
    return found


def tree_warnings(run: Evaluation, tree: ConceptTree | None) -> list[Finding]:
    """The tree's input warnings (from the tree when given, else from the matrix's concepts)."""
    if tree is not None:
        problems, section = check_tree(tree), "Trees"
    else:
        template = run.matrix.meta.tree_generator == "template"
        problems = check_concepts(run.matrix.labels, run.matrix.concepts, template=template)
        section = "Grounding"
    return [
        warning(p.message, section, check=p.kind, labels=", ".join(p.labels), values=", ".join(p.values))
        for p in problems
    ]


def grounding_warnings(run: Evaluation) -> list[Finding]:
    """Few concepts that CLIP detects (train ROC AUC below the threshold for most of them)."""
    table = run.grounding
    scored = table.dropna(subset=["auc"])
    if table.empty:
        return []
    if scored.empty:
        return [
            warning(
                f"None of the {len(table)} concepts can be checked for grounding: each is shared by every label or "
                "by none, so no concept says which label an image shows.",
                "Grounding",
                concepts=len(table),
            )
        ]
    detected = int(scored["detected"].sum())
    if detected >= LOW_GROUNDING * len(scored):
        return []
    worst = ", ".join(f"{r.concept} ({r.auc:.2f})" for r in scored.head(3).itertuples(index=False))
    return [
        warning(
            f"CLIP detects only {detected} of {len(scored)} checkable concepts (train ROC AUC ≥ {DETECTED_AUC}); "
            f"least detected: {worst}. Important concepts that CLIP does not detect merely correlate with labels.",
            "Grounding",
            detected=detected,
            checkable=len(scored),
        )
    ]


def data_warnings(run: Evaluation, skipped: pd.DataFrame | None) -> list[Finding]:
    """Random backbone weights, labels with few images, skipped files, copies of one image (``copies.py``)."""
    found = []
    matrix = run.matrix
    found.extend(backbone_warnings(run))
    counts = matrix.frame["label"].astype(str).value_counts()
    evaluated = run.y.astype(str).value_counts()
    few = [
        (label, int(counts.get(label, 0)), int(evaluated.get(label, 0)))
        for label in matrix.labels
        if counts.get(label, 0) < MIN_IMAGES_PER_LABEL or evaluated.get(label, 0) < MIN_EVALUATED_PER_LABEL
    ]
    if few:
        listed = ", ".join(f"{label!r} ({total} in all, {n} in {run.split!r})" for label, total, n in few[:10])
        found.append(
            warning(
                f"{len(few)} label(s) have few images: {listed}. Their precision, recall and importance rest on "
                "few images.",
                "Per label",
                labels=len(few),
            )
        )
    if skipped is not None and not skipped.empty:
        reasons = skipped["reason"].astype(str).value_counts() if "reason" in skipped else pd.Series(dtype=int)
        why = "; ".join(f"{reason}: {count}" for reason, count in reasons.head(3).items())
        found.append(
            warning(f"{len(skipped)} file(s) were skipped during feature extraction ({why}).", "Skipped files")
        )
    found.extend(copy_warnings(find_copies(matrix.frame, run.split)))
    return found


def compute_findings(
    run: Evaluation,
    comparison: pd.DataFrame,
    rollup: Rollup,
    per_class: pd.DataFrame,
    *,
    tree: ConceptTree | None = None,
    skipped: pd.DataFrame | None = None,
) -> list[Finding]:
    """Every finding of a report: warnings first, then the comparison, importance and confusion findings."""
    return [
        *data_warnings(run, skipped),
        *tree_warnings(run, tree),
        *toy_world_data_warnings(run, tree),
        *grounding_warnings(run),
        *shortcut_warnings(run, rollup),
        *comparison_findings(MethodRow.from_table(comparison)),
        *group_findings(rollup.part, "parts (every level of the part tree)"),
        *group_findings(rollup.attribute, "attribute kinds"),
        *confusion_findings(run, per_class),
    ]


def add_findings(report: Report, findings: Sequence[Finding]) -> None:
    """The findings as the report's first section (warnings first), and in ``report.json``."""
    for finding in findings:
        report.add_finding(SECTION, finding.sentence, finding.anchor, warning=finding.kind == "warning")
    if not findings:
        report.add_text(SECTION, "No finding could be computed from this report's numbers.", note=True)
    elif any(f.kind in ("comparison", "importance") for f in findings):
        report.add_text(SECTION, VERDICT_NOTE, note=True)
    report.add_json("warnings", [asdict(f) for f in findings if f.kind == "warning"])
    report.add_json("findings", [asdict(f) for f in findings if f.kind != "warning"])
    report.move_to_front(SECTION)
