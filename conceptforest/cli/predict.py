"""``conceptforest predict``: label, probabilities and top concept contributions for new images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import (
    CacheDirOption,
    CheckpointOption,
    ClipOption,
    DeviceOption,
    PretrainedOption,
    TopKOption,
    echo,
)
from conceptforest.errors import BadInputError

SHOWN_PROBABILITIES = 5  # labels printed per image; past that, a count


def predict(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL", help="Model folder from 'conceptforest train'.")],
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE", help="Image files (one or more).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image on stdout.")] = False,
    top_k: TopKOption = 5,
    explain_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Write a SHAP waterfall PNG per image.")
    ] = None,
    clip: ClipOption = None,
    pretrained: PretrainedOption = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """Predict each image's label and say which concepts pushed it there (SHAP contributions).

    Every readable image is explained; if any image could not be read, each gets one line on stderr and the
    exit code is 2.
    """
    from conceptforest.explain.predict import ImageSkipped, predict_images
    from conceptforest.text import strip_control

    results = predict_images(
        model_dir,
        images,
        top=top_k,
        explain_dir=explain_dir,
        clip=clip,
        pretrained=pretrained,
        checkpoint=checkpoint,
        device=device,
        cache_dir=cache_dir,
    )
    skipped = [result for result in results if isinstance(result, ImageSkipped)]
    for result in results:
        if as_json:
            echo(json.dumps(result.to_dict(), ensure_ascii=False))
        elif not isinstance(result, ImageSkipped):
            shown = list(result.probabilities.items())[:SHOWN_PROBABILITIES]  # highest first; --json has them all
            probabilities = ", ".join(f"{strip_control(k)} {v:.2f}" for k, v in shown)
            if len(result.probabilities) > len(shown):
                probabilities += f", {len(result.probabilities) - len(shown)} more labels (--json lists all)"
            echo(f"{strip_control(result.path)}: {strip_control(result.label)}  ({probabilities})")
            for item in result.contributions:
                echo(f"    {item.shap:+.3f}  {strip_control(item.concept)}  (score {item.score:.3f})")
            if result.random_weights:
                echo("    (random backbone weights: these numbers mean nothing about the image)")
            elif result.synthetic_world:
                echo("    (toy-world CLIP: trained on the synthetic creature world only, not on photos)")
    for result in skipped:
        typer.echo(f"Error: {strip_control(result.path)}: could not be read: {strip_control(result.reason)}", err=True)
    if skipped:
        raise BadInputError(
            f"{len(skipped)} of {len(results)} image(s) could not be read"
            + ("; the others were predicted." if len(skipped) < len(results) else "."),
            hint="check that these paths are readable image files.",
        )
