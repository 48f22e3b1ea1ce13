"""The fast rescoring and save paths give what the plain ones gave; the report states its SHAP rows.

No timings here: the speed is measured by benchmarks/rescore.py and benchmarks/shap_step.py.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conceptforest.explain import explain_model, explain_shap
from conceptforest.explain.shap_values import explain_report_shap, report_shap_rows
from conceptforest.features.matrix import FeatureMatrix, arrow_table
from conceptforest.features.scores import ScoreWriter, concept_scores, score_schema
from conceptforest.models import load_bundle, train_model
from tests.test_models import made_up_matrix


def _float32_bound(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """How far a float32 product may lie from the exact one: n unit roundoffs of sum |a_i b_i|, plus the final
    rounding. BLAS kernels sum in an order chosen by the CPU (OpenBLAS's DYNAMIC_ARCH), so only this is promised
    across machines."""
    unit = float(np.finfo(np.float32).eps) / 2
    magnitude = np.abs(vectors.astype(np.float64)) @ np.abs(matrix.astype(np.float64)).T
    return (vectors.shape[1] + 1) * unit * magnitude + np.finfo(np.float32).tiny


@pytest.mark.parametrize(("rows", "concepts", "dim"), [(0, 3, 8), (1, 1, 4), (37, 11, 16), (300, 129, 64)])
def test_concept_scores_are_the_plain_product_to_float32_rounding(rows: int, concepts: int, dim: int) -> None:
    rng = np.random.default_rng(rows)
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    matrix = rng.standard_normal((concepts, dim)).astype(np.float32)
    scores = concept_scores(vectors, matrix)
    assert scores.dtype == np.float32 and scores.flags.c_contiguous and scores.shape == (concepts, rows)
    exact = vectors.astype(np.float64) @ matrix.astype(np.float64).T
    bound = _float32_bound(vectors, matrix)
    assert np.all(np.abs(scores.T - exact) <= bound)
    assert np.all(np.abs(scores.T - (vectors @ matrix.T)) <= 2 * bound)  # the row-major product, any kernel
    assert np.array_equal(concept_scores(vectors, matrix), scores)  # one machine, one path: the same bits
    as_double = vectors.astype(np.float64)  # another precision: computed in it, then rounded, as before
    assert np.all(np.abs(concept_scores(as_double, matrix).T - exact) <= bound)


def _blas_kernel(env: dict[str, str]) -> str:
    """The kernel numpy's OpenBLAS runs with this environment ("" when numpy's BLAS is not OpenBLAS)."""
    probe = "import numpy, threadpoolctl; print([i.get('architecture') for i in threadpoolctl.threadpool_info()"
    probe += " if i.get('internal_api') == 'openblas'][:1])"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    return done.stdout.strip() if done.returncode == 0 else ""


@pytest.mark.parametrize("kernel", ["Prescott", "Zen"])
def test_the_score_checks_hold_under_another_cpus_blas_kernel(kernel: str) -> None:
    """OpenBLAS picks its kernel by CPU; these two (any x86_64 runs Prescott's) round the two product layouts
    differently from the machine the tests were written on, so a bit-for-bit comparison failed there."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("OpenBLAS kernel names are x86_64 ones")
    if _blas_kernel({**os.environ, "OPENBLAS_CORETYPE": kernel}) == _blas_kernel(dict(os.environ)):
        pytest.skip(f"numpy's BLAS does not switch to the {kernel} kernel here (not OpenBLAS with DYNAMIC_ARCH)")
    selected = "test_concept_scores_are_the_plain_product or test_score_writer_writes_the_plain_table"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", selected],
        env={**os.environ, "OPENBLAS_CORETYPE": kernel},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "6 passed" in done.stdout


def _ids(start: int, stop: int) -> dict[str, list[str]]:
    return {
        "path": [f"img{i}.jpg" for i in range(start, stop)],
        "label": ["a" if i % 2 else "b" for i in range(start, stop)],
        "split": ["train" if i % 3 else "test" for i in range(start, stop)],
        "sha256": [f"{i:064x}" for i in range(start, stop)],
    }


@pytest.mark.parametrize("row_group_bytes", [1, 10**9])
def test_score_writer_writes_the_plain_table_and_moments(tmp_path: Path, row_group_bytes: int) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    matrix = rng.standard_normal((6, 8)).astype(np.float32)
    ids = [f"c{i}" for i in range(6)]
    with ScoreWriter(tmp_path / "f.parquet", ids, row_group_bytes=row_group_bytes) as writer:
        for start, stop in [(0, 20), (20, 20), (20, 45), (45, 50)]:  # an empty chunk included
            writer.write(_ids(start, stop), vectors[start:stop], matrix)
    chunks = [(0, 20), (20, 45), (45, 50)]
    plain = np.concatenate([concept_scores(vectors[a:b], matrix).T for a, b in chunks])  # the writer's own product
    assert np.all(np.abs(plain - vectors.astype(np.float64) @ matrix.T) <= _float32_bound(vectors, matrix))
    expected = pd.DataFrame({**_ids(0, 50), **{c: plain[:, i] for i, c in enumerate(ids)}})
    written = pq.read_table(tmp_path / "f.parquet")
    assert written.schema.equals(score_schema(ids))
    pd.testing.assert_frame_equal(written.to_pandas(), expected, check_exact=True)
    assert pq.ParquetFile(tmp_path / "f.parquet").metadata.num_row_groups == (3 if row_group_bytes == 1 else 1)
    train = np.array([s == "train" for s in expected["split"]])
    assert writer.moments.rows == int(train.sum())
    sums, squares = np.zeros(6), np.zeros(6)  # the previous per-chunk arithmetic, bit for bit
    for start, stop in chunks:
        rows = plain[start:stop][train[start:stop]]
        sums += rows.sum(axis=0)
        squares += np.square(rows.astype(np.float64)).sum(axis=0)
    assert np.array_equal(writer.moments.sums, sums) and np.array_equal(writer.moments.squares, squares)


def _frames() -> list[pd.DataFrame]:
    frame = made_up_matrix(n=40).frame
    with_nan = frame.copy()
    with_nan.iloc[3, 6] = np.nan
    numbered = frame.rename(columns={frame.columns[-1]: 7})  # a non-string name: the pandas path
    with_attrs = frame.copy()
    with_attrs.attrs["note"] = "kept"
    mixed = frame.astype({frame.columns[-2]: np.float64})
    return [frame, with_nan, frame[frame["split"] == "test"], frame.iloc[:0], numbered, with_attrs, mixed]


@pytest.mark.parametrize("number", range(7))
def test_arrow_table_is_from_pandas_with_its_metadata(number: int) -> None:
    frame = _frames()[number]
    expected = pa.Table.from_pandas(frame, preserve_index=False)
    assert arrow_table(frame).equals(expected, check_metadata=True)


def test_saved_matrix_loads_back_the_same(tmp_path: Path) -> None:
    matrix = made_up_matrix(n=40)
    loaded = FeatureMatrix.load(matrix.save(tmp_path / "run"))
    pd.testing.assert_frame_equal(loaded.frame, matrix.frame, check_exact=True)
    assert pq.read_metadata(tmp_path / "run" / "features.parquet").row_group(0).column(5).compression == "UNCOMPRESSED"


def test_report_shap_rows_take_every_label_in_turn() -> None:
    small = report_shap_rows(["a"] * 60 + ["b"] * 60, 300)
    assert (small.used, small.subsampled, small.positions) == (120, False, tuple(range(120)))
    assert "all 120 'test' rows" in small.note("test")
    labels = [f"l{i // 40}" for i in range(1000)]  # a split sorted by label: 25 labels of 40 rows
    large = report_shap_rows(labels, 300)
    assert (large.used, large.available, large.subsampled) == (300, 1000, True)
    assert list(large.positions) == sorted(set(large.positions))
    per_label = pd.Series([labels[p] for p in large.positions]).value_counts()
    assert len(per_label) == 25 and per_label.min() == 12  # every label, evenly (the first 300 rows: 8 labels)
    assert "300 of the 1000 'test' rows, taken in turn from each label" in large.note("test")
    assert large.to_json()["rows_explained"] == 300 and large.to_json()["subsampled"] is True


def test_the_explained_rows_are_the_chosen_positions() -> None:
    matrix = made_up_matrix(n=80)
    model = train_model(matrix, n_estimators=10).model
    X, y = matrix.X("test"), matrix.y("test")
    explanation, used = explain_report_shap(model, X, y, limit=7)
    assert used.subsampled and len(explanation.data) == 7
    assert np.array_equal(explanation.values, explain_shap(model, X.iloc[list(used.positions)]).values)
    assert set(y.iloc[list(used.positions)]) == set(y)  # every label of the split is explained


def test_the_report_states_how_many_rows_shap_explained(tmp_path: Path) -> None:
    matrix = made_up_matrix(n=120)  # 30 test rows
    train_model(matrix, tmp_path / "model", n_estimators=10)
    report = explain_model(load_bundle(tmp_path / "model"), matrix, tmp_path / "report", n_repeats=2, shap_rows=12)
    stated = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))["shap"]
    assert stated["rows_explained"] == 12 and stated["rows_available"] == 30 and stated["subsampled"] is True
    assert "12 of the 30 'test' rows" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "Examples with SHAP" in report.section_titles
