"""``conceptforest zeroshot``: classify images with no training (CLIP, prompt ensembles, descriptions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import (
    BACKBONE_SETTINGS,
    CacheDirOption,
    CheckpointOption,
    ClipOption,
    ConcurrencyOption,
    ConfigOption,
    DeviceOption,
    MaxAttemptsOption,
    MaxSideOption,
    MllmBaseURLOption,
    MllmOption,
    PretrainedOption,
    ProgressOption,
    SeedOption,
    TimeoutOption,
    WdysClassWeightOption,
    echo,
    overrides,
    vision_client,
    warn,
    wdys_weight_setting,
)
from conceptforest.cli.explain import DescriptorsOption

ZERO_SHOT_METHODS = ("clip", "ensemble", "dclip", "cupl", "waffle", "tree-descriptors", "mllm", "wdys")
REQUESTS_PER_IMAGE = {"mllm": 1, "wdys": 2}


def zeroshot(
    images: Annotated[
        Path,
        typer.Argument(
            metavar="IMAGES",
            help="Folder of label sub-folders, or a CSV/Parquet manifest with path,label: the labels to choose from.",
        ),
    ],
    method: Annotated[
        str,
        typer.Option(metavar="|".join(ZERO_SHOT_METHODS), help="The zero-shot method."),
    ] = "clip",
    descriptors: DescriptorsOption = None,
    tree: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="A concept tree (for tree-descriptors; default: the template tree)."),
    ] = None,
    domain: Annotated[str, typer.Option(metavar="TEXT", help="What the labels are kinds of (template tree).")] = (
        "object"
    ),
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Output folder.")] = Path("zeroshot"),
    mllm: MllmOption = None,
    mllm_base_url: MllmBaseURLOption = None,
    concurrency: ConcurrencyOption = 4,
    max_side: MaxSideOption = 768,
    wdys_class_weight: WdysClassWeightOption = None,
    timeout: TimeoutOption = None,
    max_attempts: MaxAttemptsOption = None,
    limit: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Evaluate a seeded sample of N images (cost control).")
    ] = None,
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    seed: SeedOption = 0,
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Classify every image with no training: writes predictions.csv (path, label, predicted, a score per label)
    and report/ (metrics, confusion matrix, per-label precision/recall/F1, per-image explanations: for DCLIP, the
    score of every descriptor of the top two labels).

    DCLIP and CuPL need --descriptors FILE from 'conceptforest concepts describe'; WaffleCLIP makes its own.
    mllm (direct classification by a vision LLM) and wdys ("What Do You See?" fusion) need --mllm MODEL; the
    number of requests is printed before the first is sent, and answers are cached per image.
    """
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.config import load_config
    from conceptforest.errors import BadInputError
    from conceptforest.pipeline import needs_backbone, run_zero_shot

    if method not in ZERO_SHOT_METHODS:
        raise BadInputError(
            f"Unknown zero-shot method {method!r}.", hint=f"choose one of {', '.join(ZERO_SHOT_METHODS)}."
        )
    cfg = load_config(config, {**overrides(locals(), BACKBONE_SETTINGS), "seed": seed})
    backbone = cfg.backbone(device=device) if needs_backbone(method) else None
    if backbone is None and (clip or pretrained or checkpoint):
        warn(f"{method} reads the images itself and uses no CLIP backbone: --clip/--pretrained/--checkpoint ignored.")
    client = vision_client(locals(), cfg.cache_dir)
    if method in REQUESTS_PER_IMAGE and client is not None:
        echo(
            f"Plan: up to {REQUESTS_PER_IMAGE[method]} vision-LLM request(s) per image"
            + (f", {limit} images" if limit else "")
            + "; cached answers are not requested again."
        )
    if backbone is not None and backbone.weights_warning:
        warn(backbone.weights_warning)
    done = run_zero_shot(
        images,
        method,
        out,
        backbone=backbone,
        descriptors=[DescriptorSet.load(path) for path in descriptors or []],
        tree=ConceptTree.load(tree) if tree else None,
        domain=domain,
        vision_llm=client,
        wdys_class_weight=wdys_weight_setting(wdys_class_weight),
        limit=limit,
        cache_dir=cfg.cache_dir,
        seed=seed,
        progress=progress,
    )
    echo(f"{done.result.display}: {len(done.result.predicted)} images, accuracy {done.accuracy:.3f}.")
    echo(f"Wrote {out / 'predictions.csv'} and {done.report_path}.")
