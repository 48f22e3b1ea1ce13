"""``conceptforest predict``: label, probabilities and top concept contributions for new images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import CheckpointOption, ClipOption, PretrainedOption, echo, warn
from conceptforest.explain.predict import predict_images


def predict(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL", help="Model folder from 'conceptforest train'.")],
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE...", help="Image files.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image on stdout.")] = False,
    top: Annotated[int, typer.Option(min=1, help="Concept contributions to show.")] = 5,
    explain_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Write a SHAP waterfall PNG per image.")
    ] = None,
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: Annotated[str | None, typer.Option(help="cuda, mps or cpu.")] = None,
) -> None:
    """Predict each image's label and say which concepts pushed it there (SHAP contributions)."""
    results = predict_images(
        model_dir,
        images,
        top=top,
        explain_dir=explain_dir,
        clip=clip,
        pretrained=pretrained,
        checkpoint=checkpoint,
        device=device,
    )
    for result in results:
        if as_json:
            echo(json.dumps(result, ensure_ascii=False))
            continue
        if "error" in result:
            warn(f"{result['path']}: skipped: {result['error']}")
            continue
        probabilities = ", ".join(f"{k} {v:.2f}" for k, v in result["probabilities"].items())
        echo(f"{result['path']}: {result['label']}  ({probabilities})")
        for item in result["contributions"]:
            echo(f"    {item['shap']:+.3f}  {item['concept']}  (score {item['score']:.3f})")
        if result.get("random_weights"):
            echo("    (random backbone weights: these numbers mean nothing about the image)")
