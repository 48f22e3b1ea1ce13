"""Rescoring cached image embeddings against a new concept set (what a new or edited tree costs).

Writes 10,000 random unit vectors into an embedding cache in 64-row shards, then times, in this process:
loading them from disk, the one matrix product against 5,000 concept vectors, and writing the Parquet
matrix with the product's write options. Text encoding is excluded (see encode_text.py). Prints JSON.

    python benchmarks/rescore.py --images 10000 --concepts 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _common import emit, peak_rss_mb

from conceptforest.features.matrix import PARQUET_WRITE_OPTIONS
from conceptforest.features.store import EmbeddingStore


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--concepts", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    keys = [f"{i:064x}" for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        writer = EmbeddingStore(tmp, "bench", "images")
        for start in range(0, args.images, 64):
            writer.put(keys[start : start + 64], unit_rows(rng, len(keys[start : start + 64]), args.dim))
        concepts = unit_rows(rng, args.concepts, args.dim)
        started = time.perf_counter()
        vectors = EmbeddingStore(tmp, "bench", "images").get(keys)
        images = np.stack([vectors[k] for k in keys])
        loaded = time.perf_counter()
        scores = images @ concepts.T
        multiplied = time.perf_counter()
        ids = {
            "path": [f"img{i}.jpg" for i in range(args.images)],
            "label": ["a"] * args.images,
            "split": ["train"] * args.images,
        }
        table = pa.table({**ids, **{f"c{i}": scores[:, i] for i in range(args.concepts)}})
        pq.write_table(table, Path(tmp) / "features.parquet", **PARQUET_WRITE_OPTIONS)
        written = time.perf_counter()
    emit(
        {
            "benchmark": "rescore",
            "images": args.images,
            "concepts": args.concepts,
            "dim": args.dim,
            "load_cached_s": round(loaded - started, 3),
            "matmul_s": round(multiplied - loaded, 3),
            "write_parquet_s": round(written - multiplied, 3),
            "total_s": round(written - started, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    )


if __name__ == "__main__":
    main()
