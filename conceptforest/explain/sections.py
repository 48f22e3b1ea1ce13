"""The report's sections after the summary: importance, roll-up, confusion, per label, SHAP examples, trees and
skipped files (data quality is ``copies.py``). Each ``add_*`` function computes one section and adds it to a
:class:`Report`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from conceptforest.concepts.render import dot_available, render_tree
from conceptforest.concepts.tree import ConceptTree
from conceptforest.explain import plots
from conceptforest.explain.confusion import (
    WHY_HOW_TO_READ,
    confused_pairs,
    confusion_tables,
    top_concepts_overlap,
    why_a_not_b,
)
from conceptforest.explain.grounding import DETECTED_AUC, grounding_summary, grounding_table
from conceptforest.explain.importance import (
    Level,
    concept_groups,
    gini_table,
    group_permutation_table,
    permutation_table,
)
from conceptforest.explain.report import Report
from conceptforest.explain.shap_values import ConceptShap
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models.bundle import ModelBundle
from conceptforest.models.metrics import per_label_table

INTERVAL_CAPTION = (
    "ci95_low-ci95_high: 95 % bootstrap interval of the drop over the test images, the permutations inside "
    "(how far it could move on another test set of this size; docs/METHODS.md); repeat_std: the spread of the "
    "repeats (permutation noise only)"
)
# (Rollup field, concept_groups level, caption): the part roll-up goes through every level of the part tree
ROLLUP_LEVELS: tuple[tuple[str, Level, str], ...] = (
    ("part", "part_tree", "part, at every level of the part tree (an inner part permutes all its sub-parts)"),
    ("part_attribute", "part_attribute", "part attributes"),
    ("attribute", "attribute", "attribute kinds"),
)
MAX_BEESWARMS = 20  # past this many labels, a summary table replaces the beeswarms on the page
GRAPHVIZ_MISSING = (
    "The tree pictures need Graphviz, whose 'dot' program is not on PATH: install Graphviz "
    "(`apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`) to draw the trees, then run "
    "explain again; the .dot files are in trees/ beside this report ({count} files; any Graphviz viewer opens them)."
)


@dataclass
class Evaluation:
    """What every section explains: the model, the matrix's ``split`` rows and the section options."""

    bundle: ModelBundle
    matrix: FeatureMatrix
    split: str
    X: pd.DataFrame
    y: pd.Series
    predicted: np.ndarray
    n_repeats: int
    top_k: int
    shap_rows: int
    worst: int
    random_state: int

    @cached_property
    def grounding(self) -> pd.DataFrame:
        """Per-concept grounding (computed once, shown in two sections)."""
        return grounding_table(self.matrix)


FAITHFULNESS_NOTE = (
    "How far to trust these rankings, checked on conceptforest's ground-truth world (toy-world numbers, "
    "benchmarks/faithfulness.py): single-concept permutation ranked the truly distinguishing concepts no better than "
    "chance (correlated concepts stand in for each other), while the roll-up's grouped permutation by part found "
    "all of them, and Gini and global SHAP nearly all. Per label and per image, SHAP found the right parts but at "
    "single-concept level let a concept every label shares outrank one of the label's own; changing the part SHAP "
    "ranks first lowered the prediction's probability most but changed the label on only a third of the images. "
    "Read parts and attributes (Roll-up) before single concepts."
)


def add_importance(report: Report, run: Evaluation) -> pd.DataFrame:
    """Permutation and Gini importance; returns the permutation table (it shades the trees)."""
    permutation = permutation_table(
        run.bundle.model, run.X, run.y, n_repeats=run.n_repeats, random_state=run.random_state
    )
    grounding = run.grounding
    permutation = permutation.merge(
        grounding[["concept", "auc"]].rename(columns={"auc": "grounding_auc"}), on="concept", how="left"
    )
    report.add_table(
        "Importance",
        "permutation_importance",
        permutation,
        caption=f"Permutation importance on the {run.split!r} split (mean accuracy drop over {run.n_repeats} "
        f"repeats; {INTERVAL_CAPTION}); grounding_auc: does CLIP detect the concept "
        f"(train ROC AUC, ≥ {DETECTED_AUC} = detected; an important concept with a low AUC merely correlates)",
    )
    report.add_figure(
        "Importance",
        "permutation_importance",
        plots.importance_bars(
            permutation,
            "concept",
            "mean",
            error=("ci95_low", "ci95_high"),
            title="Permutation importance (top 15; bars: 95 % interval over test images)",
        ),
    )
    report.add_text("Importance", FAITHFULNESS_NOTE, note=True)
    report.add_table(
        "Importance",
        "gini_importance",
        gini_table(run.bundle.model, run.matrix.concept_ids),
        caption="Gini (MDI) importance: computed on the TRAINING data and biased towards features with "
        "many distinct values; read it beside permutation importance",
    )
    return permutation


