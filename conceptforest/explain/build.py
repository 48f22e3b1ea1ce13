"""Assemble the analyst's report: metrics beside honest baselines, importance, roll-up, confusion, SHAP, trees.

The sections after the method comparison live in :mod:`conceptforest.explain.sections`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.explain import sections
from conceptforest.explain.report import Report, remove_report_files
from conceptforest.explain.sections import MAX_EMBEDDED_TREES, Evaluation
from conceptforest.explain.shap_values import explain_shap
from conceptforest.features.backbone import RANDOM_WEIGHTS_WARNING, Backbone
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models.bundle import ModelBundle
from conceptforest.models.metrics import classification_metrics

__all__ = ["MAX_EMBEDDED_TREES", "descriptor_averaging", "explain_model", "explain_run", "method_comparison"]

NOT_COMPUTED = (
    "vanilla CLIP zero-shot",
    "linear probe on image embeddings",
    "random-word control",
    "shuffled-tree control",
)


def descriptor_averaging(matrix: FeatureMatrix, split: str) -> np.ndarray:
    """DCLIP-style prediction: each label's score is the mean similarity of its own concept sentences."""
    scores = matrix.X(split).to_numpy()
    columns = []
    for label in matrix.labels:
        own = [i for i, c in enumerate(matrix.meta["concepts"]) if label in c["labels"]]
        columns.append(scores[:, own].mean(axis=1) if own else np.full(len(scores), -np.inf))
    winners: np.ndarray = np.asarray(matrix.labels)[np.argmax(np.column_stack(columns), axis=1)]
    return winners


