"""``conceptforest explain``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import CacheDirOption, echo
from conceptforest.explain.build import explain_run


def explain(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL", help="Model folder from 'conceptforest train'.")],
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Folder with features.parquet + concepts.json.")],
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Report folder.")] = Path("report"),
    tree: Annotated[
        Path | None, typer.Option(metavar="TREE", help="tree.json, to draw trees shaded by importance.")
    ] = None,
    split: Annotated[str, typer.Option(help="Which split to explain.")] = "test",
    repeats: Annotated[int, typer.Option(min=1, help="Permutation repeats.")] = 10,
    top_k: Annotated[int, typer.Option(min=1, help="Concepts per top/bottom list.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of permutations and bootstraps.")] = 0,
    baselines: Annotated[
        bool,
        typer.Option(
            help="Also compute zero-shot CLIP, the linear probe and the controls "
            "(needs --tree, the model's backbone and the run's cached embeddings)."
        ),
    ] = True,
    cache_dir: CacheDirOption = None,
) -> None:
    """Write the report: metrics beside baselines, importance, roll-up, confusion, SHAP, trees, skipped files."""
    report = explain_run(
        model_dir,
        run_dir,
        out,
        tree_path=tree,
        with_baselines=baselines,
        cache_dir=cache_dir,
        split=split,
        n_repeats=repeats,
        top_k=top_k,
        random_state=seed,
    )
    echo(
        f"Wrote {out}/index.html ({len(report.section_titles)} sections), report.md, report.json, tables/ and figures/."
    )
