"""Build a concept tree with an LLM: parts, then attributes, then each label's values, then sentences.

Each step is one prompt template. Every valid answer is cached, so a rerun after a failure asks only what is
still missing, and adding labels to a tree asks only for the new labels' values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from tqdm.auto import tqdm

from conceptforest._version import package_version
from conceptforest.concepts.labels import check_labels, read_labels
from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.plan import (
    SENTENCE_BATCH,
    GenerationLimits,
    GenerationPlan,
    make_plan,
    pairs_text,
    plan_new_tree,
    plan_sentences,
    plan_values,
)
from conceptforest.concepts.prompts import load_prompt
from conceptforest.concepts.schemas import (
    AttributesAnswer,
    PartsAnswer,
    SentencesAnswer,
    ValuesAnswer,
    values_schema,
)
from conceptforest.concepts.template import template_tree
from conceptforest.concepts.tree import (
    DEFAULT_SENTENCE_TEMPLATE,
    CallRecord,
    ConceptTree,
    LabelValues,
    Part,
    Provenance,
    UsageTotals,
    normalize_text,
)
from conceptforest.concepts.tree_text import check_sentence_template
from conceptforest.errors import BadInputError, LLMError

__all__ = [
    "GenerationLimits",
    "GenerationPlan",
    "check_labels",
    "extend_tree",
    "generate_tree",
    "plan_generation",
    "read_labels",
    "usage_totals",
]


class _Session:
    """The calls of one generation run, with a progress bar and their records."""

    def __init__(self, llm: LLMClient, total: int, progress: bool) -> None:
        self.llm = llm
        self.records: list[CallRecord] = []
        self.bar = tqdm(total=total, desc="concept tree", unit="call", disable=not progress, leave=False)

    def ask(
        self,
        step: str,
        variables: dict[str, Any],
        answer: Any,
        subject: str,
        context: dict[str, Any],
        schema: dict[str, Any] | None = None,
    ) -> Any:
        self.bar.set_postfix_str(f"{step}: {subject}"[:60])
        result = self.llm.ask(load_prompt(step), variables, answer, subject=subject, context=context, schema=schema)
        self.records.append(result.record)
        self.bar.update(1)
        return result.value

    def add_total(self, extra: int) -> None:
        self.bar.total = (self.bar.total or 0) + extra
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def usage_totals(records: Iterable[CallRecord], llm: LLMClient | None) -> UsageTotals:
    """Sum token counts over calls; cached calls cost nothing now."""
    records = list(records)
    prompt = sum(r.prompt_tokens for r in records)
    completion = sum(r.completion_tokens for r in records)
    return UsageTotals(
        calls=len(records),
        cached_calls=sum(r.cached for r in records),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=llm.cost(prompt, completion) if llm else None,
    )


def _ask_values(
    session: _Session,
    tree_domain: str,
    label: str,
    labels: Sequence[str],
    pairs: list[tuple[str, str]],
    limits: GenerationLimits,
) -> LabelValues:
    others = [other for other in labels if other != label]
    answer: ValuesAnswer = session.ask(
        "values",
        {
            "domain": tree_domain,
            "label": label,
            "other_labels": ", ".join(others),
            "pairs": pairs_text(pairs),
            "max_values": limits.max_values,
        },
        ValuesAnswer,
        subject=f"label {label!r}",
        context={"pairs": [list(p) for p in pairs], "labels": list(labels), "max_values": limits.max_values},
        schema=values_schema(pairs, limits.max_values),
    )
    values: LabelValues = {}
    for entry in answer.values:
        values.setdefault(entry.part, {})[entry.attribute] = entry.values
    return values


def _ask_sentences(session: _Session, tree: ConceptTree, ids: set[str] | None = None) -> dict[str, str]:
    """Natural sentences for the tree's concepts (only ``ids`` when given), in batches."""
    concepts = [c for c in tree.concepts() if ids is None or c.id in ids]
    sentences: dict[str, str] = {}
    batches = [concepts[i : i + SENTENCE_BATCH] for i in range(0, len(concepts), SENTENCE_BATCH)]
    session.add_total(len(batches))
    for number, batch in enumerate(batches, 1):
        items = "\n".join(
            f"- id: {c.id}\n  description: {tree.sentence_for(c.part_path, c.attribute, c.value)}" for c in batch
        )
        answer: SentencesAnswer = session.ask(
            "sentences",
            {"domain": tree.domain, "items": items},
            SentencesAnswer,
            subject=f"sentence batch {number}/{len(batches)}",
            context={"ids": [c.id for c in batch], "labels": list(tree.labels)},
        )
        sentences.update({item.id: item.sentence for item in answer.sentences})
    return sentences


