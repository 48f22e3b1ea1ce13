"""HTTP plumbing of the LLM client: a deadline for each request as a whole, and secrets kept out of messages.

httpx's timeouts bound each network operation, so a server that sends one byte a second never times out. Two
guards make ``timeout`` a deadline: the response body is read through a stream that gives up once the deadline
has passed, and the request runs in a worker thread that the caller stops waiting for shortly after it.
"""

from __future__ import annotations

import email.utils
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx2
import openai

from conceptforest.errors import BadInputError, LLMError
from conceptforest.redact import REDACTED, redact_secrets

__all__ = [
    "DEADLINE_EXTENSION",
    "MAX_ATTEMPTS",
    "MAX_TIMEOUT_SECONDS",
    "REDACTED",
    "OpenAICompatibleTransport",
    "RequestCancelled",
    "attempts_problem",
    "call_with_deadline",
    "check_request_limits",
    "deadline_http_client",
    "failure_hint",
    "redact_secrets",
    "retry_after_seconds",
    "sanitize_base_url",
    "timeout_problem",
]

ResultT = TypeVar("ResultT")
DEADLINE_EXTENSION = "conceptforest_deadline"
# how long past its deadline the caller waits for the worker, which should have given up by itself by then
_WORKER_GRACE_SECONDS = 2.0
# how often a caller waiting for a request looks whether it was told to stop (an interrupt)
_STOP_POLL_SECONDS = 0.1
MAX_TIMEOUT_SECONDS = 3600.0
MAX_ATTEMPTS = 20


class RequestCancelled(Exception):
    """The caller stopped waiting for a request because it was told to stop (an interrupt)."""


def timeout_problem(seconds: float) -> str | None:
    """What is wrong with a request timeout, or None: it must be a finite number of seconds in (0, 3600]."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return f"the timeout must be a number of seconds, not {seconds!r}"
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT_SECONDS):
        return f"the timeout must be a finite number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS:g}"
    return None


def attempts_problem(attempts: int) -> str | None:
    """What is wrong with a number of attempts per request, or None: it must be a whole number in [1, 20]."""
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
        return f"the attempts per request must be a whole number from 1 to {MAX_ATTEMPTS}"
    return None


def check_request_limits(timeout: float, max_attempts: int) -> None:
    """Refuse a timeout or attempt count out of range (the one check of the text client, the vision client and the
    config file), naming the option and its value."""
    for flag, value, problem in (
        ("--timeout", timeout, timeout_problem(timeout)),
        ("--max-attempts", max_attempts, attempts_problem(max_attempts)),
    ):
        if problem:
            raise BadInputError(f"{flag} {value!r} is out of range: {problem}.", hint=f"pass {flag} within range.")


def sanitize_base_url(base_url: str | None) -> str | None:
    """The base URL without credentials or query string, safe to record in provenance."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def retry_after_seconds(error: openai.APIStatusError) -> float | None:
    """Seconds a 429's ``Retry-After`` header asks to wait (a number or an HTTP date), if any."""
    header = error.response.headers.get("retry-after") if error.response is not None else None
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(header)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class _DeadlineStream(httpx2.SyncByteStream):
    """A response body that raises ``ReadTimeout`` when a chunk arrives after the request's deadline."""

    def __init__(self, stream: httpx2.SyncByteStream, deadline: float, request: httpx2.Request) -> None:
        self._stream = stream
        self._deadline = deadline
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise httpx2.ReadTimeout("the whole request took longer than its timeout", request=self._request)
            yield chunk

    def close(self) -> None:
        self._stream.close()


def _start_clock(seconds: float) -> Callable[[httpx2.Request], None]:
    def hook(request: httpx2.Request) -> None:
        request.extensions = {**request.extensions, DEADLINE_EXTENSION: time.monotonic() + seconds}

    return hook


def _bound_body(response: httpx2.Response) -> None:
    deadline = response.request.extensions.get(DEADLINE_EXTENSION)
    if deadline is not None and isinstance(response.stream, httpx2.SyncByteStream):
        response.stream = _DeadlineStream(response.stream, float(deadline), response.request)


def deadline_http_client(timeout: float) -> httpx2.Client:
    """An HTTP client with the openai package's defaults whose response bodies stop at ``timeout`` seconds."""
    return openai.DefaultHttpxClient(
        timeout=timeout, event_hooks={"request": [_start_clock(timeout)], "response": [_bound_body]}
    )


