"""``conceptforest compare``: every registered method, baseline and control on one split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import (
    CacheDirOption,
    CheckpointOption,
    ClipOption,
    ConcurrencyOption,
    DeviceOption,
    MaxAttemptsOption,
    MaxSideOption,
    MllmBaseURLOption,
    MllmOption,
    PretrainedOption,
    SeedOption,
    TimeoutOption,
    TreeOption,
    WdysClassWeightOption,
    default_descriptors,
    default_tree,
    echo,
    vision_client,
    wdys_weight_setting,
)
from conceptforest.cli.explain import DescriptorsOption, MethodsOption, ModelArgument, RunArgument, SplitOption

SHOWN_COLUMNS = [
    "method",
    "accuracy",
    "ci95_low",
    "ci95_high",
    "accuracy_seed_mean",
    "accuracy_std",
    "balanced_accuracy",
    "macro_f1",
    "mcnemar_p_vs_forest",
    "seconds_per_image",
]


def compare(
    model_dir: ModelArgument,
    run_dir: RunArgument,
    tree: TreeOption = None,
    descriptors: DescriptorsOption = None,
    methods: MethodsOption = None,
    split: SplitOption = "test",
    seed: SeedOption = 0,
    out: Annotated[Path | None, typer.Option("-o", "--out", metavar="CSV", help="Also write the table.")] = None,
    mllm: MllmOption = None,
    mllm_base_url: MllmBaseURLOption = None,
    concurrency: ConcurrencyOption = 4,
    max_side: MaxSideOption = 768,
    wdys_class_weight: WdysClassWeightOption = None,
    timeout: TimeoutOption = None,
    max_attempts: MaxAttemptsOption = None,
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """Every registered method whose needs are met, on one split and the same cached embeddings: the concept
    forest and its linear heads, CLIP zero-shot and prompt ensembles, DCLIP, CuPL, WaffleCLIP, the linear probe,
    the controls and chance. Methods that cannot run are listed with what they need."""
    from conceptforest.atomic import atomic_write_text
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.explain.backbone_check import backbone_for
    from conceptforest.features.matrix import FeatureMatrix
    from conceptforest.features.tree_binding import load_tree_of_features
    from conceptforest.models.bundle import load_bundle
    from conceptforest.models.methods import run_methods
    from conceptforest.models.methods.context import method_inputs
    from conceptforest.models.methods.table import comparison_table
    from conceptforest.safe_csv import csv_text

    bundle = load_bundle(model_dir)
    matrix = FeatureMatrix.load(run_dir)
    bundle.check_matrix(matrix)
    tree_path = default_tree(tree, run_dir)
    backbone = backbone_for(
        bundle, clip=clip, pretrained=pretrained, checkpoint=checkpoint, device=device, cache_dir=cache_dir
    )
    inputs = method_inputs(
        matrix,
        split=split,
        seed=seed,
        bundle=bundle,
        tree=load_tree_of_features(tree_path, matrix, run_dir),
        descriptors=[DescriptorSet.load(path) for path in default_descriptors(descriptors, run_dir)],
        backbone=backbone,
        cache_dir=cache_dir,
        vision_llm=vision_client(locals(), cache_dir),
        wdys_class_weight=wdys_weight_setting(wdys_class_weight),
    )
    outcomes = run_methods(inputs, methods or None)
    table = comparison_table(outcomes, matrix.y(split).tolist(), matrix.labels, seed=seed)
    computed = table[table["status"].str.startswith("computed")]
    echo(computed[SHOWN_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for row in table[~table["status"].str.startswith("computed")].itertuples(index=False):
        echo(f"{row.method}: {row.status}")
    if matrix.random_weights:
        echo("(random backbone weights: these accuracies say nothing about real CLIP)")
    elif matrix.synthetic_world:
        echo("(toy-world CLIP: accuracies on the synthetic creature world, not on photos)")
    if out is not None:
        atomic_write_text(out, csv_text(table))  # spreadsheet-safe, as every CSV the tool writes
        echo(f"Wrote {out}.")
