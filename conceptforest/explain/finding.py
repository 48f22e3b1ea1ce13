"""One finding of a report: a sentence, its kind, the section holding its evidence, and the values behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from conceptforest.explain.report import section_anchor

__all__ = ["Finding", "FindingKind", "Value", "warning"]

FindingKind = Literal["warning", "comparison", "importance", "confusion"]
Value = float | int | str


@dataclass(frozen=True)
class Finding:
    """One sentence of the findings: its kind, the text, the id of the section holding its evidence, and the
    values that made it (also in ``report.json``)."""

    kind: FindingKind
    sentence: str
    anchor: str
    values: dict[str, Value] = field(default_factory=dict)


def warning(sentence: str, section: str, **values: Value) -> Finding:
    """A warning finding whose evidence is ``section``."""
    return Finding("warning", sentence, section_anchor(section), dict(values))
