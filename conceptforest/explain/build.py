"""Assemble the analyst's report: metrics beside honest baselines, importance, roll-up, confusion, SHAP, trees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conceptforest.concepts.render import dot_available, render_tree
from conceptforest.concepts.tree import ConceptTree
from conceptforest.explain import plots
from conceptforest.explain.confusion import confused_pairs, confusion_tables, top_concepts_overlap, why_a_not_b
from conceptforest.explain.importance import concept_groups, gini_table, group_permutation_table, permutation_table
from conceptforest.explain.report import Report
from conceptforest.explain.shap_values import explain_shap
from conceptforest.features.backbone import RANDOM_WEIGHTS_WARNING
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models.bundle import ModelBundle
from conceptforest.models.metrics import classification_metrics, per_label_table

MAX_EMBEDDED_TREES = 11  # the schema and ten labels
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
) -> Report:
    """Compute every explanation of ``bundle`` on ``matrix``'s ``split`` rows and save the report."""
    bundle.check_matrix(matrix)
    out = Path(out_dir)
    X, y = matrix.X(split), matrix.y(split)
    if X.empty:
        from conceptforest.errors import BadInputError

        raise BadInputError(
            f"The feature matrix has no {split!r} rows to explain.",
            hint="extract features with a test split, or pass --split val/train.",
        )
    model = bundle.model
    predicted = model.predict(X)
    random_weights = bool(matrix.meta.get("random_weights"))
    report = Report(
        f"conceptforest report: {len(matrix.labels)} labels, {len(matrix.concept_ids)} concepts",
        banner=RANDOM_WEIGHTS_WARNING + " The numbers below show the pipeline works, not what it can do."
        if random_weights
        else None,
        provenance={
            "backbone_id": matrix.backbone_id,
            "tree_hash": matrix.tree_hash,
            "split": split,
            "model_manifest": bundle.manifest,
            "versions": matrix.meta.get("versions"),
        },
    )
    metrics = classification_metrics(y, predicted, matrix.labels, random_state=random_state)
    report.add_text(
        "Summary",
        f"Labels: {', '.join(matrix.labels)}. Evaluated on the {split!r} split "
        f"({len(X)} images). Backbone {matrix.backbone_id}; tree {matrix.tree_hash[:12]}; "
        f"tree generator: {matrix.meta.get('tree_generator', 'unknown')}.",
    )
    report.add_metrics("Summary", "metrics", metrics)

    comparison = method_comparison(bundle, matrix, split, random_state, baselines)
    report.add_table(
        "Method comparison",
        "methods",
        comparison,
        caption="All methods on the same split and the same cached image embeddings",
    )
    if baselines is None:
        report.add_text(
            "Method comparison",
            f"Not computed here (they need the backbone and the tree): {', '.join(NOT_COMPUTED)}.",
            note=True,
        )
    else:
        report.add_text(
            "Method comparison",
            "The controls use the same forest on concepts without visual meaning "
            "(random words; a tree whose values were shuffled across parts, attributes and labels): a "
            "forest that beats them is using what the concepts say.",
            note=True,
        )

    permutation = permutation_table(model, X, y, n_repeats=n_repeats, random_state=random_state)
    report.add_table(
        "Importance",
        "permutation_importance",
        permutation,
        caption=f"Permutation importance on the {split!r} split (accuracy drop; {n_repeats} repeats, "
        "95 % interval = 2.5-97.5th percentile of repeats)",
    )
    report.add_figure(
        "Importance",
        "permutation_importance",
        plots.importance_bars(
            permutation, "concept", "mean", error=("ci95_low", "ci95_high"), title="Permutation importance (top 15)"
        ),
    )
    gini = gini_table(model, matrix.concept_ids)
    report.add_table(
        "Importance",
        "gini_importance",
        gini,
        caption="Gini (MDI) importance: computed on the TRAINING data and biased towards features with "
        "many distinct values; read it beside permutation importance",
    )

    concepts = matrix.meta["concepts"]
    for level, caption in (("part", "parts"), ("part_attribute", "part attributes"), ("attribute", "attribute kinds")):
        table = group_permutation_table(
            model,
            X,
            y,
            concept_groups(concepts, level),  # type: ignore[arg-type]
            n_repeats=n_repeats,
            random_state=random_state,
        )
        report.add_table(
            "Roll-up",
            f"rollup_{level}",
            table,
            caption=f"Grouped permutation importance by {caption}: all concepts of a group permuted "
            "together (plain permutation understates correlated concepts)",
        )
        if level == "part":
            report.add_figure(
                "Roll-up",
                "rollup_part",
                plots.importance_bars(table, "group", "mean", error=("ci95_low", "ci95_high"), title="Parts"),
            )

    explanation = explain_shap(model, X.iloc[:shap_rows])
    per_class = explanation.mean_abs()
    tables = confusion_tables(y, predicted, matrix.labels)
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
    overlaps = []
    for pair in pairs.head(3).itertuples(index=False):
        a, b = str(pair.label_a), str(pair.label_b)
        overlap = top_concepts_overlap({c: per_class[c] for c in per_class.columns}, a, b, k=top_k)
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
            why_a_not_b(X, y, a, b, per_class[a], top=top_k),
            caption=f"Why {a} and not {b}: concepts whose mean score differs most, with their mean |SHAP| for {a}",
        )
    if overlaps:
        report.add_table(
            "Confusion",
            "top_concept_overlap",
            pd.DataFrame(overlaps),
            caption=f"Overlap of the top-{top_k} concepts (per-class mean |SHAP|) of confused pairs",
        )

    report.add_table(
        "Per label",
        "per_label_metrics",
        per_label_table(y, predicted, matrix.labels),
        caption="Precision, recall and F1 per label",
    )
    for label in matrix.labels:
        ranked = per_class[label].sort_values(ascending=False)
        table = pd.DataFrame(
            {
                "rank": ["top"] * min(top_k, len(ranked)) + ["bottom"] * min(top_k, len(ranked)),
                "concept": [*ranked.index[:top_k], *ranked.index[::-1][:top_k]],
                "mean_abs_shap": [*ranked.to_numpy()[:top_k], *ranked.to_numpy()[::-1][:top_k]],
            }
        )
        report.add_table(
            "Per label",
            f"label_{matrix.labels.index(label)}_concepts",
            table,
            caption=f"{label}: top and bottom {top_k} concepts by per-class mean |SHAP| on the {split!r} split",
        )

    for label in matrix.labels[:8]:
        report.add_figure(
            "Examples with SHAP",
            f"beeswarm_{matrix.labels.index(label)}",
            plots.class_beeswarm(explanation, label),
            caption=f"SHAP values for {label}",
        )
    proba = model.predict_proba(X.iloc[:shap_rows])
    classes = [str(c) for c in model.classes_]
    truth = [str(label) for label in y.iloc[:shap_rows]]
    wrong = [i for i in range(len(truth)) if predicted[i] != truth[i]]
    wrong.sort(key=lambda i: float(proba[i, classes.index(truth[i])]))
    for number, i in enumerate(wrong[:worst], 1):
        image_path = str(matrix.rows(split)["path"].iloc[i])
        report.add_figure(
            "Examples with SHAP",
            f"misclassified_{number}",
            plots.contribution_pair(explanation, i, str(truth[i]), str(predicted[i])),
            caption=f"{image_path}: true {truth[i]}, predicted {predicted[i]} "
            f"(p={proba[i, classes.index(str(predicted[i]))]:.2f})",
        )
    if not wrong:
        report.add_text("Examples with SHAP", "No misclassified images among the explained rows.", note=True)

    if tree is not None:
        weights = {str(r.concept): max(float(r.mean), 0.0) for r in permutation.itertuples(index=False)}
        rendered = render_tree(tree, out / "trees", formats=["svg"] if dot_available() else ["dot"], importance=weights)
        svgs = [p for p in rendered.written if p.suffix == ".svg"]
        if len(svgs) > MAX_EMBEDDED_TREES:
            report.add_text(
                "Trees",
                f"{len(svgs) - MAX_EMBEDDED_TREES} more tree pictures are in the trees/ folder "
                "beside this report (kept out of the page to keep it small).",
                note=True,
            )
        for path in svgs[:MAX_EMBEDDED_TREES]:
            report.add_figure(
                "Trees",
                f"tree_{path.stem}",
                path.read_bytes(),
                caption=f"{path.stem}, shaded by permutation importance",
            )
        for message in rendered.warnings:
            report.add_text("Trees", message, note=True)
    else:
        report.add_text("Trees", "No tree file was given, so no tree pictures were drawn.", note=True)

    if skipped is not None and not skipped.empty:
        report.add_table(
            "Skipped files", "skipped", skipped, caption=f"{len(skipped)} file(s) skipped during feature extraction"
        )
    else:
        report.add_text("Skipped files", "No file was skipped.", note=True)
    report.add_json("methods", comparison)
    report.add_json("permutation_importance", permutation.head(50))
    report.save(out)
    return report


def load_skipped(run_dir: str | Path) -> pd.DataFrame | None:
    path = Path(run_dir) / "skipped.csv"
    return pd.read_csv(path) if path.is_file() else None


def explain_run(
    model_dir: str | Path,
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    tree_path: str | Path | None = None,
    with_baselines: bool = True,
    cache_dir: str | Path | None = None,
    split: str = "test",
    random_state: int = 0,
    **options: Any,
) -> Report:
    """Load a bundle and a run folder, compute the baselines (given a tree), then :func:`explain_model`."""
    from conceptforest.explain.predict import backbone_for
    from conceptforest.models.baselines import baseline_predictions
    from conceptforest.models.bundle import load_bundle

    bundle = load_bundle(model_dir)
    matrix = FeatureMatrix.load(run_dir)
    tree = ConceptTree.load(tree_path) if tree_path else None
    baselines = None
    if tree is not None and with_baselines:
        baselines = baseline_predictions(
            matrix, tree, backbone_for(bundle), split=split, cache_dir=cache_dir, seed=random_state
        )
    return explain_model(
        bundle,
        matrix,
        out_dir,
        tree=tree,
        skipped=load_skipped(run_dir),
        baselines=baselines,
        split=split,
        random_state=random_state,
        **options,
    )
