"""An OpenAI-compatible vision LLM client: images as content parts, concurrent, retried, cached by image hash.

It reaches any server that takes ``{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}``
content parts (OpenAI, Ollama's /v1, vLLM, llama.cpp's server) and reuses the text client's transport
(:mod:`conceptforest.concepts.llm_transport`): a deadline for each request as a whole, back-off on 429/5xx that
honours ``Retry-After``, redaction of the API key from every message, and hints that follow the failure. The key is
read from the argument or ``OPENAI_API_KEY`` and never written anywhere.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal

import openai
from tqdm.auto import tqdm

from conceptforest.cache import DiskCache, cache_root
from conceptforest.concepts.llm import DeepAnswerError, extract_json
from conceptforest.concepts.llm_transport import (
    OpenAICompatibleTransport,
    RequestCancelled,
    call_with_deadline,
    sanitize_base_url,
)
from conceptforest.features.images import ImageDecodeError
from conceptforest.llm.image_payload import DEFAULT_MAX_SIDE, image_payload, read_image_file
from conceptforest.llm.vision_types import VisionAnswer

__all__ = ["OpenAIVisionLLM", "label_logprobs"]

TOP_LOGPROBS = 5
# an answer longer than max_tokens x this many characters cannot be max_tokens tokens: the server is faulty
MAX_CHARS_PER_TOKEN = 16


def _fragment_matches(fragment: str, label: str) -> bool:
    text = fragment.strip().strip('"').casefold()
    return bool(text) and label.casefold().replace("_", " ").startswith(text.replace("_", " "))


def label_logprobs(content: str, tokens: Sequence[Any], labels: Sequence[str]) -> dict[str, float] | None:
    """Best-effort log-probabilities of the labels, from the top alternatives of the answer's first label token.

    The label's value starts after ``{"label": "`` when the answer is that JSON object, else at the first
    non-blank character. The token covering that position is found by adding up token lengths; each of its top
    alternatives (with the part before the value start removed) gives its log-probability to every label that
    begins with it (ignoring case). A label that several alternatives fit takes the longest; labels that share
    their first token share its log-probability; labels no alternative fits are left out. ``None`` when nothing
    fits (the tokens do not add up to the answer, or no alternative starts a label).
    """
    start = _value_start(content)
    position = 0
    for token in tokens:
        text = str(getattr(token, "token", ""))
        if position + len(text) > start:
            cut = start - position
            best: dict[str, tuple[int, float]] = {}
            for alt in getattr(token, "top_logprobs", None) or [token]:
                alt_text = str(getattr(alt, "token", ""))
                if alt_text[:cut].strip() != text[:cut].strip():
                    continue
                fragment = alt_text[cut:]
                logprob = float(getattr(alt, "logprob", 0.0))
                if not math.isfinite(logprob):  # a NaN or infinite value says nothing: left out
                    continue
                for label in labels:
                    length = len(fragment.strip())
                    if _fragment_matches(fragment, label) and length > best.get(label, (-1, 0.0))[0]:
                        best[label] = (length, logprob)
            return {label: value for label, (_, value) in best.items()} or None
        position += len(text)
    return None


def _value_start(content: str) -> int:
    """Where the label's text begins: inside ``{"label": "..."}`` when the answer is that object."""
    marker = content.find('"label"')
    if marker >= 0:
        quote = content.find('"', content.find(":", marker) + 1)
        if quote >= 0:
            return quote + 1
    return len(content) - len(content.lstrip())


def finite_logprobs(values: Any) -> dict[str, float] | None:
    """The label -> log-probability pairs that are finite numbers (a cache record or a server may hold NaN)."""
    if not isinstance(values, dict):
        return None
    kept = {
        str(label): float(value)
        for label, value in values.items()
        if isinstance(value, int | float) and math.isfinite(value)
    }
    return kept or None


def _chosen_text(content: str, choices: Sequence[str] | None) -> str:
    """The label inside a ``{"label": ...}`` answer (fences and prose around it tolerated), else the raw text.

    Raises :class:`DeepAnswerError` for an answer nested too deeply to parse."""
    if choices:
        try:
            value = extract_json(content)
        except DeepAnswerError:
            raise
        except ValueError:
            return content
        if isinstance(value, dict) and isinstance(value.get("label"), str):
            return str(value["label"])
    return content


