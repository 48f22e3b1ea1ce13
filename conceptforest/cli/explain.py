"""``conceptforest explain``."""

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
    TopKOption,
    TreeOption,
    default_tree,
    echo,
    warn,
)
from conceptforest.errors import BadInputError

ModelArgument = Annotated[Path, typer.Argument(metavar="MODEL", help="Model folder from 'conceptforest train'.")]
RunArgument = Annotated[Path, typer.Argument(metavar="RUN", help="Run folder with features.parquet + concepts.json.")]
SplitOption = Annotated[str, typer.Option(metavar="train|val|test", help="Which split to evaluate on.")]


def explain(
    model_dir: ModelArgument,
    run_dir: RunArgument,
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Report folder.")] = Path("report"),
    tree: TreeOption = None,
    split: SplitOption = "test",
    repeats: Annotated[int, typer.Option(min=1, metavar="N", help="Permutation repeats.")] = 10,
    top_k: TopKOption = 10,
    seed: SeedOption = 0,
    baselines: Annotated[
        bool | None,
        typer.Option(
            "--baselines/--no-baselines",
            help="Also compute zero-shot CLIP, the linear probe and the controls (needs the tree, the model's "
            "backbone and the run's cached embeddings). Default: when they can be computed; --baselines makes a "
            "failure to load the backbone an error.",
            show_default=False,
        ),
    ] = None,
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """Write the report: metrics beside baselines, importance, roll-up, confusion, SHAP, trees, skipped files.

    The model's backbone is reloaded for the baselines from what its manifest records; --clip, --pretrained and
    --checkpoint override that record.
    """
    from conceptforest.explain.backbone_check import backbone_for
    from conceptforest.explain.build import explain_run
    from conceptforest.models.bundle import load_bundle

    tree_path = default_tree(tree, run_dir)
    backbone = None
    if baselines is not False and tree_path is not None:
        try:
            backbone = backbone_for(
                load_bundle(model_dir),
                clip=clip,
                pretrained=pretrained,
                checkpoint=checkpoint,
                device=device,
                cache_dir=cache_dir,
            )
        except BadInputError as exc:
            if baselines:
                raise
            warn(f"the baselines are not computed: {exc} (pass --baselines to make this an error).")
    elif baselines:
        raise BadInputError(
            f"--baselines needs the concept tree, and {run_dir / 'tree.json'} does not exist.", hint="pass --tree FILE."
        )
    report = explain_run(
        model_dir,
        run_dir,
        out,
        tree_path=tree_path,
        backbone=backbone,
        cache_dir=cache_dir,
        split=split,
        n_repeats=repeats,
        top_k=top_k,
        random_state=seed,
    )
    echo(
        f"Wrote {out}/index.html ({len(report.section_titles)} sections), report.md, report.json, tables/ and figures/."
    )
