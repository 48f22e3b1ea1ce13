"""Extraction on a Ray cluster: Ray Data actors encode the images into the shared embedding cache.

Each actor holds one backbone (loaded once from its :class:`BackboneSpec`, on a GPU when it is given one) and runs
the local extractor's own read -> hash -> cache check -> decode -> encode -> store step on its batches, so a file
skipped here is skipped for the same reason as locally. Shards are written atomically under unique names, so many
workers share one cache safely, and a rerun (or a retried batch) skips what is cached. The driver then runs
the local :func:`~conceptforest.features.extract.extract_features` over the same images: every embedding is found
in the cache, nothing is encoded again, and the :class:`FeatureMatrix`, the skipped-file list and the provenance
are those of the local backend by construction.

The cache must be reachable from every worker: a folder at the same path on every node (a shared file system), or
an object-store URI that pyarrow's file systems open (``--cache-dir s3://bucket/prefix``, ``gs://...``), passed to
the workers unchanged; each node finds its credentials in the usual environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``GOOGLE_APPLICATION_CREDENTIALS``) or its instance role. The
driver reads (and hashes) each file once more to assemble the matrix; it decodes only what the workers did not cache
(files they skipped, and anything missing, with a warning).
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conceptforest.cache import embedding_root, redact_uri
from conceptforest.concepts.tree import ConceptTree
from conceptforest.defaults import DEFAULT_MAX_PIXELS
from conceptforest.errors import BadInputError
from conceptforest.features.backbone import Backbone
from conceptforest.features.dataset import ImageDataset, ImageRecord
from conceptforest.features.extract import ExtractionStats, Extractor, extract_features
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.spec import BackboneSpec
from conceptforest.features.store import EmbeddingStore

__all__ = ["EmbedActor", "RaySettings", "embed_with_ray", "extract_features_ray"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAISED = re.compile(r"^[\w.]+(Error|Exception): \S")
RAY_HINT = "install the extra: pip install 'conceptforest[ray]'"


@dataclass(frozen=True)
class RaySettings:
    """Where the cluster is and how the work is spread."""

    address: str | None = None  # None: start a local instance; "auto": join the running cluster
    actors: int = 2  # concurrent actors, each with its own backbone
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch_size: int = 64  # images per Ray batch and per forward pass
    decode: str = "auto"  # the Extractor's: JPEGs as tensors (nvJPEG on a GPU actor), or "pillow"

    @property
    def device(self) -> str:
        """Where each actor runs its backbone: a GPU when it reserves one."""
        return "cuda" if self.gpus_per_actor > 0 else "cpu"

    # a batch whose actor died is retried on a restarted actor (Ray Data's default for actor pools)


class EmbedActor:
    """A Ray Data actor: one backbone, one view of the shared cache; encodes the images of each batch."""

    def __init__(
        self, spec: BackboneSpec, expected_id: str, cache_dir: str, settings: RaySettings, max_pixels: int
    ) -> None:
        self.backbone = spec.load(device=settings.device)  # open_clip's weights folder as the spec records it
        if self.backbone.backbone_id != expected_id:
            raise BadInputError(
                f"A Ray worker loaded backbone {self.backbone.backbone_id!r}, not the driver's {expected_id!r}.",
                hint="install the same conceptforest, open_clip and torch versions on every node.",
            )
        store = EmbeddingStore(cache_dir, self.backbone.backbone_id, "images")
        workers = max(1, int(settings.cpus_per_actor))
        self.extractor = Extractor(
            self.backbone,
            store,
            batch_size=settings.batch_size,
            max_pixels=max_pixels,
            workers=workers,
            decode=settings.decode,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [
            ImageRecord(Path(str(path)), str(label), str(split))
            for path, label, split in zip(batch["path"], batch["label"], batch["split"], strict=True)
        ]
        stats = ExtractionStats(images=len(records))
        kept, _ = self.extractor.embed_chunk(records, stats)
        found = {str(record.path): key for record, key in kept}
        reasons = {item.path: item.reason for item in stats.skipped}
        return {
            "path": np.asarray([str(r.path) for r in records], dtype=object),
            "sha256": np.asarray([found.get(str(r.path), "") for r in records], dtype=object),
            "reason": np.asarray([reasons.get(str(r.path), "") for r in records], dtype=object),
            # the batch's count of newly encoded images, on its first row (the others 0): summed by the driver
            "encoded": np.where(np.arange(len(records)) == 0, stats.encoded, 0).astype(np.int64),
        }


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise BadInputError("--backend ray needs Ray, which is not installed.", hint=RAY_HINT) from exc
    return ray


def _start(ray: Any, settings: RaySettings) -> bool:
    """Join or start Ray; True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    try:
        if settings.address:
            ray.init(address=settings.address, **quiet)
        else:
            ray.init(num_cpus=max(1, os.cpu_count() or 1), include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BadInputError(
            f"Could not reach the Ray cluster at {settings.address or 'a new local instance'}: {exc}.",
            hint="start the cluster ('ray start --head'), pass --ray-address auto on a cluster node, or leave "
            "--ray-address out to start Ray on this machine.",
        ) from exc
    return True


def embed_with_ray(
    records: Sequence[ImageRecord],
    backbone: Backbone,
    cache_dir: str | Path,
    settings: RaySettings | None = None,
    *,
    actor_class: type[EmbedActor] = EmbedActor,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> int:
    """Encode every record's image into the cache at ``cache_dir`` on Ray; returns how many were encoded.

    The precision is checked against the actors' device before Ray starts; an error inside the actors (a worker
    that cannot load the backbone) is a :class:`BadInputError` naming it.
    """
    import torch

    from conceptforest.features.backbone import check_precision

    settings = settings or RaySettings()
    check_precision(backbone.spec.precision, torch.device(settings.device))
    if backbone.spec.runtime != "torch":  # refused here, not in every actor after Ray has started
        from conceptforest.features.onnx_visual import check_runtime

        check_runtime(backbone.spec.runtime, torch.device(settings.device), backbone.spec.precision)
    ray = _ray()
    started = _start(ray, settings)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress  # Ray Data's own bars; its execution logs stay below ERROR
    context.print_on_execution_start = False
    for name in [n for n in logging.root.manager.loggerDict if n == "ray" or n.startswith("ray.")]:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        items = [{"path": str(r.path), "label": r.label, "split": r.split} for r in records]
        dataset = ray.data.from_items(items).map_batches(
            actor_class,
            fn_constructor_kwargs={
                "spec": backbone.spec,
                "expected_id": backbone.backbone_id,
                "cache_dir": str(cache_dir),
                "settings": settings,
                "max_pixels": max_pixels,
            },
            batch_size=settings.batch_size,
            compute=ray.data.ActorPoolStrategy(size=settings.actors),
            num_cpus=settings.cpus_per_actor,
            num_gpus=settings.gpus_per_actor,
            batch_format="numpy",
        )
        rows = dataset.take_all()
    except ray.exceptions.RayError as exc:
        raise BadInputError(
            f"The Ray extraction failed: {_first_line(exc)}",
            hint="check the workers' logs ('ray logs'); every node needs the images and the backbone's weights at "
            "the same paths, and the cache folder at the same path (or the cache URI's credentials).",
        ) from exc
    finally:
        if started:
            ray.shutdown()
    return int(sum(int(row["encoded"]) for row in rows))


def _first_line(exc: BaseException) -> str:
    """The worker's own error message: Ray wraps it in long, coloured reports of its own exceptions."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(texts) < 10:
        texts += [str(seen), *(str(arg) for arg in seen.args)]
        seen = seen.__cause__ or seen.__context__
    lines = [_ANSI.sub("", line).strip() for text in texts for line in text.splitlines()]
    raised = [line for line in lines if _RAISED.match(line) and not line.startswith("ray.")]
    found = raised[-1] if raised else next((line for line in lines if line), type(exc).__name__)
    return found[:400]


def extract_features_ray(
    dataset: ImageDataset,
    tree: ConceptTree,
    backbone: Backbone,
    out_dir: str | Path,
    *,
    settings: RaySettings | None = None,
    cache_dir: str | Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    actor_class: type[EmbedActor] = EmbedActor,
) -> tuple[FeatureMatrix, ExtractionStats]:
    """:func:`extract_features` with the encoding done on Ray: the same matrix, skipped list and provenance."""
    settings = settings or RaySettings()
    root = embedding_root(cache_dir)  # a URI goes to the workers unchanged
    started = time.perf_counter()
    encoded = embed_with_ray(
        dataset.records, backbone, root, settings, actor_class=actor_class, max_pixels=max_pixels, progress=progress
    )
    ray_seconds = time.perf_counter() - started
    matrix, stats = extract_features(
        dataset,
        tree,
        backbone,
        out_dir,
        cache_dir=root,
        batch_size=settings.batch_size,
        max_pixels=max_pixels,
        decode=settings.decode,
        progress=progress,
    )
    if stats.encoded:
        warnings.warn(
            f"the driver encoded {stats.encoded} image(s) the Ray workers should have cached in "
            f"{redact_uri(root)!r}: is that folder shared at the same path on every node (or that URI reachable "
            "from every node)?",
            RuntimeWarning,
            stacklevel=2,
        )
    stats.from_cache = max(stats.from_cache - encoded, 0)
    stats.encoded += encoded
    stats.seconds += ray_seconds  # images/s over the whole extraction, Ray's start-up included
    return matrix, stats
