"""FeatureMatrix: one row per image, one float32 column per concept, with its sidecar of provenance."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from conceptforest.atomic import atomic_write_json
from conceptforest.cache import file_sha256
from conceptforest.concepts.tree import Concept
from conceptforest.defaults import weights_warning
from conceptforest.errors import BadInputError
from conceptforest.features.meta import FeatureMeta

FEATURES_FILE = "features.parquet"
SIDECAR_FILE = "concepts.json"
ID_COLUMNS = ("path", "label", "split", "sha256")
# dictionary encoding only for the label and split columns: on float score columns it costs 5x the write time.
# No compression: cosine scores do not compress under snappy (<1 %), which cost ~15 % of the write and of the read;
# large write batches: fewer calls per column; min/max statistics only for the id columns (every row group of
# scores spans the same range, so they would prune nothing). Readers need no option for any of this
# (benchmarks/rescore.py measures it).
PARQUET_WRITE_OPTIONS: dict[str, Any] = {
    "use_dictionary": ["label", "split"],
    "compression": "none",
    "write_batch_size": 65536,
    "write_statistics": list(ID_COLUMNS),
}
# the sidecar records the sha256 of the features.parquet it describes: a table and sidecar from different runs
# (a kill between the two writes) are refused on load
BINDING_KEY = "features_sha256"


@dataclass
class FeatureMatrix:
    """Concept scores of images, with what made them.

    ``frame`` holds ``path``, ``label``, ``split``, ``sha256`` (of the image bytes: the embedding cache key) and
    one column per concept id (cosine similarity of the
    image embedding with the concept sentence embedding). ``meta`` is the sidecar: concepts, label order,
    backbone id, tree hash, whether the weights were random, optional standardisation, versions.
    """

    frame: pd.DataFrame
    meta: FeatureMeta

    def __post_init__(self) -> None:
        if isinstance(self.meta, Mapping):  # a sidecar dict made in memory (tests, notebooks): validated here
            self.meta = FeatureMeta.model_validate(dict(self.meta))

    @property
    def concept_ids(self) -> list[str]:
        return self.meta.concept_ids

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    @property
    def concepts(self) -> list[Concept]:
        """The concepts of the columns, in column order."""
        return list(self.meta.concepts)

    @property
    def random_weights(self) -> bool:
        return self.meta.random_weights

    @property
    def synthetic_world(self) -> bool:
        """Whether the backbone was trained only on the synthetic world (toy-world numbers)."""
        return self.meta.backbone is not None and self.meta.backbone.synthetic_world

    @property
    def weights_warning(self) -> str | None:
        return weights_warning(self.random_weights, self.synthetic_world)

    @property
    def backbone_id(self) -> str:
        return self.meta.backbone_id

    @property
    def tree_hash(self) -> str:
        return self.meta.tree_hash

    def with_meta(self, **changes: Any) -> FeatureMatrix:
        """The same rows with some sidecar fields changed (validated again)."""
        meta = FeatureMeta.model_validate({**self.meta.model_dump(), **changes})
        return replace(self, meta=meta)

    def rows(self, split: str | None = None) -> pd.DataFrame:
        return self.frame if split is None else self.frame[self.frame["split"] == split]

    def X(self, split: str | None = None, *, standardized: bool = False) -> pd.DataFrame:
        """Concept scores as a DataFrame whose columns are concept ids (optionally standardised)."""
        scores = self.rows(split)[self.concept_ids]
        if standardized:
            stats = self.meta.standardization
            if stats is None:
                raise BadInputError(
                    "This feature matrix was extracted without standardisation statistics.",
                    hint="re-run 'features extract' with --standardize.",
                )
            scores = (scores - np.asarray(stats.mean, dtype=np.float32)) / np.asarray(stats.std, dtype=np.float32)
        return scores

    def y(self, split: str | None = None) -> pd.Series:
        return self.rows(split)["label"]

    @classmethod
    def load(cls, folder: str | Path) -> FeatureMatrix:
        """Read ``features.parquet`` and ``concepts.json``, refusing a pair that does not belong together.

        Raises
        ------
        BadInputError
            When a file is missing, truncated or malformed, the two files come from different extractions (or
            from a version that did not bind them), or a score is NaN or infinite. The message names the file.
        """
        folder = Path(folder)
        features, sidecar = folder / FEATURES_FILE, folder / SIDECAR_FILE
        for path in (features, sidecar):
            if not path.is_file():
                raise BadInputError(
                    f"{str(path)!r} does not exist.",
                    hint="point at the output folder of 'conceptforest features extract'.",
                )
        meta = _read_sidecar(sidecar)
        data = features.read_bytes()  # read once: parsed, and hashed to check the binding
        frame = _read_table(features, data)
        _check_binding(features, sidecar, meta, hashlib.sha256(data).hexdigest())
        expected = [*ID_COLUMNS, *meta.concept_ids]
        if list(frame.columns) != expected:
            raise BadInputError(
                f"{str(features)!r} does not match its sidecar {str(sidecar)!r}: their concept columns differ.",
                hint=_RERUN_HINT,
            )
        _check_scores(features, frame, expected[len(ID_COLUMNS) :])
        return cls(frame=frame, meta=meta)

    def save(self, folder: str | Path) -> Path:
        """Write ``features.parquet`` atomically, then the sidecar bound to the bytes written; returns the folder.

        The folder is locked while it is written (a second writer is refused) and temporary tables left by
        killed writers are removed first.
        """
        from conceptforest.folder_lock import folder_lock, remove_stale_temp_files

        with folder_lock(folder) as out:
            remove_stale_temp_files(out, FEATURES_FILE)
            tmp_path = temp_table_path(out)
            try:
                write_frame(self.frame, tmp_path)
                written = file_sha256(tmp_path)  # our own file: nothing else writes it before the rename
                os.replace(tmp_path, out / FEATURES_FILE)
            finally:
                tmp_path.unlink(missing_ok=True)
            self.save_sidecar(out, features_sha256=written)
        return out

    def save_sidecar(self, folder: str | Path, *, features_sha256: str | None = None) -> Path:
        """Write ``concepts.json`` bound to the ``features.parquet`` in ``folder`` (by its sha256).

        ``features_sha256`` is the hash of the bytes the caller wrote there (computed before its rename, so the
        sidecar never vouches for a table another process put in its place); without it the file is hashed as it
        is now. Written last, so that a run killed between the two writes leaves a pair that :meth:`load` refuses.
        """
        features = Path(folder) / FEATURES_FILE
        if not features.is_file():
            raise BadInputError(
                f"{str(features)!r} does not exist; the sidecar describes that file and is written after it.",
                hint="write the table first (FeatureMatrix.save writes both).",
            )
        binding = features_sha256 or file_sha256(features)
        self.meta = self.meta.model_copy(update={BINDING_KEY: binding})
        return atomic_write_json(Path(folder) / SIDECAR_FILE, self.meta.to_json())


def temp_table_path(folder: Path) -> Path:
    """Where this process writes a table before renaming it to ``features.parquet`` (``.<name>.<pid>.tmp``)."""
    return folder / f".{FEATURES_FILE}.{os.getpid()}.tmp"


_RERUN_HINT = "re-run 'conceptforest features extract' into this folder (cached embeddings make it quick)."


def write_frame(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` (no index) as Parquet with :data:`PARQUET_WRITE_OPTIONS` (not atomic: see ``save``)."""
    pq.write_table(arrow_table(frame), path, **PARQUET_WRITE_OPTIONS)


