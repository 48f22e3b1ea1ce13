"""The embedding cache: one folder per backbone id, holding atomic ``.npz`` shards of (sha256, vector) rows.

The cache lives in a local (or shared) folder, or at a URI that pyarrow's file systems open (``s3://bucket/prefix``,
``gs://...``, ``hdfs://...``; ``file://`` is a local folder). A shard appears whole or not at all after each encoded
batch: locally through a temporary file and an atomic rename, on an object store through one PUT. So a run killed
at any moment keeps every finished batch and never leaves a half-written shard that looks complete, and many
workers share one cache safely (every shard has a unique name).
"""

from __future__ import annotations

import io
import os
import re
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path, PurePath, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from conceptforest.atomic import atomic_write_bytes
from conceptforest.cache import URI_HINT, is_uri, open_uri, redact_uri
from conceptforest.errors import BadInputError

_SHARD = re.compile(r"^shard-.*\.npz$")
_ATOMIC_PUT = {"s3", "gcs", "abfs"}  # object stores: an object is visible only once its upload is complete


def safe_name(backbone_id: str) -> str:
    """A backbone id as a file or folder name (what the caches key their folders by)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", backbone_id)


def _rows(data: bytes) -> dict[str, np.ndarray] | None:
    """The rows of one shard, or None when it is truncated, corrupt or malformed (a cache miss)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
            keys, vectors = loaded["keys"], loaded["vectors"]
        if keys.ndim != 1 or vectors.ndim != 2 or len(keys) != len(vectors):
            return None
        return dict(zip(keys.tolist(), vectors.astype(np.float32, copy=False), strict=True))
    except Exception:  # BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError: all mean unreadable
        return None


class _LocalFolder:
    """Shards in a folder of this machine (or a shared file system mounted at the same path everywhere)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.location = str(folder)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("shard-*.npz"))

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def write(self, name: str, data: bytes) -> Path:
        return atomic_write_bytes(self.folder / name, data)

    def move_aside(self, name: str) -> bool:
        try:
            os.replace(self.folder / name, self.folder / f"{name}.corrupt")
        except OSError:  # a read-only cache still works: the shard is merely skipped
            return False
        return True


class _ArrowFolder:
    """Shards under a URI, through a pyarrow file system (``fs``) and the path inside it (``folder``)."""

    def __init__(self, fs: Any, folder: PurePosixPath, location: str) -> None:
        self.fs, self.folder, self.location = fs, folder, location

    def names(self) -> list[str]:
        from pyarrow import fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(str(self.folder), allow_not_found=True))
        except OSError as exc:  # no such bucket, no access, no network
            raise self._failed("list", exc) from None  # the raw error may quote the URI with its credentials
        return sorted(
            info.base_name for info in infos if info.type == pafs.FileType.File and _SHARD.match(info.base_name)
        )

    def read(self, name: str) -> bytes:
        with self.fs.open_input_stream(str(self.folder / name)) as stream:
            return bytes(stream.readall())

    def write(self, name: str, data: bytes) -> str:
        target = str(self.folder / name)
        try:
            if self.fs.type_name in _ATOMIC_PUT:
                # One object PUT (or multipart upload) is atomic: a reader sees the whole shard or none of it.
                with self.fs.open_output_stream(target) as stream:
                    stream.write(data)
            else:  # a file system (HDFS...) shows a file while it is written: write a hidden name, then rename
                self.fs.create_dir(str(self.folder), recursive=True)
                hidden = str(self.folder / f".{name}.{uuid.uuid4().hex}.tmp")
                with self.fs.open_output_stream(hidden) as stream:
                    stream.write(data)
                self.fs.move(hidden, target)
        except OSError as exc:
            raise self._failed("write a shard to", exc) from None
        return _join(self.location, name)

    def _failed(self, doing: str, exc: OSError) -> BadInputError:
        reason = redact_uri(str(exc))  # a file system's message may quote the URI, query string included
        return BadInputError(f"Could not {doing} the embedding cache {self.location!r}: {reason}", hint=URI_HINT)

    def move_aside(self, name: str) -> bool:
        path = str(self.folder / name)
        try:
            self.fs.move(path, f"{path}.corrupt")
        except (OSError, NotImplementedError):  # read-only, or a file system without moves: merely skipped
            return False
        return True


def _join(uri: str, relative: str) -> str:
    """``uri`` with ``relative`` appended to its path (before any ``?query``)."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{relative}"))


