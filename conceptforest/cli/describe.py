"""``conceptforest concepts describe``: a descriptor set (DCLIP, CuPL, WaffleCLIP, or a tree's concepts).

The command is a plain function; the ``concepts`` app registers it with
``app.command("describe", cls=PlainHelpCommand, short_help=SHORT_HELP)(describe)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conceptforest.cli._common import (
    TREE_SETTINGS,
    CacheDirOption,
    ConfigOption,
    DescriptorLLMOption,
    LLMBaseURLOption,
    MaxAttemptsOption,
    MaxRepairsOption,
    MaxTokensOption,
    ProgressOption,
    TimeoutOption,
    YesOption,
    echo,
    overrides,
    required_llm,
)
from conceptforest.defaults import LABELS_HINT
from conceptforest.errors import BadInputError

if TYPE_CHECKING:
    from conceptforest.concepts.describe import LLMStyle
    from conceptforest.concepts.descriptors import DescriptorSet, SentenceForm
    from conceptforest.config import RunConfig

__all__ = ["SHORT_HELP", "STYLES", "describe", "summarize_descriptors", "waffle_set"]

SHORT_HELP = "Describe labels as flat descriptors (DCLIP, CuPL, WaffleCLIP)."


@dataclass(frozen=True)
class _LLMOptions:
    """The sizes and sampling of a new set: descriptors per label or question, waffle seed, temperature."""

    count: int | None
    seed: int
    temperature: float | None


STYLES = ("dclip", "cupl", "waffle")
WAFFLE_WORDS = 15
WAFFLE_CHARS = 15


def summarize_descriptors(descriptors: DescriptorSet, path: Path) -> None:
    """Print what a descriptor set holds and what it cost."""
    total = sum(len(items) for items in descriptors.descriptors.values())
    echo(
        f"Wrote {path}: {len(descriptors.labels)} labels, {total} descriptors (style {descriptors.style}; "
        f"{descriptors.form_description()})."
    )
    usage = descriptors.provenance.usage
    if usage.calls:
        cost = f", cost ${usage.cost_usd:.4f}" if usage.cost_usd is not None else ""
        echo(
            f"LLM calls: {usage.calls} ({usage.cached_calls} from cache); tokens: {usage.prompt_tokens} prompt + "
            f"{usage.completion_tokens} completion{cost}."
        )


def waffle_set(labels: list[str], seed: int) -> DescriptorSet:
    """WaffleCLIP's control: the same 15 random-word and 15 random-character descriptors for every label."""
    from conceptforest._version import package_version
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.provenance import Provenance
    from conceptforest.models.methods.descriptions import waffle_descriptors

    items = waffle_descriptors(count_words=WAFFLE_WORDS, count_chars=WAFFLE_CHARS, seed=seed, labels=labels)
    provenance = Provenance(
        generator="template",
        params={"style": "waffle", "count_words": WAFFLE_WORDS, "count_chars": WAFFLE_CHARS, "seed": seed},
        package_version=package_version(),
        note=f"WaffleCLIP random descriptors (seed {seed}), the same for every label; no LLM.",
    )
    return DescriptorSet(
        style="waffle", labels=labels, descriptors={label: list(items) for label in labels}, provenance=provenance
    )


def _labels(labels: Path | None, cfg: RunConfig, style: str) -> list[str]:
    from conceptforest.concepts.labels import check_labels, read_labels_file

    found = read_labels_file(labels) if labels else cfg.concepts.labels
    if not found:
        raise BadInputError(
            f"No labels were given to describe (--style {style}).", hint="pass --labels FILE; " + LABELS_HINT
        )
    return check_labels(found)


def _from_tree(tree: Path, style: str | None, labels: Path | None) -> DescriptorSet:
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.tree import ConceptTree

    if labels is not None or style not in (None, "tree"):
        raise BadInputError(
            "--tree converts a concept tree to a descriptor set (style tree); it takes no --labels or --style.",
            hint="pass either --tree FILE, or --style dclip|cupl|waffle with --labels FILE.",
        )
    return DescriptorSet.from_tree(ConceptTree.load(tree))


