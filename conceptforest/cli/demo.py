"""``conceptforest demo``: the offline demo, needing no network and no LLM."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import echo, warn
from conceptforest.cli.concepts import summarize
from conceptforest.concepts.generate import read_labels
from conceptforest.concepts.render import render_tree
from conceptforest.concepts.template import template_tree
from conceptforest.concepts.tree import format_tree

DEMO_DOMAIN = "toy shape"


def demo_labels() -> list[str]:
    text = resources.files("conceptforest").joinpath("data", "demo_labels.txt").read_text("utf-8")
    return read_labels(text)


def demo(
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Folder for the demo's outputs.")] = Path(
        "demo"
    ),
) -> None:
    """Run the offline demo on the embedded default labels.

    Today this covers stage 1: it builds the LLM-free template concept tree for the demo's shape labels and
    draws it. Feature extraction, training and the report join as those stages land.
    """
    tree = template_tree(DEMO_DOMAIN, demo_labels())
    summarize(tree, tree.save(out / "tree.json"))
    result = render_tree(tree, out / "trees", formats=["svg", "dot"])
    for message in result.warnings:
        warn(message)
    echo(f"Wrote {len(result.written)} tree pictures to {out / 'trees'}/.")
    echo("")
    echo(format_tree(tree).rstrip())
