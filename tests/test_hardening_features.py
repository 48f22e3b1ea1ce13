"""Issue 7, stage 2: duplicates, hostile image shapes, corrupt caches, odd paths, and bound artefact pairs."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conceptforest.concepts.template import template_tree
from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import BadInputError
from conceptforest.features import (
    TINY_RANDOM,
    Backbone,
    EmbeddingStore,
    FeatureMatrix,
    ImageRecord,
    extract_features,
    load_backbone,
    load_dataset,
)
from conceptforest.features.images import ImageDecodeError, decode_image
from conceptforest.models.methods import MethodResult, run_methods
from conceptforest.models.methods.context import image_embeddings, method_inputs
from tests.test_features import LABELS, png_bytes, write_images


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone(TINY_RANDOM, device="cpu")


@pytest.fixture
def tree() -> ConceptTree:
    return template_tree("toy shape", LABELS)


def extract(
    source: Path, tree: ConceptTree, backbone: Backbone, out: Path, cache: Path, **kwargs: Any
) -> tuple[FeatureMatrix, Any]:
    dataset = load_dataset(source, labels=tree.labels)
    return extract_features(dataset, tree, backbone, out, cache_dir=cache, progress=False, batch_size=4, **kwargs)


def skipped_reasons(run: Path) -> dict[str, str]:
    table = pd.read_csv(run / "skipped.csv")
    return {Path(p).name: str(r) for p, r in zip(table["path"], table["reason"], strict=True)}


# -- 1: byte-identical images ------------------------------------------------------------------------------------


def test_identical_images_under_different_labels_work_through_the_baselines(
    backbone: Backbone, tree: ConceptTree, tmp_path: Path
) -> None:
    root = write_images(tmp_path / "images", per_label=5)
    original = root / "red disc" / "img 0.png"
    shutil.copy(original, root / "blue tile" / "copy.png")
    shutil.copy(original, root / "green wedge" / "copy.png")  # three identical files, three labels
    matrix, stats = extract(root, tree, backbone, tmp_path / "run", tmp_path / "cache")
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    assert (matrix.frame["sha256"] == digest).sum() == 3 and stats.scored == 17 and not stats.skipped
    assert set(matrix.frame.loc[matrix.frame["sha256"] == digest, "label"]) == set(LABELS)
    embeddings = image_embeddings(matrix, backbone.backbone_id, tmp_path / "cache")
    rows = np.flatnonzero(matrix.frame["sha256"].to_numpy() == digest)
    assert embeddings.shape[0] == len(matrix.frame) and np.array_equal(embeddings[rows[0]], embeddings[rows[2]])
    inputs = method_inputs(
        FeatureMatrix.load(tmp_path / "run"), tree=tree, backbone=backbone, cache_dir=tmp_path / "cache"
    )
    outcomes = run_methods(inputs, ["clip", "probe", "random-words", "shuffled-tree"])
    test_rows = int((matrix.frame["split"] == "test").sum())
    assert all(isinstance(o, MethodResult) and len(o.predicted) == test_rows for o in outcomes), outcomes


def test_a_truly_missing_embedding_is_still_a_clear_error(
    backbone: Backbone, tree: ConceptTree, tmp_path: Path
) -> None:
    root = write_images(tmp_path / "images", per_label=4)
    matrix, _ = extract(root, tree, backbone, tmp_path / "run", tmp_path / "cache")
    with pytest.raises(BadInputError, match=r"not in the cache") as error:
        image_embeddings(matrix, backbone.backbone_id, tmp_path / "empty-cache")
    assert error.value.hint and "--cache-dir" in error.value.hint


# -- 2: extreme aspect ratios and any failure while preparing one image ------------------------------------------


def test_an_extreme_aspect_ratio_is_refused_from_the_header() -> None:
    strip = png_bytes(Image.new("L", (1, 2_000_000)))
    assert len(strip) < 100_000  # a few KB on disk, under --max-pixels
    with pytest.raises(ImageDecodeError, match="aspect ratio"):
        decode_image(strip)
    assert decode_image(png_bytes(Image.new("RGB", (400, 20)))).size == (400, 20)  # a 20:1 banner is fine


def test_strips_and_failing_images_are_skipped_and_the_run_goes_on(
    backbone: Backbone, tree: ConceptTree, tmp_path: Path
) -> None:
    root = write_images(tmp_path / "images", per_label=4)
    Image.new("RGB", (20_000, 1), (200, 0, 0)).save(root / "red disc" / "strip.png")
    Image.new("RGB", (13, 17), (0, 0, 200)).save(root / "blue tile" / "odd.png")
    real = backbone.preprocess

    def failing(image: Image.Image) -> Any:
        if image.size == (13, 17):
            raise MemoryError("simulated out of memory")
        return real(image)

    matrix, stats = extract(
        root, tree, dataclasses.replace(backbone, preprocess=failing), tmp_path / "run", tmp_path / "c"
    )
    reasons = skipped_reasons(tmp_path / "run")
    assert set(reasons) == {"strip.png", "odd.png"}
    assert "aspect ratio" in reasons["strip.png"] and "MemoryError" in reasons["odd.png"]
    assert stats.scored == len(matrix.frame) == 12


# -- 3: an unreadable shard is a cache miss ----------------------------------------------------------------------


def test_truncated_shards_are_moved_aside_with_one_warning_and_recomputed(
    backbone: Backbone, tree: ConceptTree, tmp_path: Path
) -> None:
    root = write_images(tmp_path / "images", per_label=4)
    first, _ = extract(root, tree, backbone, tmp_path / "r1", tmp_path / "cache")
    store = EmbeddingStore(tmp_path / "cache", backbone.backbone_id, "images")
    shards = sorted(store.folder.glob("shard-*.npz"))
    assert len(shards) >= 2
    for shard in shards[:2]:
        shard.write_bytes(shard.read_bytes()[:50])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, stats = extract(root, tree, backbone, tmp_path / "r2", tmp_path / "cache")
    messages = [str(w.message) for w in caught if "unreadable embedding shard" in str(w.message)]
    assert len(messages) == 1 and "2 unreadable" in messages[0]
    assert stats.encoded > 0 and len(list(store.folder.glob("*.corrupt"))) == 2
    assert np.allclose(again.X().to_numpy(), first.X().to_numpy(), atol=1e-6)
    EmbeddingStore(tmp_path / "cache", backbone.backbone_id, "images").get(["x"])  # nothing left to warn about


# -- 8 and 10: paths that are not regular files ------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_device_in_a_manifest_is_listed_not_opened(
    backbone: Backbone, tree: ConceptTree, tmp_path: Path
) -> None:
    root = write_images(tmp_path / "images", per_label=4)
    os.mkfifo(tmp_path / "pipe.png")  # reading it would wait for a writer forever
    rows = [(str(p), p.parent.name) for p in sorted(root.rglob("*.png"))]
    rows += [(str(tmp_path / "pipe.png"), "red disc"), (os.devnull, "blue tile")]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(manifest, index=False)
    dataset = load_dataset(manifest, labels=tree.labels)
    assert len(dataset.records) == 12
    assert {Path(s.path).name: s.reason for s in dataset.skipped} == {
        "pipe.png": "not a regular file: a FIFO (named pipe)",
        Path(os.devnull).name: "not a regular file: a character device",
    }
    _, stats = extract(manifest, tree, backbone, tmp_path / "run", tmp_path / "cache")
    assert stats.scored == 12 and stats.images == 14
    assert "FIFO" in skipped_reasons(tmp_path / "run")["pipe.png"]


def release_fifo(path: Path) -> None:
    """Open a FIFO for writing and close it, so that a reader blocked on it gets end-of-file."""
    with contextlib.suppress(OSError):  # ENXIO: nobody is waiting on it
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_path_that_became_a_fifo_after_listing_is_not_waited_on(
    backbone: Backbone, tree: ConceptTree, tmp_path: Path
) -> None:
    root = write_images(tmp_path / "images", per_label=4)
    dataset = load_dataset(root, labels=tree.labels)
    os.mkfifo(tmp_path / "late.png")
    dataset.records.append(ImageRecord(tmp_path / "late.png", LABELS[0], "train"))
    watchdog = threading.Timer(20, release_fifo, args=(tmp_path / "late.png",))  # a regression fails, not hangs
    watchdog.start()
    try:
        _, stats = extract_features(dataset, tree, backbone, tmp_path / "run", cache_dir=tmp_path / "c", progress=False)
    finally:
        watchdog.cancel()
    assert stats.scored == 12 and [Path(s.path).name for s in stats.skipped] == ["late.png"]
    assert "not a regular file" in stats.skipped[0].reason


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_dangling_symlink_in_an_image_folder_is_listed(backbone: Backbone, tree: ConceptTree, tmp_path: Path) -> None:
    root = write_images(tmp_path / "images", per_label=4)
    os.symlink(tmp_path / "gone.png", root / "red disc" / "link.png")
    os.symlink(root / "red disc" / "img 0.png", root / "red disc" / "good link.png")
    matrix, _ = extract(root, tree, backbone, tmp_path / "run", tmp_path / "cache")
    reasons = skipped_reasons(tmp_path / "run")
    assert list(reasons) == ["link.png"] and "dangling symbolic link" in reasons["link.png"]
    assert len(matrix.frame) == 13 and matrix.meta.n_skipped == 1


# -- 12 and 13: features.parquet and concepts.json ---------------------------------------------------------------


@pytest.fixture
def run(backbone: Backbone, tree: ConceptTree, tmp_path: Path) -> Path:
    extract(write_images(tmp_path / "images", per_label=4), tree, backbone, tmp_path / "run", tmp_path / "cache")
    return tmp_path / "run"


def test_a_kill_between_table_and_sidecar_leaves_a_pair_that_is_refused(
    backbone: Backbone, tree: ConceptTree, run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "images"
    Image.new("RGB", (30, 30), (1, 2, 3)).save(root / "red disc" / "new.png")  # same concepts, one more row

    def killed(self: FeatureMatrix, folder: Path, **_: object) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(FeatureMatrix, "save_sidecar", killed)
    with pytest.raises(KeyboardInterrupt):
        extract(root, tree, backbone, run, tmp_path / "cache")
    monkeypatch.undo()
    with pytest.raises(BadInputError, match="do not belong together") as error:
        FeatureMatrix.load(run)
    assert "features.parquet" in error.value.message and "concepts.json" in error.value.message
    assert error.value.hint and "features extract" in error.value.hint


def test_a_sidecar_without_the_binding_is_refused(run: Path) -> None:
    sidecar = run / "concepts.json"
    meta = json.loads(sidecar.read_text())
    del meta["features_sha256"]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(BadInputError, match=r"concepts\.json") as error:
        FeatureMatrix.load(run)
    assert error.value.hint and "regenerate" in error.value.hint and "features extract" in error.value.hint


def test_save_writes_a_bound_pair(run: Path, tmp_path: Path) -> None:
    matrix = FeatureMatrix.load(run)
    matrix.save(tmp_path / "copy")
    again = FeatureMatrix.load(tmp_path / "copy")
    assert again.frame.equals(matrix.frame) and again.concept_ids == matrix.concept_ids


@pytest.mark.parametrize(
    ("name", "damage", "words"),
    [
        ("features.parquet", lambda data: data[: len(data) // 2], "truncated or not a Parquet"),
        ("features.parquet", lambda data: b"", "truncated or not a Parquet"),
        ("concepts.json", lambda data: data[: len(data) // 2], "not valid JSON"),
        ("concepts.json", lambda data: b"\xff\xfe" + data, "not valid JSON"),
        ("concepts.json", lambda data: b"[" * 200_000 + b"]" * 200_000, "not valid JSON"),
        ("concepts.json", lambda data: b'{"concepts": 5}', "not a concepts sidecar"),
        ("concepts.json", lambda data: b"[]", "not a concepts sidecar"),
    ],
)
def test_corrupt_files_give_one_clear_error_naming_the_file(run: Path, name: str, damage: Any, words: str) -> None:
    path = run / name
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(BadInputError, match=words) as error:
        FeatureMatrix.load(run)
    assert str(path) in error.value.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_scores_are_refused(run: Path, bad: float) -> None:
    matrix = FeatureMatrix.load(run)
    column = matrix.concept_ids[3]
    matrix.frame.loc[matrix.frame.index[2], column] = bad
    matrix.frame.to_parquet(run / "features.parquet")
    matrix.save_sidecar(run)
    with pytest.raises(BadInputError, match="NaN or infinite") as error:
        FeatureMatrix.load(run)
    assert "features.parquet" in error.value.message and column in error.value.message


def test_the_cli_gives_exit_code_2_for_a_mismatched_pair(run: Path) -> None:
    from typer.testing import CliRunner

    from conceptforest.cli import app

    (run / "features.parquet").write_bytes(b"PAR1 not really")
    result = CliRunner().invoke(app, ["train", str(run)])
    assert result.exit_code == 2 and "features.parquet" in result.output and "Traceback" not in result.output


# -- the checkpoint's sha256 for predict -------------------------------------------------------------------------


def test_checkpoint_sha256_is_the_one_in_the_backbone_id(tmp_path: Path) -> None:
    from conceptforest.features import save_tiny_backbone
    from conceptforest.features.backbone import checkpoint_sha256, checkpoint_weights

    folder = save_tiny_backbone(tmp_path / "tiny")
    checkpoint = folder / "open_clip_model.safetensors"
    digest = checkpoint_sha256(checkpoint)
    assert digest == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    loaded = load_backbone(f"local-dir:{folder}", checkpoint=checkpoint, device="cpu")
    assert loaded.description["checkpoint"] == str(checkpoint.resolve())
    assert loaded.description["checkpoint_sha256"] == digest
    assert loaded.description["weights"] == checkpoint_weights(digest) == f"sha256-{digest[:16]}"
    assert f"__{checkpoint_weights(digest)}__" in loaded.backbone_id