def _from_file(source: Path, style: str | None, labels: Path | None, tree: Path | None) -> DescriptorSet:
    """A descriptor set read from ``source``: ours, or DCLIP's published ``{label: [descriptors]}`` file."""
    from conceptforest.concepts.descriptors import DCLIP_FORM_STYLES, DescriptorSet

    if labels is not None or tree is not None or style is not None:
        raise BadInputError(
            "--from re-writes a descriptor set with the sentence form given; it takes no --labels, --tree or --style.",
            hint="pass --from FILE with --dclip-form dclip|waffle and/or --full-stop, and -o FILE.",
        )
    found = DescriptorSet.load(source)
    if found.style not in DCLIP_FORM_STYLES:
        raise BadInputError(
            f"{str(source)!r} is a {found.style} set; --from re-writes sets scored with DCLIP's sentences.",
            hint=f"give a set of style {', '.join(DCLIP_FORM_STYLES)}, or DCLIP's published descriptors file.",
        )
    return found


def _with_form(result: DescriptorSet, form: str, full_stop: bool) -> DescriptorSet:
    """``result`` in the sentence form asked; the form options only fit sets scored with DCLIP's sentences."""
    from conceptforest.concepts.descriptors import DCLIP_FORM_STYLES, SENTENCE_FORMS

    if form not in SENTENCE_FORMS:
        raise BadInputError(f"Unknown --dclip-form {form!r}.", hint="pass --dclip-form dclip or waffle.")
    if result.style not in DCLIP_FORM_STYLES:
        if form != "dclip" or full_stop:
            raise BadInputError(
                f"--dclip-form and --full-stop set how DCLIP's sentences are written; a {result.style} set has none.",
                hint="use them with --style dclip or --from FILE.",
            )
        return result
    chosen: SentenceForm = "waffle" if form == "waffle" else "dclip"
    return result.with_form(chosen, full_stop=full_stop)


def _with_llm(
    cfg: RunConfig,
    style: str,
    labels: list[str],
    count: int | None,
    *,
    temperature: float | None,
    progress: bool,
    yes: bool,
) -> DescriptorSet:
    from conceptforest.cli.concepts import confirm_requests
    from conceptforest.concepts.describe import CUPL_SENTENCES, DCLIP_DESCRIPTORS, describe_labels, plan_description

    client = required_llm(
        cfg, f"--style {style} asks an LLM for the descriptors", alternative="--style waffle needs no LLM"
    )
    llm_style: LLMStyle = "dclip" if style == "dclip" else "cupl"
    asked = count if count is not None else (DCLIP_DESCRIPTORS if style == "dclip" else CUPL_SENTENCES)
    plan = plan_description(labels, client, style=llm_style, domain=cfg.concepts.domain, count=asked)
    echo(f"Plan: {plan.summary()}; cached answers are not requested again.")
    confirm_requests(
        plan.requests,
        yes=yes,
        what=f"Describing {len(labels):,} labels (--style {style})",
        hint="pass --yes to go ahead, or describe fewer labels"
        + (" (CuPL asks five questions per label; --style dclip asks one)." if style == "cupl" else "."),
    )
    sizes = {"max_descriptors": asked} if style == "dclip" else {"sentences_per_question": asked}
    return describe_labels(
        labels,
        client,
        style=llm_style,
        domain=cfg.concepts.domain,
        progress=progress,
        temperature=temperature,
        **sizes,
    )


