"""``conceptforest features extract``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import (
    CacheDirOption,
    CheckpointOption,
    ClipOption,
    ConfigOption,
    PretrainedOption,
    ProgressOption,
    echo,
    new_app,
    warn,
)
from conceptforest.concepts.tree import ConceptTree
from conceptforest.config import load_config
from conceptforest.features.backbone import RANDOM_WEIGHTS_WARNING
from conceptforest.features.dataset import load_dataset
from conceptforest.features.extract import SKIPPED_FILE, extract_features
from conceptforest.features.images import DEFAULT_MAX_PIXELS

app = new_app("Stage 2: score images against a concept tree's sentences with CLIP.")


@app.command()
def extract(
    images: Annotated[
        Path,
        typer.Option(
            metavar="DIR|MANIFEST",
            help="Folder of label sub-folders, or a CSV/Parquet manifest with path,label[,split].",
        ),
    ],
    tree: Annotated[Path, typer.Option(metavar="TREE", help="tree.json from 'concepts generate'.")],
    out: Annotated[
        Path,
        typer.Option(
            "-o", "--out", metavar="DIR", help="Run folder for features.parquet, concepts.json and skipped.csv."
        ),
    ] = Path("run"),
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: Annotated[str | None, typer.Option(help="cuda, mps or cpu (default: the best available).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 64,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, or int8 (CPU only: faster Linear layers, slightly "
            "different scores, recorded in the backbone id)."
        ),
    ] = "fp32",
    max_pixels: Annotated[int, typer.Option(min=1, help="Skip images with more pixels (decompression bombs).")] = (
        DEFAULT_MAX_PIXELS
    ),
    val_fraction: Annotated[float, typer.Option(help="Validation share when the data has no split column.")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Test share when the data has no split column.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed of the stratified split.")] = 0,
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Score every image against every concept sentence; cached by image content, resumable after a kill."""
    cfg = load_config(
        config,
        {"clip.model": clip, "clip.pretrained": pretrained, "clip.checkpoint": checkpoint, "cache_dir": cache_dir},
    )
    concept_tree = ConceptTree.load(tree)
    dataset = load_dataset(
        images, labels=concept_tree.labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    backbone = cfg.backbone(device=device, precision=precision)
    if backbone.random_weights:
        warn(RANDOM_WEIGHTS_WARNING)
    matrix, stats = extract_features(
        dataset,
        concept_tree,
        backbone,
        out,
        cache_dir=cfg.cache_dir,
        batch_size=batch_size,
        max_pixels=max_pixels,
        progress=progress,
    )
    echo(
        f"Wrote {out}/features.parquet: {stats.scored} images x {len(matrix.concept_ids)} concepts "
        f"(backbone {backbone.backbone_id})."
    )
    echo(
        f"Encoded {stats.encoded} new image(s), {stats.from_cache} from cache, {stats.images_per_second:.1f} images/s."
    )
    if stats.skipped:
        warn(f"skipped {len(stats.skipped)} file(s); see {out / SKIPPED_FILE} for the reasons.")
