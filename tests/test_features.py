"""Stage 2 on the tiny random backbone, loaded through the same local path as real weights."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw

from conceptforest.concepts.template import template_tree
from conceptforest.errors import BadInputError
from conceptforest.features import (
    TINY_RANDOM,
    Backbone,
    FeatureMatrix,
    extract_features,
    load_backbone,
    load_dataset,
    save_tiny_backbone,
)
from conceptforest.features import extract as extract_module
from conceptforest.features.backbone import encode_tokens_trimmed
from conceptforest.features.images import ImageDecodeError, decode_image

LABELS = ["red disc", "blue tile", "green wedge"]
COLOURS = {"red disc": (220, 30, 30), "blue tile": (30, 30, 220), "green wedge": (30, 170, 30)}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_backbone(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def backbone(tiny_dir: Path) -> Backbone:
    return load_backbone(f"local-dir:{tiny_dir}", device="cpu")


def shape_image(label: str, index: int, size: int = 48) -> Image.Image:
    image = Image.new("RGB", (size, size), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    offset = 4 + (index * 7) % 16
    draw.ellipse([offset, offset, offset + 20, offset + 20 + index % 5], fill=COLOURS[label])
    return image


def write_images(root: Path, per_label: int = 8) -> Path:
    for label in LABELS:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            shape_image(label, i).save(folder / f"img {i}.png")
    return root


def write_hostile(folder: Path) -> dict[str, str]:
    """Files that must be skipped, with a word their reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    shape_image("red disc", 1).save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    # fixed bytes: some random chunk headers make Pillow report a truncated read instead of an unknown format
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    (folder / "notes.jpg").write_text("this is a text file with an image extension")
    Image.new("1", (3000, 3000)).save(folder / "bomb.png")
    return {
        "empty.jpg": "empty",
        "truncated.jpg": "truncated",
        "corrupt.png": "not an image",
        "notes.jpg": "not an image",
        "bomb.png": "decompression bomb",
    }


def write_awkward(folder: Path) -> list[str]:
    """Files that must decode correctly."""
    folder.mkdir(parents=True, exist_ok=True)
    base = shape_image("red disc", 2)
    base.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((np.arange(48 * 48).reshape(48, 48) * 20).astype(np.uint16)).save(folder / "sixteen.png")
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    base.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    base.convert("L").save(folder / "grey.png")
    frames = [shape_image("red disc", i) for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (200, 10, 10)).save(folder / "rotated.jpg", exif=exif)
    Image.new("RGB", (40, 20), (10, 10, 200)).save(folder / "ünïcode name ✓.png")
    return sorted(p.name for p in folder.iterdir())


# -- decoding ---------------------------------------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_decoding_converts_every_mode_to_upright_rgb(tmp_path: Path) -> None:
    names = write_awkward(tmp_path)
    for name in names:
        image = decode_image((tmp_path / name).read_bytes())
        assert image.mode == "RGB", name
    assert decode_image((tmp_path / "rotated.jpg").read_bytes()).size == (20, 40)  # EXIF orientation 6 applied
    transparent = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode_image(png_bytes(transparent)).getpixel((0, 0)) == (255, 255, 255)  # composited on white
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert decode_image(png_bytes(sixteen)).getpixel((0, 0)) == (255, 255, 255)  # 16-bit scaled, not clipped
    first = decode_image((tmp_path / "animated.gif").read_bytes())
    assert first.size == (48, 48)


def test_bad_files_raise_a_reason(tmp_path: Path) -> None:
    expected = write_hostile(tmp_path)
    for name, word in expected.items():
        with pytest.raises(ImageDecodeError, match=word):
            decode_image((tmp_path / name).read_bytes(), max_pixels=1_000_000)


# -- extraction --------------------------------------------------------------------------------------------------


def test_extraction_scores_good_images_and_lists_skipped_ones(backbone: Backbone, tmp_path: Path) -> None:
    root = write_images(tmp_path / "images")
    hostile = write_hostile(root / "red disc")
    awkward = write_awkward(root / "blue tile")
    tree = template_tree("toy shape", LABELS)
    dataset = load_dataset(root, labels=tree.labels)
    matrix, stats = extract_features(
        dataset,
        tree,
        backbone,
        tmp_path / "run",
        cache_dir=tmp_path / "cache",
        max_pixels=1_000_000,
        progress=False,
        batch_size=5,
    )
    skipped = pd.read_csv(tmp_path / "run" / "skipped.csv")
    reasons = {Path(p).name: r for p, r in zip(skipped["path"], skipped["reason"], strict=True)}
    assert set(reasons) == set(hostile)
    for name, word in hostile.items():
        assert word in reasons[name]
    good = len(dataset) - len(hostile)
    assert stats.scored == good == len(matrix.frame)
    assert {Path(p).name for p in matrix.frame["path"]} >= set(awkward)
    assert list(matrix.frame.columns) == ["path", "label", "split", "sha256", *(c.id for c in tree.concepts())]
    assert matrix.concept_ids == [c.id for c in tree.concepts()]
    assert matrix.labels == LABELS
    assert matrix.tree_hash == tree.tree_hash() and matrix.backbone_id == backbone.backbone_id
    assert matrix.random_weights is True and "RANDOM WEIGHTS" in (matrix.meta.warning or "")
    assert matrix.meta.n_skipped == len(hostile)
    scores = matrix.X().to_numpy()
    assert scores.dtype == np.float32 and np.all(np.abs(scores) <= 1.0 + 1e-5)
    reloaded = FeatureMatrix.load(tmp_path / "run")
    assert reloaded.frame.equals(matrix.frame) and reloaded.meta == matrix.meta
    standardized = matrix.X("train", standardized=True).to_numpy()
    assert np.allclose(standardized.mean(axis=0), 0, atol=1e-3)


