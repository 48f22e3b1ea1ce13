"""A content-addressed on-disk cache of JSON records, and where the caches live.

Keys are built from content (model name, template hash, inputs, parameters), never from file names, so an
edited input can never reuse a stale answer. Each record is one file written atomically.

``--cache-dir`` may be an object-store URI (``s3://bucket/prefix``): only the embedding cache lives there
(:func:`embedding_root`); the LLM answers stay in the local cache (:func:`cache_root`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, TypeGuard

from conceptforest.atomic import atomic_write_json
from conceptforest.errors import BadInputError
from conceptforest.redact import redact_uri_text

HOME_ENV = "CONCEPTFOREST_HOME"
URI_HINT = (
    "use a URI that pyarrow's file systems open (s3://bucket/prefix, gs://bucket/prefix, hdfs://host/path) with "
    "a pyarrow built with that support (pip install pyarrow), the bucket created and credentials in the usual "
    "environment variables (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS), or pass a "
    "folder path every worker reaches."
)


def conceptforest_home() -> Path:
    """The folder for user state (caches): ``$CONCEPTFOREST_HOME`` or ``~/.cache/conceptforest``."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "conceptforest"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The local cache folder: ``cache_dir`` when given, else ``$CONCEPTFOREST_HOME/cache``. The one place that says
    so. A URI ``cache_dir`` holds embeddings only (:func:`embedding_root`): this gives the local default for it."""
    return Path(cache_dir) if cache_dir and not is_uri(cache_dir) else conceptforest_home() / "cache"


def is_uri(location: str | Path | None) -> TypeGuard[str]:
    """True for a URI such as ``s3://bucket/prefix`` (a string with ``://``), False for a folder path."""
    return isinstance(location, str) and "://" in location


def redact_uri(location: str | Path) -> str:
    """``location`` for messages, a URI's user and password (``s3://KEY:SECRET@bucket``) and credential-like query
    values (``?secret_key=...``, ``&token=...``) hidden."""
    return redact_uri_text(str(location))


def open_uri(uri: str) -> tuple[Any, str]:
    """``pyarrow.fs.FileSystem.from_uri(uri)``: (file system, path inside it); a :class:`BadInputError` naming the
    URI when pyarrow cannot open it (unknown scheme, no support built in, no bucket named)."""
    try:
        import pyarrow
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(uri)
    except ImportError as exc:
        raise BadInputError(f"The cache URI {redact_uri(uri)!r} needs pyarrow.", hint=URI_HINT) from exc
    except (pyarrow.ArrowException, ValueError, OSError, NotImplementedError) as exc:
        reason = str(exc).replace(uri, redact_uri(uri))  # pyarrow's message repeats the URI, credentials too
        raise BadInputError(
            f"pyarrow cannot open the cache URI {redact_uri(uri)!r}: {redact_uri(reason)}.", hint=URI_HINT
        ) from None  # the chained exception would print the URI whole
    if not str(path).strip("/"):
        raise BadInputError(f"The cache URI {redact_uri(uri)!r} names no bucket or folder.", hint=URI_HINT)
    return filesystem, str(path)


def embedding_root(cache_dir: str | Path | None = None) -> str | Path:
    """Where the embedding cache lives: a URI ``cache_dir`` unchanged (checked to open), else :func:`cache_root`."""
    if is_uri(cache_dir):
        open_uri(cache_dir)
        return cache_dir
    return cache_root(cache_dir)


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class DiskCache:
    """A folder of JSON records addressed by the hash of their key.

    Parameters
    ----------
    root : path
        The cache folder. Records live under ``root/<namespace>/<hh>/<hash>.json``.
    namespace : str
        A sub-folder that keeps kinds of records apart (``"llm"``, ``"embeddings"``...).

    Examples
    --------
    >>> import tempfile
    >>> cache = DiskCache(tempfile.mkdtemp(), "llm")
    >>> key = {"model": "m", "inputs": [1, 2]}
    >>> cache.get(key) is None
    True
    >>> _ = cache.put(key, {"answer": 42})
    >>> cache.get(key)
    {'answer': 42}
    """

    def __init__(self, root: str | Path, namespace: str) -> None:
        self.root = Path(root)
        self.namespace = namespace

    def path_for(self, key: Any) -> Path:
        digest = stable_hash(key)
        return self.root / self.namespace / digest[:2] / f"{digest}.json"

    def get(self, key: Any) -> Any | None:
        """The stored value, or ``None`` when absent or unreadable (an unreadable record is a miss)."""
        path = self.path_for(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(record, dict) or record.get("key_hash") != stable_hash(key):
            return None
        return record.get("value")

    def put(self, key: Any, value: Any) -> Path:
        """Store ``value`` under ``key`` atomically and return the record's path."""
        path = self.path_for(key)
        atomic_write_json(path, {"key_hash": stable_hash(key), "key": key, "value": value})
        return path

    def __len__(self) -> int:
        folder = self.root / self.namespace
        return sum(1 for _ in folder.glob("*/*.json")) if folder.exists() else 0


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