def _described(
    cfg: RunConfig, style: str | None, labels: Path | None, options: _LLMOptions, *, progress: bool, yes: bool
) -> DescriptorSet:
    """A new set of ``style`` for the labels of ``labels`` (or the config's)."""
    if style not in STYLES:
        raise BadInputError(
            f"Unknown or missing --style {style!r}." if style else "No --style was given.",
            hint="pass --style dclip, cupl or waffle with --labels FILE, --tree FILE to convert a tree, or --from "
            "FILE to re-write a DCLIP set.",
        )
    label_list = _labels(labels, cfg, style)
    if style == "waffle":
        return waffle_set(label_list, options.seed)
    return _with_llm(cfg, style, label_list, options.count, temperature=options.temperature, progress=progress, yes=yes)


def describe(
    style: Annotated[
        str | None,
        typer.Option(
            "--style",
            metavar="STYLE",
            help="dclip (DCLIP's two-shot features, one LLM request per label), cupl (CuPL's five questions, full "
            "sentences, five requests per label) or waffle (random words and characters, no LLM).",
        ),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", metavar="FILE", help="Text file, one label per line.")
    ] = None,
    tree: Annotated[
        Path | None,
        typer.Option("--tree", metavar="FILE", help="Convert this tree.json instead: each label's concept sentences."),
    ] = None,
    out: Annotated[
        Path, typer.Option("-o", "--out", metavar="FILE", help="Where to write the descriptor set (JSON).")
    ] = Path("descriptors.json"),
    llm: DescriptorLLMOption = None,
    llm_base_url: LLMBaseURLOption = None,
    domain: Annotated[
        str | None, typer.Option(metavar="TEXT", help="What the labels are kinds of (one line in the prompt).")
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            min=1,
            metavar="N",
            help="Most descriptors per label (dclip, default 12) or sentences per question (cupl, default 10).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the waffle descriptors.")] = 0,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            min=0.0,
            max=2.0,
            metavar="T",
            help="Sampling temperature of the LLM. Default: the style's authors', 0 for dclip (as DCLIP) and 0.99 "
            "for cupl (as CuPL), whatever the config's llm.temperature.",
        ),
    ] = None,
    dclip_form: Annotated[
        str,
        typer.Option(
            "--dclip-form",
            metavar="FORM",
            help="How DCLIP's sentences are written: dclip (DCLIP's own '{label}, which (is|has) {d}') or waffle "
            "('A photo of a {label}, which (is|has) {d}.', WaffleCLIP's re-runs of DCLIP, whose numbers its "
            "results tables quote). Recorded in the set; the dclip method's note names it.",
        ),
    ] = "dclip",
    full_stop: Annotated[
        bool,
        typer.Option(
            "--full-stop",
            help="End DCLIP's own sentences with '.', as DCLIP does on ImageNet only (pass it for ImageNet).",
        ),
    ] = False,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help="Re-write this dclip set, or DCLIP's published {label: [descriptors]} file (an empty list read "
            "as [''], as DCLIP does), with --dclip-form/--full-stop; no LLM.",
        ),
    ] = None,
    timeout: TimeoutOption = None,
    max_attempts: MaxAttemptsOption = None,
    max_repairs: MaxRepairsOption = None,
    max_tokens: MaxTokensOption = None,
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    yes: YesOption = False,
    progress: ProgressOption = True,
) -> None:
    """Write a descriptor set: each label's descriptors, the input of the description methods (DCLIP, CuPL,
    WaffleCLIP) and of the forest on descriptors.

    Every valid LLM answer is cached: a rerun makes no requests, and a run that failed half-way continues where it
    stopped. The file is JSON, editable by hand and validated on load. --from FILE re-writes a dclip set (or
    DCLIP's published descriptor file) in another sentence form without asking anything.
    """
    from conceptforest.config import load_config

    cfg = load_config(config, overrides(locals(), TREE_SETTINGS))
    if source is not None:
        result = _from_file(source, style, labels, tree)
    elif tree is not None:
        result = _from_tree(tree, style, labels)
    else:
        options = _LLMOptions(count=count, seed=seed, temperature=temperature)
        result = _described(cfg, style, labels, options, progress=progress, yes=yes)
    result = _with_form(result, dclip_form, full_stop)
    summarize_descriptors(result, result.save(out))
