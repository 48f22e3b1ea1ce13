"""``conceptforest explain``."""

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
    TopKOption,
    TreeOption,
    WdysClassWeightOption,
    default_descriptors,
    default_tree,
    echo,
    vision_client,
    warn,
    wdys_weight_setting,
)
from conceptforest.errors import BadInputError

ModelArgument = Annotated[Path, typer.Argument(metavar="MODEL", help="Model folder from 'conceptforest train'.")]
RunArgument = Annotated[Path, typer.Argument(metavar="RUN", help="Run folder with features.parquet + concepts.json.")]


def _split_name(value: str) -> str:
    """Refuse an unknown split before anything is loaded."""
    if value not in ("train", "val", "test"):
        raise typer.BadParameter(f"{value!r} is not a split; use train, val or test.")
    return value


SplitOption = Annotated[
    str, typer.Option(metavar="train|val|test", help="Which split to evaluate on.", callback=_split_name)
]
DescriptorsOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--descriptors",
        metavar="FILE",
        help="A descriptor set from 'concepts describe' or 'concepts optimize' (repeatable, one per style) for "
        "DCLIP, CuPL and the optimised methods. "
        "Default: the run folder's descriptors-*.json.",
    ),
]
METHOD_NAMES = (
    "forest, logreg, sparse, clip, ensemble, dclip, cupl, waffle, optimized, tree-descriptors, mllm, wdys, probe, "
    "random-words, shuffled-tree, forest-descriptors, forest-optimized, chance"
)
MethodsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--methods",
        metavar="NAME",
        help=f"Run only these registered methods (repeatable): {METHOD_NAMES}. Default: all.",
    ),
]


def warn_stale_reports(model_dir: Path, run_dir: Path, out: Path, model_sha256: str | None) -> None:
    """Say when the report beside the model (the run's ``report/``) describes another model: it is stale (the
    model was trained again after it). A report in ``out`` is replaced anyway, so it is not mentioned."""
    from conceptforest.explain.report import recorded_model_sha256

    seen = {out.resolve()}
    for folder in (run_dir / "report", model_dir.parent / "report"):
        recorded = None if folder.resolve() in seen else recorded_model_sha256(folder)
        seen.add(folder.resolve())
        if recorded is not None and model_sha256 is not None and recorded != model_sha256:
            warn(
                f"the report in {str(folder)!r} describes another model (sha256 {recorded[:12]}…) than "
                f"{str(model_dir)!r} ({model_sha256[:12]}…): it is stale. 'conceptforest explain {model_dir} "
                f"{run_dir} -o {folder}' writes it again."
            )


def explain(
    model_dir: ModelArgument,
    run_dir: RunArgument,
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Report folder.")] = Path("report"),
    tree: TreeOption = None,
    descriptors: DescriptorsOption = None,
    methods: MethodsOption = None,
    split: SplitOption = "test",
    repeats: Annotated[int, typer.Option(min=1, metavar="N", help="Permutation repeats.")] = 10,
    top_k: TopKOption = 10,
    seed: SeedOption = 0,
    baselines: Annotated[
        bool | None,
        typer.Option(
            "--baselines/--no-baselines",
            help="Also run the methods that need the model's backbone and the run's cached embeddings "
            "(zero-shot CLIP, descriptions, the linear probe, the controls). Default: when the backbone loads; "
            "--baselines makes a failure to load it an error.",
            show_default=False,
        ),
    ] = None,
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
    """Write the report: every method side by side, importance with grounding, roll-up, confusion, SHAP, trees,
    skipped files.

    The model's backbone is reloaded for the other methods from what its manifest records; --clip, --pretrained
    and --checkpoint override that record.
    """
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.explain.backbone_check import backbone_for
    from conceptforest.explain.build import explain_run
    from conceptforest.folder_lock import folder_lock
    from conceptforest.models.bundle import load_bundle

    tree_path = default_tree(tree, run_dir)
    bundle = load_bundle(model_dir)
    backbone = None
    if baselines is not False:
        try:
            backbone = backbone_for(
                bundle,
                clip=clip,
                pretrained=pretrained,
                checkpoint=checkpoint,
                device=device,
                cache_dir=cache_dir,
            )
        except BadInputError as exc:
            if baselines:
                raise
            warn(f"the methods that need the backbone are not computed: {exc} (--baselines makes this an error).")
    warn_stale_reports(model_dir, run_dir, out, bundle.manifest.model_sha256)
    with folder_lock(out):  # one writer per report folder: a second explain into it is refused
        report = explain_run(
            model_dir,
            run_dir,
            out,
            tree_path=tree_path,
            bundle=bundle,
            backbone=backbone,
            descriptors=[DescriptorSet.load(path) for path in default_descriptors(descriptors, run_dir)],
            method_names=methods or None,
            vision_llm=vision_client(locals(), cache_dir),
            wdys_class_weight=wdys_weight_setting(wdys_class_weight),
            cache_dir=cache_dir,
            split=split,
            n_repeats=repeats,
            top_k=top_k,
            random_state=seed,
        )
    echo(
        f"Wrote {out}/index.html ({len(report.section_titles)} sections), report.md, report.json, tables/ and figures/."
    )
