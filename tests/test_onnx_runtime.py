"""``--runtime onnxruntime``: the image tower exported to ONNX once, cached, checked against torch on every load.

Same embeddings as torch (so the same backbone id and a shared cache), recorded in the spec, refused off the
CPU, below fp32 and without the ``onnx`` extra (whose absence the rest of the suite never needs).
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

if os.environ.get("CONCEPTFOREST_REQUIRE_ONNX"):
    import onnx  # noqa: F401  (CI installs the extra: a missing one must fail, not skip)
    import onnxruntime  # noqa: F401
pytest.importorskip("onnxruntime", reason="install the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("onnx", reason="install the onnx extra: pip install -e '.[onnx]'")

from conceptforest.errors import BadInputError
from conceptforest.features import onnx_visual
from conceptforest.features.backbone import TINY_RANDOM, Backbone, load_backbone
from conceptforest.features.onnx_visual import OnnxImageTower, check_runtime, onnx_model_path
from conceptforest.features.spec import BackboneSpec
from tests.test_cli import invoke, shape_images_and_tree
from tests.test_features import LABELS, shape_image


class ExportCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self._export = onnx_visual.export_image_tower
        monkeypatch.setattr(onnx_visual, "export_image_tower", self)

    def __call__(self, visual: torch.nn.Module, target: Path) -> Path:
        self.calls += 1
        return self._export(visual, target)


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> ExportCounter:
    return ExportCounter(monkeypatch)


def made_up_batch(backbone: Backbone) -> torch.Tensor:
    return torch.stack([backbone.preprocess(shape_image(label, i)) for label in LABELS for i in range(3)])


def test_embeddings_equal_torch_under_the_same_backbone_id(exports: ExportCounter) -> None:
    eager = load_backbone(TINY_RANDOM, device="cpu")
    onnx = load_backbone(TINY_RANDOM, device="cpu", runtime="onnxruntime")
    assert isinstance(onnx.model.visual, OnnxImageTower) and exports.calls == 1
    assert onnx.backbone_id == eager.backbone_id and onnx.embed_dim == eager.embed_dim
    assert onnx.model.visual.image_size == eager.model.visual.image_size
    batch = made_up_batch(eager)
    a, b = eager.encode_images(batch), onnx.encode_images(batch)
    assert b.dtype == np.float32 and a.shape == b.shape
    assert float(np.min(np.sum(a * b, axis=1))) >= 0.9999
    texts = ["a red disc", "a blue tile"]  # the text tower stays torch
    np.testing.assert_array_equal(eager.encode_texts(texts), onnx.encode_texts(texts))


def test_the_export_is_cached_and_a_damaged_one_replaced(exports: ExportCounter) -> None:
    first = load_backbone(TINY_RANDOM, runtime="onnxruntime")
    path = onnx_model_path(first.backbone_id)
    assert path.is_file() and exports.calls == 1
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    mtime = path.stat().st_mtime_ns
    load_backbone(TINY_RANDOM, runtime="onnxruntime")
    assert exports.calls == 1 and path.stat().st_mtime_ns == mtime
    path.write_bytes(b"not an onnx model")
    again = load_backbone(TINY_RANDOM, runtime="onnxruntime")
    assert exports.calls == 2 and isinstance(again.model.visual, OnnxImageTower)


def test_the_runtime_is_recorded_and_reloaded() -> None:
    onnx = load_backbone(TINY_RANDOM, runtime="onnxruntime")
    assert onnx.description["runtime"] == "onnxruntime" and onnx.spec.runtime == "onnxruntime"
    spec = BackboneSpec.model_validate_json(onnx.spec.model_dump_json())
    assert spec == onnx.spec and isinstance(spec.load().model.visual, OnnxImageTower)
    assert load_backbone(TINY_RANDOM).spec.runtime == "torch"
    older = {k: v for k, v in onnx.description.items() if k != "runtime"}  # written before the runtime existed
    assert BackboneSpec.model_validate(older).runtime == "torch"
    assert BackboneSpec.parse(TINY_RANDOM, runtime="onnxruntime").runtime == "onnxruntime"
    with pytest.raises(BadInputError, match="Unknown runtime"):
        BackboneSpec.parse(TINY_RANDOM, runtime="tensorrt")
    with pytest.raises(BadInputError, match="Unknown runtime"):
        load_backbone(TINY_RANDOM, runtime="tensorrt")


def test_the_tower_survives_copies_and_pickles() -> None:
    onnx = load_backbone(TINY_RANDOM, runtime="onnxruntime")
    batch = made_up_batch(onnx)
    expected = onnx.encode_images(batch)
    for model in (copy.deepcopy(onnx.model), pickle.loads(pickle.dumps(onnx.model))):
        with torch.inference_mode():
            got = torch.nn.functional.normalize(model.encode_image(batch), dim=-1).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_tower_that_differs_from_torch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_visual, "MIN_COSINE", 1.5)  # no export can reach it
    with pytest.raises(BadInputError, match="'conceptforest-tiny-random' does not match torch") as info:
        load_backbone(TINY_RANDOM, runtime="onnxruntime")
    assert info.value.hint is not None and "--runtime torch" in info.value.hint


def test_a_failing_export_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Unsupported: ONNX export of operator foo")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(BadInputError, match="Could not export the image tower of CLIP model") as info:
        load_backbone(TINY_RANDOM, runtime="onnxruntime")
    assert info.value.hint is not None and "--runtime torch" in info.value.hint


def test_a_large_export_is_gathered_into_one_data_file(tmp_path: Path) -> None:
    """Over 2 GiB, torch writes one file per tensor: published as <name>.onnx plus one <name>.onnx.data."""
    import onnx

    visual = load_backbone(TINY_RANDOM).model.visual
    staged = tmp_path / ".export-x" / "model.onnx"
    staged.parent.mkdir()
    single = onnx_visual.export_image_tower(visual, tmp_path / "single.onnx")
    onnx.save_model(
        onnx.load(str(single)), str(staged), save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0
    )
    assert len(list(staged.parent.iterdir())) > 2
    target = tmp_path / "cache" / "big.onnx"
    target.parent.mkdir()
    onnx_visual._publish(staged, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert onnx_visual._mismatch(visual, OnnxImageTower(target, visual)) is None


@pytest.mark.parametrize(
    ("device", "precision", "says"), [("cuda", "fp32", "on the CPU"), ("cpu", "int8", "fp32 only")]
)
def test_onnxruntime_off_the_cpu_or_below_fp32_is_refused(device: str, precision: str, says: str) -> None:
    with pytest.raises(BadInputError, match=says):
        check_runtime("onnxruntime", torch.device(device), precision)


def test_a_missing_gpu_is_refused_before_the_runtime() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BadInputError, match="no CUDA device"):
        load_backbone(TINY_RANDOM, device="cuda", runtime="onnxruntime")


def test_without_onnxruntime_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(BadInputError, match="onnxruntime is not installed") as info:
        load_backbone(TINY_RANDOM, runtime="onnxruntime")
    assert info.value.hint is not None and "pip install 'conceptforest[onnx]'" in info.value.hint
    images, tree = shape_images_and_tree(tmp_path)
    args = ["features", "extract", str(images), str(tree), "--clip", TINY_RANDOM, "--runtime", "onnxruntime"]
    result = invoke(*args, "-o", str(tmp_path / "r"), "--no-progress")
    assert result.exit_code == 2 and "pip install 'conceptforest[onnx]'" in result.output, result.output


def test_the_cli_gives_the_same_scores_and_shares_the_cache(tmp_path: Path) -> None:
    images, tree = shape_images_and_tree(tmp_path)
    common = ["features", "extract", str(images), str(tree), "--clip", TINY_RANDOM, "--no-progress"]
    frames = {}
    for runtime in ("torch", "onnxruntime"):
        out, cache = tmp_path / runtime, tmp_path / f"cache-{runtime}"
        result = invoke(*common, "--runtime", runtime, "-o", str(out), "--cache-dir", str(cache))
        assert result.exit_code == 0, result.output
        assert "Encoded 15 new image(s)" in result.output
        frames[runtime] = pd.read_parquet(out / "features.parquet")
        assert json.loads((out / "concepts.json").read_text())["backbone"]["runtime"] == runtime
    torch_frame, onnx_frame = frames["torch"], frames["onnxruntime"]
    assert list(torch_frame.columns) == list(onnx_frame.columns)
    scores = [c for c in torch_frame.columns if torch_frame[c].dtype == np.float32]
    assert scores and list(torch_frame["path"]) == list(onnx_frame["path"])
    np.testing.assert_allclose(onnx_frame[scores].to_numpy(), torch_frame[scores].to_numpy(), atol=1e-4)
    shared = invoke(
        *common, "--runtime", "torch", "-o", str(tmp_path / "again"), "--cache-dir", str(tmp_path / "cache-onnxruntime")
    )
    assert shared.exit_code == 0 and "Encoded 0 new image(s), 15 from cache" in shared.output, shared.output


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_the_cli_refuses_onnxruntime_below_fp32(tmp_path: Path, precision: str) -> None:
    images, tree = shape_images_and_tree(tmp_path)
    args = ["features", "extract", str(images), str(tree), "--clip", TINY_RANDOM, "--runtime", "onnxruntime"]
    result = invoke(*args, "--precision", precision, "-o", str(tmp_path / "r"), "--device", "cpu")
    assert result.exit_code == 2 and "fp32 only" in result.output, result.output


def test_the_cli_imports_no_onnx_and_documents_the_runtime() -> None:
    code = "import sys, conceptforest.cli; assert not {'onnx', 'onnxruntime', 'torch'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
    result = invoke("features", "extract", "--help")
    assert result.exit_code == 0 and "--runtime" in result.output and "onnxruntime" in result.output


def test_a_later_stage_runs_torch_where_the_recorded_runtime_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = BackboneSpec(model=TINY_RANDOM, runtime="onnxruntime")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the extra is missing on this machine
    with pytest.raises(BadInputError, match="conceptforest\\[onnx\\]"):
        spec.load(device="cpu")  # asked for explicitly: refused
    with pytest.warns(RuntimeWarning, match="torch runs it instead"):
        backbone = spec.load(device="cpu", strict_runtime=False)
    assert backbone.description["runtime"] == "torch"
    assert backbone.backbone_id == load_backbone(TINY_RANDOM, device="cpu").backbone_id
