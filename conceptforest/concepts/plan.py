"""How much a generation will ask, before it asks: requests, prompt volume, tokens and cost.

The values step lists every other label in each label's prompt, so the prompt volume grows with the square of
the number of labels. :func:`plan_generation` estimates it from the real prompt templates, filled with names of
a typical length, and makes no request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from conceptforest.concepts.prompts import load_prompt
from conceptforest.concepts.schemas import (
    AttributesAnswer,
    PartsAnswer,
    SentencesAnswer,
    pair_key,
    values_schema,
)

if TYPE_CHECKING:
    from conceptforest.concepts.llm import LLMClient

SENTENCE_BATCH = 20
CHARS_PER_TOKEN = 4
# a typical generated value ("erect and pointed") and sentence, for the size of answers
_TYPICAL_VALUE = "long and slightly curved"
_TYPICAL_SENTENCE = "a photo showing the shape of the ears is long and slightly curved"


@dataclass(frozen=True)
class GenerationLimits:
    """Bounds on what the LLM may return; part of the prompts and the cache keys."""

    max_parts: int = 6
    max_subparts: int = 3
    max_attributes: int = 4
    max_values: int = 2

    def as_dict(self) -> dict[str, int]:
        return {
            "max_parts": self.max_parts,
            "max_subparts": self.max_subparts,
            "max_attributes": self.max_attributes,
            "max_values": self.max_values,
        }


@dataclass(frozen=True)
class GenerationPlan:
    """What a generation will ask at most (every answer as long as the limits allow, nothing cached).

    Attributes
    ----------
    requests : int
        LLM requests without repairs or retries: ``parts + attributes + values + sentences``.
    parts_requests, attributes_requests, values_requests, sentences_requests : int
        The same, per step.
    prompt_chars : int
        Characters of all prompts (system and user messages, schemas included).
    estimated_prompt_tokens, estimated_completion_tokens : int
        About one token per four characters.
    estimated_cost_usd : float or None
        From the client's prices; ``None`` when no client or no price is known.
    """

    requests: int
    parts_requests: int
    attributes_requests: int
    values_requests: int
    sentences_requests: int
    prompt_chars: int
    estimated_prompt_tokens: int
    estimated_completion_tokens: int
    estimated_cost_usd: float | None

    def summary(self) -> str:
        """One line for a terminal: requests per step, tokens and cost."""
        steps = f"parts {self.parts_requests}, attributes {self.attributes_requests}, values {self.values_requests}" + (
            f", sentences {self.sentences_requests}" if self.sentences_requests else ""
        )
        cost = f", about ${self.estimated_cost_usd:,.2f}" if self.estimated_cost_usd is not None else ""
        return (
            f"up to {self.requests:,} LLM requests ({steps}), about {self.estimated_prompt_tokens:,} prompt "
            f"tokens{cost}"
        )


def pairs_text(pairs: Sequence[tuple[str, str]]) -> str:
    """The (part, attribute) list of a values prompt, one ``- part: attribute`` per line."""
    return "\n".join(f"- {pair_key(part, attribute)}" for part, attribute in pairs)


_ANSWER_MODELS: dict[str, type[BaseModel]] = {
    "parts": PartsAnswer,
    "attributes": AttributesAnswer,
    "sentences": SentencesAnswer,
}


def _chars(step: str, **variables: object) -> int:
    """The characters of one step's messages (the values step passes its own schema)."""
    if "schema" not in variables:
        variables["schema"] = json.dumps(_ANSWER_MODELS[step].model_json_schema())
    return sum(len(message["content"]) for message in load_prompt(step).messages(**variables))


def typical_pairs(limits: GenerationLimits) -> list[tuple[str, str]]:
    """As many (leaf path, attribute) pairs as the limits allow, with names of a typical length."""
    leaves = [
        f"part {p}/sub-part {s}" if limits.max_subparts else f"part {p}"
        for p in range(1, limits.max_parts + 1)
        for s in range(1, max(limits.max_subparts, 1) + 1)
    ]
    return [(leaf, f"attribute {a}") for leaf in leaves for a in range(1, limits.max_attributes + 1)]


def plan_values(
    domain: str, labels: Sequence[str], asked: Sequence[str], pairs: Sequence[tuple[str, str]], max_values: int
) -> tuple[int, int]:
    """(prompt characters, answer characters) of the values step for the labels in ``asked``."""
    fixed = _chars(
        "values",
        domain=domain,
        label="",
        other_labels="",
        pairs=pairs_text(pairs),
        max_values=max_values,
        schema=json.dumps(values_schema(list(pairs), max_values)),
    )
    all_labels = len(", ".join(labels))
    # each prompt names its label a few times and lists the others: that is where the square comes from
    prompt = sum(fixed + 4 * len(label) + all_labels - len(label) for label in asked)
    answer = len(asked) * len(json.dumps({pair_key(*pair): [_TYPICAL_VALUE] * max_values for pair in pairs}))
    return prompt, answer


def plan_new_tree(
    domain: str, labels: Sequence[str], limits: GenerationLimits, llm_sentences: bool
) -> tuple[list[int], int, int]:
    """([requests per step], prompt characters, answer characters) of a generation from scratch."""
    label_list = ", ".join(labels)
    pairs = typical_pairs(limits)
    leaves = list(dict.fromkeys(leaf for leaf, _ in pairs))
    parts_chars = _chars(
        "parts", domain=domain, labels=label_list, max_parts=limits.max_parts, max_subparts=limits.max_subparts
    )
    attribute_chars = len(leaves) * _chars(
        "attributes",
        domain=domain,
        labels=label_list,
        part=leaves[0].rsplit("/", 1)[-1],
        part_path=leaves[0].replace("/", " "),
        max_attributes=limits.max_attributes,
    )
    values_chars, values_answer = plan_values(domain, labels, labels, pairs, limits.max_values)
    answer = 40 * len(leaves) + len(leaves) * 20 * limits.max_attributes + values_answer
    counts = [1, len(leaves), len(labels), 0]
    prompt = parts_chars + attribute_chars + values_chars
    if llm_sentences:
        concepts = len(pairs) * limits.max_values * len(labels)
        counts[3], sentence_prompt, sentence_answer = plan_sentences(domain, concepts)
        prompt += sentence_prompt
        answer += sentence_answer
    return counts, prompt, answer


def plan_sentences(domain: str, concepts: int) -> tuple[int, int, int]:
    """(requests, prompt characters, answer characters) of step 4 for ``concepts`` concepts."""
    batches = math.ceil(concepts / SENTENCE_BATCH)
    item = f"- id: part 1/sub-part 1:attribute 1={_TYPICAL_VALUE}\n  description: {_TYPICAL_SENTENCE}\n"
    prompt = batches * _chars("sentences", domain=domain, items="") + concepts * len(item)
    answer = concepts * len(json.dumps({"id": item[6:50], "sentence": _TYPICAL_SENTENCE}))
    return batches, prompt, answer


def make_plan(counts: Sequence[int], prompt_chars: int, answer_chars: int, llm: LLMClient | None) -> GenerationPlan:
    prompt_tokens = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    completion_tokens = math.ceil(answer_chars / CHARS_PER_TOKEN)
    return GenerationPlan(
        requests=sum(counts),
        parts_requests=counts[0],
        attributes_requests=counts[1],
        values_requests=counts[2],
        sentences_requests=counts[3],
        prompt_chars=prompt_chars,
        estimated_prompt_tokens=prompt_tokens,
        estimated_completion_tokens=completion_tokens,
        estimated_cost_usd=llm.cost(prompt_tokens, completion_tokens) if llm is not None else None,
    )