def _open_folder(root: str | Path, relative: str) -> _LocalFolder | _ArrowFolder:
    if not is_uri(root):
        return _LocalFolder(Path(root) / relative)
    fs, path = open_uri(root)
    if fs.type_name == "local":  # file:///abs/path: the local folder, with its atomic renames
        return _LocalFolder(Path(path) / relative)
    return _ArrowFolder(fs, PurePosixPath(path.rstrip("/")) / relative, _join(redact_uri(root), relative))


class EmbeddingStore:
    """Embeddings of one backbone, addressed by content hash (image bytes or sentence text).

    Parameters
    ----------
    root : path or URI
        The cache folder (``$CONCEPTFOREST_HOME/cache`` by default), or a URI that ``pyarrow.fs`` opens
        (``s3://bucket/prefix``); shards live under ``<root>/embeddings/<backbone id>/<kind>``.
    backbone_id : str
        Keeps embeddings of different models, weights or preprocessing apart.
    kind : {"images", "texts"}

    Attributes
    ----------
    folder : PurePath
        The shard folder: a local :class:`~pathlib.Path`, or the path inside the URI's file system.
    location : str
        The shard folder for messages: the local path, or the URI (its user and password hidden).
    """

    def __init__(self, root: str | Path, backbone_id: str, kind: str) -> None:
        self._shards = _open_folder(root, f"embeddings/{safe_name(backbone_id)}/{kind}")
        self.folder: PurePath = self._shards.folder
        self.location = self._shards.location
        self._vectors: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            corrupt: list[str] = []
            unread: list[str] = []
            moved = True
            for name in self._shards.names():
                try:
                    data = self._shards.read(name)
                except OSError:  # a network error or an expired token: skipped, never moved aside
                    unread.append(name)
                    continue
                rows = _rows(data)
                if rows is None:  # read whole but not a shard: corrupt
                    moved = self._shards.move_aside(name) and moved
                    corrupt.append(name)
                else:
                    self._vectors.update(rows)
            self._warn(corrupt, unread, moved)
        return self._vectors

    def _warn(self, corrupt: list[str], unread: list[str], moved: bool) -> None:
        if corrupt:
            done = "were moved aside to *.corrupt" if moved else "were skipped (they could not be moved aside)"
            warnings.warn(
                f"{len(corrupt)} unreadable embedding shard(s) in {self.location!r} {done} (first: "
                f"{corrupt[0]}); their images are encoded again.",
                RuntimeWarning,
                stacklevel=4,
            )
        if unread:
            warnings.warn(
                f"{len(unread)} embedding shard(s) in {self.location!r} could not be read (first: {unread[0]}); "
                "they were left in place and their images are encoded again in this run.",
                RuntimeWarning,
                stacklevel=4,
            )

    def __len__(self) -> int:
        return len(self._load())

    def get(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        vectors = self._load()
        return {key: vectors[key] for key in keys if key in vectors}

    def put(self, keys: list[str], vectors: np.ndarray) -> Path | str | None:
        """Write one shard (whole or not at all) under a unique name, remember its rows and return where it is."""
        if not keys:
            return None
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.asarray(keys, dtype="U64"), vectors=np.asarray(vectors, dtype=np.float32))
        where = self._shards.write(f"shard-{uuid.uuid4().hex}.npz", buffer.getvalue())
        self._load().update(zip(keys, np.asarray(vectors, dtype=np.float32), strict=True))
        return where
