"""One client for every OpenAI-compatible server, with structured output, validation, retries and a cache.

The same client reaches OpenAI, Azure, Ollama, vLLM, llama.cpp and LM Studio through ``base_url``. The API key
is read from the argument or ``OPENAI_API_KEY`` and is never written anywhere: not in the cache, not in
provenance, not in logs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import openai
from pydantic import BaseModel, ValidationError

from conceptforest.cache import DiskCache, cache_root
from conceptforest.concepts.llm_transport import (
    OpenAICompatibleTransport,
    call_with_deadline,
    failure_hint,
    sanitize_base_url,
)
from conceptforest.concepts.prompts import STEPS as TREE_STEPS
from conceptforest.concepts.prompts import PromptTemplate
from conceptforest.concepts.tree import CallRecord
from conceptforest.errors import LLMError

__all__ = ["DeepAnswerError", "LLMAnswer", "LLMClient", "StructuredMode", "extract_json", "sanitize_base_url"]

StructuredMode = Literal["auto", "json_schema", "json_object", "prompt"]
AnswerT = TypeVar("AnswerT", bound=BaseModel)
_DOWNGRADE: dict[str, Literal["json_object", "prompt"]] = {
    "json_schema": "json_object",
    "json_object": "prompt",
}
_MAX_FEEDBACK_CHARS = 1500


class DeepAnswerError(ValueError):
    """An answer nested more deeply than JSON parsing allows: an invalid answer, never a crash."""


@dataclass(frozen=True)
class LLMAnswer(Generic[AnswerT]):
    """A validated answer and the record of the call that produced it."""

    value: AnswerT
    record: CallRecord


def extract_json(text: str | None) -> Any:
    """The first JSON value in an answer, tolerating markdown fences and prose around it.

    Raises ``ValueError`` with a short reason when there is none (empty, truncated, or not JSON), and
    :class:`DeepAnswerError` (a ``ValueError``) for JSON nested deeper than the parser's recursion limit.
    """
    if not text or not text.strip():
        raise ValueError("the answer was empty")
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0] if "```" in stripped else stripped
    starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
    if not starts:
        raise ValueError("the answer contains no JSON object")
    try:
        value, _ = json.JSONDecoder().raw_decode(stripped[min(starts) :])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer is not complete JSON ({exc.msg} at char {exc.pos}); it may be truncated") from exc
    except RecursionError:
        raise DeepAnswerError("the answer is JSON nested too deeply to be read") from None
    return value


def _wrap_bare_list(value: Any, answer_model: type[BaseModel]) -> Any:
    """A bare list answers a schema with one list field: wrap it (a common weak-model habit)."""
    if isinstance(value, list) and len(answer_model.model_fields) == 1:
        return {next(iter(answer_model.model_fields)): value}
    return value


def _validation_feedback(exc: ValidationError | ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}" for err in exc.errors()[:8]
        )
    return str(exc)


def _repair_messages(content: str | None, problem: str, truncated: bool) -> list[dict[str, str]]:
    """The invalid answer and the request to correct it, appended to the conversation for a repair."""
    return [
        {"role": "assistant", "content": (content or "")[:_MAX_FEEDBACK_CHARS]},
        {
            "role": "user",
            "content": f"That answer was not valid: {problem}. "
            + ("Answer more briefly. " if truncated else "")
            + "Answer again with one JSON object that follows the schema, and nothing else.",
        },
    ]


class LLMClient(OpenAICompatibleTransport):
    """An OpenAI-compatible chat client that returns validated pydantic answers.

    Parameters
    ----------
    model : str
        The model name as the server knows it (``gpt-4o-mini``, ``llama3.1``...).
    base_url : str, optional
        The server, e.g. ``http://localhost:11434/v1`` for Ollama. Defaults to ``$OPENAI_BASE_URL``, then OpenAI.
    api_key : str, optional
        Defaults to ``$OPENAI_API_KEY``; a local server without one gets a placeholder. Never stored.
    timeout : float
        Seconds per HTTP request, a deadline for the request as a whole (a server that trickles its answer
        byte by byte is cut off too).
    max_attempts : int
        HTTP attempts per call on 429, 5xx, timeouts and connection errors.
    max_repairs : int
        Extra requests per call that feed a validation error back to the model.
    temperature, max_tokens, seed
        Sampling parameters; part of the cache key.
    structured : {"auto", "json_schema", "json_object", "prompt"}
        How to ask for JSON. ``auto`` tries json_schema and falls back to JSON mode (with the schema in the
        prompt) when the server rejects it.
    cache_dir : path, optional
        Where valid answers are kept; defaults to ``$CONCEPTFOREST_HOME/cache``. ``False`` disables the cache.
    backoff_base, backoff_max : float
        Exponential back-off in seconds, and its cap (a server's Retry-After is honoured up to the cap).
    price_per_1k_prompt, price_per_1k_completion : float, optional
        USD per 1,000 tokens, to report a cost.
    sleep : callable
        How to wait between attempts (tests record the waits instead of sleeping).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 4,
        max_repairs: int = 2,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = 0,
        structured: StructuredMode = "auto",
        cache_dir: str | Path | Literal[False] | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        price_per_1k_prompt: float | None = None,
        price_per_1k_completion: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connect(
            model,
            what="LLM",
            flag="--llm",
            model_hint="pass --llm MODEL, or --llm none for the template tree.",
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            sleep=sleep,
        )
        self.max_repairs = max(0, max_repairs)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.structured: StructuredMode = structured
        self.price_per_1k_prompt = price_per_1k_prompt
        self.price_per_1k_completion = price_per_1k_completion
        self.cache = None if cache_dir is False else DiskCache(cache_root(cache_dir), "llm")
        self._mode: Literal["json_schema", "json_object", "prompt"] = (
            "json_schema" if structured == "auto" else structured
        )

    def __repr__(self) -> str:
        return f"LLMClient(model={self.model!r}, base_url={sanitize_base_url(self.base_url)!r})"

    @property
    def params(self) -> dict[str, Any]:
        """The sampling parameters that change answers (part of every cache key)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.price_per_1k_prompt is None and self.price_per_1k_completion is None:
            return None
        return (
            prompt_tokens * (self.price_per_1k_prompt or 0) + completion_tokens * (self.price_per_1k_completion or 0)
        ) / 1000

    def ask(
        self,
        template: PromptTemplate,
        variables: Mapping[str, Any],
        answer_model: type[AnswerT],
        *,
        subject: str,
        context: Mapping[str, Any] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> LLMAnswer[AnswerT]:
        """Ask one step's question and return a validated answer.

        ``variables`` fill the template; ``context`` goes to the answer model's validators (limits, expected
        pairs, label names). Both are part of the cache key. ``schema`` replaces the answer model's JSON schema
        in the request (a narrower schema for this one call). Raises :class:`LLMError` naming ``subject`` when
        no valid answer came within the bounded attempts.
        """
        context = dict(context or {})
        key = {
            "model": self.model,
            "template": template.sha256,
            "inputs": dict(variables),
            "context": context,
            "params": self.params,
            "answer": answer_model.__name__,
            "schema": schema,
        }
        stored = self.cache.get(key) if self.cache is not None else None
        if stored is not None:
            try:
                value = answer_model.model_validate(stored["answer"], context=context)
                return LLMAnswer(value, CallRecord(step=template.step, subject=subject, cached=True, attempts=0))
            except (ValidationError, KeyError, TypeError):
                pass  # a record from an older schema: ask again
        schema = schema or answer_model.model_json_schema()
        messages: list[dict[str, str]] = template.messages(**variables, schema=json.dumps(schema))
        record = CallRecord(step=template.step, subject=subject, cached=False, attempts=0)
        value = self._ask_server(record, messages, schema, answer_model, context)
        if self.cache is not None:
            self.cache.put(key, {"answer": value.model_dump(mode="json")})
        return LLMAnswer(value, record)

    # -- internals -------------------------------------------------------------------------------------------

    def _ask_server(
        self,
        record: CallRecord,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        answer_model: type[AnswerT],
        context: dict[str, Any],
    ) -> AnswerT:
        """Request until an answer validates: bounded retries on transport failures, repairs on invalid answers."""
        transport_failures = 0
        repairs = 0
        while True:
            record.attempts += 1
            try:
                response = self._create(record.step, messages, schema)
            except (openai.APIStatusError, openai.APITimeoutError, openai.APIConnectionError) as exc:
                if isinstance(exc, openai.APIStatusError) and self._rejects_structured_output(exc):
                    self._mode = _DOWNGRADE[self._mode]  # the server refused this way of asking for JSON
                    continue
                transport_failures += 1
                if not self._worth_retrying(exc) or transport_failures >= self.max_attempts:
                    raise self._transport_error(record, exc) from exc
                self.sleep(self._backoff(exc, transport_failures))
                continue
            usage = response.usage
            record.prompt_tokens += (usage.prompt_tokens or 0) if usage else 0
            record.completion_tokens += (usage.completion_tokens or 0) if usage else 0
            choice = response.choices[0] if response.choices else None
            content = choice.message.content if choice else None
            try:
                return answer_model.model_validate(
                    _wrap_bare_list(extract_json(content), answer_model), context=context
                )
            except (ValidationError, ValueError) as exc:
                truncated = choice is not None and choice.finish_reason == "length"
                problem = ("the answer hit the token limit and was cut off; " if truncated else "") + (
                    _validation_feedback(exc)
                )
                if repairs >= self.max_repairs:
                    hint = self._hint(None, truncated=truncated, step=record.step)
                    raise self._give_up(record, problem, hint, content) from exc
                repairs += 1
                messages = [*messages, *_repair_messages(content, problem, truncated)]

    def _create(self, step: str, messages: list[dict[str, str]], schema: dict[str, Any]) -> Any:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self._mode == "json_schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": f"conceptforest_{step}", "schema": schema, "strict": False},
            }
        elif self._mode == "json_object":
            # llama.cpp's server reads "schema" here; other servers ignore it (the schema is in the prompt too)
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        return call_with_deadline(
            lambda: self._client.chat.completions.create(**kwargs), self.timeout, str(self._client.base_url)
        )

    def _rejects_structured_output(self, exc: openai.APIStatusError) -> bool:
        """Whether the server refused our ``response_format`` (llama.cpp answers 500, others 400/422)."""
        if self.structured != "auto" or self._mode not in _DOWNGRADE:
            return False
        body = exc.response.text if exc.response is not None else ""
        mentions_format = "response_format" in body or self._mode in body
        return exc.status_code in (400, 422) or (exc.status_code >= 500 and mentions_format)

    def _hint(self, exc: Exception | None, *, truncated: bool = False, step: str = "") -> str:
        return failure_hint(
            exc,
            server=self._server,
            model=self.model,
            timeout=self.timeout,
            max_tokens=self.max_tokens,
            max_attempts=self.max_attempts,
            max_repairs=self.max_repairs,
            truncated=truncated,
            tree_step=step in TREE_STEPS or not step,
        )

    def _transport_error(self, record: CallRecord, exc: Exception) -> LLMError:
        if isinstance(exc, openai.APIStatusError) and exc.status_code in (401, 403, 404):
            refused = self._error(
                f"LLM step '{record.step}' for {record.subject}: the server at {self._server} refused model "
                f"{self.model!r}: {self._describe(exc)}",
                self._hint(exc),
            )
            refused.fatal = True
            return refused
        return self._give_up(record, self._describe(exc), self._hint(exc, step=record.step))

    def _give_up(self, record: CallRecord, problem: str, hint: str, content: str | None = None) -> LLMError:
        said = f" The last answer began: {content[:200]!r}." if content else ""
        error = self._error(
            f"LLM step '{record.step}' for {record.subject} failed after {record.attempts} request(s) to "
            f"{self._server} (model {self.model!r}): {problem}.{said} "
            "Answers already received are kept in the cache, so a rerun continues from here.",
            hint,
        )
        error.tokens = record.prompt_tokens + record.completion_tokens
        return error
