"""``conceptforest run`` and ``conceptforest demo``: the whole pipeline in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import (
    CacheDirOption,
    CheckpointOption,
    ClipOption,
    ConfigOption,
    LLMBaseURLOption,
    LLMOption,
    PretrainedOption,
    ProgressOption,
    echo,
    read_text_file,
    warn,
)
from conceptforest.cli.concepts import LABELS_HINT
from conceptforest.concepts.generate import read_labels
from conceptforest.concepts.template import template_tree
from conceptforest.config import load_config
from conceptforest.features.backbone import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    RANDOM_WEIGHTS_WARNING,
    TINY_RANDOM,
    Backbone,
    load_backbone,
)
from conceptforest.features.synthetic import SHAPES, make_shape_images
from conceptforest.pipeline import RunResult, run_pipeline

DEMO_DOMAIN = "toy shape"


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
    if backbone.random_weights:
        warn(RANDOM_WEIGHTS_WARNING + " The report says so in a banner.")


def run(
    images: Annotated[Path, typer.Option(metavar="DIR|MANIFEST", help="Folder of label sub-folders or a manifest.")],
    domain: Annotated[str, typer.Option(help="What the labels are kinds of, e.g. 'dog'.")],
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Run folder.")] = Path("runs/run"),
    labels: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Labels, one per line (default: the image folder names).")
    ] = None,
    llm: LLMOption = None,
    llm_base_url: LLMBaseURLOption = None,
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: Annotated[str | None, typer.Option(help="cuda, mps or cpu.")] = None,
    n_estimators: Annotated[int, typer.Option(min=1, help="Trees in the forest.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the split, the forest and the explanations.")] = 0,
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """The whole pipeline: concept tree (cached), features (cached), forest, report. A rerun reuses every cache."""
    cfg = load_config(
        config,
        {
            "llm.model": llm,
            "llm.base_url": llm_base_url,
            "clip.model": clip,
            "clip.pretrained": pretrained,
            "clip.checkpoint": checkpoint,
            "cache_dir": cache_dir,
            "concepts.domain": domain,
            "seed": seed,
        },
    )
    label_list = read_labels(read_text_file(labels, "labels file", LABELS_HINT)) if labels else cfg.concepts.labels
    backbone = cfg.backbone(device=device)
    result = run_pipeline(
        images,
        domain,
        out,
        backbone=backbone,
        llm=cfg.llm_client(),
        labels=label_list,
        limits=cfg.concepts.limits,
        cache_dir=cfg.cache_dir,
        n_estimators=n_estimators,
        seed=seed,
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
            help=f"Use the untrained {TINY_RANDOM} backbone instead of downloading "
            f"{DEFAULT_MODEL}/{DEFAULT_PRETRAINED}; every output says so."
        ),
    ] = False,
    per_label: Annotated[int, typer.Option(min=5, help="Images made per label.")] = 60,
    n_estimators: Annotated[int, typer.Option(min=1, help="Trees in the forest.")] = 200,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Run the whole pipeline on made-up images of five coloured shapes, with no LLM and no network (--offline).

    The concept tree is the LLM-free template tree; the images are drawn with PIL.
    """
    images = make_shape_images(out / "images", per_label=per_label)
    if offline:
        warn(f"--offline: using the untrained {TINY_RANDOM} backbone. {RANDOM_WEIGHTS_WARNING}")
        backbone = load_backbone(TINY_RANDOM)
    else:
        backbone = load_backbone(DEFAULT_MODEL, DEFAULT_PRETRAINED, cache_dir=cache_dir)
    tree = template_tree(DEMO_DOMAIN, list(SHAPES))
    result = run_pipeline(
        images,
        DEMO_DOMAIN,
        out,
        backbone=backbone,
        llm=None,
        tree=tree,
        cache_dir=cache_dir,
        n_estimators=n_estimators,
        n_repeats=5,
        progress=progress,
    )
    _summary(result, backbone)
