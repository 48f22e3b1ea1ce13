"""Describe labels with an LLM: DCLIP descriptors and CuPL sentences, as a :class:`DescriptorSet`.

Both styles go through the tree's machinery: :class:`~conceptforest.concepts.llm.LLMClient` (structured output,
pydantic validation with repairs fed back, bounded retries, and a cache of valid answers, so that a rerun makes no
request), a versioned prompt template per style (``prompts/dclip.v1.txt``, ``prompts/cupl.v1.txt``) whose sha256 is
part of every cache key, and a :class:`~conceptforest.concepts.provenance.Provenance` with the model, the template
refs, the parameters, every call and the tokens used.

- **DCLIP** (Menon & Vondrick, *Visual Classification via Description from Large Language Models*): one request
  per label with DCLIP's two-shot prompt ("What are useful features for distinguishing a {label} in a photo?",
  with its lemur and television examples answered as "- " lines), temperature 0.
- **CuPL** (Pratt et al., *What does a platypus look like?*): CuPL's five questions per label, one request each,
  every answer a full descriptive sentence, temperature 0.99.

Each style asks at its authors' temperature whatever the client's (the config's default is 0), unless a
``temperature`` is given.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from tqdm.auto import tqdm

from conceptforest._version import package_version
from conceptforest.concepts.descriptor_schemas import CuplAnswer, DclipAnswer, cupl_schema, dclip_schema
from conceptforest.concepts.descriptors import DescriptorSet, wordify
from conceptforest.concepts.generate import usage_totals
from conceptforest.concepts.labels import check_labels
from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.plan import CHARS_PER_TOKEN
from conceptforest.concepts.prompts import TEMPLATE_VERSION, PromptTemplate
from conceptforest.concepts.provenance import CallRecord, Provenance
from conceptforest.errors import BadInputError

__all__ = [
    "CUPL_QUESTIONS",
    "DESCRIBE_STYLES",
    "DescriptionPlan",
    "cupl_questions",
    "describe_labels",
    "describe_prompt",
    "plan_description",
]

LLMStyle = Literal["dclip", "cupl"]
DCLIP_DESCRIPTORS = 12  # descriptors asked per label (DCLIP)
CUPL_SENTENCES = 10  # sentences asked per question (CuPL samples 10)
DESCRIBE_STYLES: tuple[str, ...] = ("dclip", "cupl")
# CuPL's five questions (generate_image_prompts.py), {a} the article and {label} the class name.
CUPL_QUESTIONS: tuple[str, ...] = (
    "Describe what {a} {label} looks like",
    "How can you identify {a} {label}?",
    "What does {a} {label} look like?",
    "Describe an image from the internet of {a} {label}",
    "A caption of an image of {a} {label}:",
)
DCLIP_TEMPERATURE = 0.0  # DCLIP's text-davinci-003 completions
CUPL_TEMPERATURE = 0.99  # CuPL's sampling (generate_image_prompts.py)
STYLE_TEMPERATURES: dict[str, float] = {"dclip": DCLIP_TEMPERATURE, "cupl": CUPL_TEMPERATURE}
DCLIP_NOTE = (
    "DCLIP completes its two-shot text prompt with text-davinci-003 (temperature 0, at most 100 tokens) and keeps "
    "the '- ' lines of the answer; here the same two-shot prompt asks a chat model for a JSON list through the "
    "structured-output schema (one request per label, temperature {temperature:g}, at most {count} descriptors)."
)
CUPL_NOTE = (
    "CuPL samples 10 completions per question (temperature 0.99, at most 50 tokens, stopping at the first '.'); "
    "here one structured request per question asks for {count} different sentences at temperature "
    "{temperature:g}. CuPL writes 'an' only before a capital vowel; here before any vowel."
)


@cache
def describe_prompt(style: str, version: str = TEMPLATE_VERSION) -> PromptTemplate:
    """The packaged prompt template of a description style (``dclip`` or ``cupl``)."""
    if style not in DESCRIBE_STYLES:
        raise ValueError(f"unknown description style {style!r}; styles are {DESCRIBE_STYLES}")
    text = resources.files("conceptforest.concepts").joinpath("prompts", f"{style}.{version}.txt").read_text("utf-8")
    return PromptTemplate.parse(style, version, text)


def _article(label: str) -> str:
    return "an" if label[:1].lower() in "aeiou" and label[:1] else "a"


def cupl_questions(label: str) -> list[str]:
    """CuPL's five questions about ``label``, with ``a``/``an`` before it.

    Departure: CuPL's code writes "an" only when the label starts with a capital vowel (its ImageNet names are
    mostly lower case, so it writes "a apple"); here any vowel takes "an".
    """
    label = wordify(label)
    return [question.format(a=_article(label), label=label) for question in CUPL_QUESTIONS]


class _Asker:
    """The calls of one description run, with a progress bar and their records."""

    def __init__(self, llm: LLMClient, style: LLMStyle, total: int, progress: bool) -> None:
        self.llm = llm
        self.template = describe_prompt(style)
        self.records: list[CallRecord] = []
        self.bar = tqdm(total=total, desc=f"{style} descriptors", unit="call", disable=not progress, leave=False)

    def ask(self, variables: dict[str, Any], answer: Any, subject: str, count: int, schema: dict[str, Any]) -> Any:
        self.bar.set_postfix_str(subject[:60])
        result = self.llm.ask(
            self.template, variables, answer, subject=subject, context={"max_items": count}, schema=schema
        )
        self.records.append(result.record)
        self.bar.update(1)
        return result.value

    def close(self) -> None:
        self.bar.close()


def _dclip(asker: _Asker, label: str, domain: str | None, count: int) -> list[str]:
    """DCLIP's descriptors of one label; DCLIP writes underscores in class names as spaces."""
    (variables,) = _prompt_variables("dclip", label, domain, count)
    answer: DclipAnswer = asker.ask(
        variables,
        DclipAnswer,
        f"label {label!r}",
        count,
        dclip_schema(count),
    )
    return answer.descriptors


