"""What made a concept tree: the generator, the model, the prompts and every LLM call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from conceptforest.text import strip_control


class UsageTotals(BaseModel):
    """Token counts summed over a tree's LLM calls."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class CallRecord(BaseModel):
    """One LLM call made (or answered from the cache) while building a tree."""

    step: str
    subject: str
    cached: bool
    attempts: int = 1
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @field_validator("step", "subject")
    @classmethod
    def _printable(cls, value: str) -> str:
        return strip_control(value)


class Provenance(BaseModel):
    """What made a tree."""

    generator: Literal["llm", "template", "manual"] = "manual"
    llm_model: str | None = None
    llm_base_url: str | None = None
    prompt_templates: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    package_version: str | None = None
    usage: UsageTotals = Field(default_factory=UsageTotals)
    calls: list[CallRecord] = Field(default_factory=list)
    note: str | None = None

    @field_validator("llm_model", "llm_base_url", "created_at", "package_version", "note")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else strip_control(value)

    @field_validator("prompt_templates")
    @classmethod
    def _printable_refs(cls, refs: dict[str, str]) -> dict[str, str]:
        return {strip_control(step): strip_control(ref) for step, ref in refs.items()}
