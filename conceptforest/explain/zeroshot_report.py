"""The report of a zero-shot run: metrics, confusion, per-label scores and per-image explanations."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from conceptforest.atomic import atomic_write_text
from conceptforest.explain import plots
from conceptforest.explain.confusion import confusion_tables
from conceptforest.explain.report import Report, retire_report
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.folder_lock import folder_lock
from conceptforest.models.methods.base import MethodResult
from conceptforest.models.metrics import classification_metrics, per_label_table
from conceptforest.safe_csv import csv_text

EXPLAINED_IMAGES = 6
PREDICTIONS_FILE = "predictions.csv"
REPORT_DIR = "report"


def predictions_table(result: MethodResult, matrix: FeatureMatrix) -> pd.DataFrame:
    """path, label (when known), predicted label, then one score column per label."""
    rows = matrix.rows(None)
    table = pd.DataFrame({"path": rows["path"].to_numpy(), "label": rows["label"].to_numpy()})
    table["predicted"] = result.predicted
    for index, label in enumerate(result.labels):
        table[f"score:{label}"] = result.scores[:, index]
    return table


def write_zero_shot_report(
    result: MethodResult,
    matrix: FeatureMatrix,
    out_dir: str | Path,
    *,
    seed: int = 0,
    ablation: pd.DataFrame | None = None,
) -> Report:
    """``predictions.csv`` and a report (index.html, report.md, report.json, tables/) in ``out_dir``.

    The earlier outputs are removed before ``predictions.csv`` is written (the report's ``index.html`` first), so
    a run stopped in between leaves new predictions and no report, never the previous run's report beside them.
    """
    out = Path(out_dir)
    predictions = predictions_table(result, matrix)
    with folder_lock(out), folder_lock(out / REPORT_DIR):
        retire_zero_shot_outputs(out)
        atomic_write_text(out / PREDICTIONS_FILE, csv_text(predictions))
        return _report(result, matrix, predictions, out / REPORT_DIR, seed=seed, ablation=ablation)


def retire_zero_shot_outputs(out_dir: str | Path) -> None:
    """Remove an earlier zero-shot run's report (the files it proves it wrote) and then its predictions."""
    out = Path(out_dir)
    retire_report(out / REPORT_DIR)
    (out / PREDICTIONS_FILE).unlink(missing_ok=True)


def _report(
    result: MethodResult,
    matrix: FeatureMatrix,
    predictions: pd.DataFrame,
    folder: Path,
    *,
    seed: int,
    ablation: pd.DataFrame | None,
) -> Report:
    """The zero-shot report, saved in ``folder``."""
    truth = predictions["label"].tolist()
    report = Report(
        f"conceptforest zero-shot: {result.display}, {len(result.labels)} labels",
        banner=matrix.weights_warning,
        made_by={"method": result.name, "backbone_id": matrix.backbone_id, "images": len(predictions)},
    )
    with warnings.catch_warnings():  # unmatched vision-LLM answers are a "label" outside the label set, on purpose
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        metrics = classification_metrics(truth, result.predicted, result.labels, random_state=seed)
    report.add_text(
        "Summary",
        f"{result.display} on {len(predictions)} images, no training. Labels: {', '.join(result.labels)}. "
        f"Cost: {result.seconds:.1f} s, {result.tokens} LLM tokens." + (f" {result.note}" if result.note else ""),
    )
    report.add_metrics("Summary", "metrics", metrics)
    # an unmatched vision-LLM answer is its own column, so it is counted wrong, not dropped
    outside = sorted(set(map(str, result.predicted)) - set(result.labels))
    tables = confusion_tables(truth, result.predicted, [*result.labels, *outside])
    report.add_table(
        "Confusion", "confusion_raw", tables["raw"].reset_index(names="true \\ predicted"), caption="Confusion matrix"
    )
    report.add_table("Per label", "per_label", per_label_table(truth, result.predicted, result.labels))
    report.add_table("Predictions", "predictions", predictions, caption="Every image: predicted label and scores")
    if result.name == "mllm":
        _add_answers(report, result, truth)
    if ablation is not None:
        report.add_table(
            "Ablation",
            "wdys_ablation",
            ablation,
            caption="WDYS: each query against the method's own class weights, whose configuration the 'class "
            "weight' column names (image only = zero-shot CLIP against them)",
        )
    if result.name != "mllm":
        _add_explanations(report, result, predictions)
    report.save(folder)
    return report


def _add_answers(report: Report, result: MethodResult, truth: list[str]) -> None:
    """Direct vision-LLM classification: how each answer matched, the bias check, and raw unmatched answers."""
    from conceptforest.models.methods.vision import answer_bias, answer_type_counts

    if result.explanations is not None:
        report.add_table("Answers", "answer_types", answer_type_counts(result.explanations))
    bias = answer_bias(truth, list(result.predicted), list(result.labels))
    report.add_table(
        "Answers",
        "answer_bias",
        bias,
        caption="Bias check: a label predicted far more often than it occurs (the 'cat' effect) is flagged",
    )
    if result.explanations is not None and not result.explanations.empty:
        answers = result.explanations.rename(columns={"label": "answer_type", "item": "raw_answer"})
        unmatched_first = answers.sort_values("answer_type", key=lambda kind: kind == "exact", kind="stable")
        report.add_table(
            "Answers", "raw_answers", unmatched_first, caption="Raw answers and how they matched (non-exact first)"
        )


def _add_explanations(report: Report, result: MethodResult, predictions: pd.DataFrame) -> None:
    if result.explanations is None or result.explanations.empty:
        report.add_text("Why", f"{result.display} gives no per-image explanation beyond its label scores.", note=True)
        return
    report.add_table(
        "Why", "explanations", result.explanations, caption="Per image: the evidence behind each top label's score"
    )
    explained = set(result.explanations["row"])
    # one image per true label first (then the next ones), so every label is seen
    firsts = [int(i) for i in predictions.reset_index().groupby("label", sort=False)["index"].first()]
    chosen = [row for row in firsts if row in explained][:EXPLAINED_IMAGES]
    chosen += [row for row in sorted(explained) if row not in chosen][: EXPLAINED_IMAGES - len(chosen)]
    for row in chosen:
        item = predictions.iloc[int(row)]
        title = f"{item['path']}: true {item['label']!r}, predicted {item['predicted']!r}"
        figure = plots.descriptor_pair(result.explanations[result.explanations["row"] == row], title)
        report.add_figure("Why", f"why_{int(row)}", figure, caption=title)
