"""``conceptforest concepts generate | render | show``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conceptforest.cli._common import (
    TREE_SETTINGS,
    CacheDirOption,
    ConfigOption,
    LLMBaseURLOption,
    LLMOption,
    LLMSentencesOption,
    MaxAttemptsOption,
    MaxAttributesOption,
    MaxPartsOption,
    MaxRepairsOption,
    MaxSubpartsOption,
    MaxTokensOption,
    MaxValuesOption,
    PlainHelpCommand,
    ProgressOption,
    SentenceTemplateOption,
    TimeoutOption,
    YesOption,
    echo,
    new_app,
    overrides,
    read_text_file,
    warn,
)
from conceptforest.defaults import LABELS_HINT, RENDER_FORMATS
from conceptforest.errors import BadInputError

if TYPE_CHECKING:
    from conceptforest.concepts.llm import LLMClient
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.config import RunConfig

app = new_app("Stage 1: build, draw and inspect concept trees.")

# Past this many LLM requests, generation asks for --yes (or a yes on a terminal) before it starts.
CONFIRM_REQUESTS = 200
_KEY_COLUMNS = ("key", "concept", "group")
_VALUE_COLUMNS = ("importance", "mean", "gini")
_CSV_GUARD = "'"


def summarize(tree: ConceptTree, path: Path) -> None:
    """Print what a generated tree holds, its leakage warnings and its input warnings (labels it cannot tell
    apart, values copied from the prompt's example, labels with few concepts)."""
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
    warn_tree_problems(tree)


def warn_tree_problems(tree: ConceptTree, *, shown: int | None = None, rest: str = "") -> None:
    """Print the tree's class-name leakage and its checks (labels it cannot tell apart, values copied from the
    prompt's example, labels with few concepts): ``concepts generate`` and ``run`` both say them. Past ``shown``
    checks, one line counts the others and says where they are (``rest``)."""
    from conceptforest.concepts.tree_checks import check_tree

    for leak in tree.leakage():
        warn(
            f"class-name leakage: {leak.label}: {leak.part_path} {leak.attribute} = {leak.value!r} "
            f"names {leak.leaked_label!r}; edit the tree file to remove it."
        )
    problems = check_tree(tree)
    for problem in problems[:shown]:
        warn(problem.message)
    if shown is not None and len(problems) > shown:
        warn(f"{len(problems) - shown} more tree check(s){rest}.")


def read_label_file(labels: Path | None, fallback: list[str] | None) -> list[str] | None:
    """Labels from ``--labels FILE`` (checked: no empty or duplicate labels), else ``fallback``."""
    from conceptforest.concepts.labels import check_labels, read_labels_file

    found = read_labels_file(labels) if labels else fallback
    if found is not None:
        check_labels(found)
    return found


def confirm_plan(
    cfg: RunConfig, client: LLMClient | None, labels: list[str], *, yes: bool, base: ConceptTree | None = None
) -> None:
    """Print how many requests a generation makes (cached answers are not requested again); past
    CONFIRM_REQUESTS, ask for --yes, or a yes on a terminal, before the first request."""
    if client is None or not labels:
        return
    from conceptforest.concepts.generate import plan_generation

    plan = plan_generation(
        cfg.concepts.domain or (base.domain if base else ""),
        labels,
        limits=cfg.concepts.limits,
        llm_sentences=cfg.concepts.llm_sentences,
        llm=client,
        tree=base,
    )
    echo(f"Plan: {plan.summary()}; cached answers are not requested again.")
    confirm_requests(
        plan.requests,
        yes=yes,
        what="This generation",
        hint="pass --yes to go ahead, or use fewer labels or smaller limits (--max-parts, --max-attributes).",
    )


def confirm_requests(requests: int, *, yes: bool, what: str, hint: str) -> None:
    """Past CONFIRM_REQUESTS requests, go on only with --yes or a yes typed on a terminal; else BadInputError."""
    if requests <= CONFIRM_REQUESTS or yes:
        return
    if not typer.get_text_stream("stdin").isatty() or not typer.confirm("Go ahead?", default=False):
        raise BadInputError(f"{what} needs up to {requests:,} LLM requests (more than {CONFIRM_REQUESTS}).", hint=hint)


@app.command(cls=PlainHelpCommand, short_help="Build a concept tree with an LLM (or the template tree).")
def generate(
    domain: Annotated[
        str | None, typer.Option(metavar="TEXT", help="What the labels are kinds of, e.g. 'dog'.")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", metavar="FILE", help="Text file, one label per line.")
    ] = None,
    out: Annotated[Path, typer.Option("-o", "--out", metavar="FILE", help="Where to write the tree (JSON).")] = Path(
        "tree.json"
    ),
    llm: LLMOption = None,
    llm_base_url: LLMBaseURLOption = None,
    extend: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="An existing tree: keep it and ask the LLM only about labels it lacks."),
    ] = None,
    max_parts: MaxPartsOption = None,
    max_subparts: MaxSubpartsOption = None,
    max_attributes: MaxAttributesOption = None,
    max_values: MaxValuesOption = None,
    sentence_template: SentenceTemplateOption = None,
    llm_sentences: LLMSentencesOption = None,
    timeout: TimeoutOption = None,
    max_attempts: MaxAttemptsOption = None,
    max_repairs: MaxRepairsOption = None,
    max_tokens: MaxTokensOption = None,
    yes: YesOption = False,
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Build a concept tree for a domain and its labels with an LLM (or --llm none for the template tree).

    Every valid LLM answer is cached: a rerun makes no requests, and a run that failed half-way continues
    where it stopped. Before a large generation the number of requests is printed, and past 200 it asks for --yes.
    """
    from conceptforest.concepts.generate import extend_tree, generate_tree
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.config import load_config

    cfg = load_config(config, overrides(locals(), TREE_SETTINGS))
    label_list = read_label_file(labels, cfg.concepts.labels)
    client = cfg.llm_client()
    if extend is not None:
        base = ConceptTree.load(extend)
        new = [label for label in label_list or [] if label not in base.labels]
        confirm_plan(cfg, client, new, yes=yes, base=base)
        tree = extend_tree(base, label_list or [], client, progress=progress)
    else:
        if not cfg.concepts.domain:
            raise BadInputError("No domain was given.", hint="pass --domain, e.g. --domain dog.")
        if not label_list:
            raise BadInputError("No labels were given.", hint="pass --labels FILE; " + LABELS_HINT)
        confirm_plan(cfg, client, label_list, yes=yes)
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


def _unguard(cell: str) -> str:
    """Undo the spreadsheet guard the report puts before cells that start with = + - @."""
    return cell[1:] if cell.startswith(_CSV_GUARD) and cell[1:2] in ("=", "+", "-", "@") else cell


def read_importance(path: Path) -> dict[str, float]:
    """An importance table: ``key,importance``, or a report table (``concept``/``group`` with ``mean``/``gini``)."""
    text = read_text_file(path, "importance table", "give a CSV with columns key,importance.")
    rows = list(csv.DictReader(text.splitlines()))
    columns = set(rows[0]) if rows else set()
    key = next((name for name in _KEY_COLUMNS if name in columns), None)
    value = next((name for name in _VALUE_COLUMNS if name in columns), None)
    if key is None or value is None:
        raise BadInputError(
            f"The importance table {str(path)!r} needs a key column ({', '.join(_KEY_COLUMNS)}) and a value column "
            f"({', '.join(_VALUE_COLUMNS)}); "
            + (f"its header has: {', '.join(sorted(columns))}." if rows else "it is not a CSV with a header and rows."),
            hint="pass a report table such as report/tables/permutation_importance.csv, or key,importance rows.",
        )
    try:
        return {_unguard(row[key]): float(row[value]) for row in rows}
    except (TypeError, ValueError) as exc:
        raise BadInputError(
            f"The importance table {str(path)!r} has a non-numeric {value!r}: {exc}.",
            hint="use plain numbers in that column.",
        ) from exc


@app.command(cls=PlainHelpCommand, short_help="Draw the schema and one tree per label (DOT, SVG, PNG).")
def render(
    tree_file: Annotated[Path, typer.Argument(metavar="TREE", help="tree.json (or .yaml)")],
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Folder for the pictures.")] = Path("trees"),
    fmt: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help=f"Picture format, repeatable: {', '.join(RENDER_FORMATS)}. Default: svg and dot. "
            "DOT is always written; SVG/PNG need Graphviz's 'dot'.",
        ),
    ] = None,
    label: Annotated[list[str] | None, typer.Option(metavar="LABEL", help="Draw only this label (repeatable).")] = None,
    importance: Annotated[
        Path | None,
        typer.Option(
            metavar="CSV",
            help="Shade nodes by importance: a report table (tables/permutation_importance.csv, "
            "gini_importance.csv, rollup_*.csv) or a CSV with columns key,importance.",
        ),
    ] = None,
) -> None:
    """Draw the part/attribute schema and one tree per label (domain → parts → attributes → values)."""
    from conceptforest.concepts.render import render_tree
    from conceptforest.concepts.tree import ConceptTree

    tree = ConceptTree.load(tree_file)
    weights = read_importance(importance) if importance else None
    result = render_tree(tree, out, formats=fmt or ["svg", "dot"], labels=label or None, importance=weights)
    for message in result.warnings:
        warn(message)
    echo(f"Wrote {len(result.written)} files to {out}/.")


@app.command(cls=PlainHelpCommand, short_help="Print a tree, its concepts and any class-name leakage.")
def show(
    tree_file: Annotated[Path, typer.Argument(metavar="TREE", help="tree.json (or .yaml)")],
    concepts: Annotated[bool, typer.Option("--concepts", help="List every concept id and its sentence.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the concepts as JSON lines.")] = False,
) -> None:
    """Print a tree as readable text, with counts and any class-name leakage."""
    from conceptforest.concepts.tree import ConceptTree, format_tree

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


def _register_describe() -> None:
    from conceptforest.cli.describe import SHORT_HELP, describe

    app.command("describe", cls=PlainHelpCommand, short_help=SHORT_HELP)(describe)


_register_describe()


def _register_optimize() -> None:
    from conceptforest.cli.optimize import SHORT_HELP, optimize

    app.command("optimize", cls=PlainHelpCommand, short_help=SHORT_HELP)(optimize)


_register_optimize()
