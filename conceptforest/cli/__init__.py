"""The ``conceptforest`` command: a thin layer over the Python API, one module per verb group.

Conventions, the same on every verb: required inputs are positional arguments (IMAGES, TREE, RUN, MODEL,
IMAGE...); optional inputs and settings are options with one name everywhere (``--tree``, ``--labels``, ``--clip``,
``--top-k``, ``--seed``, ``--cache-dir``); the output is ``-o/--out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from conceptforest._version import package_version
from conceptforest.cli import concepts, features
from conceptforest.cli._common import PlainHelpCommand, new_app
from conceptforest.cli.compare import compare
from conceptforest.cli.explain import explain
from conceptforest.cli.pipeline import demo, run
from conceptforest.cli.predict import predict
from conceptforest.cli.train import train
from conceptforest.cli.zeroshot import zeroshot

app = new_app(
    "conceptforest: interpretable image classification. An LLM builds a concept tree, CLIP scores images "
    "against its concepts, a Random Forest learns from the scores, and reports explain its decisions.\n\n"
    "Start with 'conceptforest demo --offline'. Every verb has --help."
)
# Pipeline order: the stages, then the verbs that use their outputs, then the all-in-one verbs.
app.add_typer(concepts.app, name="concepts", short_help="Stage 1: concept trees and descriptor sets.")
app.add_typer(features.app, name="features", short_help="Stage 2: score images against a tree with CLIP.")
app.command(cls=PlainHelpCommand, short_help="Stage 3: fit the concept forest on a run's features.")(train)
app.command(cls=PlainHelpCommand, short_help="Stage 4: write the report that explains a model.")(explain)
app.command(cls=PlainHelpCommand, short_help="Label new images and say which concepts decided.")(predict)
app.command(cls=PlainHelpCommand, short_help="Every method, baseline and control on one split.")(compare)
app.command(cls=PlainHelpCommand, short_help="Classify with no training: CLIP, ensembles, DCLIP, CuPL, Waffle.")(
    zeroshot
)
app.command(cls=PlainHelpCommand, short_help="All four stages in one command, cached and resumable.")(run)
app.command(cls=PlainHelpCommand, short_help="The whole pipeline on made-up shape images (--offline).")(demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"conceptforest {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """conceptforest: concept trees, CLIP concept scores, Random Forests, and reports that explain them."""


def main(argv: Sequence[str] | None = None) -> None:
    """The console entry point; ``argv`` lets tests call it in-process."""
    app(args=list(argv) if argv is not None else None, prog_name="conceptforest")
