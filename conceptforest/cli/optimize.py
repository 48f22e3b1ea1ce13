"""``conceptforest concepts optimize``: descriptors optimised by an LLM with visual feedback from a few images.

The command is a plain function; the ``concepts`` app registers it like ``describe``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from conceptforest.cli._common import (
    BACKBONE_SETTINGS,
    TREE_SETTINGS,
    CacheDirOption,
    CheckpointOption,
    ClipOption,
    ConfigOption,
    DescriptorLLMOption,
    DeviceOption,
    LLMBaseURLOption,
    MaxAttemptsOption,
    MaxRepairsOption,
    MaxTokensOption,
    PretrainedOption,
    ProgressOption,
    TimeoutOption,
    echo,
    overrides,
    required_llm,
    warn,
)
from conceptforest.errors import BadInputError

if TYPE_CHECKING:
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.optimize_record import OptimizationRecord
    from conceptforest.config import RunConfig
    from conceptforest.features.backbone import Backbone
    from conceptforest.features.dataset import ImageDataset
    from conceptforest.features.matrix import FeatureMatrix

__all__ = ["SHORT_HELP", "optimize"]

SHORT_HELP = "Optimise label descriptors with an LLM and visual feedback from a few training images."


def _start(descriptors: Path | None, tree: Path | None) -> DescriptorSet | None:
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.tree import ConceptTree

    if descriptors is not None and tree is not None:
        raise BadInputError(
            "--descriptors and --tree both give a start set.", hint="pass one of them (or neither: the LLM starts)."
        )
    if descriptors is not None:
        return DescriptorSet.load(descriptors)
    if tree is None:
        return None
    loaded = ConceptTree.load(tree)
    covered = {label for concept in loaded.concepts() for label in concept.labels}
    bare = [label for label in loaded.labels if label not in covered]
    if bare:
        raise BadInputError(
            f"The tree {str(tree)!r} has no concept for the label(s) {', '.join(map(repr, bare))}.",
            hint="add values for them ('concepts generate --extend'), or start without --tree (the LLM starts).",
        )
    return DescriptorSet.from_tree(loaded)


def _dataset(images: Path, fractions: tuple[float, float], seed: int) -> tuple[ImageDataset, FeatureMatrix | None]:
    """The images with their splits: a run folder's own (its features.parquet), else a seeded split as
    'features extract' makes it."""
    from conceptforest.features.dataset import ImageDataset, ImageRecord, load_dataset
    from conceptforest.features.matrix import FEATURES_FILE, FeatureMatrix

    if images.is_dir() and (images / FEATURES_FILE).is_file():
        matrix = FeatureMatrix.load(images)
        frame = matrix.frame
        held_out = set(frame.loc[frame["split"] != "train", "sha256"])  # a train copy of a val/test image is left out
        records = [
            ImageRecord(Path(path), label, split)
            for path, label, split, key in zip(
                frame["path"], frame["label"], frame["split"], frame["sha256"], strict=True
            )
            if split != "train" or key not in held_out
        ]
        return ImageDataset(source=images, records=records, labels=list(matrix.labels)), matrix
    warn(
        f"{str(images)!r} is not a run folder: the train split is made here (seed {seed}); the optimised methods "
        "refuse the set on a run whose val/test images it used. Give the run folder of 'features extract' to use "
        "its split."
    )
    dataset = load_dataset(images, val_fraction=fractions[0], test_fraction=fractions[1], seed=seed)
    return dataset, None


def _backbone(cfg: RunConfig, matrix: FeatureMatrix | None, flags: bool, device: str | None) -> Backbone:
    """The run's own backbone when IMAGES is a run folder and no backbone flag is given, else the flags'."""
    if matrix is not None and not flags and matrix.meta.backbone is not None:
        return matrix.meta.backbone.load(device=device, cache_dir=cfg.cache_dir, strict_runtime=False)
    backbone = cfg.backbone(device=device)
    if matrix is not None and backbone.backbone_id != matrix.backbone_id:
        warn(
            f"the backbone {backbone.backbone_id!r} did not make this run's features ({matrix.backbone_id!r}); "
            "the optimised methods will refuse the set on this run."
        )
    return backbone


def optimize(
    images: Annotated[
        Path,
        typer.Argument(
            metavar="IMAGES",
            help="A run folder from 'features extract' (its split and backbone are used), a folder of label "
            "sub-folders, or a CSV/Parquet manifest with path,label[,split]. Only train-split images are read.",
        ),
    ],
    descriptors: Annotated[
        Path | None,
        typer.Option("--descriptors", metavar="FILE", help="Start from this descriptor set (e.g. DCLIP's)."),
    ] = None,
    tree: Annotated[
        Path | None, typer.Option("--tree", metavar="FILE", help="Start from this tree's concept sentences.")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out",
            metavar="FILE",
            help="Where to write the optimised set with its history; name it RUN/descriptors-optimized.json and "
            "'compare'/'explain' find it.",
        ),
    ] = Path("descriptors-optimized.json"),
    shots: Annotated[int, typer.Option(metavar="K", help="Training images per label (at most); 0 for all.")] = 16,
    iterations: Annotated[int, typer.Option(min=1, metavar="N", help="Optimisation iterations.")] = 10,
    candidates: Annotated[int, typer.Option(min=1, metavar="N", help="LLM candidates sampled per step.")] = 4,
    initial: Annotated[int, typer.Option(min=1, metavar="N", help="Descriptors per label at the start.")] = 30,
    replace: Annotated[int, typer.Option(min=1, metavar="N", help="Descriptors replaced per label and step.")] = 15,
    group_size: Annotated[int, typer.Option(min=1, metavar="N", help="Labels optimised together.")] = 10,
    temperature: Annotated[float, typer.Option(metavar="T", help="Sampling temperature (the authors: 1.0).")] = 1.0,
    budget_tokens: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="Stop before the next request once new requests used N tokens."),
    ] = None,
    llm: DescriptorLLMOption = None,
    llm_base_url: LLMBaseURLOption = None,
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    val_fraction: Annotated[
        float, typer.Option(metavar="F", help="Validation share when the data has no split column (as 'features').")
    ] = 0.15,
    test_fraction: Annotated[
        float, typer.Option(metavar="F", help="Test share when the data has no split column (as 'features').")
    ] = 0.15,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the split and of the image draw.")] = 0,
    llm_seed: Annotated[int, typer.Option(metavar="N", help="First LLM sampling seed (the authors: 42).")] = 42,
    logit_scale: Annotated[
        Literal["raw", "exp"],
        typer.Option(
            "--logit-scale",
            help="What multiplies CLIP's cosines in the confusions fed back: 'raw', the model's logit_scale "
            "parameter (4.605 for released CLIP), as the authors' code; 'exp', its exponential (100), which calls "
            "far fewer labels confused.",
        ),
    ] = "raw",
    timeout: TimeoutOption = None,
    max_attempts: MaxAttemptsOption = None,
    max_repairs: MaxRepairsOption = None,
    max_tokens: MaxTokensOption = None,
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Optimise each label's descriptors with an LLM and the confusions CLIP makes on a few training images
    (Han et al., 'LLMs as Visual Explainers'); write the best set seen and its full history.

    Only train-split images are read: give the run folder of 'features extract' as IMAGES to use its split
    and backbone (else the split is made as 'features extract' makes it, with the same --seed and fractions, for
    the same label order); validation and test images are never opened, and the set records the sha256 of every image it
    used. Every LLM answer is cached: a killed run resumes, and a rerun makes no request.
    """
    from conceptforest.concepts.optimize import OptimizeSettings, optimize_descriptors
    from conceptforest.config import load_config
    from conceptforest.features.fewshot import few_shot_images

    cfg = load_config(config, overrides(locals(), {**TREE_SETTINGS, **BACKBONE_SETTINGS}))
    settings = OptimizeSettings(
        iterations=iterations,
        candidates=candidates,
        initial=initial,
        replace=replace,
        group_size=group_size,
        temperature=temperature,
        seed=llm_seed,
        budget_tokens=budget_tokens,
    )
    settings.check()
    if temperature < 0:
        raise BadInputError(f"--temperature must not be negative (got {temperature:g}).", hint="use 0 or more.")
    if out.is_dir():
        raise BadInputError(
            f"-o {str(out)!r} is a folder.", hint="give a file name, e.g. RUN/descriptors-optimized.json."
        )
    start = _start(descriptors, tree)
    client = required_llm(cfg, "The optimisation rewrites descriptors with an LLM")
    dataset, matrix = _dataset(images, (val_fraction, test_fraction), seed)
    backbone = _backbone(cfg, matrix, any(x is not None for x in (clip, pretrained, checkpoint)), device)
    if backbone.weights_warning:
        warn(backbone.weights_warning)
    few, skipped = few_shot_images(
        dataset, backbone, shots=shots, seed=seed, cache_dir=cfg.cache_dir, logit_scale=logit_scale
    )
    for item in skipped[:5]:
        warn(f"skipped {item.path}: {item.reason}")
    echo(
        f"Optimising on {len(few.sha256)} training image(s) of {len(few.labels)} labels (no val/test image read); "
        f"confusions from logits = {few.logit_scale:.4g} x cosine ({logit_scale} logit_scale)."
    )
    result = optimize_descriptors(few, client, start=start, settings=settings, progress=progress)
    _summarize(result, result.save(out))


