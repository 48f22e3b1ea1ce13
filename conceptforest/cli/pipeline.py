"""``conceptforest run`` and ``conceptforest demo``: the whole pipeline in one command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conceptforest.cli._common import (
    BACKBONE_SETTINGS,
    TREE_SETTINGS,
    CacheDirOption,
    CheckpointOption,
    ClipOption,
    ConcurrencyOption,
    ConfigOption,
    DeviceOption,
    LLMBaseURLOption,
    LLMOption,
    LLMSentencesOption,
    MaxAttemptsOption,
    MaxAttributesOption,
    MaxPartsOption,
    MaxRepairsOption,
    MaxSideOption,
    MaxSubpartsOption,
    MaxTokensOption,
    MaxValuesOption,
    MllmBaseURLOption,
    MllmOption,
    PretrainedOption,
    ProgressOption,
    SeedOption,
    SentenceTemplateOption,
    TimeoutOption,
    WdysClassWeightOption,
    YesOption,
    echo,
    overrides,
    vision_client,
    warn,
    wdys_weight_setting,
)
from conceptforest.cli.concepts import confirm_plan, read_label_file, warn_tree_problems
from conceptforest.cli.explain import DescriptorsOption, MethodsOption
from conceptforest.cli.train import warn_copies
from conceptforest.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, SYNTHETIC_WORLD_WARNING, WORLD_CLIP
from conceptforest.errors import BadInputError

if TYPE_CHECKING:
    from conceptforest.features.backbone import Backbone
    from conceptforest.pipeline import RunResult


def _summary(result: RunResult, backbone: Backbone) -> None:
    echo(
        f"Tree: {result.out_dir / 'tree.json'} ({len(result.tree.concepts())} concepts, "
        f"{result.tree.provenance.generator})."
    )
    echo(
        f"Features: {result.stats.scored} images scored ({result.stats.encoded} encoded, "
        f"{result.stats.from_cache} from cache, {len(result.stats.skipped)} skipped)."
    )
    if "accuracy" in result.metrics:
        low, high = result.metrics["accuracy_ci95"]
        echo(
            f"Model: {result.model_dir}; test accuracy {result.metrics['accuracy']:.3f} "
            f"(95 % bootstrap {low:.3f}-{high:.3f})."
        )
    echo(f"Report: {result.report_path}")
    warn_copies(result.copies)
    warn_tree_problems(result.tree, shown=3, rest=" in the report's findings")
    if backbone.weights_warning:
        warn(backbone.weights_warning + " The report says so in a banner.")


def run(
    images: Annotated[
        Path, typer.Argument(metavar="IMAGES", help="Folder of label sub-folders, or a CSV/Parquet manifest.")
    ],
    domain: Annotated[
        str | None,
        typer.Option(metavar="TEXT", help="What the labels are kinds of, e.g. 'dog' (not needed with a tree)."),
    ] = None,
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Run folder.")] = Path("runs/run"),
    tree: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Use this concept tree (extended with labels it lacks; the file itself is never changed). "
            "Default: the run folder's tree.json when it exists, else a new tree from the LLM.",
        ),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Labels, one per line (default: the image folder names).")
    ] = None,
    llm: LLMOption = None,
    llm_base_url: LLMBaseURLOption = None,
    timeout: TimeoutOption = None,
    max_attempts: MaxAttemptsOption = None,
    max_repairs: MaxRepairsOption = None,
    max_tokens: MaxTokensOption = None,
    max_parts: MaxPartsOption = None,
    max_subparts: MaxSubpartsOption = None,
    max_attributes: MaxAttributesOption = None,
    max_values: MaxValuesOption = None,
    sentence_template: SentenceTemplateOption = None,
    llm_sentences: LLMSentencesOption = None,
    yes: YesOption = False,
    descriptors: DescriptorsOption = None,
    methods: MethodsOption = None,
    mllm: MllmOption = None,
    mllm_base_url: MllmBaseURLOption = None,
    concurrency: ConcurrencyOption = 4,
    max_side: MaxSideOption = 768,
    wdys_class_weight: WdysClassWeightOption = None,
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    n_estimators: Annotated[int, typer.Option(min=1, metavar="N", help="Trees in the forest.")] = 500,
    seed: SeedOption = 0,
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """The whole pipeline: concept tree (cached), features (cached), forest, report. A rerun reuses every cache.

    A tree is never overwritten: --tree FILE is used as it is, and a run folder's existing tree.json is reused
    (and extended with new labels), so hand edits survive a rerun.
    """
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.config import load_config
    from conceptforest.features.dataset import load_dataset
    from conceptforest.pipeline import run_pipeline

    settings = {**overrides(locals(), TREE_SETTINGS), **overrides(locals(), BACKBONE_SETTINGS), "seed": seed}
    cfg = load_config(config, settings)
    label_list = (
        read_label_file(labels, cfg.concepts.labels) or load_dataset(images, val_fraction=0, test_fraction=0).labels
    )
    existing = tree or (out / "tree.json" if (out / "tree.json").is_file() else None)
    base = ConceptTree.load(existing) if existing else None
    if base is not None:
        echo(f"Using the concept tree {existing} ({len(base.labels)} labels); it is never overwritten.")
    elif not cfg.concepts.domain:
        raise BadInputError("No domain was given.", hint="pass --domain, e.g. --domain dog, or --tree FILE.")
    missing = [label for label in label_list if base is None or label not in base.labels]
    client = cfg.llm_client() if missing else None
    confirm_plan(cfg, client, missing, yes=yes, base=base)
    backbone = cfg.backbone(device=device)
    result = run_pipeline(
        images,
        cfg.concepts.domain or (base.domain if base else ""),
        out,
        backbone=backbone,
        llm=client,
        labels=label_list,
        tree=base,
        limits=cfg.concepts.limits,
        cache_dir=cfg.cache_dir,
        n_estimators=n_estimators,
        seed=seed,
        method_names=methods or None,
        descriptors=[DescriptorSet.load(path) for path in descriptors or []],
        vision_llm=vision_client(locals(), cfg.cache_dir),
        wdys_class_weight=wdys_weight_setting(wdys_class_weight),
        config=cfg.public_dict(),
        progress=progress,
    )
    _summary(result, backbone)


def demo(
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Folder for the demo's outputs.")] = Path(
        "demo"
    ),
    offline: Annotated[
        bool,
        typer.Option(
            help=f"Use the packaged {WORLD_CLIP} backbone (a small CLIP trained on the synthetic world) instead of "
            f"downloading {DEFAULT_MODEL}/{DEFAULT_PRETRAINED}; every output says its numbers are toy-world ones."
        ),
    ] = False,
    per_label: Annotated[int, typer.Option(min=5, metavar="N", help="Images drawn per class.")] = 40,
    n_estimators: Annotated[int, typer.Option(min=1, metavar="N", help="Trees in the forest.")] = 200,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Run the whole pipeline on a synthetic world of 2D creatures whose truth is known, with no LLM.

    The images (30 invented classes of creatures, drawn with PIL, ground truth in images/ground_truth.jsonl) and
    the concept tree (the world's true tree) come from the world's specification; so do the DCLIP and CuPL
    descriptor sets (each class's true part values), so every method of the comparison runs. With --offline the
    backbone is the packaged toy-world CLIP, trained only on these drawings: the report's findings can be checked
    against the world's truth, and say nothing about photos.
    """
    from conceptforest.features.backbone import load_backbone
    from conceptforest.pipeline import run_pipeline
    from conceptforest.world import load_world, make_world_images
    from conceptforest.world.descriptors import true_descriptor_sets

    world = load_world()
    echo(f"Drawing {per_label} images of each of the world's {len(world.labels)} classes into {out / 'images'}.")
    make_world_images(out / "images", world, per_label=per_label)
    if offline:
        warn(f"--offline: using the packaged {WORLD_CLIP} backbone. {SYNTHETIC_WORLD_WARNING}")
        backbone = load_backbone(WORLD_CLIP)
    else:
        backbone = load_backbone(DEFAULT_MODEL, DEFAULT_PRETRAINED, cache_dir=cache_dir)
    result = run_pipeline(
        out / "images",
        world.domain,
        out,
        backbone=backbone,
        llm=None,
        tree=world.true_tree(),
        descriptors=true_descriptor_sets(world),  # from the specification (no LLM); saved beside the run
        cache_dir=cache_dir,
        n_estimators=n_estimators,
        n_repeats=5,
        progress=progress,
    )
    _summary(result, backbone)
