"""Assemble the analyst's report: metrics beside honest baselines, importance, roll-up, confusion, SHAP, trees.

The sections after the method comparison live in :mod:`conceptforest.explain.sections`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.explain import sections
from conceptforest.explain.copies import add_data_quality, find_copies
from conceptforest.explain.findings import add_findings, compute_findings
from conceptforest.explain.misclassified import add_misclassified
from conceptforest.explain.optimization_section import add_optimization
from conceptforest.explain.per_label import add_label_blocks, label_blocks
from conceptforest.explain.report import Report, remove_report_files
from conceptforest.explain.sections import Evaluation
from conceptforest.explain.shap_values import REPORT_SHAP_ROWS, explain_report_shap
from conceptforest.features.backbone import RANDOM_WEIGHTS_WARNING, Backbone
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.tree_binding import load_tree_of_features
from conceptforest.folder_lock import folder_lock
from conceptforest.llm.vision_types import VisionLLM
from conceptforest.models.bundle import ModelBundle
from conceptforest.models.methods import MethodInputs, MethodOutcome, run_methods
from conceptforest.models.methods.context import method_inputs
from conceptforest.models.methods.table import comparison_table
from conceptforest.models.methods.wdys_weights import WdysClassWeight
from conceptforest.models.metrics import classification_metrics

__all__ = ["compare_methods", "explain_model", "explain_run"]

METHODS_NOTE = (
    "Every method runs on the same split and the same cached image embeddings (no image encoded twice). The "
    "controls use the same forest on concepts without visual meaning (random words; a tree whose values were "
    "shuffled across parts, attributes and labels): a forest that beats them is using what the concepts say. "
    "Description methods (DCLIP, CuPL, WaffleCLIP) put the label name in every sentence by design "
    "(label_names_in_text), so CLIP's knowledge of the name helps them; the tree's sentences are class-free. "
    "A row 'not computed' says what it needs and which flag adds it."
)


def compare_methods(inputs: MethodInputs, names: Sequence[str] | None = None) -> list[MethodOutcome]:
    """Every selected registered method on the inputs' split (not-computed rows for unmet needs)."""
    return run_methods(inputs, names)


def _new_report(run: Evaluation, made_by: Mapping[str, Any] | None) -> Report:
    """An empty report with its banner, provenance and what made it."""
    matrix, bundle = run.matrix, run.bundle
    return Report(
        f"conceptforest report: {len(matrix.labels)} labels, {len(matrix.concept_ids)} concepts",
        banner=RANDOM_WEIGHTS_WARNING + " The numbers below show the pipeline works, not what it can do."
        if matrix.random_weights
        else matrix.weights_warning,
        provenance={
            "backbone_id": matrix.backbone_id,
            "tree_hash": matrix.tree_hash,
            "split": run.split,
            "model_manifest": bundle.manifest.to_json(),
            "versions": matrix.meta.versions,
        },
        made_by={
            **(made_by or {}),
            "backbone_id": matrix.backbone_id,
            "tree_hash": matrix.tree_hash,
            "tree_generator": matrix.meta.tree_generator,
            "model_sha256": bundle.manifest.model_sha256,
            "split": run.split,
        },
    )


def _add_summary_and_methods(report: Report, run: Evaluation, outcomes: Sequence[MethodOutcome]) -> pd.DataFrame:
    """The summary and the method comparison; returns the comparison table (the findings read it)."""
    matrix, split = run.matrix, run.split
    report.add_text(
        "Summary",
        f"Labels: {', '.join(matrix.labels)}. Evaluated on the {split!r} split "
        f"({len(run.X)} images). Backbone {matrix.backbone_id}; tree {matrix.tree_hash[:12]}; "
        f"tree generator: {matrix.meta.tree_generator}.",
    )
    metrics = classification_metrics(run.y, run.predicted, matrix.labels, random_state=run.random_state)
    report.add_metrics("Summary", "metrics", metrics)
    comparison = comparison_table(outcomes, run.y.tolist(), matrix.labels, seed=run.random_state)
    computed = comparison["status"].str.startswith("computed")
    report.add_table(
        "Method comparison",
        "methods",
        comparison[computed].drop(columns=["status"]),
        caption="All methods on the same split and the same cached image embeddings; McNemar's exact test pairs "
        "each method with the concept forest on the same images",
    )
    for row in comparison.itertuples(index=False):
        detail = str(row.status).removeprefix("computed").removeprefix("; ")
        if detail:
            report.add_text("Method comparison", f"{row.method}: {detail}", note=True)
    report.add_text("Method comparison", METHODS_NOTE, note=True)
    report.add_json("methods", comparison)
    return comparison


