"""``conceptforest compare``: every method, baseline and control on one split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import (
    CacheDirOption,
    CheckpointOption,
    ClipOption,
    DeviceOption,
    PretrainedOption,
    SeedOption,
    TreeOption,
    default_tree,
    echo,
)
from conceptforest.cli.explain import ModelArgument, RunArgument, SplitOption
from conceptforest.errors import BadInputError


def compare(
    model_dir: ModelArgument,
    run_dir: RunArgument,
    tree: TreeOption = None,
    split: SplitOption = "test",
    seed: SeedOption = 0,
    out: Annotated[Path | None, typer.Option("-o", "--out", metavar="CSV", help="Also write the table.")] = None,
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """The forest beside zero-shot CLIP, descriptor averaging, logistic regression, the linear probe and the
    random-word and shuffled-tree controls, all on the same split and the same cached embeddings."""
    from conceptforest.atomic import atomic_write_text
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.explain.backbone_check import backbone_for
    from conceptforest.explain.build import method_comparison
    from conceptforest.features.matrix import FeatureMatrix
    from conceptforest.models.baselines import baseline_predictions
    from conceptforest.models.bundle import load_bundle

    tree_path = default_tree(tree, run_dir)
    if tree_path is None:
        raise BadInputError(
            f"compare needs the concept tree the features were made from, and {run_dir / 'tree.json'} does not exist.",
            hint="pass --tree FILE.",
        )
    bundle = load_bundle(model_dir)
    matrix = FeatureMatrix.load(run_dir)
    bundle.check_matrix(matrix)
    backbone = backbone_for(
        bundle, clip=clip, pretrained=pretrained, checkpoint=checkpoint, device=device, cache_dir=cache_dir
    )
    baselines = baseline_predictions(
        matrix, ConceptTree.load(tree_path), backbone, split=split, cache_dir=cache_dir, seed=seed
    )
    table = method_comparison(bundle, matrix, split, seed, baselines)
    echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if matrix.meta.get("random_weights"):
        echo("(random backbone weights: these accuracies say nothing about real CLIP)")
    if out is not None:
        atomic_write_text(out, table.to_csv(index=False))
        echo(f"Wrote {out}.")
