"""Versioned prompt templates, one text file per generation step.

A template file has a ``### system`` and a ``### user`` section and uses ``$name`` placeholders. Its sha256
is part of every cache key, so an edited template never reuses an old answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

STEPS = ("parts", "attributes", "values", "sentences")
OTHER_TEMPLATES = ("dclip", "cupl", "optimize_initial", "optimize_mutation", "optimize_crossover")
TEMPLATE_VERSION = "v1"


@dataclass(frozen=True)
class PromptTemplate:
    """One step's prompt: its name, version, text and hash."""

    step: str
    version: str
    system: str
    user: str

    @property
    def sha256(self) -> str:
        text = f"{self.step}\n{self.version}\n### system\n{self.system}\n### user\n{self.user}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def ref(self) -> str:
        """``step.version@hash12``: how provenance names a template."""
        return f"{self.step}.{self.version}@{self.sha256[:12]}"

    def messages(self, **variables: Any) -> list[dict[str, str]]:
        """The chat messages with every ``$placeholder`` filled; a missing variable raises ``KeyError``."""
        return [
            {"role": "system", "content": Template(self.system).substitute(variables)},
            {"role": "user", "content": Template(self.user).substitute(variables)},
        ]

    @classmethod
    def parse(cls, step: str, version: str, text: str) -> PromptTemplate:
        sections: dict[str, list[str]] = {}
        current: str | None = None
        for line in text.splitlines():
            if line.startswith("### "):
                current = line[4:].strip()
                sections[current] = []
            elif current is not None:
                sections[current].append(line)
        if set(sections) != {"system", "user"}:
            raise ValueError(f"prompt template {step}.{version} needs exactly '### system' and '### user' sections")
        return cls(step, version, "\n".join(sections["system"]).strip(), "\n".join(sections["user"]).strip())


def load_prompt(step: str, version: str = TEMPLATE_VERSION) -> PromptTemplate:
    """The packaged template of one generation step (or of descriptions and their optimisation)."""
    if step not in STEPS + OTHER_TEMPLATES:
        raise ValueError(f"unknown prompt template {step!r}; templates are {STEPS + OTHER_TEMPLATES}")
    text = resources.files("conceptforest.concepts").joinpath("prompts", f"{step}.{version}.txt").read_text("utf-8")
    return PromptTemplate.parse(step, version, text)
