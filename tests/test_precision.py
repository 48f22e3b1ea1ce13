"""Mixed precision: bf16 autocast runs on the CPU with its own backbone id and near-fp32 embeddings; a precision a
device cannot run is refused by name (the CUDA half-precision path has this CPU test of its logic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptforest.errors import BadInputError
from conceptforest.features.backbone import load_backbone
from conceptforest.features.spec import BackboneSpec


def test_bf16_on_the_cpu_is_recorded_and_close_to_fp32() -> None:
    full = load_backbone("conceptforest-tiny-random", device="cpu")
    mixed = load_backbone("conceptforest-tiny-random", device="cpu", precision="bf16")
    assert mixed.backbone_id == full.backbone_id + "__bf16" and mixed.autocast is torch.bfloat16
    assert mixed.spec.precision == "bf16" and BackboneSpec.model_validate(mixed.description).load().autocast
    batch = torch.randn(4, 3, *full.model.visual.image_size)
    a, b = full.encode_images(batch), mixed.encode_images(batch)
    assert b.dtype == np.float32 and a.shape == b.shape
    assert not np.array_equal(a, b)  # autocast really ran in bf16
    assert float(np.min(np.sum(a * b, axis=1))) > 0.98
    texts = ["a red disc", "a blue tile"]
    assert float(np.min(np.sum(full.encode_texts(texts) * mixed.encode_texts(texts), axis=1))) > 0.98


@pytest.mark.parametrize(("precision", "device"), [("fp16", "cpu"), ("int8", "meta")])
def test_a_precision_the_device_cannot_run_is_refused(precision: str, device: str) -> None:
    with pytest.raises(BadInputError, match=f"{precision} precision runs on"):
        load_backbone("conceptforest-tiny-random", device=device, precision=precision)


@pytest.mark.parametrize(("device", "says"), [("cuda", "no CUDA device"), ("tpu", "not a device name")])
def test_a_device_this_machine_lacks_is_refused_by_name(device: str, says: str) -> None:
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BadInputError, match=says):
        load_backbone("conceptforest-tiny-random", device=device)