def _summarize(result: DescriptorSet, path: Path) -> None:
    record = result.optimization
    assert record is not None
    curve = ", ".join(f"{it.train_accuracy:.3f}" for it in record.iterations)
    start = f"start {record.start_accuracy:.3f}; " if record.start_accuracy is not None else ""
    echo(
        f"Wrote {path}: {len(result.labels)} labels, best train accuracy {record.best_accuracy:.3f} "
        f"(iteration {record.best_iteration})."
    )
    echo(f"Train accuracy per iteration: {start}{curve}.")
    usage = result.provenance.usage
    echo(
        f"LLM calls: {usage.calls} ({usage.cached_calls} from cache); tokens: {usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion."
    )
    _warn_failures(record)
    if record.stopped:
        warn(f"stopped early: {record.stopped}; the best set so far was written.")


def _warn_failures(record: OptimizationRecord) -> None:
    """Say what the LLM did not give: failed requests, groups that kept their set, labels left out of answers."""
    candidates = [c for iteration in record.iterations for c in iteration.candidates]
    failed = sum(1 for c in candidates if c.error)
    if failed:
        warn(f"{failed} of {len(candidates)} LLM requests failed; each cost only itself (see the record).")
    kept = [f"iteration {it.iteration}: {why}" for it in record.iterations for why in it.failed_groups]
    for line in kept[:3]:
        warn(f"{line}; that group kept its descriptors.")
    if len(kept) > 3:
        warn(f"{len(kept) - 3} more group(s) kept their descriptors after every request failed (see the record).")
    omitted = sorted({label for c in candidates for label in c.omitted})
    if omitted:
        shown = ", ".join(repr(label) for label in omitted[:8]) + (" ..." if len(omitted) > 8 else "")
        warn(f"answers left out {len(omitted)} label(s) ({shown}); each kept its descriptors in those answers.")
