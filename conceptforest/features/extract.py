"""Stage 2: images and a concept tree become a FeatureMatrix, streamed in chunks through an embedding cache."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from conceptforest._version import library_versions
from conceptforest.atomic import atomic_write_text
from conceptforest.cache import embedding_root, file_sha256
from conceptforest.concepts.tree import Concept, ConceptTree
from conceptforest.defaults import (  # re-exported: the stage modules have always offered these names
    SKIPPED_FILE as SKIPPED_FILE,
)
from conceptforest.errors import BadInputError
from conceptforest.features.backbone import Backbone
from conceptforest.features.dataset import ImageDataset, ImageRecord, check_labels_match
from conceptforest.features.devices import probe_gpu_batch_size
from conceptforest.features.images import DEFAULT_MAX_PIXELS, ImageDecodeError, SkippedImage, read_image_file
from conceptforest.features.matrix import (
    FEATURES_FILE,
    FeatureMatrix,
    temp_table_path,
)
from conceptforest.features.meta import FeatureMeta
from conceptforest.features.scores import ScoreWriter, TrainMoments
from conceptforest.features.store import EmbeddingStore
from conceptforest.features.tensor_decode import (
    GPU_DECODER,
    TensorPreparer,
    pillow_preparer,
    stack_inputs,
    standard_preprocess,
)
from conceptforest.folder_lock import folder_lock, remove_stale_temp_files
from conceptforest.safe_csv import csv_text


@dataclass
class ExtractionStats:
    """What an extraction did: counts, the skipped files, time."""

    images: int = 0
    scored: int = 0
    encoded: int = 0
    from_cache: int = 0
    skipped: list[SkippedImage] = field(default_factory=list)
    seconds: float = 0.0
    decoder: str = "pillow"  # what prepared the images: pillow, torchvision (CPU) or nvjpeg (GPU)

    @property
    def images_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sentence_embeddings(sentences: Sequence[str], backbone: Backbone, store: EmbeddingStore) -> np.ndarray:
    """One L2-normalised embedding per sentence, encoded once per backbone and cached by the text's sha256."""
    keys = [text_sha256(s) for s in sentences]
    cached = store.get(keys)
    missing = sorted({k: s for k, s in zip(keys, sentences, strict=True) if k not in cached}.items())
    if missing:
        vectors = backbone.encode_texts([s for _, s in missing])
        store.put([k for k, _ in missing], vectors)
        cached.update(zip([k for k, _ in missing], vectors, strict=True))
    if not keys:
        return np.zeros((0, backbone.embed_dim), dtype=np.float32)
    return np.stack([cached[k] for k in keys]).astype(np.float32)


def concept_embeddings(tree: ConceptTree, backbone: Backbone, store: EmbeddingStore) -> np.ndarray:
    """The embeddings of the tree's concept sentences, in ``tree.concepts()`` order."""
    return sentence_embeddings([c.sentence for c in tree.concepts()], backbone, store)


def _read(path: Path, max_pixels: int) -> tuple[bytes | None, str | None]:
    """The file's bytes, or None and the reason: a regular file under the byte cap of ``max_pixels`` only
    (:func:`~conceptforest.features.images.read_image_file`); a FIFO or device is not waited on."""
    try:
        return read_image_file(path, max_pixels), None
    except ImageDecodeError as exc:
        return None, str(exc)
    except Exception as exc:  # one file that cannot be read skips that file, never the run
        return None, f"cannot read the file: {type(exc).__name__}: {exc}"


