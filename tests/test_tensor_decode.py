"""The tensor decoding path (torchvision on CPU, nvJPEG batched on CUDA), its logic tested on the CPU."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision import transforms as tv

from conceptforest.concepts.template import template_tree
from conceptforest.features import extract_features, load_backbone, load_dataset, tensor_decode
from conceptforest.features.backbone import TINY_RANDOM, Backbone, to_device
from conceptforest.features.devices import batch_size_for_memory, probe_gpu_batch_size
from conceptforest.features.extract import Extractor
from conceptforest.features.store import EmbeddingStore
from conceptforest.features.tensor_decode import (
    StandardPreprocess,
    TensorPreparer,
    pillow_preparer,
    stack_inputs,
    standard_preprocess,
)
from tests.test_features import LABELS, shape_image, write_hostile

MAX_PIXELS = 1_000_000


def jpeg(image: Image.Image, **save: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **save)
    return buffer.getvalue()


def noisy(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def preparers(
    preprocess: Any, max_pixels: int = MAX_PIXELS, pillow: Callable[[bytes], torch.Tensor | str] | None = None
) -> tuple[TensorPreparer, Callable[[bytes], torch.Tensor | str]]:
    """The tensor path for open_clip's ``preprocess`` and the Pillow path it falls back to (``pillow`` if given)."""
    standard = standard_preprocess(preprocess)
    assert standard is not None
    fallback = pillow or pillow_preparer(preprocess, max_pixels)
    return TensorPreparer(standard, fallback, max_pixels), fallback


@pytest.fixture(scope="module")
def vit_preprocess() -> Any:
    return open_clip.image_transform(224, is_train=False)


def test_open_clip_pipelines_are_read_and_others_are_left_to_pillow(vit_preprocess: Any) -> None:
    standard = standard_preprocess(vit_preprocess)
    assert standard is not None and standard.resize == [224] and standard.crop == [224, 224]
    assert torch.allclose(standard.mean.flatten(), torch.tensor(open_clip.OPENAI_DATASET_MEAN))
    assert standard_preprocess(open_clip.image_transform(224, is_train=True)) is None  # random crops
    assert standard_preprocess(load_backbone(TINY_RANDOM, device="cpu").preprocess) is not None
    bilinear = tv.Compose([tv.Resize(224), tv.CenterCrop(224), tv.ToTensor(), tv.Normalize([0.5] * 3, [0.5] * 3)])
    assert standard_preprocess(bilinear) is None
    bicubic = tv.Resize(224, interpolation=tv.InterpolationMode.BICUBIC)
    extra_step = tv.Compose(
        [bicubic, tv.CenterCrop(224), tv.Grayscale(3), tv.ToTensor(), tv.Normalize([0.5] * 3, [0.5] * 3)]
    )
    assert standard_preprocess(extra_step) is None
    assert standard_preprocess(lambda image: image) is None


def test_cpu_tensor_path_matches_pillow_within_a_grey_level_almost_everywhere(vit_preprocess: Any) -> None:
    preparer, pillow = preparers(vit_preprocess)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: both paths must turn it upright
    files = [jpeg(noisy((500, 375), 1)), jpeg(noisy((300, 640), 2)), jpeg(noisy((640, 300), 3), exif=exif)]
    files.append(jpeg(noisy((400, 400), 4).convert("L")))
    one_level = 1.0 / 255 / min(open_clip.OPENAI_DATASET_STD) + 1e-4
    for data in files:
        expected, found = pillow(data), preparer.prepare(data)
        assert isinstance(expected, torch.Tensor) and isinstance(found, torch.Tensor)
        assert found.shape == expected.shape == (3, 224, 224)
        difference = (found - expected).abs()
        # the same decoder; the uint8 bicubic resizes round apart by one level, and on pure noise a few
        # saturated pixels of a portrait image by up to 9 levels
        assert float(difference.max()) <= 10 * one_level
        assert float((difference > one_level).float().mean()) < 1e-3
        assert float(difference.mean()) < 0.3 * one_level


