"""The report's "Per label" blocks: for every label, its images' accuracy, precision and recall, a few thumbnails
(typical and borderline), the concepts that most raise and most lower its probability, and its tree picture shaded
by that label's own importance, with a colour legend.

The concepts come from per-class SHAP values: ``mean_shap`` is the mean signed value on the label's own explained
images (how a concept moves the label's probability where it matters), ``mean_abs_shap`` the per-class mean |SHAP|
on every explained image (how much the model uses it for that label; it shades the tree). A concept is listed once:
under "raises" when its mean is positive, under "lowers" when negative, so a tree with few concepts shows each once.
``its_score`` says whether the label's images score the concept higher or lower than the other explained images:
a concept that raises the probability with a *lower* score counts by its absence ("not long legs"), which the sign
alone does not tell (on the ground-truth world, about a third of the top "raises" concepts were of that kind).

Everything is computed by :func:`label_blocks` before the report folder is touched; :func:`add_label_blocks` then
draws the trees into ``label-trees/`` and adds the blocks (folded in ``<details>`` past :data:`MANY_LABELS`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from conceptforest.concepts.render import dot_available, render_label_trees
from conceptforest.concepts.tree import ConceptTree
from conceptforest.explain.misclassified import THUMBNAIL_SIDE, relative_name, thumbnail_uri
from conceptforest.explain.report import Report
from conceptforest.explain.sections import GRAPHVIZ_MISSING, Evaluation
from conceptforest.explain.shap_values import ConceptShap
from conceptforest.models.metrics import per_label_table

__all__ = [
    "MANY_LABELS",
    "LabelBlock",
    "add_label_blocks",
    "label_blocks",
    "signed_concepts",
]

SECTION = "Per label"
TREE_FOLDER = "label-trees"
MANY_LABELS = 20  # past this many labels, each block is folded and thumbnails are smaller
THUMBNAILS_PER_LABEL = 3
SMALL_THUMBNAIL_SIDE = 64
TREE_BYTES_BUDGET = 1_500_000  # SVG bytes of per-label trees embedded in the page; the rest stay in label-trees/


@dataclass(frozen=True)
class Thumbnail:
    """One of a label's images shown in its block: why it was chosen, its relative file name, p(label)."""

    kind: str
    path: str
    probability: float
    predicted: str
    uri: str | None = field(default=None, repr=False)


@dataclass
class LabelBlock:
    """What the report shows for one label (``report.json``'s ``per_label`` holds these, without the images)."""

    label: str
    number: int
    images: int
    correct: int
    precision: float
    recall: float
    f1: float
    explained_images: int
    concepts: pd.DataFrame
    thumbnails: list[Thumbnail]
    tree_file: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "images": self.images,
            "correct": self.correct,
            "accuracy": self.recall,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "explained_images": self.explained_images,
            "concepts": self.concepts.to_dict(orient="records"),
            "thumbnails": [{k: v for k, v in asdict(t).items() if k != "uri"} for t in self.thumbnails],
            "tree_file": self.tree_file,
        }


def signed_concepts(
    signed: pd.Series, magnitude: pd.Series, top: int, contrast: pd.Series | None = None
) -> pd.DataFrame:
    """The ``top`` concepts with the largest positive mean SHAP ("raises") and the ``top`` most negative ("lowers");
    each concept at most once (zero means are left out). Columns: effect, concept, its_score ("higher" or "lower":
    the sign of ``contrast``, the label's mean score minus the others'; empty without it), mean_shap,
    mean_abs_shap."""
    raises = signed[signed > 0].sort_values(ascending=False, kind="stable").head(top)
    lowers = signed[signed < 0].sort_values(ascending=True, kind="stable").head(top)
    rows = [("raises", raises), ("lowers", lowers)]
    return pd.DataFrame(
        [
            {
                "effect": effect,
                "concept": concept,
                "its_score": "" if contrast is None else ("higher" if contrast[concept] > 0 else "lower"),
                "mean_shap": float(value),
                "mean_abs_shap": float(magnitude[concept]),
            }
            for effect, chosen in rows
            for concept, value in chosen.items()
        ],
        columns=["effect", "concept", "its_score", "mean_shap", "mean_abs_shap"],
    )