def _cupl(asker: _Asker, label: str, domain: str | None, count: int) -> list[str]:
    """CuPL's sentences for one label: the answers to its five questions, in question order."""
    sentences: list[str] = []
    for number, variables in enumerate(_prompt_variables("cupl", label, domain, count), 1):
        answer: CuplAnswer = asker.ask(
            variables,
            CuplAnswer,
            f"label {label!r}, question {number}/{len(CUPL_QUESTIONS)}",
            count,
            cupl_schema(count),
        )
        sentences.extend(answer.sentences)
    return sentences


def _client_for(llm: LLMClient, style: LLMStyle, temperature: float | None) -> LLMClient:
    """The client at ``temperature`` (default: the style's own, DCLIP 0 and CuPL 0.99): a shallow copy of the
    client (same connection and cache) when its temperature differs."""
    wanted = STYLE_TEMPERATURES[style] if temperature is None else temperature
    if not 0 <= wanted <= 2:
        raise BadInputError(f"The temperature must be between 0 and 2, not {wanted}.", hint="use 0-2.")
    if llm.temperature == wanted:
        return llm
    fixed = copy.copy(llm)
    fixed.temperature = wanted
    return fixed


def _check(labels: Sequence[str], style: str, count: int, domain: str | None) -> list[str]:
    """The checked labels; BadInputError before any request for an unusable input."""
    if style not in DESCRIBE_STYLES:
        raise BadInputError(
            f"Unknown description style {style!r}.",
            hint=f"use one of {', '.join(DESCRIBE_STYLES)} (waffle needs no LLM: 'conceptforest concepts describe').",
        )
    if isinstance(labels, str) or not labels:
        raise BadInputError("No labels were given to describe.", hint="pass a list of at least one label.")
    if count < 1:
        raise BadInputError(f"The number of descriptors asked for must be at least 1, not {count}.", hint="use 1+.")
    if domain is not None and not domain.strip():
        raise BadInputError("The domain is empty.", hint="leave it out, or name it, e.g. 'dog'.")
    return check_labels(labels)


def describe_labels(
    labels: Sequence[str],
    llm: LLMClient,
    *,
    style: LLMStyle,
    domain: str | None = None,
    progress: bool = True,
    max_descriptors: int = DCLIP_DESCRIPTORS,
    sentences_per_question: int = CUPL_SENTENCES,
    temperature: float | None = None,
) -> DescriptorSet:
    """Ask an LLM to describe each label, DCLIP's or CuPL's way; every valid answer is cached.

    Parameters
    ----------
    labels : sequence of str
        The labels (checked first: empty or repeated labels, ignoring case and spaces, are refused before any
        request).
    llm : LLMClient
        The client; its cache makes a rerun free and lets a failed run continue where it stopped.
    style : {"dclip", "cupl"}
        ``dclip``: one request per label with DCLIP's two-shot prompt, answers as a JSON list of short features.
        ``cupl``: one request for each of CuPL's five questions per label, each answering with
        ``sentences_per_question`` full sentences.
    domain : str, optional
        What the labels are kinds of; when given, the prompt says so in one line (neither paper's prompt has it).
    progress : bool
        Show a progress bar on stderr.
    max_descriptors : int
        Most DCLIP descriptors per label.
    sentences_per_question : int
        CuPL sentences asked for per question (CuPL samples 10).
    temperature : float, optional
        The sampling temperature; default the style's authors': 0 for DCLIP, 0.99 for CuPL, whatever the
        client's own temperature.

    Returns
    -------
    DescriptorSet
        Style ``dclip`` or ``cupl``, labels in the given order, with the provenance.

    Notes
    -----
    Departures from the authors' code, also recorded in ``provenance.note``: DCLIP completes a text prompt with
    text-davinci-003 and parses the "- " lines, here the chat model answers the same two-shot prompt with a JSON
    list through the schema; CuPL samples n=10 completions per question at temperature 0.99 (max 50 tokens, cut
    at the first full stop), here one structured request per question asks for several different sentences.
    Items are cleaned (control characters and list bullets stripped, repeats dropped, lengths bounded); a bad item
    is dropped, and an answer with no usable item is sent back to the model with the reason.

    Raises
    ------
    BadInputError
        For unusable labels or settings, before any request.
    LLMError
        When a label gets no valid answer within the client's bounded attempts (answers so far stay cached).
    """
    count = max_descriptors if style == "dclip" else sentences_per_question
    checked = _check(labels, style, count, domain)
    client = _client_for(llm, style, temperature)
    per_label = 1 if style == "dclip" else len(CUPL_QUESTIONS)
    asker = _Asker(client, style, len(checked) * per_label, progress)
    try:
        if style == "dclip":
            found = {label: _dclip(asker, label, domain, count) for label in checked}
        else:
            found = {label: _cupl(asker, label, domain, count) for label in checked}
    finally:
        asker.close()
    provenance = _provenance(client, style, domain, count, asker.records)
    return DescriptorSet(style=style, labels=checked, descriptors=found, provenance=provenance)


