"""A content-addressed on-disk cache of JSON records.

Keys are built from content (model name, template hash, inputs, parameters), never from file names, so an
edited input can never reuse a stale answer. Each record is one file written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from conceptforest.atomic import atomic_write_json

HOME_ENV = "CONCEPTFOREST_HOME"


def conceptforest_home() -> Path:
    """The folder for user state (caches): ``$CONCEPTFOREST_HOME`` or ``~/.cache/conceptforest``."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "conceptforest"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: ``cache_dir`` when given, else ``$CONCEPTFOREST_HOME/cache``. The one place that says so."""
    return Path(cache_dir) if cache_dir else conceptforest_home() / "cache"


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