def score_contrast(data: pd.DataFrame, own: np.ndarray) -> pd.Series | None:
    """Per concept, the mean score of the label's own rows minus the other rows' (None when either side is empty)."""
    if not own.any() or own.all():
        return None
    return data[own].mean(axis=0) - data[~own].mean(axis=0)


def _thumbnails(rows: pd.DataFrame, source: str | None) -> list[Thumbnail]:
    """Up to three of one label's images: the two it is most sure of (typical) and the least sure right one
    (borderline); when none is right, the three it is most sure of (misclassified)."""
    ordered = rows.sort_values("p", ascending=False, kind="stable")
    right = ordered[ordered["right"]]
    if right.empty:
        chosen = [("misclassified", row) for _, row in ordered.head(THUMBNAILS_PER_LABEL).iterrows()]
    else:
        typical = [("typical", row) for _, row in right.head(THUMBNAILS_PER_LABEL - 1).iterrows()]
        rest = right.iloc[THUMBNAILS_PER_LABEL - 1 :]
        chosen = typical + [("borderline", row) for _, row in rest.tail(1).iterrows()]
    return [
        Thumbnail(kind, relative_name(row["path"], source), float(row["p"]), str(row["predicted"]))
        for kind, row in chosen
    ]


def _with_images(thumbnails: list[Thumbnail], paths: dict[str, str], side: int) -> list[Thumbnail]:
    return [
        Thumbnail(t.kind, t.path, t.probability, t.predicted, thumbnail_uri(paths[t.path], side)) for t in thumbnails
    ]


def label_blocks(
    run: Evaluation, explanation: ConceptShap, per_class: pd.DataFrame, explained: Sequence[int] | None = None
) -> list[LabelBlock]:
    """Every label's block: metrics on the split, signed per-class SHAP concepts, thumbnails (read now)."""
    labels = run.matrix.labels
    metrics = per_label_table(run.y, run.predicted, labels).set_index("label")
    proba = np.asarray(run.bundle.model.predict_proba(run.X))
    classes = [str(c) for c in run.bundle.model.classes_]
    truth = run.y.astype(str).to_numpy()
    paths = run.matrix.rows(run.split)["path"].astype(str).to_numpy()
    p_true = proba[np.arange(len(truth)), [classes.index(t) for t in truth]] if len(truth) else np.zeros(0)
    images = pd.DataFrame({"path": paths, "label": truth, "p": p_true, "predicted": run.predicted.astype(str)})
    images["right"] = images["label"] == images["predicted"]
    explained_truth = truth[list(range(len(explanation.data)) if explained is None else explained)]
    side = SMALL_THUMBNAIL_SIDE if len(labels) > MANY_LABELS else THUMBNAIL_SIDE
    source = run.matrix.meta.source
    blocks = []
    for number, label in enumerate(labels):
        values = explanation.for_class(label)
        own = explained_truth == label
        signed = pd.Series((values[own] if own.any() else values).mean(axis=0), index=explanation.concept_ids)
        contrast = score_contrast(explanation.data, own)
        chosen = _thumbnails(images[images["label"] == label], source)
        by_name = {relative_name(p, source): p for p in images.loc[images["label"] == label, "path"]}
        row = metrics.loc[label]
        blocks.append(
            LabelBlock(
                label=label,
                number=number,
                images=int(row["support"]),
                correct=round(float(row["recall"]) * int(row["support"])),
                precision=float(row["precision"]),
                recall=float(row["recall"]),
                f1=float(row["f1"]),
                explained_images=int(own.sum()),
                concepts=signed_concepts(signed, per_class[label], run.top_k, contrast),
                thumbnails=_with_images(chosen, by_name, side),
            )
        )
    return blocks


