"""``conceptforest features extract``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conceptforest.cli._common import (
    BACKBONE_SETTINGS,
    CacheDirOption,
    CheckpointOption,
    ClipOption,
    ConfigOption,
    DeviceOption,
    PlainHelpCommand,
    PretrainedOption,
    ProgressOption,
    echo,
    new_app,
    overrides,
    warn,
)
from conceptforest.defaults import DEFAULT_MAX_PIXELS, PRECISIONS, SKIPPED_FILE
from conceptforest.errors import BadInputError

if TYPE_CHECKING:
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.features.backbone import Backbone
    from conceptforest.features.dataset import ImageDataset
    from conceptforest.features.extract import ExtractionStats
    from conceptforest.features.matrix import FeatureMatrix

app = new_app("Stage 2: score images against a concept tree's sentences with CLIP.")


@dataclass(frozen=True)
class RayFlags:
    address: str | None
    actors: int
    cpus_per_actor: float
    gpus_per_actor: float


def _extract(  # the local backend, or Ray when ``ray`` is given
    dataset: ImageDataset,
    tree: ConceptTree,
    backbone: Backbone,
    out: Path,
    cache_dir: str | Path | None,
    batch_size: int | None,
    max_pixels: int,
    progress: bool,
    ray: RayFlags | None,
    decode: str = "auto",
) -> tuple[FeatureMatrix, ExtractionStats]:
    if ray is None:
        from conceptforest.features.extract import extract_features

        return extract_features(
            dataset,
            tree,
            backbone,
            out,
            cache_dir=cache_dir,
            batch_size=batch_size,
            max_pixels=max_pixels,
            decode=decode,
            progress=progress,
        )
    from conceptforest.features.ray_backend import RaySettings, extract_features_ray

    settings = RaySettings(
        ray.address, ray.actors, ray.cpus_per_actor, ray.gpus_per_actor, batch_size or 64, decode=decode
    )
    return extract_features_ray(
        dataset, tree, backbone, out, settings=settings, cache_dir=cache_dir, max_pixels=max_pixels, progress=progress
    )


@app.command(cls=PlainHelpCommand, short_help="Score every image against every concept sentence (cached).")
def extract(
    images: Annotated[
        Path,
        typer.Argument(
            metavar="IMAGES",
            help="Folder of label sub-folders, or a CSV/Parquet manifest with path,label[,split].",
        ),
    ],
    tree: Annotated[Path, typer.Argument(metavar="TREE", help="tree.json from 'concepts generate'.")],
    out: Annotated[
        Path,
        typer.Option(
            "-o", "--out", metavar="DIR", help="Run folder for features.parquet, concepts.json and skipped.csv."
        ),
    ] = Path("run"),
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Images per forward pass. Default: 64 on CPU; on CUDA the largest power of two (up to 1024) that "
            "fits in 60% of the free GPU memory, measured with two small passes. With --backend ray: 64 unless given.",
        ),
    ] = None,
    decode: Annotated[
        str,
        typer.Option(
            metavar="auto|pillow",
            help="auto: JPEGs decoded and resized as tensors (torchvision's decoder on CPU worker threads, "
            "decoding about twice as fast as Pillow; embeddings at cosine 0.9999996 or more to Pillow's, measured on "
            "ViT-B-32; one batched nvJPEG call per batch when --device is CUDA); other formats through Pillow. "
            "pillow: open_clip's own Pillow path for every file.",
        ),
    ] = "auto",
    precision: Annotated[
        str,
        typer.Option(
            metavar="|".join(PRECISIONS),
            help="fp32; int8 (CPU only: faster Linear layers); fp16 (CUDA/MPS autocast) or bf16 (CUDA or CPU "
            "autocast). All but fp32 give slightly different scores and are recorded in the backbone id.",
        ),
    ] = "fp32",
    runtime: Annotated[
        str,
        typer.Option(
            metavar="torch|onnxruntime",
            help="What runs the image tower: torch, or onnxruntime (needs conceptforest[onnx]; CPU and fp32 only; "
            "exported to ONNX once and cached). The same scores (cosine >= 0.9999 to torch, checked on every "
            "load), the same backbone id and a shared embedding cache; measured about 1.2x the images/s of torch "
            "(ViT-B-32, 2 CPU cores, benchmarks/onnx_runtime.py).",
        ),
    ] = "torch",
    max_pixels: Annotated[
        int, typer.Option(min=1, metavar="N", help="Skip images with more pixels (decompression bombs).")
    ] = DEFAULT_MAX_PIXELS,
    val_fraction: Annotated[
        float, typer.Option(metavar="F", help="Validation share when the data has no split column.")
    ] = 0.15,
    test_fraction: Annotated[
        float, typer.Option(metavar="F", help="Test share when the data has no split column.")
    ] = 0.15,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the stratified split.")] = 0,
    backend: Annotated[
        str,
        typer.Option(
            metavar="local|ray",
            help="local (this process), or ray: encode on a Ray cluster (needs conceptforest[ray]; the cache "
            "must be a folder or object-store URI every worker reaches).",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(metavar="ADDRESS", help="Ray cluster to join ('auto' on a cluster node); default: start one."),
    ] = None,
    ray_actors: Annotated[int, typer.Option(min=1, metavar="N", help="Ray actors, each with one backbone.")] = 2,
    ray_cpus_per_actor: Annotated[float, typer.Option(min=0.0, metavar="F", help="CPUs per Ray actor.")] = 1.0,
    ray_gpus_per_actor: Annotated[float, typer.Option(min=0.0, metavar="F", help="GPUs per Ray actor.")] = 0.0,
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Score every image against every concept sentence; cached by image content, resumable after a kill.

    Unreadable files (corrupt, truncated, too large, not images) are skipped and listed in skipped.csv.
    """
    from conceptforest.cache import embedding_root
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.config import load_config
    from conceptforest.features.dataset import load_dataset

    if backend not in ("local", "ray"):
        raise BadInputError(f"Unknown --backend {backend!r}.", hint="use --backend local or --backend ray.")
    if decode not in ("auto", "pillow"):
        raise BadInputError(f"Unknown --decode {decode!r}.", hint="use --decode auto or --decode pillow.")
    cfg = load_config(config, overrides(locals(), BACKBONE_SETTINGS))
    embedding_root(cfg.cache_dir)  # a cache URI pyarrow cannot open is refused before anything loads
    concept_tree = ConceptTree.load(tree)
    dataset = load_dataset(
        images, labels=concept_tree.labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    backbone = cfg.backbone(device=device, precision=precision, runtime=runtime)
    if backbone.weights_warning:
        warn(backbone.weights_warning)
    ray = RayFlags(ray_address, ray_actors, ray_cpus_per_actor, ray_gpus_per_actor) if backend == "ray" else None
    matrix, stats = _extract(
        dataset, concept_tree, backbone, out, cfg.cache_dir, batch_size, max_pixels, progress, ray, decode
    )
    echo(
        f"Wrote {out}/features.parquet: {stats.scored} images x {len(matrix.concept_ids)} concepts "
        f"(backbone {backbone.backbone_id})."
    )
    echo(
        f"Encoded {stats.encoded} new image(s), {stats.from_cache} from cache, {stats.images_per_second:.1f} images/s "
        f"(decoder: {stats.decoder})."
    )
    if stats.skipped:
        warn(f"skipped {len(stats.skipped)} file(s); see {out / SKIPPED_FILE} for the reasons.")