# typical answer items, for the size of the answers a plan expects
_TYPICAL_ITEM = {"dclip": "long, curved and pointed ears", "cupl": "A " + "typical descriptive sentence " * 3 + "."}


@dataclass(frozen=True)
class DescriptionPlan:
    """What a description run asks at most: every label uncached, every answer as long as asked."""

    requests: int
    estimated_prompt_tokens: int
    estimated_completion_tokens: int
    estimated_cost_usd: float | None

    def summary(self) -> str:
        """One line for a terminal: requests, tokens and cost."""
        cost = f", about ${self.estimated_cost_usd:,.2f}" if self.estimated_cost_usd is not None else ""
        return (
            f"up to {self.requests:,} LLM requests, about {self.estimated_prompt_tokens:,} prompt tokens and "
            f"{self.estimated_completion_tokens:,} completion tokens{cost}"
        )


def plan_description(
    labels: Sequence[str],
    llm: LLMClient | None,
    *,
    style: LLMStyle,
    domain: str | None = None,
    count: int | None = None,
) -> DescriptionPlan:
    """Count the requests, tokens and cost of ``describe_labels`` with these settings, making no request.

    The prompts are the real ones (one per label for DCLIP, one per question and label for CuPL); the answers
    are taken as ``count`` typical items each (default: ``describe_labels``' own for the style).
    """
    count = count or (DCLIP_DESCRIPTORS if style == "dclip" else CUPL_SENTENCES)
    checked = _check(labels, style, count, domain)
    template = describe_prompt(style)
    schema = json.dumps(dclip_schema(count) if style == "dclip" else cupl_schema(count))
    prompt_chars = requests = 0
    for label in checked:
        for variables in _prompt_variables(style, label, domain, count):
            prompt_chars += sum(len(m["content"]) for m in template.messages(**variables, schema=schema))
            requests += 1
    answer_chars = requests * count * (len(_TYPICAL_ITEM[style]) + 4)
    prompt_tokens = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    completion_tokens = math.ceil(answer_chars / CHARS_PER_TOKEN)
    cost = llm.cost(prompt_tokens, completion_tokens) if llm is not None else None
    return DescriptionPlan(requests, prompt_tokens, completion_tokens, cost)


def _prompt_variables(style: LLMStyle, label: str, domain: str | None, count: int) -> list[dict[str, Any]]:
    """The prompt variables of each request about ``label`` (the ones ``_dclip`` and ``_cupl`` send)."""
    if style == "dclip":
        name = label.replace("_", " ")
        context = f"\nThe {name} is a kind of {domain}.\n" if domain else ""
        return [{"label": name, "context": context, "max_descriptors": count}]
    context = f"(The {label} is a kind of {domain}.)\n" if domain else ""
    return [{"question": q, "context": context, "count": count} for q in cupl_questions(label)]


def _provenance(
    llm: LLMClient, style: LLMStyle, domain: str | None, count: int, records: list[CallRecord]
) -> Provenance:
    params: dict[str, Any] = {"style": style, "domain": domain, **llm.params}
    if style == "dclip":
        params["max_descriptors"] = count
        note = DCLIP_NOTE.format(count=count, temperature=llm.temperature)
    else:
        params["sentences_per_question"] = count
        params["questions"] = list(CUPL_QUESTIONS)
        note = CUPL_NOTE.format(count=count, temperature=llm.temperature)
    return Provenance(
        generator="llm",
        llm_model=llm.model,
        llm_base_url=llm.safe_base_url,
        prompt_templates={style: describe_prompt(style).ref},
        params=params,
        package_version=package_version(),
        usage=usage_totals(records, llm),
        calls=records,
        note=note,
    )
