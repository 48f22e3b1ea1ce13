"""Rescoring cached image embeddings against a new concept set (what a new or edited tree costs).

Writes 10,000 random unit vectors into an embedding cache in 64-row shards, then times, in this process and
alternating ``--repeats`` times (medians reported, wall and CPU seconds):

- ``current``: what ``features extract`` runs on cached embeddings: loading them, ``ScoreWriter`` (one float32
  product per chunk into a concept-major array, an Arrow table made from its rows without a copy, row groups of
  ``ROW_GROUP_BYTES``, ``PARQUET_WRITE_OPTIONS``), and ``FeatureMatrix``'s table write (``write_frame``);
- ``baseline``: the previous implementation on the same data: the product then ``astype``, a table from the
  product's strided columns, one row group per 2,048-row chunk, snappy, and ``pa.Table.from_pandas`` to save.

Text encoding is excluded (see encode_text.py). The machine is shared, so the load average is reported. Prints JSON.

    python benchmarks/rescore.py --images 10000 --concepts 5000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from _common import emit, peak_rss_mb

from conceptforest.features.matrix import ID_COLUMNS, write_frame
from conceptforest.features.scores import ScoreWriter
from conceptforest.features.store import EmbeddingStore

CHUNK = 2048  # extract_features' default chunk_size
BASELINE_OPTIONS: dict[str, Any] = {"use_dictionary": ["label", "split"]}  # the previous write options (snappy)


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def chunk_ids(start: int, stop: int) -> dict[str, list[str]]:
    return {
        "path": [f"img{i}.jpg" for i in range(start, stop)],
        "label": ["a"] * (stop - start),
        "split": ["train" if i % 5 else "test" for i in range(start, stop)],
        "sha256": [f"{i:064x}" for i in range(start, stop)],
    }


def load(cache: str, keys: list[str]) -> np.ndarray:
    vectors = EmbeddingStore(cache, "bench", "images").get(keys)
    return np.stack([vectors[k] for k in keys])


def baseline_scores(cache: str, keys: list[str], concepts: np.ndarray, path: Path) -> None:
    """The previous rescoring: product, astype, strided columns, a row group per chunk, snappy."""
    images = load(cache, keys)
    names = [f"c{i}" for i in range(len(concepts))]
    schema = pa.schema([*(pa.field(c, pa.string()) for c in ID_COLUMNS), *(pa.field(c, pa.float32()) for c in names)])
    with pq.ParquetWriter(path, schema, **BASELINE_OPTIONS) as writer:
        for start in range(0, len(keys), CHUNK):
            stop = min(start + CHUNK, len(keys))
            scores = (images[start:stop] @ concepts.T).astype(np.float32)
            columns: dict[str, Any] = {**chunk_ids(start, stop), **{c: scores[:, i] for i, c in enumerate(names)}}
            writer.write_table(pa.table(columns, schema=schema))
            is_train = np.array([s == "train" for s in columns["split"]])
            scores[is_train].sum(axis=0), np.square(scores[is_train].astype(np.float64)).sum(axis=0)


def current_scores(cache: str, keys: list[str], concepts: np.ndarray, path: Path) -> None:
    """What extract_features does with cached embeddings (chunked load, ScoreWriter)."""
    store = EmbeddingStore(cache, "bench", "images")
    with ScoreWriter(path, [f"c{i}" for i in range(len(concepts))]) as writer:
        for start in range(0, len(keys), CHUNK):
            stop = min(start + CHUNK, len(keys))
            known = store.get(keys[start:stop])
            writer.write(chunk_ids(start, stop), np.stack([known[k] for k in keys[start:stop]]), concepts)


def baseline_save(frame: pd.DataFrame, path: Path) -> None:
    """The previous FeatureMatrix.save table write: pandas' per-column conversion, snappy."""
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, **BASELINE_OPTIONS)


def timed(run: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(cache: str, keys: list[str], concepts: np.ndarray, out: Path, repeats: int) -> dict[str, Any]:
    runs: dict[str, list[tuple[float, float]]] = {}
    frame = pd.read_parquet(out / "seed.parquet")
    for _ in range(repeats):
        runs.setdefault("baseline_rescore", []).append(
            timed(lambda: baseline_scores(cache, keys, concepts, out / "old.parquet"))
        )
        runs.setdefault("current_rescore", []).append(
            timed(lambda: current_scores(cache, keys, concepts, out / "new.parquet"))
        )
        runs.setdefault("baseline_save", []).append(timed(lambda: baseline_save(frame, out / "o.parquet")))
        runs.setdefault("current_save", []).append(timed(lambda: write_frame(frame, out / "n.parquet")))
    same = pd.read_parquet(out / "old.parquet").equals(pd.read_parquet(out / "new.parquet"))
    saved = pq.read_table(out / "o.parquet").equals(pq.read_table(out / "n.parquet"), check_metadata=True)
    result: dict[str, Any] = {"identical_tables": bool(same), "identical_saved_tables": bool(saved)}
    for name, pairs in runs.items():
        result[f"{name}_s"] = round(statistics.median(w for w, _ in pairs), 3)
        result[f"{name}_cpu_s"] = round(statistics.median(c for _, c in pairs), 3)
    for name in ("old", "new"):
        meta = pq.ParquetFile(out / f"{name}.parquet").metadata
        result[f"{name}_file_mb"] = round((out / f"{name}.parquet").stat().st_size / 2**20, 1)
        result[f"{name}_row_groups"] = meta.num_row_groups
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--concepts", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    keys = [f"{i:064x}" for i in range(args.images)]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        writer = EmbeddingStore(tmp, "bench", "images")
        for start in range(0, args.images, 64):
            writer.put(keys[start : start + 64], unit_rows(rng, len(keys[start : start + 64]), args.dim))
        concepts = unit_rows(rng, args.concepts, args.dim)
        current_scores(tmp, keys, concepts, Path(tmp) / "seed.parquet")  # warm-up, and the frame that is saved
        result = measure(tmp, keys, concepts, Path(tmp), args.repeats)
    emit(
        {
            "benchmark": "rescore",
            "images": args.images,
            "concepts": args.concepts,
            "dim": args.dim,
            "repeats": args.repeats,
            "cpus": os.cpu_count(),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            **result,
            "speed_up_rescore": round(result["baseline_rescore_s"] / result["current_rescore_s"], 2),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    )


if __name__ == "__main__":
    main()
