"""``conceptforest concepts generate | render | show``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer

from conceptforest.cli._common import (
    CacheDirOption,
    ConfigOption,
    LLMBaseURLOption,
    LLMOption,
    ProgressOption,
    echo,
    new_app,
    read_text_file,
    warn,
)
from conceptforest.concepts.generate import extend_tree, generate_tree, read_labels
from conceptforest.concepts.render import FORMATS, render_tree
from conceptforest.concepts.tree import ConceptTree, format_tree
from conceptforest.config import load_config
from conceptforest.errors import BadInputError

app = new_app("Stage 1: build, draw and inspect concept trees.")

LABELS_HINT = "give a text file with one label per line (blank lines and # comments are ignored)."


def summarize(tree: ConceptTree, path: Path) -> None:
    """Print what a generated tree holds, and its leakage warnings."""
    usage = tree.provenance.usage
    echo(
        f"Wrote {path}: {len(tree.labels)} labels, {len(tree.concepts())} distinct concepts "
        f"({tree.provenance.generator} tree, hash {tree.tree_hash()[:12]})."
    )
    if usage.calls:
        cost = f", cost ${usage.cost_usd:.4f}" if usage.cost_usd is not None else ""
        echo(
            f"LLM calls: {usage.calls} ({usage.cached_calls} from cache); tokens: {usage.prompt_tokens} prompt + "
            f"{usage.completion_tokens} completion{cost}."
        )
    for leak in tree.leakage():
        warn(
            f"class-name leakage: {leak.label}: {leak.part_path} {leak.attribute} = {leak.value!r} "
            f"names {leak.leaked_label!r}; edit the tree file to remove it."
        )


@app.command()
def generate(
    domain: Annotated[str | None, typer.Option(help="What the labels are kinds of, e.g. 'dog'.")] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", metavar="FILE", help="Text file, one label per line.")
    ] = None,
    out: Annotated[Path, typer.Option("-o", "--out", metavar="PATH", help="Where to write the tree (JSON).")] = Path(
        "tree.json"
    ),
    llm: LLMOption = None,
    llm_base_url: LLMBaseURLOption = None,
    extend: Annotated[
        Path | None,
        typer.Option(metavar="TREE", help="An existing tree: keep it and ask the LLM only about labels it lacks."),
    ] = None,
    max_parts: Annotated[int | None, typer.Option(help="Most top-level parts (default 6).")] = None,
    max_subparts: Annotated[int | None, typer.Option(help="Most sub-parts per part (default 3; 0 for none).")] = None,
    max_attributes: Annotated[int | None, typer.Option(help="Most attributes per leaf part (default 4).")] = None,
    max_values: Annotated[int | None, typer.Option(help="Most values per label and attribute (default 2).")] = None,
    sentence_template: Annotated[
        str | None,
        typer.Option(
            help="Sentence for each concept; fields {part} {part_path} {attribute} {value} "
            "{domain}. Default: 'the {attribute} of the {part} is {value}'."
        ),
    ] = None,
    llm_sentences: Annotated[
        bool | None,
        typer.Option(
            "--llm-sentences/--template-sentences",
            help="Let the LLM phrase each concept's sentence (step 4).",
        ),
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per LLM request (default 60).")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="HTTP attempts per LLM call (default 4).")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens per LLM answer (default 1024).")] = None,
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Build a concept tree for a domain and its labels with an LLM (or --llm none for the template tree).

    Every valid LLM answer is cached: a rerun makes no requests, and a run that failed half-way continues
    where it stopped.
    """
    cfg = load_config(
        config,
        {
            "llm.model": llm,
            "llm.base_url": llm_base_url,
            "llm.timeout": timeout,
            "llm.max_attempts": max_attempts,
            "llm.max_tokens": max_tokens,
            "concepts.domain": domain,
            "concepts.max_parts": max_parts,
            "concepts.max_subparts": max_subparts,
            "concepts.max_attributes": max_attributes,
            "concepts.max_values": max_values,
            "concepts.sentence_template": sentence_template,
            "concepts.llm_sentences": llm_sentences,
            "cache_dir": cache_dir,
        },
    )
    label_list = read_labels(read_text_file(labels, "labels file", LABELS_HINT)) if labels else cfg.concepts.labels
    client = cfg.llm_client()
    if extend is not None:
        base = ConceptTree.load(extend)
        tree = extend_tree(base, label_list or [], client, progress=progress)
    else:
        if not cfg.concepts.domain:
            raise BadInputError("No domain was given.", hint="pass --domain, e.g. --domain dog.")
        if not label_list:
            raise BadInputError("No labels were given.", hint="pass --labels FILE; " + LABELS_HINT)
        tree = generate_tree(
            cfg.concepts.domain,
            label_list,
            client,
            limits=cfg.concepts.limits,
            sentence_template=cfg.concepts.sentence_template,
            llm_sentences=cfg.concepts.llm_sentences,
            progress=progress,
        )
    summarize(tree, tree.save(out))


def read_importance(path: Path) -> dict[str, float]:
    """A CSV with columns ``key,importance`` (key: concept id, ``part:attribute`` or part path)."""
    text = read_text_file(path, "importance table", "give a CSV with columns key,importance.")
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or not {"key", "importance"} <= set(rows[0]):
        raise BadInputError(
            f"The importance table {str(path)!r} needs the columns key,importance.",
            hint="write one row per concept id, part:attribute or part path.",
        )
    try:
        return {row["key"]: float(row["importance"]) for row in rows}
    except ValueError as exc:
        raise BadInputError(
            f"The importance table {str(path)!r} has a non-numeric importance: {exc}.",
            hint="use plain numbers in the importance column.",
        ) from exc


@app.command()
def render(
    tree_file: Annotated[Path, typer.Argument(metavar="TREE", help="tree.json (or .yaml)")],
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Folder for the pictures.")] = Path("trees"),
    fmt: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help=f"Picture format, repeatable: {', '.join(FORMATS)}. Default: svg and dot. DOT is always written.",
        ),
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="Draw only this label (repeatable).")] = None,
    importance: Annotated[
        Path | None,
        typer.Option(metavar="CSV", help="Shade nodes by importance: CSV with columns key,importance."),
    ] = None,
) -> None:
    """Draw the part/attribute schema and one tree per label (domain → parts → attributes → values)."""
    tree = ConceptTree.load(tree_file)
    weights = read_importance(importance) if importance else None
    result = render_tree(tree, out, formats=fmt or ["svg", "dot"], labels=label or None, importance=weights)
    for message in result.warnings:
        warn(message)
    echo(f"Wrote {len(result.written)} files to {out}/.")


@app.command()
def show(
    tree_file: Annotated[Path, typer.Argument(metavar="TREE", help="tree.json (or .yaml)")],
    concepts: Annotated[bool, typer.Option("--concepts", help="List every concept id and its sentence.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the concepts as JSON lines.")] = False,
) -> None:
    """Print a tree as readable text, with counts and any class-name leakage."""
    tree = ConceptTree.load(tree_file)
    if as_json:
        for concept in tree.concepts():
            echo(
                json.dumps(
                    {"id": concept.id, "sentence": concept.sentence, "labels": list(concept.labels)},
                    ensure_ascii=False,
                )
            )
        return
    echo(format_tree(tree).rstrip())
    if concepts:
        echo("")
        echo("concepts:")
        for concept in tree.concepts():
            echo(f'  {concept.id}\n    "{concept.sentence}"  ({", ".join(concept.labels)})')
