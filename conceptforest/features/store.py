"""The embedding cache: one folder per backbone id, holding atomic ``.npz`` shards of (sha256, vector) rows.

A shard is written in one atomic rename after each encoded batch, so a run killed at any moment keeps every
finished batch and never leaves a half-written shard that looks complete.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from conceptforest.atomic import atomic_write_bytes


def _safe_name(backbone_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", backbone_id)


def _read_shard(shard: Path) -> dict[str, np.ndarray] | None:
    """The rows of one shard, or None when it is truncated, corrupt or malformed (a cache miss)."""
    try:
        with np.load(shard, allow_pickle=False) as data:
            keys, vectors = data["keys"], data["vectors"]
        if keys.ndim != 1 or vectors.ndim != 2 or len(keys) != len(vectors):
            return None
        return dict(zip(keys.tolist(), vectors.astype(np.float32, copy=False), strict=True))
    except Exception:  # BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError: all mean unreadable
        return None


def _move_aside(shard: Path) -> Path:
    """Rename an unreadable shard to ``*.corrupt`` so that it is neither read again nor lost."""
    target = shard.with_name(shard.name + ".corrupt")
    with contextlib.suppress(OSError):  # a read-only cache still works: the shard is merely skipped
        os.replace(shard, target)
    return target


class EmbeddingStore:
    """Embeddings of one backbone, addressed by content hash (image bytes or sentence text).

    Parameters
    ----------
    root : path
        The cache folder (``$CONCEPTFOREST_HOME/cache`` by default).
    backbone_id : str
        Keeps embeddings of different models, weights or preprocessing apart.
    kind : {"images", "texts"}
    """

    def __init__(self, root: str | Path, backbone_id: str, kind: str) -> None:
        self.folder = Path(root) / "embeddings" / _safe_name(backbone_id) / kind
        self._vectors: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            corrupt: list[Path] = []
            for shard in sorted(self.folder.glob("shard-*.npz")):
                rows = _read_shard(shard)
                if rows is None:
                    corrupt.append(_move_aside(shard))
                else:
                    self._vectors.update(rows)
            if corrupt:
                warnings.warn(
                    f"{len(corrupt)} unreadable embedding shard(s) in {str(self.folder)!r} were moved aside "
                    f"(first: {corrupt[0].name}); their images are encoded again.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return self._vectors

    def __len__(self) -> int:
        return len(self._load())

    def get(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        vectors = self._load()
        return {key: vectors[key] for key in keys if key in vectors}

    def put(self, keys: list[str], vectors: np.ndarray) -> Path | None:
        """Write one shard atomically and remember its rows."""
        if not keys:
            return None
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.asarray(keys, dtype="U64"), vectors=np.asarray(vectors, dtype=np.float32))
        path = atomic_write_bytes(self.folder / f"shard-{uuid.uuid4().hex}.npz", buffer.getvalue())
        self._load().update(zip(keys, np.asarray(vectors, dtype=np.float32), strict=True))
        return path