def _check_inputs(domain: str, labels: Sequence[str], sentence_template: str) -> tuple[str, list[str]]:
    """The normalised domain and the checked labels; BadInputError before any request when one is unusable."""
    checked = check_labels(labels, minimum=2)
    normalized = normalize_text(domain) if isinstance(domain, str) else ""
    if not normalized:
        raise BadInputError(f"The domain {domain!r} is empty.", hint="pass --domain, e.g. --domain dog.")
    try:
        check_sentence_template(sentence_template)
    except ValueError as exc:
        raise BadInputError(str(exc), hint="use --sentence-template with {part}, {attribute} and {value}.") from exc
    return normalized, checked


def _build_tree(
    domain: str, labels: list[str], parts: list[Part], values: dict[str, LabelValues], sentence_template: str
) -> ConceptTree:
    """The tree from validated answers; a rule they still break is a clear LLMError, never a traceback."""
    try:
        return ConceptTree(
            domain=domain, labels=labels, parts=parts, values=values, sentence_template=sentence_template
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise LLMError(
            f"The LLM's answers for domain {domain!r} do not form a valid concept tree: {problems}.",
            hint="rerun (answers already received are cached), use a stronger model, or --llm none.",
        ) from None


def _ask_structure(
    session: _Session, domain: str, labels: list[str], limits: GenerationLimits
) -> tuple[list[Part], dict[str, list[str]]]:
    """Steps 1 and 2: the parts, then the attributes of each leaf part (keyed by leaf path, in tree order)."""
    label_list = ", ".join(labels)
    parts_answer: PartsAnswer = session.ask(
        "parts",
        {"domain": domain, "labels": label_list, "max_parts": limits.max_parts, "max_subparts": limits.max_subparts},
        PartsAnswer,
        subject=f"domain {domain!r}",
        context={"max_parts": limits.max_parts, "max_subparts": limits.max_subparts, "labels": labels},
    )
    leaf_paths = [path for p in parts_answer.parts for path in ([f"{p.name}/{s}" for s in p.subparts] or [p.name])]
    session.add_total(len(leaf_paths))
    attributes: dict[str, list[str]] = {}
    for path in leaf_paths:
        answer: AttributesAnswer = session.ask(
            "attributes",
            {
                "domain": domain,
                "labels": label_list,
                "part": path.rsplit("/", 1)[-1],
                "part_path": path.replace("/", " "),
                "max_attributes": limits.max_attributes,
            },
            AttributesAnswer,
            subject=f"part {path!r}",
            context={"max_attributes": limits.max_attributes},
        )
        attributes[path] = answer.attributes
    parts = [
        Part(name=p.name, parts=[Part(name=s, attributes=attributes[f"{p.name}/{s}"]) for s in p.subparts])
        if p.subparts
        else Part(name=p.name, attributes=attributes[p.name])
        for p in parts_answer.parts
    ]
    return parts, attributes


def generate_tree(
    domain: str,
    labels: Sequence[str],
    llm: LLMClient | None,
    *,
    limits: GenerationLimits | None = None,
    sentence_template: str = DEFAULT_SENTENCE_TEMPLATE,
    llm_sentences: bool = False,
    progress: bool = True,
) -> ConceptTree:
    """Build a concept tree for ``labels`` of ``domain``.

    Parameters
    ----------
    domain : str
        What the labels are kinds of ("dog", "bird", "toy shape").
    labels : sequence of str
        At least two labels.
    llm : LLMClient or None
        ``None`` builds the LLM-free template tree (a control and an offline default).
    limits : GenerationLimits, optional
        Caps on parts, sub-parts, attributes and values.
    sentence_template : str
        How a concept becomes a sentence; fields ``{part}``, ``{part_path}``, ``{attribute}``, ``{value}``,
        ``{domain}``. It never contains the label.
    llm_sentences : bool
        Also ask the LLM to phrase each concept as a natural sentence (step 4).
    progress : bool
        Show a progress bar on stderr.
    """
    domain, labels = _check_inputs(domain, labels, sentence_template)
    if llm is None:
        return template_tree(domain, labels, sentence_template=sentence_template)
    limits = limits or GenerationLimits()
    session = _Session(llm, total=1 + len(labels), progress=progress)
    try:
        parts, attributes = _ask_structure(session, domain, labels, limits)
        pairs = [(path, attribute) for path, names in attributes.items() for attribute in names]
        values = {label: _ask_values(session, domain, label, labels, pairs, limits) for label in labels}
        tree = _build_tree(domain, labels, parts, values, sentence_template)
        if llm_sentences:
            tree.sentences = _ask_sentences(session, tree)
    finally:
        session.close()
    tree.provenance = _provenance(llm, limits, llm_sentences, session.records)
    return tree


def extend_tree(
    tree: ConceptTree, new_labels: Sequence[str], llm: LLMClient | None, *, progress: bool = True
) -> ConceptTree:
    """A copy of ``tree`` with values for ``new_labels``; the LLM is asked only about the new labels.

    A template tree is extended without an LLM. Existing labels keep their values untouched.
    """
    existing = {normalize_text(label) for label in tree.labels}
    added = [label for label in check_labels(new_labels) if normalize_text(label) not in existing]
    if not added:
        return tree.model_copy(deep=True)
    labels = [*tree.labels, *added]
    data = tree.model_dump()
    data["labels"] = labels
    if tree.provenance.generator == "template" or llm is None:
        if tree.provenance.generator != "template":
            raise BadInputError(
                f"Adding labels {added} to an LLM-made tree needs an LLM.",
                hint="pass --llm MODEL (and --llm-base-url URL) as used to make the tree.",
            )
        return template_tree(tree.domain, labels, sentence_template=tree.sentence_template)
    limits = GenerationLimits(
        **{k: v for k, v in tree.provenance.params.items() if k in GenerationLimits.__dataclass_fields__}
    )
    pairs = [(path, attribute) for path, attributes in tree.leaf_attributes().items() for attribute in attributes]
    llm_sentences = bool(tree.provenance.params.get("llm_sentences"))
    session = _Session(llm, total=len(added), progress=progress)
    try:
        for label in added:
            data["values"][label] = _ask_values(session, tree.domain, label, labels, pairs, limits)
        extended = ConceptTree.from_dict(data)
        if llm_sentences:
            new_ids = {c.id for c in extended.concepts()} - set(tree.sentences)
            if new_ids:
                extended.sentences = {**tree.sentences, **_ask_sentences(session, extended, new_ids)}
    finally:
        session.close()
    extended.provenance = _provenance(llm, limits, llm_sentences, [*tree.provenance.calls, *session.records])
    extended.provenance.note = f"extended with labels {added}"
    return extended


def _provenance(llm: LLMClient, limits: GenerationLimits, llm_sentences: bool, records: list[CallRecord]) -> Provenance:
    steps = ["parts", "attributes", "values", *(["sentences"] if llm_sentences else [])]
    return Provenance(
        generator="llm",
        llm_model=llm.model,
        llm_base_url=llm.safe_base_url,
        prompt_templates={step: load_prompt(step).ref for step in steps},
        params={**limits.as_dict(), **llm.params, "llm_sentences": llm_sentences},
        package_version=package_version(),
        usage=usage_totals(records, llm),
        calls=records,
    )


def plan_generation(
    domain: str,
    labels: Sequence[str],
    *,
    limits: GenerationLimits | None = None,
    llm_sentences: bool = False,
    llm: LLMClient | None = None,
    tree: ConceptTree | None = None,
) -> GenerationPlan:
    """How many requests (and prompt tokens, and dollars) :func:`generate_tree` or :func:`extend_tree` would
    need at most; makes no request and reads no cache.

    Parameters
    ----------
    domain, labels
        As for :func:`generate_tree` (checked the same way: BadInputError for empty or repeated labels).
    limits : GenerationLimits, optional
        The limits of a new tree; the counts assume every answer is as long as they allow.
    llm_sentences : bool
        Whether step 4 runs.
    llm : LLMClient, optional
        Gives the prices for ``estimated_cost_usd`` (``None`` without prices).
    tree : ConceptTree, optional
        Plan :func:`extend_tree` instead: only the labels the tree lacks are asked about, with its real
        parts and attributes, and its own limits and ``llm_sentences``.
    """
    if tree is None:
        domain, checked = _check_inputs(domain, labels, DEFAULT_SENTENCE_TEMPLATE)
        counts, prompt, answer = plan_new_tree(domain, checked, limits or GenerationLimits(), llm_sentences)
        return make_plan(counts, prompt, answer, llm)
    existing = {normalize_text(label) for label in tree.labels}
    added = [label for label in check_labels(labels) if normalize_text(label) not in existing]
    pairs = [(path, attribute) for path, attributes in tree.leaf_attributes().items() for attribute in attributes]
    max_values = int(tree.provenance.params.get("max_values", GenerationLimits().max_values))
    prompt, answer = plan_values(tree.domain, [*tree.labels, *added], added, pairs, max_values)
    counts = [0, 0, len(added), 0]
    if added and tree.provenance.params.get("llm_sentences"):
        counts[3], sentence_prompt, sentence_answer = plan_sentences(tree.domain, len(pairs) * max_values * len(added))
        prompt += sentence_prompt
        answer += sentence_answer
    return make_plan(counts, prompt, answer, llm)