def add_grounding(report: Report, run: Evaluation) -> None:
    """How many concepts CLIP actually detects, and the least detected."""
    table = run.grounding
    report.add_text("Grounding", grounding_summary(table))
    report.add_table(
        "Grounding",
        "grounding",
        table,
        caption="Per concept: ROC AUC of its score for train images of labels that have it against those that "
        "do not (least detected first)",
    )


@dataclass(frozen=True)
class Rollup:
    """The grouped permutation tables of the roll-up: ``part`` holds every node of the part tree (inner parts
    and leaves), then (part, attribute) slots and attribute kinds."""

    part: pd.DataFrame
    part_attribute: pd.DataFrame
    attribute: pd.DataFrame


def add_rollup(report: Report, run: Evaluation) -> Rollup:
    """Grouped permutation importance by part (every level of the part tree), part attribute and attribute kind;
    returns the three tables."""
    concepts = [asdict(c) for c in run.matrix.concepts]  # concept_groups reads mappings
    tables: dict[str, pd.DataFrame] = {}
    for level, grouping, caption in ROLLUP_LEVELS:
        table = group_permutation_table(
            run.bundle.model,
            run.X,
            run.y,
            concept_groups(concepts, grouping),
            n_repeats=run.n_repeats,
            random_state=run.random_state,
        )
        tables[level] = table
        report.add_table(
            "Roll-up",
            f"rollup_{level}",
            table,
            caption=f"Grouped permutation importance by {caption}: all concepts of a group permuted together "
            f"(plain permutation understates correlated concepts); {INTERVAL_CAPTION}",
        )
        if level == "part":
            report.add_figure(
                "Roll-up",
                "rollup_part",
                plots.importance_bars(
                    table,
                    "group",
                    "mean",
                    error=("ci95_low", "ci95_high"),
                    title="Parts, every level (95 % interval over images)",
                ),
            )
    return Rollup(**tables)


def add_confusion(report: Report, run: Evaluation, per_class: pd.DataFrame) -> None:
    """The confusion matrix, the most-confused pairs and, for the top three, why one label and not the other."""
    tables = confusion_tables(run.y, run.predicted, run.matrix.labels)
    report.add_table(
        "Confusion",
        "confusion_raw",
        tables["raw"].reset_index(names="true \\ predicted"),
        caption="Confusion matrix (rows: true label)",
    )
    report.add_figure(
        "Confusion",
        "confusion",
        plots.confusion_heatmap(tables["normalized"]),
        caption="Row-normalised confusion matrix",
    )
    pairs = confused_pairs(tables["raw"])
    report.add_table("Confusion", "confused_pairs", pairs, caption="Most-confused label pairs")
    if not pairs.empty:
        report.add_text("Confusion", WHY_HOW_TO_READ, note=True)
    overlaps = []
    for pair in pairs.head(3).itertuples(index=False):
        a, b = str(pair.label_a), str(pair.label_b)
        overlap = top_concepts_overlap({c: per_class[c] for c in per_class.columns}, a, b, k=run.top_k)
        overlaps.append(
            {
                "label_a": a,
                "label_b": b,
                "shared_top_concepts": "; ".join(overlap["shared"]),
                "jaccard": overlap["jaccard"],
            }
        )
        report.add_table(
            "Confusion",
            f"why_{len(overlaps)}",
            why_a_not_b(run.X, run.y, a, b, per_class[a], top=run.top_k),
            caption=f"Why {a} and not {b}: concepts whose mean score differs most, whether the difference is "
            f"beyond the noise (Welch), and their mean |SHAP| for {a}",
        )
    if overlaps:
        report.add_table(
            "Confusion",
            "top_concept_overlap",
            pd.DataFrame(overlaps),
            caption=f"Overlap of the top-{run.top_k} concepts (per-class mean |SHAP|) of confused pairs",
        )


