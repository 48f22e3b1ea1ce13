"""The embedding cache at a URI: ``file://`` and a real S3 API (moto's server over HTTP), through the library and
the CLI; a rerun encodes nothing."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from conceptforest.cache import cache_root, conceptforest_home, embedding_root, redact_uri
from conceptforest.cli import app
from conceptforest.concepts.template import template_tree
from conceptforest.errors import BadInputError
from conceptforest.features import TINY_RANDOM, Backbone, EmbeddingStore, extract_features, load_backbone, load_dataset
from tests.test_features import LABELS, write_images

runner = CliRunner()
ID = "tiny__random__pre-x"


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone(TINY_RANDOM, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"), per_label=3)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


def unreadable_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "unreadable embedding shard" in str(w.message)]


# -- file:// is the local store ----------------------------------------------------------------------------------


def test_a_file_uri_store_is_the_local_store(tmp_path: Path) -> None:
    uri = f"file://{tmp_path / 'cache'}"
    keys = ["a" * 64, "b" * 64]
    EmbeddingStore(uri, ID, "images").put(keys, vectors(2))
    again = EmbeddingStore(uri, ID, "images")  # a rerun reads what the first wrote
    assert set(again.get(keys)) == set(keys) and np.array_equal(again.get(keys)["a" * 64], vectors(2)[0])
    local = EmbeddingStore(tmp_path / "cache", ID, "images")  # the same layout as a plain path
    assert again.folder == local.folder and len(local) == 2
    (local.folder / "shard-broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(EmbeddingStore(uri, ID, "images")) == 2
    assert len(unreadable_warnings(caught)) == 1
    assert (local.folder / "shard-broken.npz.corrupt").exists()


def test_embedding_root_passes_uris_and_keeps_llm_caches_local(tmp_path: Path) -> None:
    assert embedding_root(f"file://{tmp_path}") == f"file://{tmp_path}"
    assert embedding_root(tmp_path) == tmp_path and embedding_root(None) == conceptforest_home() / "cache"
    assert cache_root("s3://bucket/prefix") == cache_root(None)  # LLM answers stay in the local cache
    assert redact_uri("s3://KEY:SECRET@bucket/p?region=x") == "s3://***@bucket/p?region=x"
    with pytest.raises(BadInputError, match="nosuchscheme://x") as error:
        embedding_root("nosuchscheme://x")
    assert error.value.hint and "s3://bucket/prefix" in error.value.hint


def test_a_bad_cache_uri_is_exit_2_naming_it(images: Path, tmp_path: Path) -> None:
    tree = template_tree("toy shape", LABELS).save(tmp_path / "tree.json")
    args = ["features", "extract", str(images), str(tree), "--clip", TINY_RANDOM, "-o", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--cache-dir", "nosuchscheme://x", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "nosuchscheme://x" in result.output and "Traceback" not in result.output


# -- a real object store: moto's S3 server over HTTP --------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    if os.environ.get("CONCEPTFOREST_REQUIRE_MOTO"):
        import moto  # noqa: F401  (CI installs the dev extra: a missing moto must fail, not skip)
    pytest.importorskip("moto", reason="the S3 tests need moto's server: pip install 'moto[server]'")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture
def s3_uri(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the URI of a prefix in it, as pyarrow's ``FileSystem.from_uri`` reads it."""
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance-metadata server
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"cf-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=f"http://{s3_endpoint}").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/team/cache?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"


