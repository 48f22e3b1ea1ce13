"""What a vision LLM returns, and the interface the methods use (so a method can be tested with a fake)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SHOWN_ANSWER_CHARS = 300  # the most of one answer a table or report shows


def shown_answer(text: str, limit: int = SHOWN_ANSWER_CHARS) -> str:
    """``text`` as tables and reports show it: whole up to ``limit`` characters, else its start and its length.

    >>> shown_answer("a cat " * 100, limit=12)
    'a cat a cat … (600 characters in all)'
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()} … ({len(text):,} characters in all)"


@dataclass(frozen=True)
class VisionAnswer:
    """One image's answer.

    ``text`` is the raw answer ('' when there is none; then ``error`` says why: the image could not be read, the
    server refused or never answered validly). ``logprobs`` maps labels to log-probabilities when the server
    returned them for a constrained choice. ``tokens`` counts prompt + completion tokens (0 when ``cached``).
    """

    sha256: str
    text: str
    tokens: int = 0
    cached: bool = False
    error: str | None = None
    logprobs: dict[str, float] | None = None


class VisionLLM(Protocol):
    """A multimodal LLM that answers one prompt about each image."""

    model: str

    def ask(
        self,
        images: Sequence[Path],
        prompt: str,
        *,
        step: str,
        temperature: float = 0.0,
        choices: Sequence[str] | None = None,
        progress: bool = False,
    ) -> list[VisionAnswer]:
        """One answer per image, in order. ``choices`` constrains the answer to one of them (a JSON schema
        ``enum`` where the server supports it); ``step`` names the prompt in the cache key and in errors."""
        ...