def add_per_label(report: Report, run: Evaluation) -> None:
    """The per-label metrics table; each label's own block follows (explain/per_label.py)."""
    report.add_table(
        "Per label",
        "per_label_metrics",
        per_label_table(run.y, run.predicted, run.matrix.labels),
        caption="Precision, recall and F1 per label",
    )


def add_examples(report: Report, run: Evaluation, explanation: ConceptShap) -> None:
    """Every label's beeswarm, or past :data:`MAX_BEESWARMS` labels a compact per-label SHAP summary with the
    beeswarms written to figures/ only (the misclassified images follow: explain/misclassified.py)."""
    labels = run.matrix.labels
    many = len(labels) > MAX_BEESWARMS
    if many:
        report.add_text(
            "Examples with SHAP",
            f"{len(labels)} labels: the beeswarms of all {len(labels)} labels are left out of the page to keep it "
            "small; each is in figures/beeswarm_<n>.png (n as in the table below, which summarises every label's "
            "SHAP values; also tables/shap_summary.csv), and each label's concepts are in the Per label section.",
            note=True,
        )
        report.add_table("Examples with SHAP", "shap_summary", shap_summary(explanation, labels), max_rows=len(labels))
    else:
        report.begin_group("Examples with SHAP", f"SHAP beeswarms of all {len(labels)} labels", collapsed=True)
    for number, label in enumerate(labels):
        report.add_figure(
            "Examples with SHAP",
            f"beeswarm_{number}",
            plots.class_beeswarm(explanation, label),
            caption=f"SHAP values for {label}",
            embed=not many,
        )
    if not many:
        report.end_group("Examples with SHAP")


def shap_summary(explanation: ConceptShap, labels: list[str]) -> pd.DataFrame:
    """One row per label: its most used concept (per-class mean |SHAP|), the concepts with the largest positive
    and negative mean SHAP, and the beeswarm file."""
    rows = []
    for number, label in enumerate(labels):
        values = explanation.for_class(label)
        mean, used = values.mean(axis=0), np.abs(values).mean(axis=0)
        ids = explanation.concept_ids
        rows.append(
            {
                "n": number,
                "label": label,
                "most_used": ids[int(used.argmax())],
                "mean_abs_shap": float(used.max()),
                "most_raising": ids[int(mean.argmax())] if mean.max() > 0 else "",
                "most_lowering": ids[int(mean.argmin())] if mean.min() < 0 else "",
                "beeswarm": f"figures/beeswarm_{number}.png",
            }
        )
    return pd.DataFrame(rows)


def add_trees(report: Report, tree: ConceptTree | None, out: Path, permutation: pd.DataFrame) -> None:
    """Tree pictures shaded by permutation importance; without Graphviz, the .dot files and how to draw them."""
    if tree is None:
        report.add_text("Trees", "No tree file was given, so no tree pictures were drawn.", note=True)
        return
    weights = {str(r.concept): max(float(r.mean), 0.0) for r in permutation.itertuples(index=False)}
    drawable = dot_available()
    rendered = render_tree(tree, out / "trees", formats=["svg"] if drawable else ["dot"], importance=weights)
    for path in rendered.written:
        report.extra_files[path.relative_to(out).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    if not drawable:
        dot_files = [p for p in rendered.written if p.suffix == ".dot"]
        report.add_text("Trees", GRAPHVIZ_MISSING.format(count=len(dot_files)), note=True)
    svgs = [p for p in rendered.written if p.suffix == ".svg"]
    if len(svgs) > 1:
        report.add_text(
            "Trees",
            f"The schema is shown here; the {len(svgs) - 1} label pictures shaded by permutation importance are in "
            "the trees/ folder beside this report, and each label's tree shaded by its own importance is in its "
            "Per label block.",
            note=True,
        )
    for path in svgs[:1]:
        report.add_figure(
            "Trees", f"tree_{path.stem}", path.read_bytes(), caption=f"{path.stem}, shaded by permutation importance"
        )
    for message in rendered.warnings:
        report.add_text("Trees", message, note=True)


def add_skipped(report: Report, skipped: pd.DataFrame | None) -> None:
    if skipped is not None and not skipped.empty:
        report.add_table(
            "Skipped files", "skipped", skipped, caption=f"{len(skipped)} file(s) skipped during feature extraction"
        )
    else:
        report.add_text("Skipped files", "No file was skipped.", note=True)