def _chunks(items: Sequence[ImageRecord], size: int) -> Iterator[Sequence[ImageRecord]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


DECODERS = ("auto", "pillow")


class Extractor:
    """Holds the backbone, the cache and the thread pool for one extraction.

    ``decode="auto"`` prepares JPEGs as tensors (torchvision's decoder on the CPU, nvJPEG batched on CUDA; see
    :mod:`~conceptforest.features.tensor_decode`) when the backbone uses open_clip's standard preprocessing;
    ``"pillow"`` always runs open_clip's own Pillow path. :attr:`decoder` names what runs.
    """

    def __init__(
        self,
        backbone: Backbone,
        store: EmbeddingStore,
        *,
        batch_size: int,
        max_pixels: int,
        workers: int,
        decode: str = "auto",
    ) -> None:
        if decode not in DECODERS:
            raise BadInputError(f"Unknown decoder {decode!r}.", hint=f"use one of {list(DECODERS)}.")
        self.backbone = backbone
        self.store = store
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers))
        self._pillow = pillow_preparer(backbone.preprocess, max_pixels)
        standard = standard_preprocess(backbone.preprocess) if decode == "auto" else None
        self._tensors = None if standard is None else TensorPreparer(standard, self._pillow, max_pixels)
        on_gpu = self._tensors is not None and backbone.device.type == "cuda"
        self.decoder = "pillow" if self._tensors is None else (GPU_DECODER if on_gpu else "torchvision")

    def _prepare(self, data: bytes) -> torch.Tensor | str:
        """The preprocessed image, or the reason it is skipped: one bad image never ends the run."""
        return self._pillow(data) if self._tensors is None else self._tensors.prepare(data)

    def _prepared(self, todo: dict[str, bytes]) -> Iterator[tuple[str, torch.Tensor | str]]:
        """(key, model input or skip reason) in ``todo`` order; CPU decoding runs ahead in the pool while the
        model encodes the batch before it, GPU decoding takes one batch per call."""
        if self.decoder == GPU_DECODER and self._tensors is not None:
            items = list(todo.items())
            for start in range(0, len(items), self.batch_size):
                part = items[start : start + self.batch_size]
                prepared = self._tensors.prepare_batch([data for _, data in part], self.backbone.device)
                yield from zip([key for key, _ in part], prepared, strict=True)
            return
        futures = [(key, self.pool.submit(self._prepare, data)) for key, data in todo.items()]
        for key, future in futures:
            yield key, future.result()

    def _read_chunk(self, chunk: Sequence[ImageRecord]) -> dict[Path, tuple[bytes | None, str | None]]:
        """Each distinct path of the chunk read once, in the pool: its bytes, or None and the reason."""
        paths = list(dict.fromkeys(record.path for record in chunk))  # rows repeating a path share one read
        results = self.pool.map(lambda path: _read(path, self.max_pixels), paths)
        return dict(zip(paths, results, strict=True))

    def embed_chunk(
        self, chunk: Sequence[ImageRecord], stats: ExtractionStats
    ) -> tuple[list[tuple[ImageRecord, str]], np.ndarray]:
        """(record, content sha256) and embedding of the chunk's usable images, in record order."""
        read = self._read_chunk(chunk)
        usable = {path: data for path, (data, _) in read.items() if data}
        hashed = {path: hashlib.sha256(data).hexdigest() for path, data in usable.items()}
        keys: list[str | None] = []
        for record in chunk:
            data, problem = read[record.path]
            if not data:
                reason = "empty file (0 bytes)" if data is not None else problem or "unreadable"
                stats.skipped.append(SkippedImage(str(record.path), reason))
            keys.append(hashed.get(record.path))
        known = self.store.get(k for k in keys if k is not None)
        todo: dict[str, bytes] = {}
        for path, digest in hashed.items():
            if digest not in known:
                todo.setdefault(digest, usable[path])
        del read, usable  # the bytes of cached images go now, before decoding
        bad: dict[str, str] = {}
        batch: list[tuple[str, torch.Tensor]] = []
        for position, (digest, prepared) in enumerate(self._prepared(todo)):
            if isinstance(prepared, str):
                bad[digest] = prepared
            else:
                batch.append((digest, prepared))
            if batch and (len(batch) == self.batch_size or position == len(todo) - 1):
                vectors = self.backbone.encode_images(stack_inputs([t for _, t in batch], self.backbone.device))
                self.store.put([k for k, _ in batch], vectors)
                known.update(zip([k for k, _ in batch], vectors, strict=True))
                stats.encoded += len(batch)
                batch = []
        kept: list[tuple[ImageRecord, str]] = []
        rows: list[np.ndarray] = []
        for record, key in zip(chunk, keys, strict=True):
            if key is None:
                continue
            if key in bad:
                stats.skipped.append(SkippedImage(str(record.path), bad[key]))
                continue
            if key not in todo:
                stats.from_cache += 1
            kept.append((record, key))
            rows.append(known[key])
        dim = self.backbone.embed_dim
        return kept, (np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32))

    def close(self) -> None:
        self.pool.shutdown()


def default_batch_size(backbone: Backbone) -> int:
    """64 images per pass on CPU; on CUDA what fits in the free GPU memory (probed with two small passes)."""
    size = getattr(backbone.model.visual, "image_size", 224)
    height, width = (size, size) if isinstance(size, int) else size

    def encode(n: int) -> object:
        return backbone.encode_images(torch.zeros(n, 3, int(height), int(width)))

    return probe_gpu_batch_size(encode, backbone.device)


def write_skipped(path: Path, skipped: Sequence[SkippedImage]) -> Path:
    """``skipped.csv`` (path, reason), neutralised like every CSV the tool writes (file names are untrusted)."""
    table = pd.DataFrame([(s.path, s.reason) for s in skipped], columns=["path", "reason"], dtype=object)
    return atomic_write_text(path, csv_text(table))


def _write_scores(
    records: Sequence[ImageRecord],
    extractor: Extractor,
    concepts: Sequence[Concept],
    concept_matrix: np.ndarray,
    path: Path,
    stats: ExtractionStats,
    *,
    chunk_size: int,
    progress: bool,
) -> TrainMoments:
    """Stream the records chunk by chunk through the cache and the model into the Parquet file ``path``."""
    with (
        tqdm(total=len(records), desc="features", unit="img", disable=not progress) as bar,
        ScoreWriter(path, [c.id for c in concepts]) as writer,
    ):
        for chunk in _chunks(records, chunk_size):
            kept, vectors = extractor.embed_chunk(chunk, stats)
            ids = {
                "path": [str(r.path) for r, _ in kept],
                "label": [r.label for r, _ in kept],
                "split": [r.split for r, _ in kept],
                "sha256": [key for _, key in kept],
            }
            writer.write(ids, vectors, concept_matrix)
            stats.scored += len(kept)
            bar.update(len(chunk))
            bar.set_postfix(skipped=len(stats.skipped), cached=stats.from_cache)
    return writer.moments


