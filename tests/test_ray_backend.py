"""The Ray backend: the same matrix, skipped list and provenance as the local backend; a killed worker is retried.

Slow (a local Ray instance starts in each test); CI installs the ``ray`` extra and sets
``CONCEPTFOREST_REQUIRE_RAY=1`` so that a missing Ray fails instead of skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conceptforest.concepts.template import template_tree
from conceptforest.features.backbone import load_backbone
from conceptforest.features.dataset import load_dataset
from conceptforest.features.extract import extract_features
from conceptforest.features.synthetic import SHAPES, make_shape_images

pytestmark = pytest.mark.slow

if os.environ.get("CONCEPTFOREST_REQUIRE_RAY"):
    import ray  # noqa: F401  (CI installs the extra: a missing one must fail, not skip)
pytest.importorskip("ray.data", reason="install the ray extra: pip install -e '.[ray]'")

from conceptforest.features.ray_backend import EmbedActor, RaySettings, extract_features_ray  # noqa: E402


class DiesOnce(EmbedActor):
    """Kills its own process on its first batch, once per test (a marker file remembers)."""

    marker = ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flag = Path(str(batch["path"][0])).parent.parent / ".killed-once"
        if not flag.exists():
            flag.write_text("x")
            os._exit(1)
        return super().__call__(batch)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = make_shape_images(tmp_path / "images", per_label=8, size=32)
    (root / "red disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def local_and_ray(images: Path, tmp_path: Path, actor: type[EmbedActor]) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    tree = template_tree("shape", list(SHAPES))
    backbone = load_backbone("conceptforest-tiny-random", device="cpu")
    dataset = load_dataset(images, labels=tree.labels)
    local, local_stats = extract_features(dataset, tree, backbone, tmp_path / "local", cache_dir=tmp_path / "c1")
    settings = RaySettings(actors=2, batch_size=8)
    remote, stats = extract_features_ray(
        dataset, tree, backbone, tmp_path / "ray", settings=settings, cache_dir=tmp_path / "c2", actor_class=actor
    )
    assert stats.encoded == local_stats.encoded  # every image encoded once, on the workers
    assert (tmp_path / "ray" / "skipped.csv").read_text() == (tmp_path / "local" / "skipped.csv").read_text()
    assert remote.meta.model_dump(exclude={"features_sha256", "standardization"}) == local.meta.model_dump(
        exclude={"features_sha256", "standardization"}
    )
    return local.frame, remote.frame, stats.skipped


def test_ray_gives_the_local_backends_rows_and_values(images: Path, tmp_path: Path) -> None:
    local, remote, skipped = local_and_ray(images, tmp_path, EmbedActor)
    assert list(remote.columns) == list(local.columns)
    pd.testing.assert_frame_equal(
        remote[["path", "label", "split", "sha256"]], local[["path", "label", "split", "sha256"]]
    )
    concepts = [c for c in local.columns if c not in ("path", "label", "split", "sha256")]
    np.testing.assert_allclose(remote[concepts].to_numpy(), local[concepts].to_numpy(), rtol=1e-5, atol=1e-6)
    assert any("broken.png" in item.path for item in skipped)


def test_a_worker_killed_mid_run_is_retried_without_losing_or_duplicating_rows(images: Path, tmp_path: Path) -> None:
    local, remote, _ = local_and_ray(images, tmp_path, DiesOnce)
    assert (images / ".killed-once").exists()  # a worker did die
    assert len(remote) == len(local) and remote["path"].is_unique
    pd.testing.assert_series_equal(remote["sha256"], local["sha256"])


def test_a_worker_that_cannot_load_the_backbone_is_a_clear_error(images: Path, tmp_path: Path) -> None:
    from conceptforest.errors import BadInputError

    class WrongBackbone(EmbedActor):
        def __init__(self, spec, expected_id, cache_dir, settings, max_pixels):  # type: ignore[no-untyped-def]
            super().__init__(spec, expected_id + "-other", cache_dir, settings, max_pixels)

    tree = template_tree("shape", list(SHAPES))
    backbone = load_backbone("conceptforest-tiny-random", device="cpu")
    dataset = load_dataset(images, labels=tree.labels)
    with pytest.raises(BadInputError, match="not the driver's"):
        extract_features_ray(
            dataset, tree, backbone, tmp_path / "ray", settings=RaySettings(actors=1), actor_class=WrongBackbone
        )
    with pytest.raises(BadInputError, match="int8 precision runs on cpu"):  # checked before Ray starts
        int8 = load_backbone("conceptforest-tiny-random", device="cpu", precision="int8")
        extract_features_ray(dataset, tree, int8, tmp_path / "r2", settings=RaySettings(gpus_per_actor=1))


def test_features_extract_backend_ray_through_the_cli(images: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from conceptforest.cli import app
    from conceptforest.features.matrix import FeatureMatrix

    runner = CliRunner()
    tree = tmp_path / "tree.json"
    template_tree("shape", list(SHAPES)).save(tree)
    common = [str(images), str(tree), "--clip", "conceptforest-tiny-random", "--no-progress"]
    local = runner.invoke(app, ["features", "extract", *common, "-o", str(tmp_path / "local")])
    remote = runner.invoke(
        app, ["features", "extract", *common, "-o", str(tmp_path / "ray"), "--backend", "ray", "--ray-actors", "1"]
    )
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    a, b = FeatureMatrix.load(tmp_path / "local").frame, FeatureMatrix.load(tmp_path / "ray").frame
    pd.testing.assert_frame_equal(a, b)  # one cache: the Ray run found every embedding the local run made
