"""The misclassified examples of the report: each image as a small inline thumbnail, its file name relative to the
data folder, its true and predicted labels with their probabilities, and the concepts that pushed towards each.

A thumbnail is the image decoded by the features' safe decoder, shrunk to at most :data:`THUMBNAIL_SIDE` pixels
and embedded as a JPEG data URI, so ``index.html`` stays one self-contained file. An image that cannot be read or
decoded any more gets no thumbnail; the report never fails for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from conceptforest.explain import plots
from conceptforest.explain.report import Report
from conceptforest.explain.sections import Evaluation
from conceptforest.explain.shap_values import ConceptShap
from conceptforest.features.images import ImageDecodeError, decode_image
from conceptforest.llm.image_payload import downscale, jpeg_data_uri, read_image_file

__all__ = ["THUMBNAIL_SIDE", "Misclassified", "add_misclassified", "relative_name", "thumbnail_uri"]

THUMBNAIL_SIDE = 96
THUMBNAIL_QUALITY = 80
SECTION = "Examples with SHAP"


@dataclass(frozen=True)
class Misclassified:
    """One misclassified image: ``row`` (position within the split), its file name relative to the data folder,
    the true and predicted labels and the model's probability of each."""

    row: int
    path: str
    true_label: str
    predicted_label: str
    p_true: float
    p_predicted: float
    thumbnail: bool


def thumbnail_uri(path: str | Path, max_side: int = THUMBNAIL_SIDE) -> str | None:
    """A JPEG data URI of the image at ``path``, longest side at most ``max_side``; None if it cannot be read."""
    try:
        image = downscale(decode_image(read_image_file(path)), max_side)
        return jpeg_data_uri(image, quality=THUMBNAIL_QUALITY)
    except (ImageDecodeError, OSError, ValueError):
        return None


def relative_name(path: str | Path, source: str | Path | None) -> str:
    """``path`` relative to the data folder ``source`` (a manifest's folder when ``source`` is a file), as POSIX
    text; the path unchanged when it lies outside that folder or the folder is unknown."""
    if source is None:
        return Path(path).as_posix()
    root = Path(source)
    if root.suffix.lower() in (".csv", ".parquet") or root.is_file():
        root = root.parent
    for candidate, base in ((Path(path), root), (Path(path).resolve(), root.resolve())):
        if candidate.is_relative_to(base):
            return candidate.relative_to(base).as_posix()
    return Path(path).as_posix()


def _misclassified(run: Evaluation, explained: Sequence[int]) -> tuple[list[Misclassified], list[str]]:
    """The misclassified rows among the explained ones (``explained``: their positions in the split, in the
    explanation's row order), least probable true label first, and their thumbnails. ``row`` is the example's
    row in the explanation."""
    model = run.bundle.model
    rows = list(explained)
    proba = np.asarray(model.predict_proba(run.X.iloc[rows]))
    classes = [str(c) for c in model.classes_]
    truth = [str(run.y.iloc[p]) for p in rows]
    predicted = [str(run.predicted[p]) for p in rows]
    wrong = [i for i in range(len(truth)) if predicted[i] != truth[i]]
    wrong.sort(key=lambda i: float(proba[i, classes.index(truth[i])]))
    all_paths = run.matrix.rows(run.split)["path"].astype(str)
    paths = all_paths.iloc[rows] if rows else all_paths.iloc[:0]
    examples, thumbnails = [], []
    for i in wrong[: run.worst]:
        uri = thumbnail_uri(paths.iloc[i])
        examples.append(
            Misclassified(
                row=i,
                path=relative_name(paths.iloc[i], run.matrix.meta.source),
                true_label=truth[i],
                predicted_label=predicted[i],
                p_true=float(proba[i, classes.index(truth[i])]),
                p_predicted=float(proba[i, classes.index(predicted[i])]),
                thumbnail=uri is not None,
            )
        )
        thumbnails.append(uri or "")
    return examples, thumbnails


def add_misclassified(
    report: Report, run: Evaluation, explanation: ConceptShap, explained: Sequence[int] | None = None
) -> list[Misclassified]:
    """The worst misclassified images (``run.worst``): thumbnail, relative file name, labels with probabilities,
    and the concepts that pushed towards each label; returns what it showed."""
    rows = range(len(explanation.data)) if explained is None else explained
    examples, thumbnails = _misclassified(run, rows)
    for number, (example, uri) in enumerate(zip(examples, thumbnails, strict=True), 1):
        caption = (
            f"{example.path}: true {example.true_label} (p={example.p_true:.2f}), predicted "
            f"{example.predicted_label} (p={example.p_predicted:.2f})"
        )
        report.add_example(SECTION, caption + ("" if uri else " (the image could not be read)"), uri or None)
        report.add_figure(
            SECTION,
            f"misclassified_{number}",
            plots.contribution_pair(explanation, example.row, example.true_label, example.predicted_label),
            caption=f"{caption}: the concepts that pushed towards each label",
        )
    if not examples:
        report.add_text(SECTION, "No misclassified images among the explained rows.", note=True)
    report.add_json("misclassified", [asdict(example) for example in examples])
    return examples