def test_what_the_tensor_path_cannot_take_goes_through_pillow(vit_preprocess: Any) -> None:
    calls: list[bytes] = []
    real = pillow_preparer(vit_preprocess, MAX_PIXELS)

    def pillow(data: bytes) -> torch.Tensor | str:
        calls.append(data)
        return real(data)

    preparer, _ = preparers(vit_preprocess, pillow=pillow)
    png = io.BytesIO()
    noisy((50, 40), 5).save(png, format="PNG")
    cmyk = jpeg(noisy((60, 60), 6).convert("CMYK"))
    good = jpeg(noisy((80, 60), 7))
    for data in (png.getvalue(), cmyk, good[: len(good) // 2]):
        result = preparer.prepare(data)
        assert calls[-1] == data  # Pillow decided
        assert isinstance(result, torch.Tensor) or "truncated" in result
    before = len(calls)
    assert isinstance(preparer.prepare(good), torch.Tensor) and len(calls) == before  # a plain JPEG never does


def test_a_decompression_bomb_is_refused_from_its_header(vit_preprocess: Any) -> None:
    preparer, _ = preparers(vit_preprocess, max_pixels=10_000)
    result = preparer.prepare(jpeg(Image.new("RGB", (200, 200))))
    assert isinstance(result, str) and "decompression bomb" in result
    strip = preparer.prepare(jpeg(Image.new("RGB", (5000, 2))))
    assert isinstance(strip, str) and "aspect ratio" in strip


def test_the_batched_device_path_keeps_order_and_names_every_bad_file(vit_preprocess: Any) -> None:
    """The GPU path's logic on the CPU device: one batched decode, Pillow for the rest, results in order."""
    preparer, pillow = preparers(vit_preprocess)
    png = io.BytesIO()
    noisy((50, 40), 5).save(png, format="PNG")
    good = [jpeg(noisy((320, 240), seed)) for seed in range(3)]
    batch = [good[0], png.getvalue(), good[1][: len(good[1]) // 2], b"not an image", good[2]]
    prepared = preparer.prepare_batch(batch, torch.device("cpu"))
    assert len(prepared) == len(batch)
    for index in (0, 4):
        found, expected = prepared[index], preparer.prepare(batch[index])
        assert isinstance(found, torch.Tensor) and isinstance(expected, torch.Tensor)
        assert torch.equal(found, expected)
    assert isinstance(prepared[1], torch.Tensor) and torch.equal(prepared[1], pillow(batch[1]))  # type: ignore[arg-type]
    assert prepared[2] == pillow(batch[2]) and "truncated" in str(prepared[2])
    assert prepared[3] == pillow(batch[3]) and "not an image" in str(prepared[3])


def test_cpu_batches_are_stacked_on_the_host_for_one_pinned_copy() -> None:
    cpu = [torch.zeros(3, 4, 4), torch.ones(3, 4, 4)]
    stacked = stack_inputs(cpu, torch.device("cuda"))  # not moved here: the backbone pins and copies it once
    assert stacked.device.type == "cpu" and stacked.shape == (2, 3, 4, 4)


def test_the_batched_path_turns_exif_rotated_jpegs_upright(
    vit_preprocess: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nvJPEG ignores EXIF orientation: a batched decode that does the same must not leave a photo sideways."""
    from torchvision.io import ImageReadMode, decode_jpeg

    preparer, pillow = preparers(vit_preprocess)
    real = tensor_decode.decode_jpegs

    def like_nvjpeg(data: Any, device: Any = "cpu") -> Any:
        if isinstance(data, list):  # the batched call: orientation ignored, as on CUDA
            return [decode_jpeg(d, mode=ImageReadMode.RGB) for d in data]
        return real(data, device)

    monkeypatch.setattr(tensor_decode, "decode_jpegs", like_nvjpeg)
    exif = Image.Exif()
    exif[0x0112] = 6
    gradient = Image.linear_gradient("L").resize((320, 200)).convert("RGB")
    rotated, plain = jpeg(gradient, exif=exif), jpeg(gradient)
    found = preparer.prepare_batch([rotated, plain], torch.device("cpu"))
    for data, result in zip([rotated, plain], found, strict=True):
        expected = pillow(data)
        assert isinstance(result, torch.Tensor) and isinstance(expected, torch.Tensor)
        assert float((result - expected).abs().mean()) < 0.01


def test_pillows_own_pixel_limit_holds_on_the_tensor_path(vit_preprocess: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    preparer, _ = preparers(vit_preprocess)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # under --max-pixels: Pillow's guard decides
    data = jpeg(Image.new("RGB", (100, 80)))
    for result in (preparer.prepare(data), preparer.prepare_batch([data], torch.device("cpu"))[0]):
        assert isinstance(result, str) and "decompression bomb" in result


class FakeBatch:
    """Records how a batch is moved; stands in for a CPU tensor bound for CUDA on a machine without one."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.steps: list[str] = []

    def pin_memory(self) -> FakeBatch:
        self.steps.append("pinned")
        return self

    def to(self, device: torch.device, non_blocking: bool = False) -> FakeBatch:
        self.steps.append(f"to {device.type} non_blocking={non_blocking}")
        return self


def test_cuda_batches_go_through_pinned_memory_and_cpu_batches_do_not() -> None:
    batch = FakeBatch()
    to_device(batch, torch.device("cuda"))  # type: ignore[arg-type]
    assert batch.steps == ["pinned", "to cuda non_blocking=True"]
    plain = FakeBatch()
    to_device(plain, torch.device("cpu"))  # type: ignore[arg-type]
    assert plain.steps == ["to cpu non_blocking=False"]


def test_batch_size_is_the_largest_power_of_two_that_fits() -> None:
    mib = 2**20
    assert batch_size_for_memory(10 * mib, 100 * mib, 1000 * mib) == 32  # 0.6 * 1000 - 100 = 500 MiB -> 50 images
    assert batch_size_for_memory(10 * mib, 100 * mib, 100 * 2**30) == 1024  # capped
    assert batch_size_for_memory(10 * mib, 900 * mib, 1000 * mib) == 1  # nothing fits: one at a time
    assert probe_gpu_batch_size(lambda n: pytest.fail("no probe off CUDA"), torch.device("cpu")) == 64


def test_the_cuda_probe_measures_memory_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's CUDA branch with torch.cuda's memory calls played by a fake: 1 GiB fixed, 40 MiB an image."""
    mib = 2**20
    state = {"peak": 0}
    calls: list[int] = []

    def encode(n: int) -> None:
        calls.append(n)
        state["peak"] = 1024 * mib + 40 * mib * n

    cuda = torch.cuda
    monkeypatch.setattr(cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda device=None: state.update(peak=0))
    monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: 0)
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: state["peak"])
    monkeypatch.setattr(cuda, "mem_get_info", lambda device=None: (20 * 1024 * mib, 80 * 1024 * mib))
    size = probe_gpu_batch_size(encode, torch.device("cuda"))
    assert calls == [1, 1, 16]  # a warm-up, then the two measured passes
    # 0.6 x 20 GiB - 1 GiB = 11,264 MiB -> 281 images -> 256
    assert size == 256 == batch_size_for_memory(40 * mib, 1024 * mib, 20 * 1024 * mib)


def write_jpeg_images(root: Path, per_label: int = 6) -> Path:
    for label in LABELS:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            shape_image(label, i).resize((96, 72)).save(root / label / f"img {i}.jpg", quality=92)
    return root


def test_extraction_with_tensor_decoding_matches_pillow_and_skips_the_same_files(tmp_path: Path) -> None:
    root = write_jpeg_images(tmp_path / "images")
    hostile = write_hostile(root / LABELS[0])
    backbone = load_backbone(TINY_RANDOM, device="cpu")
    tree = template_tree("toy shape", LABELS)
    dataset = load_dataset(root, labels=tree.labels)
    runs = {}
    for decode in ("auto", "pillow"):
        matrix, stats = extract_features(
            dataset,
            tree,
            backbone,
            tmp_path / decode,
            cache_dir=tmp_path / f"c-{decode}",
            decode=decode,
            max_pixels=MAX_PIXELS,
            progress=False,
        )
        runs[decode] = (matrix, stats)
    (auto, auto_stats), (pillow, pillow_stats) = runs["auto"], runs["pillow"]
    assert auto_stats.decoder == "torchvision" and pillow_stats.decoder == "pillow"
    assert auto.meta.image_decoder == "torchvision" and pillow.meta.image_decoder == "pillow"
    assert sorted(s.path for s in auto_stats.skipped) == sorted(s.path for s in pillow_stats.skipped)
    reasons = {Path(s.path).name: s.reason for s in auto_stats.skipped}
    assert all(word in reasons.get(name, "") for name, word in hostile.items()), reasons
    assert auto.frame["sha256"].tolist() == pillow.frame["sha256"].tolist()
    scores_auto = auto.frame[auto.concept_ids].to_numpy()
    scores_pillow = pillow.frame[pillow.concept_ids].to_numpy()
    assert np.abs(scores_auto - scores_pillow).max() < 2e-3  # cosines of nearly equal embeddings


def test_an_unknown_decoder_is_refused(tmp_path: Path) -> None:
    from conceptforest.errors import BadInputError

    backbone: Backbone = load_backbone(TINY_RANDOM, device="cpu")
    store = EmbeddingStore(tmp_path, backbone.backbone_id, "images")
    with pytest.raises(BadInputError, match="decoder"):
        Extractor(backbone, store, batch_size=4, max_pixels=MAX_PIXELS, workers=1, decode="gpu")


def test_standard_preprocess_applies_on_uint8_tensors() -> None:
    standard = StandardPreprocess([8], [8, 8], torch.zeros(3, 1, 1), torch.ones(3, 1, 1))
    image = torch.full((3, 16, 32), 255, dtype=torch.uint8)
    out = standard.apply(image)
    assert out.shape == (3, 8, 8) and out.dtype == torch.float32 and torch.allclose(out, torch.ones_like(out))


def test_a_non_image_file_in_a_label_folder_is_listed_as_skipped(tmp_path: Path) -> None:
    root = write_jpeg_images(tmp_path / "images", per_label=3)
    (root / LABELS[0] / "notes.txt").write_text("not a picture")
    (root / LABELS[0] / "README").write_text("no extension")
    (root / LABELS[0] / ".DS_Store").write_bytes(b"\0")
    dataset = load_dataset(root, labels=LABELS)
    reasons = {Path(s.path).name: s.reason for s in dataset.skipped}
    assert set(reasons) == {"notes.txt", "README"}  # the hidden file is not the user's data
    assert "extension '.txt'" in reasons["notes.txt"] and ".jpg" in reasons["notes.txt"]
    assert "no extension" in reasons["README"]
    assert len(dataset.records) == 3 * len(LABELS)