def call_with_deadline(
    call: Callable[[], ResultT], timeout: float, base_url: str, stop: threading.Event | None = None
) -> ResultT:
    """Run ``call`` in a worker thread; raise ``openai.APITimeoutError`` when it has not returned in time, and
    :class:`RequestCancelled` as soon as ``stop`` is set (the caller was interrupted).

    The worker is a daemon: a request still stuck on a stalling server never holds up the program's exit.
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed over to the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="conceptforest-llm-request", daemon=True)
    worker.start()
    give_up = time.monotonic() + timeout + _WORKER_GRACE_SECONDS
    poll = _STOP_POLL_SECONDS if stop is not None else timeout + _WORKER_GRACE_SECONDS
    while worker.is_alive() and (remaining := give_up - time.monotonic()) > 0:
        if stop is not None and stop.is_set():
            raise RequestCancelled("the request was abandoned: the caller was told to stop")
        worker.join(min(poll, remaining))
    if worker.is_alive():
        raise openai.APITimeoutError(request=httpx2.Request("POST", base_url))
    if "error" in outcome:
        raise outcome["error"]
    value: ResultT = outcome["value"]
    return value


def failure_hint(
    exc: Exception | None,
    *,
    server: str,
    model: str,
    timeout: float,
    max_tokens: int,
    max_attempts: int,
    max_repairs: int,
    truncated: bool = False,
    tree_step: bool = True,
) -> str:
    """What to try next, for the way a request failed (``exc``) or for an answer that never validated (``None``).

    ``tree_step``: the request builds a concept tree, so the tree's size flags and ``--llm none`` (the template
    tree) are worth naming; for descriptor sets and their optimisation they are not."""
    if isinstance(exc, openai.APITimeoutError):
        return (
            f"raise --timeout (now {timeout:g} s) or lower --max-tokens (now {max_tokens}); small local models "
            "are slow, and a busy server needs a longer timeout."
        )
    if isinstance(exc, openai.APIConnectionError):
        return f"is the server running at {server}? Start it, or point --llm-base-url at the right address."
    if isinstance(exc, openai.APIStatusError):
        return _status_hint(exc.status_code, server=server, model=model, max_attempts=max_attempts)
    if truncated:
        less = "(--max-parts, --max-attributes, --max-values)" if tree_step else "(fewer descriptors or labels)"
        return f"raise --max-tokens (now {max_tokens}) so that answers are not cut off, or ask for less {less}."
    template = "; --llm none builds a template tree without an LLM" if tree_step else ""
    return f"use a stronger model, or allow more repair requests (--max-repairs, now {max_repairs}){template}."


def _status_hint(status: int, *, server: str, model: str, max_attempts: int) -> str:
    if status in (401, 403):
        return f"check the API key: export OPENAI_API_KEY with a key that {server} accepts for model {model!r}."
    if status == 404:
        return (
            f"check the model name (--llm {model}) and the base URL (--llm-base-url, usually ending in /v1): "
            f"{server} knows no such model or route."
        )
    if status == 429:
        return f"the server is rate-limiting: retry later, or raise --max-attempts (now {max_attempts})."
    if status >= 500:
        return f"the server failed: look at its log, retry later, or raise --max-attempts (now {max_attempts})."
    return (
        f"the server refused the request: check that --llm-base-url ({server}) is an OpenAI-compatible "
        "endpoint and that the model serves chat completions."
    )


class OpenAICompatibleTransport:
    """What the text and the vision client share: one ``openai`` client with our whole-request deadline and no
    retries of its own, the key check, back-off (honouring Retry-After), failure descriptions and redaction.

    Subclasses call :meth:`_connect` from ``__init__``; ``what`` and ``flag`` name the client and its model option
    (``--llm``, ``--mllm``) in the messages.
    """

    model: str
    base_url: str | None
    timeout: float
    max_attempts: int
    backoff_base: float
    backoff_max: float
    sleep: Callable[[float], None]
    _client: openai.OpenAI

    def _connect(
        self,
        model: str,
        *,
        what: str,
        flag: str,
        model_hint: str,
        base_url: str | None,
        api_key: str | None,
        timeout: float,
        max_attempts: int,
        backoff_base: float,
        backoff_max: float,
        sleep: Callable[[float], None],
    ) -> None:
        if not model or model.strip().lower() == "none":
            raise LLMError(f"No {what} model was given.", hint=model_hint)
        check_request_limits(timeout, max_attempts)
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not self.base_url:
                raise LLMError(
                    f"OPENAI_API_KEY is not set and no {flag}-base-url was given.",
                    hint=f"export OPENAI_API_KEY, or point {flag}-base-url at a local server "
                    "(e.g. http://localhost:11434/v1 for Ollama).",
                )
            key = "not-needed"
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=key,
            timeout=timeout,
            max_retries=0,
            http_client=deadline_http_client(timeout),
        )

    @property
    def safe_base_url(self) -> str | None:
        return sanitize_base_url(self.base_url)

    @property
    def _server(self) -> str:
        return self.safe_base_url or "the OpenAI API"

    def _backoff(self, exc: Exception, failures: int) -> float:
        if isinstance(exc, openai.APIStatusError):
            retry_after = retry_after_seconds(exc)
            if retry_after is not None:
                return min(retry_after, self.backoff_max)
        return float(min(self.backoff_base * 2 ** (failures - 1), self.backoff_max))

    @staticmethod
    def _worth_retrying(exc: Exception) -> bool:
        """429, 5xx, timeouts and connection errors are worth another try after a pause; other statuses not."""
        if isinstance(exc, openai.APIStatusError):
            return exc.status_code == 429 or exc.status_code >= 500
        return True

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, openai.APITimeoutError):
            return f"the request timed out after {self.timeout:g} s"
        if isinstance(exc, openai.APIConnectionError):
            return f"could not connect to {self._server}"
        if isinstance(exc, openai.APIStatusError):
            # redact the whole body before cutting it, so a cut never leaves part of an echoed key
            body = self._redact(exc.response.text) if exc.response is not None else ""
            return f"HTTP {exc.status_code} from the server: {body[:300]}".strip()
        return str(exc)

    def _redact(self, text: str) -> str:
        return redact_secrets(text, [self._client.api_key])

    def _error(self, message: str, hint: str) -> LLMError:
        """An LLMError with the API key and anything that looks like a token redacted (servers echo them)."""
        return LLMError(self._redact(message), hint=self._redact(hint))
