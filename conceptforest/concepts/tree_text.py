"""Text about concept trees: the sentence template's rules and the readable dump that ``concepts show`` prints."""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

from conceptforest.concepts.tree_files import one_line
from conceptforest.text import strip_control

if TYPE_CHECKING:
    from conceptforest.concepts.tree import ConceptTree

SENTENCE_FIELDS = ("part", "part_path", "attribute", "value", "domain")
MAX_TEMPLATE_CHARS = 1000
_ALLOWED = ", ".join(f"{{{name}}}" for name in SENTENCE_FIELDS)


def _refusal(template: str, problem: str) -> ValueError:
    return ValueError(
        f"the sentence template {one_line(template, 80)!r} {problem}; allowed placeholders: {_ALLOWED} "
        "(plain, without '.', '[ ]', '!' or ':'), and literal braces are written {{ and }}"
    )


def _placeholder(field: str, conversion: str | None, spec: str) -> str:
    return "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"


def check_sentence_template(template: str) -> None:
    """Refuse a template that is not literal text plus the plain placeholders of :data:`SENTENCE_FIELDS`.

    Attribute access (``{value.upper}``), indexes (``{value[0]}``), conversions (``{value!r}``), format specs
    (``{value:>9}``), positional fields (``{}``) and ``{label}`` (sentences are class-free) are refused, so
    ``str.format`` can only substitute the five strings. ``{value}`` is required.

    Raises
    ------
    ValueError
        Naming the template, the problem and the allowed placeholders.
    """
    if len(template) > MAX_TEMPLATE_CHARS:
        raise _refusal(template, f"is longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:  # an unmatched brace
        raise _refusal(template, f"is not valid ({exc})") from exc
    fields: set[str] = set()
    for _, field, spec, conversion in pieces:
        if field is None:
            continue
        if field == "label":
            raise _refusal(template, "must not contain {label}: sentences are class-free")
        if field not in SENTENCE_FIELDS and field.isidentifier():
            raise _refusal(template, f"has unknown fields [{field!r}]")
        if field not in SENTENCE_FIELDS or conversion or spec:
            raise _refusal(template, f"uses {one_line(_placeholder(field, conversion, spec or ''), 60)!r}")
        fields.add(field)
    if "value" not in fields:
        raise _refusal(template, "must contain {value}")


def format_tree(tree: ConceptTree) -> str:
    """A readable text dump of a tree, with counts (control characters never reach the terminal)."""
    concepts = tree.concepts()
    lines = [
        f"domain: {tree.domain}",
        f"labels ({len(tree.labels)}): {', '.join(tree.labels)}",
        f"generator: {tree.provenance.generator}"
        + (f" (model {tree.provenance.llm_model})" if tree.provenance.llm_model else ""),
        f"tree hash: {tree.tree_hash()[:16]}",
        f"concepts: {len(concepts)} distinct",
        "",
        "parts:",
    ]
    for path, part in tree.iter_parts():
        indent = "  " * path.count("/")
        attrs = f"  [{', '.join(part.attributes)}]" if part.attributes else ""
        lines.append(f"  {indent}{part.name}{attrs}")
    lines.append("")
    lines.append("values:")
    for label in tree.labels:
        lines.append(f"  {label}:")
        for part_path, by_attribute in tree.values.get(label, {}).items():
            for attribute, values in by_attribute.items():
                lines.append(f"    {part_path} {attribute}: {'; '.join(values)}")
    usage = tree.provenance.usage
    if usage.calls:
        lines += [
            "",
            f"LLM calls: {usage.calls} ({usage.cached_calls} from cache), "
            f"tokens: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion",
        ]
    missing = tree.missing_values()
    if missing:
        lines.append(f"missing values: {len(missing)} (label, part, attribute) triples")
    leaks = tree.leakage()
    if leaks:
        lines.append(f"WARNING: {len(leaks)} value(s) name a label (class-name leakage):")
        lines += [
            f"  {lk.label}: {lk.part_path} {lk.attribute} = {lk.value!r} names {lk.leaked_label!r}" for lk in leaks
        ]
    return "\n".join(strip_control(line) for line in lines) + "\n"