def explain_model(
    bundle: ModelBundle,
    matrix: FeatureMatrix,
    out_dir: str | Path,
    *,
    tree: ConceptTree | None = None,
    split: str = "test",
    n_repeats: int = 10,
    top_k: int = 10,
    shap_rows: int = REPORT_SHAP_ROWS,
    worst: int = 3,
    skipped: pd.DataFrame | None = None,
    methods: Sequence[MethodOutcome] | None = None,
    random_state: int = 0,
    made_by: Mapping[str, Any] | None = None,
    descriptors: Sequence[DescriptorSet] = (),
) -> Report:
    """Compute every explanation of ``bundle`` on ``matrix``'s ``split`` rows and save the report.

    Everything is computed before ``out_dir`` is touched; then the files of an earlier report there (pages,
    tables, figures, tree pictures) are removed and the new ones written, ``index.html`` last. ``made_by`` (for
    example the model and run folders) is recorded in ``report.json`` and shown at the foot of the page.
    ``methods`` are the registered methods' outcomes on this split; without them, the methods the matrix and the
    model alone support are run here, and the others are listed as not computed. A descriptor set in
    ``descriptors`` that was optimised with visual feedback gets its own section (its history and descriptors).
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
    if methods is None:
        methods = run_methods(method_inputs(matrix, split=split, seed=random_state, bundle=bundle, tree=tree))
    comparison = _add_summary_and_methods(report, run, methods)
    permutation = sections.add_importance(report, run)
    sections.add_grounding(report, run)
    rollup = sections.add_rollup(report, run)
    explanation, shap_used = explain_report_shap(bundle.model, X, y, shap_rows)
    per_class = explanation.mean_abs()
    sections.add_confusion(report, run, per_class)
    sections.add_per_label(report, run)  # the section takes its place; the label blocks follow once trees are drawn
    blocks = label_blocks(run, explanation, per_class, shap_used.positions)
    sections.add_examples(report, run, explanation)
    report.add_text("Examples with SHAP", shap_used.note(split), note=True).add_json("shap", shap_used.to_json())
    add_misclassified(report, run, explanation, shap_used.positions)
    for described in descriptors:
        add_optimization(report, described)
    add_findings(report, compute_findings(run, comparison, rollup, per_class, tree=tree, skipped=skipped))
    with folder_lock(out):  # all computed: one writer clears what an earlier report left, then writes
        remove_report_files(out)
        sections.add_trees(report, tree, out, permutation)
        add_label_blocks(report, blocks, per_class, tree, out)
        sections.add_skipped(report, skipped)
        add_data_quality(report, find_copies(matrix.frame, split))
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
    bundle: ModelBundle | None = None,
    backbone: Backbone | None = None,
    descriptors: Sequence[DescriptorSet] = (),
    method_names: Sequence[str] | None = None,
    vision_llm: VisionLLM | None = None,
    wdys_class_weight: WdysClassWeight | None = None,
    cache_dir: str | Path | None = None,
    split: str = "test",
    random_state: int = 0,
    **options: Any,
) -> Report:
    """Load a bundle and a run folder, run every registered method whose needs are met, then
    :func:`explain_model`.

    Parameters
    ----------
    bundle : ModelBundle, optional
        The bundle of ``model_dir`` when the caller has loaded it already (it is not loaded twice).
    backbone : Backbone, optional
        The model's backbone, already loaded and checked (``backbone_check.backbone_for``). Without it, the
        methods that need image embeddings are listed as not computed.
    descriptors : sequence of DescriptorSet
        Descriptor sets for the description methods (one per style).
    method_names : sequence of str, optional
        Registered method names to run (default: every default method).
    wdys_class_weight : WdysClassWeight, optional
        WDYS's class-weight configuration (default: the method's).
    """
    from conceptforest.models.bundle import load_bundle

    bundle = bundle or load_bundle(model_dir)
    matrix = FeatureMatrix.load(run_dir)
    bundle.check_matrix(matrix)
    tree = load_tree_of_features(tree_path, matrix, run_dir)
    inputs = method_inputs(
        matrix,
        split=split,
        seed=random_state,
        bundle=bundle,
        tree=tree,
        descriptors=descriptors,
        backbone=backbone,
        cache_dir=cache_dir,
        vision_llm=vision_llm,
        wdys_class_weight=wdys_class_weight,
    )
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
        methods=compare_methods(inputs, method_names),
        descriptors=descriptors,
        split=split,
        random_state=random_state,
        **options,
    )