def _float32_tail(frame: pd.DataFrame) -> int | None:
    """Where the trailing run of float32 score columns starts, when the fast conversion applies; else None."""
    names = list(frame.columns)
    if frame.attrs or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        return None
    is_float32 = (frame.dtypes == np.float32).to_numpy()
    start = len(names)
    while start > 0 and is_float32[start - 1]:
        start -= 1
    return start if len(names) - start >= 2 else None


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """``pa.Table.from_pandas(frame, preserve_index=False)``, the same table and pandas metadata.

    A FeatureMatrix's frame (id columns, then one float32 column per concept) skips pandas' per-column path:
    the score block becomes one Arrow buffer sliced into columns, and the metadata of the first score column is
    repeated for the others. Any other frame goes through ``from_pandas``.
    """
    start = _float32_tail(frame)
    if start is None:
        return pa.Table.from_pandas(frame, preserve_index=False)
    head = pa.Table.from_pandas(frame.iloc[:, : start + 1], preserve_index=False)
    names = [str(n) for n in frame.columns[start:]]
    block = np.ascontiguousarray(frame.iloc[:, start:].to_numpy(dtype=np.float32).T)  # a view's copy-free .T
    flat = pa.array(block.reshape(-1), from_pandas=True)  # NaN becomes null, as from_pandas does
    rows = len(frame)
    columns = [*head.columns[:start], *(flat.slice(i * rows, rows) for i in range(len(names)))]
    pandas_meta = json.loads(head.schema.metadata[b"pandas"])
    template = pandas_meta["columns"][start]
    pandas_meta["columns"][start:] = [{**template, "name": n, "field_name": n} for n in names]
    fields = [*head.schema][:start] + [pa.field(n, pa.float32()) for n in names]
    metadata = {**head.schema.metadata, b"pandas": json.dumps(pandas_meta).encode("utf-8")}
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata))