def _sidecar_meta(
    dataset: ImageDataset, tree: ConceptTree, backbone: Backbone, stats: ExtractionStats, moments: TrainMoments
) -> FeatureMeta:
    """What ``concepts.json`` records: concepts, labels, backbone, tree, counts, standardisation, versions."""
    return FeatureMeta(
        labels=dataset.labels,
        concepts=tree.concepts(),
        backbone_id=backbone.backbone_id,
        backbone=backbone.spec,
        random_weights=backbone.random_weights,
        warning=backbone.weights_warning,
        tree_hash=tree.tree_hash(),
        tree_generator=tree.provenance.generator,
        split_seed=dataset.split_seed,
        source=str(dataset.source),
        n_images=stats.images,
        n_scored=stats.scored,
        n_skipped=len(stats.skipped),
        standardization=moments.standardization(),
        image_decoder=stats.decoder,
        versions=library_versions(),
    )


def extract_features(
    dataset: ImageDataset,
    tree: ConceptTree,
    backbone: Backbone,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int | None = None,
    chunk_size: int = 2048,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    decode: str = "auto",
    progress: bool = True,
) -> tuple[FeatureMatrix, ExtractionStats]:
    """Score every image of ``dataset`` against every concept of ``tree`` and write the FeatureMatrix.

    Writes ``features.parquet``, ``skipped.csv`` and then ``concepts.json`` (bound to the table by its sha256)
    into ``out_dir``; the sidecar records the sha256 of the bytes this extraction wrote. ``out_dir`` is locked
    while it is written (another process writing it is refused: ``BadInputError``), and temporary tables left
    there by killed extractions are removed. Images are hashed by content; embeddings already in the cache are
    never recomputed, so a killed run resumes and a new tree re-encodes no image. Images are decoded and encoded in
    chunks of ``chunk_size`` and scores written in row groups of at most ``ROW_GROUP_BYTES``; the finished table
    is then read back once to return the FeatureMatrix (its size: images x concepts x 4 bytes).
    ``batch_size=None`` sizes batches to the GPU's free memory (64 elsewhere); ``decode`` is the
    :class:`Extractor`'s (``"auto"``: JPEGs as tensors, on the GPU when the backbone is on CUDA).
    """
    check_labels_match(dataset, tree)
    with folder_lock(out_dir) as out:  # one writer per run folder; a second extraction is refused
        remove_stale_temp_files(out, FEATURES_FILE)
        return _extract_into(
            out,
            dataset,
            tree,
            backbone,
            cache_dir=cache_dir,
            batch_size=batch_size,
            chunk_size=chunk_size,
            max_pixels=max_pixels,
            workers=workers,
            decode=decode,
            progress=progress,
        )


def _extract_into(
    out: Path,
    dataset: ImageDataset,
    tree: ConceptTree,
    backbone: Backbone,
    *,
    cache_dir: str | Path | None,
    batch_size: int | None,
    chunk_size: int,
    max_pixels: int,
    workers: int | None,
    decode: str,
    progress: bool,
) -> tuple[FeatureMatrix, ExtractionStats]:
    """:func:`extract_features` once ``out`` is held."""
    root = embedding_root(cache_dir)
    concepts = tree.concepts()
    concept_matrix = concept_embeddings(tree, backbone, EmbeddingStore(root, backbone.backbone_id, "texts"))
    # paths refused while listing (dangling links, FIFOs, devices) are counted and listed with the rest
    stats = ExtractionStats(images=len(dataset.records) + len(dataset.skipped), skipped=list(dataset.skipped))
    extractor = Extractor(
        backbone,
        EmbeddingStore(root, backbone.backbone_id, "images"),
        batch_size=batch_size or default_batch_size(backbone),
        max_pixels=max_pixels,
        workers=workers or min(4, os.cpu_count() or 1),
        decode=decode,
    )
    stats.decoder = extractor.decoder
    tmp_path = temp_table_path(out)
    started = time.perf_counter()
    try:
        moments = _write_scores(
            dataset.records,
            extractor,
            concepts,
            concept_matrix,
            tmp_path,
            stats,
            chunk_size=chunk_size,
            progress=progress,
        )
        # hashed and read back from our own file, before the rename: the sidecar vouches for the bytes written
        written, frame = file_sha256(tmp_path), pd.read_parquet(tmp_path)
        os.replace(tmp_path, out / FEATURES_FILE)
    finally:
        extractor.close()
        tmp_path.unlink(missing_ok=True)
    stats.seconds = time.perf_counter() - started
    write_skipped(out / SKIPPED_FILE, stats.skipped)
    matrix = FeatureMatrix(frame=frame, meta=_sidecar_meta(dataset, tree, backbone, stats, moments))
    matrix.save_sidecar(out, features_sha256=written)  # last: bound to the table it describes
    return matrix, stats
