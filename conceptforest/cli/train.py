"""``conceptforest train``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conceptforest.cli._common import SeedOption, echo, warn

if TYPE_CHECKING:
    from conceptforest.explain.copies import Copies


def train(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Folder with features.parquet + concepts.json.")],
    out: Annotated[
        Path, typer.Option("-o", "--out", metavar="DIR", help="Model folder (model.skops + manifest.json).")
    ] = Path("model"),
    n_estimators: Annotated[int, typer.Option(min=1, metavar="N", help="Trees in the forest.")] = 500,
    class_weight: Annotated[
        str | None, typer.Option(metavar="balanced|balanced_subsample", help="Reweight rare labels.")
    ] = None,
    search: Annotated[
        bool, typer.Option(help="Grid-search max_depth and min_samples_leaf with stratified CV.")
    ] = False,
    cv: Annotated[int, typer.Option(min=2, metavar="N", help="Folds for --search.")] = 5,
    seed: SeedOption = 0,
    n_jobs: Annotated[int | None, typer.Option(metavar="N", help="Parallel jobs (-1: all cores).")] = None,
) -> None:
    """Fit the concept forest on the training rows and report its held-out metrics."""
    from conceptforest.explain.copies import find_copies
    from conceptforest.features.matrix import FeatureMatrix
    from conceptforest.models.train import train_model

    matrix = FeatureMatrix.load(run_dir)
    if matrix.weights_warning:
        warn(matrix.weights_warning)
    grid = {"max_depth": [None, 8, 16], "min_samples_leaf": [1, 3]} if search else None
    bundle = train_model(
        matrix,
        out,
        n_estimators=n_estimators,
        class_weight=class_weight,
        param_grid=grid,
        cv=cv,
        random_state=seed,
        n_jobs=n_jobs,
    )
    metrics = bundle.metrics
    echo(f"Wrote {out}/model.skops and manifest.json.")
    if "accuracy" in metrics:
        low, high = metrics["accuracy_ci95"]
        echo(
            f"{metrics['eval_split']} accuracy {metrics['accuracy']:.3f} (95 % bootstrap {low:.3f}-{high:.3f}), "
            f"balanced accuracy {metrics['balanced_accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}, "
            f"n={metrics['n']}."
        )
    else:
        warn(f"no {metrics['eval_split']} rows: the model was not evaluated.")
    warn_copies(find_copies(matrix.frame, str(metrics["eval_split"])))


def warn_copies(copies: Copies) -> None:
    """Say in the terminal what the report's Data quality section shows: copies that flatter the accuracy."""
    from conceptforest.explain.copies import copy_warnings

    for finding in copy_warnings(copies):
        warn(finding.sentence)