def objects(uri: str) -> list[str]:
    """The object keys under the bucket of ``uri`` (read with boto3, not with the code under test)."""
    import boto3

    bucket, endpoint = uri.split("/")[2], uri.split("endpoint_override=")[1].split("&")[0]
    listed = boto3.client("s3", endpoint_url=f"http://{endpoint}").list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_an_s3_store_puts_gets_and_skips_a_corrupt_shard(s3_uri: str) -> None:
    import boto3

    keys = ["c" * 64, "d" * 64, "e" * 64]
    store = EmbeddingStore(s3_uri, ID, "images")
    assert len(store) == 0 and store.location.startswith("s3://") and "/embeddings/" in store.location
    store.put(keys[:2], vectors(2))
    store.put(keys[2:], vectors(1, seed=1))
    shards = [key for key in objects(s3_uri) if key.endswith(".npz")]
    assert len(shards) == 2 and all(k.startswith(f"team/cache/embeddings/{ID}/images/shard-") for k in shards)
    where = str(store.put(["f" * 64], vectors(1)))
    assert where.startswith(f"{s3_uri.split('?')[0]}/embeddings/{ID}/images/shard-") and "?endpoint_override" in where
    keys.append("f" * 64)
    bucket, endpoint = s3_uri.split("/")[2], s3_uri.split("endpoint_override=")[1].split("&")[0]
    client = boto3.client("s3", endpoint_url=f"http://{endpoint}")
    client.put_object(Bucket=bucket, Key=f"team/cache/embeddings/{ID}/images/shard-bad.npz", Body=b"truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = EmbeddingStore(s3_uri, ID, "images")
        found = again.get(keys)
    assert set(found) == set(keys) and np.array_equal(found["e" * 64], vectors(1, seed=1)[0])
    messages = unreadable_warnings(caught)
    assert len(messages) == 1 and "s3://" in messages[0] and "shard-bad.npz" in messages[0]
    assert f"team/cache/embeddings/{ID}/images/shard-bad.npz.corrupt" in objects(s3_uri)


def test_extract_features_caches_in_s3_and_a_rerun_encodes_nothing(
    s3_uri: str, images: Path, backbone: Backbone, tmp_path: Path
) -> None:
    tree = template_tree("toy shape", LABELS)
    dataset = load_dataset(images, labels=tree.labels)
    n = len(dataset.records)

    def run(out: str) -> tuple[Any, Any]:
        return extract_features(dataset, tree, backbone, tmp_path / out, cache_dir=s3_uri, batch_size=4, progress=False)

    first, stats = run("r1")
    assert stats.encoded == n and stats.from_cache == 0
    keys = objects(s3_uri)
    assert any(f"/{backbone.backbone_id}/images/shard-" in k for k in keys)
    assert any(f"/{backbone.backbone_id}/texts/shard-" in k for k in keys)
    assert not (cache_root(None) / "embeddings").exists()  # nothing went to the local cache
    again, stats = run("r2")
    assert stats.encoded == 0 and stats.from_cache == n
    assert np.array_equal(again.X().to_numpy(), first.X().to_numpy())
    assert objects(s3_uri) == keys  # the rerun wrote nothing


def test_the_cli_extracts_into_s3_and_reruns_from_it(s3_uri: str, images: Path, tmp_path: Path) -> None:
    tree = template_tree("toy shape", LABELS).save(tmp_path / "tree.json")
    args = ["features", "extract", str(images), str(tree), "--clip", TINY_RANDOM, "--cache-dir", s3_uri]
    first = runner.invoke(app, [*args, "-o", str(tmp_path / "r1"), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "Encoded 9 new image(s), 0 from cache" in first.output
    assert any("/images/shard-" in key for key in objects(s3_uri))
    again = runner.invoke(app, [*args, "-o", str(tmp_path / "r2"), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert "Encoded 0 new image(s), 9 from cache" in again.output


def test_a_file_system_without_atomic_puts_writes_a_hidden_name_then_renames(tmp_path: Path) -> None:
    from pyarrow import fs

    from conceptforest.features.store import _ArrowFolder

    folder = _ArrowFolder(fs.LocalFileSystem(), PurePosixPath(tmp_path / "shards"), "hdfs://host/cache")
    assert folder.names() == []
    assert folder.write("shard-1.npz", b"data") == "hdfs://host/cache/shard-1.npz"
    assert folder.names() == ["shard-1.npz"] and folder.read("shard-1.npz") == b"data"
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["shard-1.npz"]  # no temporary file left
    assert folder.move_aside("shard-1.npz") and folder.names() == []


def test_credentials_in_a_cache_uri_are_never_printed_or_recorded() -> None:
    from conceptforest.cache import embedding_root
    from conceptforest.config import load_config

    uri = "nosuchscheme://AKIAKEY:SECRET123@bucket/x"
    with pytest.raises(BadInputError) as caught:
        embedding_root(uri)
    assert "SECRET123" not in str(caught.value) and "AKIAKEY" not in str(caught.value)
    assert caught.value.__cause__ is None and "***@bucket" in str(caught.value)
    recorded = load_config(None, {"cache_dir": "s3://AKIAKEY:SECRET123@bucket/prefix"}).public_dict()
    assert recorded["cache_dir"] == "s3://***@bucket/prefix"


def test_a_shard_that_cannot_be_read_now_is_left_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A network error is not corruption: the shard stays for the next run and every worker."""
    from conceptforest.features import store as store_module

    EmbeddingStore(f"file://{tmp_path}", "b", "images").put(["k"], np.ones((1, 4), dtype=np.float32))

    def failing(self: Any, name: str) -> bytes:
        raise OSError("503 SlowDown")

    monkeypatch.setattr(store_module._LocalFolder, "read", failing)
    with pytest.warns(RuntimeWarning, match="could not be read"):
        assert len(EmbeddingStore(f"file://{tmp_path}", "b", "images")) == 0
    monkeypatch.undo()
    shards = list((tmp_path / "embeddings" / "b" / "images").glob("shard-*.npz"))
    assert len(shards) == 1 and len(EmbeddingStore(tmp_path, "b", "images")) == 1
