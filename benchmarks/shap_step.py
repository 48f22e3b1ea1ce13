"""The report's SHAP step at scale: 1,000 rows x 1,000 concepts on a 300-tree concept forest.

Trains ``ConceptForestClassifier`` on made-up concept scores (``--train`` rows, some concepts carry the label),
then times, in this process:

- ``baseline``: exact Tree SHAP on every one of the ``--rows`` rows (``explain_shap``, the plain approach);
- ``report``: what ``explain_model`` runs: ``explain_report_shap`` (every row up to ``shap_rows``, else
  ``shap_rows`` rows taken in turn from each label), the per-class mean |SHAP|, and the beeswarm figures of up
  to eight labels.

Prints JSON, with the rows the report explained as it states them.

    python benchmarks/shap_step.py --rows 1000 --concepts 1000 --trees 300
"""

from __future__ import annotations

import argparse
import os
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from _common import emit, peak_rss_mb

from conceptforest.explain import plots
from conceptforest.explain.shap_values import REPORT_SHAP_ROWS, explain_report_shap, explain_shap
from conceptforest.models.forest import ConceptForestClassifier

matplotlib.use("Agg")


def made_up_scores(rng: np.random.Generator, n: int, concepts: int, labels: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Cosine-like scores (mean 0.2, sd 0.03); every label raises a tenth of the concepts a little."""
    y = rng.integers(0, labels, n)
    X = rng.normal(0.2, 0.03, (n, concepts)).astype(np.float32)
    informative = concepts // 10
    X[:, :informative] += 0.02 * (y[:, None] == (np.arange(informative) % labels)[None, :])
    names = [f"part:attribute=value {i}" for i in range(concepts)]
    return pd.DataFrame(X, columns=names), np.array([f"label {k}" for k in range(labels)])[y]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000, help="rows to explain (the report's split)")
    parser.add_argument("--train", type=int, default=1_000, help="rows the forest is trained on")
    parser.add_argument("--concepts", type=int, default=1_000)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--labels", type=int, default=5)
    parser.add_argument("--shap-rows", type=int, default=REPORT_SHAP_ROWS)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X_train, y_train = made_up_scores(rng, args.train, args.concepts, args.labels)
    X, y = made_up_scores(rng, args.rows, args.concepts, args.labels)
    model = ConceptForestClassifier(n_estimators=args.trees, n_jobs=-1).fit(X_train, y_train)
    leaves = [int(tree.tree_.n_leaves) for tree in model.forest_.estimators_]
    depths = [int(tree.tree_.max_depth) for tree in model.forest_.estimators_]
    explain_shap(model, X.iloc[:2])  # warm-up: shap's import and first call are not the step's cost
    load_before = os.getloadavg()[0]

    started = time.perf_counter()
    baseline = explain_shap(model, X)
    baseline_s = time.perf_counter() - started

    started = time.perf_counter()
    explanation, used = explain_report_shap(model, X, y, args.shap_rows)
    explanation.mean_abs()
    computed = time.perf_counter()
    for label in explanation.classes[:8]:
        plots.class_beeswarm(explanation, label)
        plt.close("all")
    figures = time.perf_counter()
    same = np.array_equal(baseline.values[: used.used], explanation.values)
    emit(
        {
            "benchmark": "shap_step",
            "rows": args.rows,
            "train_rows": args.train,
            "concepts": args.concepts,
            "trees": args.trees,
            "labels": args.labels,
            "mean_leaves_per_tree": round(float(np.mean(leaves)), 1),
            "mean_depth": round(float(np.mean(depths)), 1),
            "cpus": os.cpu_count(),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "baseline_all_rows_s": round(baseline_s, 2),
            "baseline_ms_per_row": round(1000 * baseline_s / args.rows, 2),
            "report_shap": used.to_json(),
            "report_shap_values_s": round(computed - started, 2),
            "report_figures_s": round(figures - computed, 2),
            "report_step_s": round(figures - started, 2),
            "report_values_equal_baseline_rows": bool(same),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    )


if __name__ == "__main__":
    main()
