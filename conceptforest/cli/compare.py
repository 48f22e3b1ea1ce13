"""``conceptforest compare``: every method, baseline and control on one split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import CacheDirOption, echo
from conceptforest.concepts.tree import ConceptTree
from conceptforest.explain.build import method_comparison
from conceptforest.explain.predict import backbone_for
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.models.baselines import baseline_predictions
from conceptforest.models.bundle import load_bundle


def compare(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL", help="Model folder from 'conceptforest train'.")],
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Folder with features.parquet + concepts.json.")],
    tree: Annotated[Path, typer.Option(metavar="TREE", help="The tree.json the features were made from.")],
    split: Annotated[str, typer.Option(help="Which split to score.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the controls and bootstraps.")] = 0,
    out: Annotated[Path | None, typer.Option("-o", "--out", metavar="CSV", help="Also write the table.")] = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """The forest beside zero-shot CLIP, descriptor averaging, logistic regression, the linear probe and the
    random-word and shuffled-tree controls, all on the same split and the same cached embeddings."""
    bundle = load_bundle(model_dir)
    matrix = FeatureMatrix.load(run_dir)
    bundle.check_matrix(matrix)
    baselines = baseline_predictions(
        matrix, ConceptTree.load(tree), backbone_for(bundle), split=split, cache_dir=cache_dir, seed=seed
    )
    table = method_comparison(bundle, matrix, split, seed, baselines)
    echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if matrix.meta.get("random_weights"):
        echo("(random backbone weights: these accuracies say nothing about real CLIP)")
    if out is not None:
        from conceptforest.atomic import atomic_write_text

        atomic_write_text(out, table.to_csv(index=False))
        echo(f"Wrote {out}.")