def method_comparison(
    bundle: ModelBundle, matrix: FeatureMatrix, split: str, seed: int, baselines: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """The forest, the methods the matrix alone supports, and ``baselines`` (predictions on ``split`` rows)."""
    truth = matrix.y(split)
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    logistic.fit(matrix.X("train"), matrix.y("train"))
    predictions = {
        "concept forest": bundle.model.predict(matrix.X(split)),
        "logistic regression on concepts": logistic.predict(matrix.X(split)),
        "descriptor averaging (DCLIP-style)": descriptor_averaging(matrix, split),
        **(baselines or {}),
    }
    rows = []
    for method, predicted in predictions.items():
        m = classification_metrics(truth, predicted, matrix.labels, random_state=seed)
        rows.append(
            {
                "method": method,
                "accuracy": m["accuracy"],
                "ci95_low": m["accuracy_ci95"][0],
                "ci95_high": m["accuracy_ci95"][1],
                "balanced_accuracy": m["balanced_accuracy"],
                "macro_f1": m["macro_f1"],
            }
        )
    rows.append(
        {
            "method": "chance (most frequent label)",
            "accuracy": float(truth.value_counts(normalize=True).max()),
            "ci95_low": np.nan,
            "ci95_high": np.nan,
            "balanced_accuracy": 1 / len(matrix.labels),
            "macro_f1": np.nan,
        }
    )
    return pd.DataFrame(rows)


def _new_report(run: Evaluation, made_by: Mapping[str, Any] | None) -> Report:
    """An empty report with its banner, provenance and what made it."""
    matrix, bundle = run.matrix, run.bundle
    return Report(
        f"conceptforest report: {len(matrix.labels)} labels, {len(matrix.concept_ids)} concepts",
        banner=RANDOM_WEIGHTS_WARNING + " The numbers below show the pipeline works, not what it can do."
        if matrix.meta.get("random_weights")
        else None,
        provenance={
            "backbone_id": matrix.backbone_id,
            "tree_hash": matrix.tree_hash,
            "split": run.split,
            "model_manifest": bundle.manifest,
            "versions": matrix.meta.get("versions"),
        },
        made_by={
            **(made_by or {}),
            "backbone_id": matrix.backbone_id,
            "tree_hash": matrix.tree_hash,
            "tree_generator": matrix.meta.get("tree_generator", "unknown"),
            "model_sha256": bundle.manifest.get("model_sha256"),
            "split": run.split,
        },
    )


def _add_summary_and_methods(report: Report, run: Evaluation, baselines: dict[str, np.ndarray] | None) -> None:
    matrix, split = run.matrix, run.split
    report.add_text(
        "Summary",
        f"Labels: {', '.join(matrix.labels)}. Evaluated on the {split!r} split "
        f"({len(run.X)} images). Backbone {matrix.backbone_id}; tree {matrix.tree_hash[:12]}; "
        f"tree generator: {matrix.meta.get('tree_generator', 'unknown')}.",
    )
    metrics = classification_metrics(run.y, run.predicted, matrix.labels, random_state=run.random_state)
    report.add_metrics("Summary", "metrics", metrics)
    comparison = method_comparison(run.bundle, matrix, split, run.random_state, baselines)
    report.add_table(
        "Method comparison",
        "methods",
        comparison,
        caption="All methods on the same split and the same cached image embeddings",
    )
    if baselines is None:
        note = f"Not computed here (they need the backbone and the tree): {', '.join(NOT_COMPUTED)}."
    else:
        note = (
            "The controls use the same forest on concepts without visual meaning "
            "(random words; a tree whose values were shuffled across parts, attributes and labels): a "
            "forest that beats them is using what the concepts say."
        )
    report.add_text("Method comparison", note, note=True)
    report.add_json("methods", comparison)


def explain_model(
    bundle: ModelBundle,
    matrix: FeatureMatrix,
    out_dir: str | Path,
    *,
    tree: ConceptTree | None = None,
    split: str = "test",
    n_repeats: int = 10,
    top_k: int = 10,
    shap_rows: int = 300,
    worst: int = 3,
    skipped: pd.DataFrame | None = None,
    baselines: dict[str, np.ndarray] | None = None,
    random_state: int = 0,
    made_by: Mapping[str, Any] | None = None,
) -> Report:
    """Compute every explanation of ``bundle`` on ``matrix``'s ``split`` rows and save the report.

    Everything is computed before ``out_dir`` is touched; then the files of an earlier report there (pages,
    tables, figures, tree pictures) are removed and the new ones written, ``index.html`` last. ``made_by`` (for
    example the model and run folders) is recorded in ``report.json`` and shown at the foot of the page.
    """
    bundle.check_matrix(matrix)
    out = Path(out_dir)
    X, y = matrix.X(split), matrix.y(split)
    if X.empty:
        raise BadInputError(
            f"The feature matrix has no {split!r} rows to explain.",
            hint="extract features with a test split, or pass --split val/train.",
        )
    run = Evaluation(
        bundle, matrix, split, X, y, bundle.model.predict(X), n_repeats, top_k, shap_rows, worst, random_state
    )
    report = _new_report(run, made_by)
    _add_summary_and_methods(report, run, baselines)
    permutation = sections.add_importance(report, run)
    sections.add_rollup(report, run)
    explanation = explain_shap(bundle.model, X.iloc[:shap_rows])
    per_class = explanation.mean_abs()
    sections.add_confusion(report, run, per_class)
    sections.add_per_label(report, run, per_class)
    sections.add_examples(report, run, explanation)
    # all computed: now clear what an earlier report left here, tree pictures included, before writing any of it
    remove_report_files(out)
    sections.add_trees(report, tree, out, permutation)
    sections.add_skipped(report, skipped)
    sections.add_data_quality(report, matrix.frame)
    report.add_json("permutation_importance", permutation.head(50))
    report.save(out)
    return report


def load_skipped(run_dir: str | Path) -> pd.DataFrame | None:
    """The run's ``skipped.csv``; None when there is none or it cannot be read (a warning says so)."""
    path = Path(run_dir) / "skipped.csv"
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:  # EmptyDataError and UnicodeDecodeError included
        warnings.warn(f"{str(path)!r} could not be read ({exc}); the report lists no skipped files.", stacklevel=2)
        return None


def explain_run(
    model_dir: str | Path,
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    tree_path: str | Path | None = None,
    backbone: Backbone | None = None,
    with_baselines: bool | None = None,
    cache_dir: str | Path | None = None,
    split: str = "test",
    random_state: int = 0,
    **options: Any,
) -> Report:
    """Load a bundle and a run folder, compute the baselines (given a tree), then :func:`explain_model`.

    Parameters
    ----------
    backbone : Backbone, optional
        The model's backbone, already loaded and checked (``backbone_check.backbone_for``), for the baselines.
    with_baselines : bool, optional
        Compute the baselines (they need the tree). By default, when ``backbone`` is given; ``True`` without a
        backbone loads the one the model's manifest records.
    """
    from conceptforest.explain.backbone_check import backbone_for
    from conceptforest.models.baselines import baseline_predictions
    from conceptforest.models.bundle import load_bundle

    bundle = load_bundle(model_dir)
    matrix = FeatureMatrix.load(run_dir)
    tree = ConceptTree.load(tree_path) if tree_path else None
    baselines = None
    wanted = backbone is not None if with_baselines is None else with_baselines
    if tree is not None and wanted:
        backbone = backbone or backbone_for(bundle, cache_dir=cache_dir)
        baselines = baseline_predictions(matrix, tree, backbone, split=split, cache_dir=cache_dir, seed=random_state)
    made_by = {
        "model_dir": str(model_dir),
        "run_dir": str(run_dir),
        "tree_path": str(tree_path) if tree_path else None,
    }
    return explain_model(
        bundle,
        matrix,
        out_dir,
        made_by=made_by,
        tree=tree,
        skipped=load_skipped(run_dir),
        baselines=baselines,
        split=split,
        random_state=random_state,
        **options,
    )
