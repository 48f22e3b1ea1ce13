from __future__ import annotations

from pathlib import Path

from conceptforest.atomic import atomic_write_text
from conceptforest.cache import DiskCache, conceptforest_home, stable_hash


def test_keys_are_content_addressed(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "llm")
    cache.put({"b": 2, "a": 1}, {"v": 1})
    assert cache.get({"a": 1, "b": 2}) == {"v": 1}  # key order does not matter
    assert cache.get({"a": 1, "b": 3}) is None
    assert stable_hash({"a": 1}) != stable_hash({"a": "1"})
    assert len(cache) == 1


def test_corrupt_record_is_a_miss(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "llm")
    path = cache.put({"k": 1}, {"v": 1})
    path.write_text('{"key_hash": "x", "val')
    assert cache.get({"k": 1}) is None


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.txt"]


def test_home_follows_the_environment(isolated_home: Path) -> None:
    assert conceptforest_home() == isolated_home