def test_extraction_is_deterministic(backbone: Backbone, tmp_path: Path) -> None:
    root = write_images(tmp_path / "images")
    tree = template_tree("toy shape", LABELS)
    dataset = load_dataset(root, labels=tree.labels, seed=3)
    runs = []
    for name in ("a", "b"):
        extract_features(dataset, tree, backbone, tmp_path / name, cache_dir=tmp_path / f"cache-{name}", progress=False)
        runs.append(pd.read_parquet(tmp_path / name / "features.parquet"))
    assert runs[0].equals(runs[1])


def test_cache_means_no_decoding_and_a_new_tree_encodes_no_image(
    backbone: Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_images(tmp_path / "images")
    tree = template_tree("toy shape", LABELS)
    dataset = load_dataset(root, labels=tree.labels)
    first, stats = extract_features(dataset, tree, backbone, tmp_path / "r1", cache_dir=tmp_path / "c", progress=False)
    assert stats.encoded > 0
    calls = {"n": 0}
    real_prepare = extract_module.Extractor._prepare

    def counting(self: extract_module.Extractor, data: bytes) -> torch.Tensor | str:
        calls["n"] += 1
        return real_prepare(self, data)

    monkeypatch.setattr(extract_module.Extractor, "_prepare", counting)
    _, again = extract_features(dataset, tree, backbone, tmp_path / "r2", cache_dir=tmp_path / "c", progress=False)
    assert calls["n"] == 0 and again.encoded == 0 and again.from_cache == len(dataset)
    other = tree.model_copy(deep=True)
    other.sentence_template = "a {value} {attribute} on the {part}"
    second, changed = extract_features(
        dataset, other, backbone, tmp_path / "r3", cache_dir=tmp_path / "c", progress=False
    )
    assert calls["n"] == 0 and changed.encoded == 0
    assert second.tree_hash != first.tree_hash


def test_local_checkpoint_loads_the_same_weights_as_the_in_memory_model(backbone: Backbone) -> None:
    in_memory = load_backbone(TINY_RANDOM, device="cpu")
    batch = torch.rand(4, 3, 32, 32)
    assert np.array_equal(in_memory.encode_images(batch), backbone.encode_images(batch))
    texts = ["the colour of the surface is red", "a photo"]
    assert np.array_equal(in_memory.encode_texts(texts), backbone.encode_texts(texts))
    assert backbone.random_weights and in_memory.random_weights
    assert "sha256-" in backbone.backbone_id and str(backbone.backbone_id).startswith("local-dir__")


def test_trimmed_text_encoding_equals_the_padded_result(backbone: Backbone) -> None:
    texts = ["red", "the shape of the object is round and rather small", "x " * 30]
    tokens = backbone.tokenizer(texts)
    with torch.inference_mode():
        padded = backbone.model.encode_text(tokens)
        trimmed = encode_tokens_trimmed(backbone.model, tokens)
    assert trimmed.shape == padded.shape
    assert torch.allclose(trimmed, padded, atol=1e-5)
    assert np.allclose(backbone.encode_texts(texts), backbone.encode_texts(texts, trim=False), atol=1e-5)


def test_unweighted_model_name_is_refused() -> None:
    with pytest.raises(BadInputError, match="tiny-random"):
        load_backbone("ViT-B-32", None)
    with pytest.raises(BadInputError, match="does not exist"):
        load_backbone("ViT-B-32", checkpoint="/nonexistent/weights.pt")


# -- datasets ----------------------------------------------------------------------------------------------------


def test_manifest_keeps_its_split_and_resolves_relative_paths(tmp_path: Path) -> None:
    root = write_images(tmp_path / "images", per_label=3)
    rows = [
        (str(p.relative_to(tmp_path)), p.parent.name, "train" if i % 3 else "test")
        for i, p in enumerate(sorted(root.rglob("*.png")))
    ]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(manifest, index=False)
    dataset = load_dataset(manifest, labels=LABELS)
    assert [r.split for r in dataset.records] == [s for _, _, s in rows]
    assert all(r.path.is_file() for r in dataset.records)
    assert dataset.labels == LABELS and dataset.split_seed is None


def test_splits_are_stratified_and_seeded(tmp_path: Path) -> None:
    root = write_images(tmp_path / "images", per_label=10)
    a = load_dataset(root, seed=1)
    b = load_dataset(root, seed=1)
    c = load_dataset(root, seed=2)
    assert [r.split for r in a.records] == [r.split for r in b.records]
    assert [r.split for r in a.records] != [r.split for r in c.records]
    counts = a.counts()
    assert (counts["test"] >= 1).all() and (counts["val"] >= 1).all() and (counts["train"] >= 6).all()
    assert a.labels == sorted(LABELS)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("one_label", "needs at least 2"),
        ("few_images", "has 2 image(s)"),
        ("missing_dir", "does not exist"),
        ("unknown_label", "not in the label list"),
    ],
)
def test_dataset_errors_are_clear(tmp_path: Path, setup: str, message: str) -> None:
    root = tmp_path / "images"
    if setup == "one_label":
        (root / "red disc").mkdir(parents=True)
        shape_image("red disc", 0).save(root / "red disc" / "a.png")
    elif setup == "few_images":
        write_images(root, per_label=2)
    elif setup == "unknown_label":
        write_images(root, per_label=3)
    args = {"labels": ["red disc", "blue tile"]} if setup == "unknown_label" else {}
    with pytest.raises(BadInputError) as info:
        load_dataset(root, **args)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_tree_and_data_labels_must_match(backbone: Backbone, tmp_path: Path) -> None:
    root = write_images(tmp_path / "images", per_label=3)
    tree = template_tree("toy shape", [*LABELS, "yellow star"])
    dataset = load_dataset(root, labels=tree.labels)
    with pytest.raises(BadInputError, match=r"'yellow star'.*no images"):
        extract_features(dataset, tree, backbone, tmp_path / "run", progress=False)