class OpenAIVisionLLM(OpenAICompatibleTransport):
    """A :class:`~conceptforest.llm.vision_types.VisionLLM` over an OpenAI-compatible chat completions server.

    Parameters
    ----------
    model : str
        The model name as the server knows it (``gpt-4o-mini``, ``llava``, ``qwen2.5vl``...).
    base_url : str, optional
        E.g. ``http://localhost:11434/v1`` for Ollama; defaults to ``$OPENAI_BASE_URL``, then OpenAI.
    api_key : str, optional
        Defaults to ``$OPENAI_API_KEY``; a local server without one gets a placeholder. Never stored.
    timeout : float
        Seconds per request as a whole (a server that trickles its answer is cut off too).
    max_attempts : int
        Requests per image on 429, 5xx, timeouts and connection errors; then that image gets an error answer
        and the run goes on. 401/403/404 raise :class:`LLMError` at once (they would fail for every image).
    concurrency : int
        Requests in flight at once.
    max_side : int
        Images are downscaled so that their longest side is at most this many pixels, then sent as JPEG.
    cache_dir : path or False, optional
        Answers are kept in ``DiskCache(cache_root(cache_dir), "vision")``, keyed by (image sha256, model, prompt
        sha256, step, temperature, choices, max_side, max_tokens): never the image or the prompt itself. Failed
        and empty answers are not cached. ``False`` disables the cache.
    max_tokens : int
        The answer's token limit (part of the cache key). An answer longer than ``max_tokens`` x 16 characters
        cannot be that many tokens: it is an error answer (never cached, shown only by its start).
    backoff_base, backoff_max : float
        Exponential back-off in seconds, and its cap (a server's Retry-After is honoured up to the cap).
    sleep : callable, optional
        How to wait between attempts (tests record the waits instead of sleeping); by default a wait that an
        interrupt cuts short.

    Notes
    -----
    With ``choices`` the request asks for ``response_format`` ``json_schema`` with ``{"label": {"enum": choices}}``
    and ``logprobs=True, top_logprobs=5``. A server that refuses this (400/422, or a 5xx naming response_format)
    is asked again in plain text, without either, for the rest of this client's life. The answer's ``text`` is the
    label of a ``{"label": ...}`` answer (markdown fences tolerated), otherwise the raw answer; ``logprobs`` comes
    from :func:`label_logprobs` when the server returned log-probabilities.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 4,
        concurrency: int = 4,
        max_side: int = DEFAULT_MAX_SIDE,
        cache_dir: str | Path | Literal[False] | None = None,
        max_tokens: int = 300,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._stop = threading.Event()  # set on an interrupt: no new request, no retry, no wait
        self._connect(
            model,
            what="vision LLM",
            flag="--mllm",
            model_hint="pass --mllm MODEL (a multimodal chat model).",
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            sleep=sleep or self._wait,
        )
        self.concurrency = max(1, concurrency)
        self.max_side = max_side
        self.max_tokens = max_tokens
        self.cache = None if cache_dir is False else DiskCache(cache_root(cache_dir), "vision")
        self.structured = True  # False once the server refused response_format json_schema
        self.requests = 0
        self.tokens = 0
        self._lock = threading.Lock()

    def _wait(self, seconds: float) -> None:
        """The default pause between attempts: ``seconds``, or less when an interrupt stops the client."""
        self._stop.wait(seconds)

    def __repr__(self) -> str:
        return f"OpenAIVisionLLM(model={self.model!r}, base_url={sanitize_base_url(self.base_url)!r})"

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
        """One answer per image, in input order (see the class notes); raises :class:`LLMError` only for
        401/403/404, which would fail for every image. On an interrupt (``KeyboardInterrupt``) the requests in
        flight are abandoned, no retry or new request is sent, and the interrupt is raised at once."""
        prompt_sha = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        options = {"step": step, "temperature": temperature, "choices": list(choices) if choices else None}
        answers: list[VisionAnswer | None] = [None] * len(images)
        bar = tqdm(total=len(images), desc=f"vision LLM {step}", unit="img", disable=not progress, leave=False)
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        self._stop.clear()
        try:
            futures = {
                pool.submit(self._answer, Path(path), prompt, prompt_sha, options): index
                for index, path in enumerate(images)
            }
            for future in as_completed(futures):
                answers[futures[future]] = future.result()
                bar.update(1)
                bar.set_postfix(requests=self.requests, tokens=self.tokens, refresh=False)
        except BaseException:  # an interrupt (or a 401): the workers stop before their next request
            self._stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        return [answer for answer in answers if answer is not None]

    # -- one image -------------------------------------------------------------------------------------------

    def _answer(self, path: Path, prompt: str, prompt_sha: str, options: dict[str, Any]) -> VisionAnswer:
        try:
            data = read_image_file(path)
        except ImageDecodeError as exc:
            return VisionAnswer(sha256="", text="", error=f"{path}: {exc}")
        sha = hashlib.sha256(data).hexdigest()
        key = {
            "image": sha,
            "model": self.model,
            "prompt": prompt_sha,
            **options,
            "max_side": self.max_side,
            "max_tokens": self.max_tokens,
        }
        stored = self.cache.get(key) if self.cache is not None else None
        if isinstance(stored, dict) and isinstance(stored.get("text"), str):
            logprobs = finite_logprobs(stored.get("logprobs"))
            return VisionAnswer(sha256=sha, text=stored["text"], cached=True, logprobs=logprobs)
        try:
            payload = image_payload(data, max_side=self.max_side, sha256=sha)
        except ImageDecodeError as exc:
            return VisionAnswer(sha256=sha, text="", error=f"{path}: {exc}")
        answer = self._request(path, payload.url, prompt, options)
        answer = VisionAnswer(sha, answer.text, answer.tokens, False, answer.error, answer.logprobs)
        off_enum = bool(options["choices"]) and self.structured and answer.text not in options["choices"]
        if answer.error is None and not off_enum and self.cache is not None:  # a server fault is never cached
            self.cache.put(key, {"text": answer.text, "logprobs": answer.logprobs})
        return answer

    def _request(self, path: Path, url: str, prompt: str, options: dict[str, Any]) -> VisionAnswer:
        """Ask until the server answers; transport failures are retried with back-off up to ``max_attempts``."""
        choices: list[str] | None = options["choices"]
        failures = 0
        while True:
            structured = bool(choices) and self.structured
            try:
                if self._stop.is_set():
                    raise RequestCancelled("interrupted")
                response = self._create(url, prompt, options, structured)
            except RequestCancelled:
                return VisionAnswer(sha256="", text="", error=f"{path}: interrupted before an answer came")
            except (openai.APIStatusError, openai.APITimeoutError, openai.APIConnectionError) as exc:
                if structured and isinstance(exc, openai.APIStatusError) and self._rejects_format(exc):
                    self.structured = False
                    continue
                if isinstance(exc, openai.APIStatusError) and exc.status_code in (401, 403, 404):
                    raise self._error(
                        f"Vision LLM step '{options['step']}': the server at {self._server} refused model "
                        f"{self.model!r}: {self._describe(exc)}",
                        self._hint(exc),
                    ) from exc
                failures += 1
                if not self._worth_retrying(exc) or failures >= self.max_attempts:
                    message = f"no answer after {failures} request(s): {self._describe(exc)}. Fix: {self._hint(exc)}"
                    return VisionAnswer(sha256="", text="", error=self._redact(f"{path}: {message}"))
                self.sleep(self._backoff(exc, failures))
                continue
            return self._read(response, choices)

    def _read(self, response: Any, choices: list[str] | None) -> VisionAnswer:
        usage = response.usage
        tokens = ((usage.prompt_tokens or 0) + (usage.completion_tokens or 0)) if usage else 0
        with self._lock:
            self.tokens += tokens
        choice = response.choices[0] if response.choices else None
        content = (choice.message.content if choice else None) or ""
        if not content.strip():
            return VisionAnswer(sha256="", text="", tokens=tokens, error="the server's answer was empty")
        if len(content) > self.max_tokens * MAX_CHARS_PER_TOKEN:  # first: a cut-off answer may be huge too
            problem = f"far more than max_tokens ({self.max_tokens}) allows; treated as faulty"
            return self._faulty(content, tokens, f"the answer was {len(content):,} characters, {problem}")
        if choice is not None and choice.finish_reason == "length":
            return VisionAnswer(sha256="", text=content, tokens=tokens, error="the answer was cut off (max tokens)")
        try:
            text = _chosen_text(content, choices).strip()
        except DeepAnswerError as exc:
            return self._faulty(content, tokens, str(exc))
        logprobs = None
        content_tokens = getattr(getattr(choice, "logprobs", None), "content", None)
        if choices and content_tokens:
            logprobs = label_logprobs(content, content_tokens, choices)
        return VisionAnswer(sha256="", text=text, tokens=tokens, logprobs=logprobs)

    @staticmethod
    def _faulty(content: str, tokens: int, problem: str) -> VisionAnswer:
        """An error answer for a reply no valid answer looks like; only its start is kept."""
        return VisionAnswer(sha256="", text="", tokens=tokens, error=f"{problem} (it began {content[:80]!r})")

    def _create(self, url: str, prompt: str, options: dict[str, Any], structured: bool) -> Any:
        content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": url}}]
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": options["temperature"],
            "max_tokens": self.max_tokens,
        }
        if structured:
            schema = {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": options["choices"]}},
                "required": ["label"],
                "additionalProperties": False,
            }
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": f"conceptforest_{options['step']}", "schema": schema, "strict": True},
            }
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = TOP_LOGPROBS
        with self._lock:
            self.requests += 1
        return call_with_deadline(
            lambda: self._client.chat.completions.create(**kwargs),
            self.timeout,
            str(self._client.base_url),
            stop=self._stop,
        )

    # -- failures --------------------------------------------------------------------------------------------

    @staticmethod
    def _rejects_format(exc: openai.APIStatusError) -> bool:
        """Whether the server refused the structured request (llama.cpp answers 500, others 400/422)."""
        body = exc.response.text if exc.response is not None else ""
        return exc.status_code in (400, 422) or (exc.status_code >= 500 and "response_format" in body)

    def _hint(self, exc: Exception) -> str:
        if isinstance(exc, openai.APITimeoutError):
            return f"raise --timeout (now {self.timeout:g} s) or lower --concurrency (now {self.concurrency})."
        if isinstance(exc, openai.APIConnectionError):
            return f"is the server running at {self._server}? Start it, or point --mllm-base-url at it."
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else 0
        if status in (401, 403):
            return f"check the API key: export OPENAI_API_KEY with a key that {self._server} accepts."
        if status == 404:
            return f"check the model name (--mllm {self.model}) and --mllm-base-url (usually ending in /v1)."
        if status == 429:
            return f"the server is rate-limiting: lower --concurrency (now {self.concurrency}) or retry later."
        return "look at the server's log and retry later; answers received so far are cached."