def _draw_trees(
    report: Report, tree: ConceptTree | None, out: Path, per_class: pd.DataFrame, blocks: list[LabelBlock]
) -> dict[str, list[Path]]:
    """Each label's tree shaded by its per-class mean |SHAP|; notes for what could not be drawn."""
    if tree is None:
        report.add_text(SECTION, "No tree file was given, so no per-label tree pictures were drawn.", note=True)
        return {}
    weights = {b.label: {str(c): float(v) for c, v in per_class[b.label].items()} for b in blocks}
    files, rendered = render_label_trees(tree, out / TREE_FOLDER, weights, formats=["svg"], legend="mean |SHAP|")
    for path in rendered.written:
        report.extra_files[path.relative_to(out).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    if not dot_available():
        message = GRAPHVIZ_MISSING.format(count=len(rendered.written)).replace("trees/", f"{TREE_FOLDER}/")
        report.add_text(SECTION, message, note=True)
    for message in rendered.warnings:
        report.add_text(SECTION, message, note=True)
    for block in blocks:
        chosen = files.get(block.label, [])
        picture = next((p for p in chosen if p.suffix == ".svg"), chosen[0] if chosen else None)
        block.tree_file = picture.relative_to(out).as_posix() if picture else None
    return files


def _metrics_sentence(block: LabelBlock) -> str:
    return (
        f"{block.images} images on this split, {block.correct} classified correctly: accuracy on its images "
        f"{block.recall:.3f} (= recall), precision {block.precision:.3f}, F1 {block.f1:.3f}. "
        + (
            f"Concepts from per-class SHAP on its {block.explained_images} images among the explained rows."
            if block.explained_images
            else "None of its images is among the explained rows: its concepts are averaged over all of them."
        )
    )


def _add_tree(report: Report, block: LabelBlock, out: Path, budget: int, largest: float) -> int:
    """The label's tree: embedded while the page's tree budget (bytes) lasts, otherwise its file named; returns
    the budget left. ``largest`` is the label's largest mean |SHAP|, the red end of the picture's shading."""
    if block.tree_file is None:
        return budget
    path = out / block.tree_file
    high = f"{largest:.3g} mean |SHAP| for {block.label} (the largest)"
    if path.suffix == ".svg" and path.stat().st_size <= budget:
        budget -= path.stat().st_size
        report.add_legend(SECTION, "0", high)
        caption = f"{block.label}: its tree shaded by its own per-class mean |SHAP| (parts by their largest concept)"
        report.add_figure(SECTION, f"label_tree_{block.number}", path.read_bytes(), caption=caption)
    elif path.suffix == ".svg":
        report.add_text(SECTION, f"Its shaded tree: {block.tree_file} (kept out of the page to keep it small).")
    else:
        report.add_text(SECTION, f"Its shaded tree (DOT text; install Graphviz to draw it): {block.tree_file}.")
    return budget


def add_label_blocks(
    report: Report, blocks: list[LabelBlock], per_class: pd.DataFrame, tree: ConceptTree | None, out: Path
) -> None:
    """Add every label's block to the "Per label" section; trees are drawn into ``out/label-trees``."""
    _draw_trees(report, tree, out, per_class, blocks)
    many = len(blocks) > MANY_LABELS
    if many:
        report.add_text(SECTION, f"{len(blocks)} labels: each label's block is folded; click a label to open it.")
    budget = TREE_BYTES_BUDGET
    for block in blocks:
        report.begin_group(
            SECTION,
            f"{block.label} (recall {block.recall:.2f}, {block.images} images)",
            collapsed=many,
            anchor=f"label-{block.number}",
        )
        report.add_text(SECTION, _metrics_sentence(block))
        report.add_gallery(
            SECTION,
            [
                (
                    t.uri,
                    f"{t.kind}: {t.path} (p={t.probability:.2f}, predicted {t.predicted})"
                    + ("" if t.uri else "; the image could not be read"),
                )
                for t in block.thumbnails
            ],
        )
        report.add_table(
            SECTION,
            f"label_{block.number}_concepts",
            block.concepts,
            caption=f"{block.label}: concepts that most raise (mean SHAP > 0) and most lower (< 0) its probability "
            f"on its images; each concept listed once; its_score: whether its images score the concept higher or "
            f"lower than the other images (raising with a lower score means: by the concept's absence)",
        )
        largest = float(per_class[block.label].abs().max()) if block.label in per_class else 0.0
        budget = _add_tree(report, block, out, budget, largest)
        report.end_group(SECTION)
    report.add_json("per_label", [block.to_json() for block in blocks])
