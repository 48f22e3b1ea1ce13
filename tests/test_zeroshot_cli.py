"""``conceptforest zeroshot`` end to end: descriptors from the stub LLM, the tiny backbone, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conceptforest.cli import app
from tests.llm_stub import StubServer

runner = CliRunner()
LABELS = ["red disc", "blue tile", "green wedge"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from conceptforest.features import save_tiny_backbone
    from conceptforest.features.synthetic import make_shape_images

    root = tmp_path_factory.mktemp("zeroshot")
    return {
        "images": make_shape_images(root / "images", per_label=6, labels=LABELS),
        "tiny": save_tiny_backbone(root / "tiny"),
        "cache": root / "cache",
    }


def zeroshot(data: dict[str, Path], out: Path, *extra: str):  # type: ignore[no-untyped-def]
    args = ["zeroshot", str(data["images"]), "--clip", f"local-dir:{data['tiny']}", "-o", str(out)]
    return runner.invoke(app, [*args, "--cache-dir", str(data["cache"]), "--no-progress", *extra])


def test_dclip_explains_each_image_with_per_descriptor_scores(
    stub: StubServer, data: dict[str, Path], tmp_path: Path
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    descriptors = tmp_path / "dclip.json"
    described = runner.invoke(
        app,
        [
            *("concepts", "describe", "--style", "dclip", "--labels", str(labels), "--llm", "stub-model"),
            *("--llm-base-url", stub.base_url, "-o", str(descriptors), "--no-progress"),
        ],
    )
    assert described.exit_code == 0, described.output
    result = zeroshot(data, tmp_path / "zs", "--method", "dclip", "--descriptors", str(descriptors))
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.output and "accuracy" in result.output
    predictions = pd.read_csv(tmp_path / "zs" / "predictions.csv")
    assert len(predictions) == 18 and set(predictions["predicted"]) <= set(LABELS)
    assert sorted(c for c in predictions.columns if c.startswith("score:")) == sorted(f"score:{x}" for x in LABELS)
    explanations = pd.read_csv(tmp_path / "zs" / "report" / "tables" / "explanations.csv")
    per_image = explanations[explanations["row"] == 0]
    assert per_image["label"].nunique() == 2  # the top two labels, every descriptor of each
    sets = json.loads(descriptors.read_text())["descriptors"]
    for label, rows in per_image.groupby("label"):
        assert len(rows) == len(sets[label])
    top = predictions.iloc[0]["predicted"]
    assert top in set(per_image["label"])
    html = (tmp_path / "zs" / "report" / "index.html").read_text()
    assert ">Why</h2>" in html and "data:image/png;base64" in html


def test_waffle_and_clip_need_no_descriptors(data: dict[str, Path], tmp_path: Path) -> None:
    for method in ("clip", "waffle"):
        result = zeroshot(data, tmp_path / method, "--method", method)
        assert result.exit_code == 0, result.output
        report = json.loads((tmp_path / method / "report" / "report.json").read_text())
        assert report["made_by"]["method"] == method


def test_dclip_without_descriptors_names_the_flag(data: dict[str, Path], tmp_path: Path) -> None:
    result = zeroshot(data, tmp_path / "none", "--method", "dclip")
    assert result.exit_code == 2 and "--descriptors" in result.output and "Traceback" not in result.output
    trained = zeroshot(data, tmp_path / "none", "--method", "forest")
    assert trained.exit_code == 2 and "zero-shot" in trained.output


def test_mllm_and_wdys_through_the_cli_with_a_stub_that_looks_at_the_images(
    vision_stub, data: dict[str, Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    mllm = ("--mllm", "stub-vision", "--mllm-base-url", vision_stub.base_url)
    direct = zeroshot(data, tmp_path / "mllm", "--method", "mllm", *mllm, "--limit", "9")
    assert direct.exit_code == 0, direct.output
    assert "Plan: up to 1 vision-LLM request(s) per image" in direct.output
    predictions = pd.read_csv(tmp_path / "mllm" / "predictions.csv")
    assert len(predictions) == 9 and (predictions["predicted"] == predictions["label"]).mean() >= 0.9
    tables = tmp_path / "mllm" / "report" / "tables"
    assert {"answer_types.csv", "answer_bias.csv", "confusion_raw.csv", "per_label.csv"} <= {
        p.name for p in tables.iterdir()
    }
    sent = len(vision_stub.state.requests)
    again = zeroshot(data, tmp_path / "mllm2", "--method", "mllm", *mllm, "--limit", "9")
    assert again.exit_code == 0 and len(vision_stub.state.requests) == sent  # every answer from the cache
    fused = zeroshot(data, tmp_path / "wdys", "--method", "wdys", *mllm)
    assert fused.exit_code == 0, fused.output
    ablation = pd.read_csv(tmp_path / "wdys" / "report" / "tables" / "wdys_ablation.csv")
    assert len(ablation) == 4 and ablation["accuracy"].between(0, 1).all()
    html = (tmp_path / "wdys" / "report" / "index.html").read_text()
    assert ">Ablation</h2>" in html


def test_without_mllm_the_vision_methods_name_the_flag(data: dict[str, Path], tmp_path: Path) -> None:
    result = zeroshot(data, tmp_path / "none", "--method", "mllm")
    assert result.exit_code == 2 and "--mllm" in result.output and "Traceback" not in result.output


def test_mllm_needs_no_clip_weights_at_all(
    vision_stub, data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A user with only a local vision model: no backbone is named, none may be loaded or downloaded."""
    import open_clip

    def no_clip(*args: object, **kwargs: object) -> None:
        raise AssertionError("a CLIP model was loaded for a method that does not use one")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", no_clip)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "only-vision"
    out.mkdir()
    for earlier in ("features.parquet", "concepts.json"):  # an earlier CLIP zeroshot's features in this folder
        (out / earlier).write_text("earlier run")
    args = ["zeroshot", str(data["images"]), "--method", "mllm", "-o", str(out), "--no-progress"]
    result = runner.invoke(app, [*args, "--mllm", "stub-vision", "--mllm-base-url", vision_stub.base_url])
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" not in result.output and "accuracy" in result.output
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 18 and (predictions["predicted"] == predictions["label"]).mean() >= 0.9
    assert {"confusion_raw.csv", "per_label.csv"} <= {p.name for p in (out / "report" / "tables").iterdir()}
    assert not (out / "features.parquet").exists() and not (out / "concepts.json").exists()
    made_by = json.loads((out / "report" / "report.json").read_text())["made_by"]
    assert made_by["backbone_id"] == "none"
    ignored = runner.invoke(
        app, [*args, "--clip", "ViT-B-32", "--mllm", "stub-vision", "--mllm-base-url", vision_stub.base_url]
    )
    assert ignored.exit_code == 0 and "uses no CLIP backbone" in ignored.output
