"""Issue 23, items 13-15 and 17: predict's weights warning comes from the loaded backbone, --labels files and image
files are read bounded (regular files only, capped in bytes, each path once per chunk), and descriptor sets with
many labels are checked in linear time."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from conceptforest.cli import main
from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.concepts.template import template_tree
from conceptforest.features import TINY_RANDOM, extract_features, load_backbone, load_dataset
from conceptforest.features.backbone import Backbone
from tests.test_features import LABELS, write_images

# --- 13: predict's random-weights warning -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone(TINY_RANDOM, device="cpu")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, backbone: Backbone) -> tuple[Path, Path, Path]:
    from conceptforest.models import train_model

    root = tmp_path_factory.mktemp("tiny")
    images = write_images(root / "images", per_label=4)
    dataset = load_dataset(images, labels=LABELS)
    tree = template_tree("toy shape", LABELS)
    matrix, _ = extract_features(dataset, tree, backbone, root / "run", cache_dir=root / "cache", progress=False)
    train_model(matrix, root / "model", n_estimators=5)
    return root / "model", next(images.rglob("*.png")), root / "cache"


def test_an_edited_manifest_does_not_hide_the_random_weights_warning(
    tiny_model: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conceptforest.explain.predict import ImagePrediction, predict_images

    model, image, cache = tiny_model
    edited = shutil.copytree(model, tmp_path / "model")
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["random_weights"] = False
    manifest["backbone"]["random_weights"] = False
    (edited / "manifest.json").write_text(json.dumps(manifest))
    (result,) = predict_images(edited, [image], cache_dir=cache)
    assert isinstance(result, ImagePrediction) and result.random_weights
    with pytest.raises(SystemExit) as info:
        main(["predict", str(edited), str(image), "--cache-dir", str(cache)])
    assert info.value.code == 0 and "(random backbone weights" in capsys.readouterr().out


# --- 14: --labels files ------------------------------------------------------------------------------------------


def release_fifo(path: Path) -> None:
    """Open a FIFO for writing and close it, so that a reader blocked on it gets end-of-file."""
    with contextlib.suppress(OSError):  # ENXIO: nobody is waiting on it
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@contextlib.contextmanager
def fifo(path: Path) -> Iterator[Path]:
    """A FIFO at ``path``; a reader that waits on it is released after 20 s, so a regression fails, not hangs."""
    os.mkfifo(path)
    watchdog = threading.Timer(20, release_fifo, args=(path,))
    watchdog.start()
    try:
        yield path
    finally:
        watchdog.cancel()


def labels_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    return " ".join(err.split())


VERBS = {
    "generate": ["concepts", "generate", "--domain", "shape", "--llm", "none"],
    "describe": ["concepts", "describe", "--style", "waffle"],
}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_labels_file_that_is_a_fifo_or_device_is_refused_unopened(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["-o", str(tmp_path / "out.json")]
    with fifo(tmp_path / "labels.txt") as pipe:
        err = labels_error(capsys, *VERBS[verb], "--labels", str(pipe), *out)
    assert f"labels file {str(pipe)!r} is not a regular file (a FIFO (named pipe))" in err
    err = labels_error(capsys, *VERBS[verb], "--labels", os.devnull, *out)
    assert f"labels file {os.devnull!r} is not a regular file (a character device)" in err
    assert "Fix: give a text file with one label per line" in err


def test_a_huge_labels_file_is_refused_by_its_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conceptforest.input_files import MAX_TEXT_FILE_BYTES

    huge = tmp_path / "labels.txt"
    huge.write_bytes(b"pug\nhusky\n")
    os.truncate(huge, MAX_TEXT_FILE_BYTES + 1)  # sparse: no disk used
    err = labels_error(capsys, *VERBS["generate"], "--labels", str(huge), "-o", str(tmp_path / "tree.json"))
    assert f"labels file {str(huge)!r} is {MAX_TEXT_FILE_BYTES + 1:,} bytes, over the limit of" in err
    assert "--batch-size" not in err and not (tmp_path / "tree.json").exists()


def test_a_regular_labels_file_still_reads(tmp_path: Path) -> None:
    from conceptforest.concepts.labels import read_labels_file

    labels = tmp_path / "labels.txt"
    labels.write_text("\ufeffpug\n# a comment\n\nhusky\n", encoding="utf-8")
    assert read_labels_file(labels) == ["pug", "husky"]


# --- 15: image files: capped in bytes, each distinct path read once per chunk ------------------------------------


def manifest_of(tmp_path: Path, extra: list[tuple[Path, str]]) -> Path:
    root = write_images(tmp_path / "images", per_label=4)
    rows = [(str(p), p.parent.name) for p in sorted(root.rglob("*.png"))] + [(str(p), label) for p, label in extra]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(manifest, index=False)
    return manifest


def test_an_image_file_over_the_byte_cap_is_skipped_unread(backbone: Backbone, tmp_path: Path) -> None:
    from conceptforest.features.images import max_file_bytes

    max_pixels = 10_000
    big = tmp_path / "big.jpg"
    big.write_bytes(b"")
    os.truncate(big, max_file_bytes(max_pixels) + 1)  # sparse
    manifest = manifest_of(tmp_path, [(big, LABELS[0])])
    dataset = load_dataset(manifest, labels=LABELS)
    tree = template_tree("toy shape", LABELS)
    _, stats = extract_features(
        dataset, tree, backbone, tmp_path / "run", cache_dir=tmp_path / "c", progress=False, max_pixels=max_pixels
    )
    table = pd.read_csv(tmp_path / "run" / "skipped.csv")
    assert stats.scored == 12 and list(table["path"]) == [str(big)]
    cap = max_file_bytes(max_pixels)
    assert table["reason"][0] == (
        f"file too large: {cap + 1:,} bytes, over the cap of {cap:,} bytes for --max-pixels {max_pixels:,} "
        "(8 bytes per pixel + 16 MiB; raise --max-pixels if the image is genuine)"
    )


def test_the_byte_cap_leaves_room_for_real_images() -> None:
    from conceptforest.features.images import max_file_bytes

    # a 16-bit RGBA image stored uncompressed (8 bytes a pixel) at the pixel limit, with 16 MiB of metadata
    assert max_file_bytes(50_000_000) == 8 * 50_000_000 + 16 * 2**20


def test_rows_repeating_one_path_read_it_once_per_chunk(
    backbone: Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conceptforest.features import extract

    image = tmp_path / "one.png"
    shutil.copy(next(write_images(tmp_path / "source", per_label=1).rglob("*.png")), image)
    manifest = manifest_of(tmp_path, [(image, LABELS[0])] * 6)
    reads: Counter[str] = Counter()
    real_read = extract._read

    def counting_read(*args: Any, **kwargs: Any) -> Any:
        first = args[0]
        reads[str(getattr(first, "path", first))] += 1
        return real_read(*args, **kwargs)

    monkeypatch.setattr(extract, "_read", counting_read)
    dataset, tree = load_dataset(manifest, labels=LABELS), template_tree("toy shape", LABELS)
    matrix, stats = extract_features(dataset, tree, backbone, tmp_path / "run", cache_dir=tmp_path, progress=False)
    assert reads[str(image)] == 1 and max(reads.values()) == 1 and sum(reads.values()) == 13
    assert stats.scored == 18 and list(matrix.frame["path"]).count(str(image)) == 6


# --- 17: descriptor sets with many labels ------------------------------------------------------------------------


def test_repeated_labels_in_a_large_descriptor_set_are_found_and_named() -> None:
    labels = [f"label {i}" for i in range(20_000)] + ["Label 7", "LABEL  19999"]
    with pytest.raises(ValidationError) as info:
        DescriptorSet(style="manual", labels=labels, descriptors={label: ["x"] for label in labels})
    assert "labels repeat: label 19999, label 7" in str(info.value)


def test_labels_the_optimiser_cannot_tell_apart_are_named_among_many() -> None:
    import numpy as np

    from conceptforest.concepts.optimize import optimize_descriptors
    from conceptforest.concepts.optimize_loop import FewShotImages
    from conceptforest.errors import BadInputError

    labels = [f"label {i}" for i in range(20_000)] + ["Label_7", "LABEL  19999"]
    images = FewShotImages(
        embeddings=np.zeros((len(labels), 4), dtype=np.float32),
        truth=np.arange(len(labels)),
        labels=labels,
        sha256=[f"{i:064x}" for i in range(len(labels))],
        backbone_id="none",
        logit_scale=100.0,
        encode=lambda sentences: np.zeros((len(sentences), 4), dtype=np.float32),
    )
    with pytest.raises(BadInputError) as info:
        optimize_descriptors(images, llm=None)  # type: ignore[arg-type]
    assert "cannot be told apart in the LLM's answers: 'LABEL  19999', 'Label_7', 'label 19999', 'label 7'." in str(
        info.value
    )