# -- resume after SIGKILL ----------------------------------------------------------------------------------------

CHILD = """
import sys, time
from conceptforest.features import load_backbone, load_dataset, extract_features
from conceptforest.concepts.tree import ConceptTree
tiny, images, tree_path, out, cache = sys.argv[1:6]
backbone = load_backbone("local-dir:" + tiny, device="cpu")
encode = backbone.encode_images
def slow(batch):
    time.sleep(0.4)
    return encode(batch)
backbone.encode_images = slow
tree = ConceptTree.load(tree_path)
extract_features(load_dataset(images, labels=tree.labels), tree, backbone, out, cache_dir=cache,
                 batch_size=4, chunk_size=8, progress=False)
"""


def test_a_killed_extraction_resumes_to_the_same_result(backbone: Backbone, tiny_dir: Path, tmp_path: Path) -> None:
    root = write_images(tmp_path / "images", per_label=12)
    tree = template_tree("toy shape", LABELS)
    tree_path = tree.save(tmp_path / "tree.json")
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tiny_dir), str(root), str(tree_path), str(tmp_path / "killed"), str(cache)]
    )
    shards = cache / "embeddings" / backbone.backbone_id / "images"
    deadline = time.monotonic() + 120
    while len(list(shards.glob("shard-*.npz"))) < 3:
        assert child.poll() is None, "the extraction finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (tmp_path / "killed" / "features.parquet").exists()  # nothing that looks complete
    done_before = len(list(shards.glob("shard-*.npz")))
    dataset = load_dataset(root, labels=tree.labels)
    resumed, stats = extract_features(
        dataset, tree, backbone, tmp_path / "resumed", cache_dir=cache, batch_size=4, chunk_size=8, progress=False
    )
    assert stats.from_cache >= done_before * 4 and stats.encoded < len(dataset)
    clean, _ = extract_features(
        dataset,
        tree,
        backbone,
        tmp_path / "clean",
        cache_dir=tmp_path / "fresh",
        batch_size=4,
        chunk_size=8,
        progress=False,
    )
    assert resumed.frame.equals(clean.frame)


def test_int8_precision_is_explicit_and_changes_the_backbone_id(tiny_dir: Path, backbone: Backbone) -> None:
    int8 = load_backbone(f"local-dir:{tiny_dir}", device="cpu", precision="int8")
    assert int8.backbone_id == backbone.backbone_id + "__int8"
    assert int8.description["precision"] == "int8" and int8.random_weights
    batch = torch.rand(3, 3, 32, 32)
    embeddings = int8.encode_images(batch)
    assert embeddings.shape == backbone.encode_images(batch).shape
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    texts = ["the colour of the surface is red", "a photo"]
    assert np.array_equal(int8.encode_texts(texts), backbone.encode_texts(texts))  # the text tower stays fp32
    with pytest.raises(BadInputError, match="Unknown precision"):
        load_backbone(f"local-dir:{tiny_dir}", precision="fp8")