def _read_sidecar(sidecar: Path) -> FeatureMeta:
    """The sidecar, validated: a clear error naming the file for JSON or fields that are not a sidecar's."""
    try:
        raw = json.loads(sidecar.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # truncated JSON, non-UTF-8 bytes, absurd nesting
        raise BadInputError(
            f"{str(sidecar)!r} is truncated or not valid JSON ({type(exc).__name__}: {str(exc)[:200]}).",
            hint=_RERUN_HINT,
        ) from None
    if not isinstance(raw, dict):
        raise BadInputError(f"{str(sidecar)!r} is not a concepts sidecar (a JSON object).", hint=_RERUN_HINT)
    if raw.get("format_version", 2) != 2:
        raise BadInputError(
            f"{str(sidecar)!r} has sidecar format {raw.get('format_version')!r}; this version reads format 2.",
            hint="regenerate it with this version: " + _RERUN_HINT,
        )
    try:
        return FeatureMeta.model_validate(raw)
    except ValidationError as exc:
        raise BadInputError(
            f"{str(sidecar)!r} is not a concepts sidecar: {validation_summary(exc)}.", hint=_RERUN_HINT
        ) from None


def invalid_fields(exc: ValidationError) -> list[str]:
    """The top-level fields a pydantic error is about, in order."""
    return list(dict.fromkeys(str(e["loc"][0]) for e in exc.errors() if e["loc"]))


def validation_summary(exc: ValidationError, limit: int = 5) -> str:
    """``'labels: Input should be a valid list; ...'``: a pydantic error in one line, naming the fields."""
    parts = [f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()[:limit]]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _read_table(features: Path, data: bytes) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several kinds for a truncated or foreign file
        raise BadInputError(
            f"{str(features)!r} is truncated or not a Parquet file ({type(exc).__name__}: {str(exc)[:200]}).",
            hint=_RERUN_HINT,
        ) from None


def _check_binding(features: Path, sidecar: Path, meta: FeatureMeta, sha256: str) -> None:
    """Refuse a table and sidecar that were not written together by one extraction."""
    recorded = meta.features_sha256
    if not isinstance(recorded, str):
        raise BadInputError(
            f"{str(sidecar)!r} does not record which {FEATURES_FILE} it describes (an older version wrote it), "
            f"so it cannot be trusted to match {str(features)!r}.",
            hint="regenerate both: " + _RERUN_HINT,
        )
    if sha256 != recorded:
        raise BadInputError(
            f"{str(features)!r} and {str(sidecar)!r} do not belong together: the table changed after its sidecar "
            "was written (for example an extraction interrupted between the two writes).",
            hint=_RERUN_HINT,
        )


def _check_scores(features: Path, frame: pd.DataFrame, concept_ids: list[str]) -> None:
    """Every concept column numeric and finite."""
    scores = frame[concept_ids]
    not_numeric = [c for c in concept_ids if not pd.api.types.is_numeric_dtype(scores[c])]
    if not_numeric:
        raise BadInputError(
            f"{str(features)!r} has non-numeric concept column(s), e.g. {not_numeric[0]!r}.", hint=_RERUN_HINT
        )
    finite = np.isfinite(scores.to_numpy(dtype=np.float32))  # what the forest reads
    if not finite.all():
        bad_rows = int((~finite).any(axis=1).sum())
        first = concept_ids[int(np.argmax(~finite.all(axis=0)))]
        raise BadInputError(
            f"{str(features)!r} has NaN or infinite scores in {bad_rows} row(s) (e.g. column {first!r}).",
            hint=_RERUN_HINT,
        )
