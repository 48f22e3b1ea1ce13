"""The ``conceptforest`` command: a thin layer over the Python API, one module per verb group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from conceptforest._version import package_version
from conceptforest.cli import concepts, features
from conceptforest.cli._common import new_app
from conceptforest.cli.compare import compare
from conceptforest.cli.explain import explain
from conceptforest.cli.pipeline import demo, run
from conceptforest.cli.predict import predict
from conceptforest.cli.train import train

app = new_app(
    "conceptforest: interpretable image classification. An LLM builds a concept tree, CLIP scores images "
    "against its concepts, a Random Forest learns from the scores, and reports explain its decisions."
)
app.add_typer(concepts.app, name="concepts")
app.add_typer(features.app, name="features")
app.command()(run)
app.command()(train)
app.command()(explain)
app.command()(predict)
app.command()(compare)
app.command()(demo)


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
