"""Scores written as they come: one float32 product per chunk into ``features.parquet``, with the train rows'
moments for the standardisation (no second pass)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conceptforest.features.matrix import ID_COLUMNS, PARQUET_WRITE_OPTIONS
from conceptforest.features.meta import Standardization

__all__ = [
    "MAX_ROW_GROUP_ROWS",
    "ROW_GROUP_BYTES",
    "ScoreWriter",
    "TrainMoments",
    "concept_scores",
    "score_schema",
    "score_table",
]


@dataclass
class TrainMoments:
    """Running sums of the train rows' scores: standardisation statistics without a second pass."""

    sums: np.ndarray
    squares: np.ndarray
    rows: int = 0

    def add(self, scores: np.ndarray, is_train: np.ndarray) -> None:
        """Add the train rows of ``scores`` (rows, concepts); any memory layout, the same sums."""
        train = np.ascontiguousarray(scores[is_train])  # row order: the same float32 sums as a C-order block
        self.sums += train.sum(axis=0)
        self.squares += np.square(train, dtype=np.float64).sum(axis=0)
        self.rows += int(is_train.sum())

    def standardization(self) -> Standardization:
        mean = self.sums / max(self.rows, 1)
        std = np.sqrt(np.maximum(self.squares / max(self.rows, 1) - mean**2, 0.0))
        return Standardization(
            mean=mean.astype(np.float32).tolist(),
            std=np.where(std > 0, std, 1.0).astype(np.float32).tolist(),
            fitted_on="train",
            rows=self.rows,
        )


def concept_scores(vectors: np.ndarray, concept_matrix: np.ndarray) -> np.ndarray:
    """Cosine scores laid out by concept: ``(concepts, rows)`` float32, each concept's column contiguous.

    The values of ``(vectors @ concept_matrix.T).astype(np.float32)`` to float32 rounding (the BLAS kernel, chosen
    by CPU, fixes the summation order), made by one float32 product into a preallocated array whose rows Arrow
    takes as columns without a copy. The same inputs give the same bits on one machine.
    """
    out = np.empty((len(concept_matrix), len(vectors)), dtype=np.float32)
    if vectors.dtype == np.float32 and concept_matrix.dtype == np.float32:
        # an F-ordered (rows, concepts) target: numpy's product writes scores.T in place
        np.matmul(vectors, concept_matrix.T, out=out.T)
    else:  # another precision: computed in it, then rounded, as before
        out[...] = (vectors @ concept_matrix.T).T
    return out


def score_schema(concept_ids: Sequence[str]) -> pa.Schema:
    """The Parquet schema of ``features.parquet``: the string id columns, then one float32 column per concept."""
    return pa.schema(
        [*(pa.field(c, pa.string()) for c in ID_COLUMNS), *(pa.field(c, pa.float32()) for c in concept_ids)]
    )


def score_table(ids: dict[str, list[str]], by_concept: np.ndarray, schema: pa.Schema) -> pa.Table:
    """An Arrow table of the id columns and the scores of :func:`concept_scores` (no copy of the scores)."""
    arrays = [pa.array(ids[c], type=pa.string()) for c in ID_COLUMNS]
    rows = by_concept.shape[1]
    flat = pa.array(np.ascontiguousarray(by_concept, dtype=np.float32).reshape(-1))  # one buffer, sliced
    return pa.Table.from_arrays([*arrays, *(flat.slice(i * rows, rows) for i in range(len(by_concept)))], schema=schema)


# scores are buffered up to this size before a Parquet row group is written: few large groups write and read
# faster than one per chunk (5,000 concepts: ~6,700 rows a group); extraction reads the whole table back anyway
ROW_GROUP_BYTES = 128 * 2**20
MAX_ROW_GROUP_ROWS = 131_072  # a narrow table (few concepts) still flushes: its id strings count too


class ScoreWriter:
    """Scores chunks of image embeddings into ``features.parquet`` and keeps the train rows' moments.

    Use as a context manager; the file is complete once it exits without an error.
    """

    def __init__(self, path: Path, concept_ids: Sequence[str], *, row_group_bytes: int = ROW_GROUP_BYTES) -> None:
        self.schema = score_schema(concept_ids)
        self.moments = TrainMoments(np.zeros(len(concept_ids)), np.zeros(len(concept_ids)))
        self.row_group_bytes = row_group_bytes
        self._writer = pq.ParquetWriter(path, self.schema, **PARQUET_WRITE_OPTIONS)
        self._pending: list[pa.Table] = []
        self._pending_bytes = self._pending_rows = 0

    def write(self, ids: dict[str, list[str]], vectors: np.ndarray, concept_matrix: np.ndarray) -> None:
        """Score ``vectors`` (rows, dim) against ``concept_matrix`` (concepts, dim); ``ids`` holds ID_COLUMNS."""
        by_concept = concept_scores(vectors, concept_matrix)
        table = score_table(ids, by_concept, self.schema)
        self.moments.add(by_concept.T, np.array([split == "train" for split in ids["split"]], dtype=bool))
        self._pending.append(table)
        # Table.nbytes walks every buffer (slow for wide tables): the scores plus the id strings' lengths
        self._pending_bytes += by_concept.nbytes + sum(len(text) for column in ids.values() for text in column)
        self._pending_rows += len(ids["split"])
        if self._pending_bytes >= self.row_group_bytes or self._pending_rows >= MAX_ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered as one row group."""
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending))
            self._pending, self._pending_bytes, self._pending_rows = [], 0, 0

    def __enter__(self) -> ScoreWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self._writer.close()
