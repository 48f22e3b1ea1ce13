"""A stub OpenAI-compatible chat server on 127.0.0.1 for tests: real HTTP, canned answers, injected faults."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

WORDS = [
    "pointed",
    "rounded",
    "floppy",
    "long",
    "short",
    "dark",
    "pale",
    "curly",
    "broad",
    "narrow",
    "spotted",
    "smooth",
]

ServerT = TypeVar("ServerT", bound=ThreadingHTTPServer)

FAULTS = (
    "ok",
    "401",
    "404",
    "429",
    "500",
    "slow",
    "fenced",
    "truncated",
    "runaway",
    "empty",
    "leak",
    "schema_ignored",
    "runaway_distinct",
    "overlong",
    "drip",
    "drip_headers",
    "hostile_names",
    "echo401",
    "echo500",
    "echo401_late",
    "bad_items",
    "deep",
)


def detect_step(body: dict[str, Any]) -> str:
    text = " ".join(m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "user")
    for marker, step in (
        ("visible parts", "parts"),
        ("visual attributes", "attributes"),
        ("describe how a", "values"),
        ("rewrite each visual description", "sentences"),
        ("useful features for distinguishing a", "dclip"),
        ("different answers, each one short descriptive sentence", "cupl"),
        ("leveraging the hints of confusion classes list above", "optimize_initial"),
        ("leveraging the hints of confusion classes and two lists above", "optimize_mutation"),
        ("versions of class descriptions and corresponding classification metrics", "optimize_crossover"),
    ):
        if marker in text:
            return step
    return "unknown"


def first_user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def asked_labels(body: dict[str, Any]) -> list[str]:
    """The labels an optimisation prompt asks about: the enum of the schema printed at the end of the prompt."""
    schema = json.loads(first_user(body).split("The JSON schema of the answer:", 1)[1])
    return list(schema["properties"]["labels"]["required"])


def optimize_answer(body: dict[str, Any]) -> dict[str, Any]:
    """Every asked label with descriptors built from plain words, different per sampling seed."""
    seed = int(body.get("seed") or 0)
    entries = {}
    for label in asked_labels(body):
        start = int(hashlib.sha256(label.encode()).hexdigest(), 16) + seed
        entries[label] = [f"{WORDS[(start + i) % len(WORDS)]} edge {i}" for i in range(4)]
    return {"labels": entries}


def crossover_versions(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The versions a crossover prompt shows (JSON between the first line and the instruction)."""
    text = first_user(body).split("metrics are:\n", 1)[1].split("\n\nOutput the optimized", 1)[0]
    return list(json.loads(text))


def best_version(body: dict[str, Any]) -> dict[str, Any]:
    """A crossover that keeps the version with the highest overall accuracy (the first of equals)."""
    versions = crossover_versions(body)
    chosen = max(versions, key=lambda v: float(v["overall_accuracy"].rstrip("%")))
    return {"labels": {e["label"]: e["descriptors"] for e in chosen["labels"]}}


def canned_answer(step: str, body: dict[str, Any]) -> dict[str, Any]:
    prompt = first_user(body)
    if step == "optimize_crossover":
        return best_version(body)
    if step.startswith("optimize_"):
        return optimize_answer(body)
    if step == "parts":
        return {"parts": [{"name": "head", "subparts": ["ears", "eyes"]}, {"name": "tail", "subparts": []}]}
    if step == "attributes":
        return {"attributes": ["shape", "colour"]}
    if step == "values":
        label = re.search(r"describe how a (.+?) looks", prompt).group(1)  # type: ignore[union-attr]
        pairs = re.findall(r"^- ([^:\n]+): (.+)$", prompt, flags=re.MULTILINE)
        seed = int(hashlib.sha256(label.encode()).hexdigest(), 16)
        keyed = {}
        for i, (part, attribute) in enumerate(pairs):
            word = WORDS[(seed + i) % len(WORDS)]
            keyed[f"{part}: {attribute}"] = [f"{word} {attribute} {seed % 89}"]
        return {"values": keyed}
    if step == "sentences":
        items = re.findall(r"^- id: (.+)\n  description: (.+)$", prompt, flags=re.MULTILINE)
        return {"sentences": [{"id": cid, "sentence": f"a photo showing {desc}"} for cid, desc in items]}
    if step in ("dclip", "cupl"):
        return describe_answer(step, prompt)
    return {"error": "unknown step"}


def describe_answer(step: str, prompt: str) -> dict[str, Any]:
    """Canned descriptors (DCLIP: for the last label asked) or sentences (CuPL: for the question asked)."""
    if step == "dclip":
        label = re.findall(r"distinguishing a (.+?) in a photo\?", prompt)[-1]
        seed = int(hashlib.sha256(label.encode()).hexdigest(), 16)
        words = [WORDS[(seed + i) % len(WORDS)] for i in range(4)]
        return {"descriptors": [f"{words[0]} ears", f"a {words[1]} tail", f"has {words[2]} fur", f"{words[3]} eyes"]}
    question = prompt.split("\n", 1)[0]
    count = int(re.search(r"Write (\d+) different answers", prompt).group(1))  # type: ignore[union-attr]
    return {"sentences": [f"Answer {i} to: {question}" for i in range(min(count, 3))]}


def faulty_answer(fault: str, step: str, body: dict[str, Any]) -> tuple[str, str]:
    """(content, finish_reason) for a content fault."""
    good = canned_answer(step, body)
    text = json.dumps(good)
    if fault == "fenced":
        return f"Here you go:\n```json\n{json.dumps(good, indent=2)}\n```\n", "stop"
    if fault == "truncated":
        return text[: len(text) // 2], "length"
    if fault == "empty":
        key = next(iter(good))
        return json.dumps({key: []}), "stop"
    if fault == "runaway":
        key = next(iter(good))
        return json.dumps({key: [good[key][0]] * 300}), "stop"
    if fault == "runaway_distinct":
        key = next(iter(good))
        return json.dumps({key: [f"item {i}" for i in range(30)]}), "stop"
    if fault == "overlong":
        return json.dumps({"attributes": ["shape", "colour", "size", "texture", "pattern", "gloss"]}), "stop"
    if fault == "leak":
        label = re.search(r"describe how a (.+?) looks", first_user(body)).group(1)  # type: ignore[union-attr]
        first = next(iter(good["values"]))
        good["values"][first] = [f"just like a {label}"]
        return json.dumps(good), "stop"
    if fault == "schema_ignored":
        return "Sure! A dog has a head, a tail and four legs.", "stop"
    if fault == "hostile_names" and step == "parts":
        parts = [{"name": "head/neck", "subparts": []}, {"name": "</script>"}, {"name": "\x1b[31mtail\x1b[0m"}]
        return json.dumps({"parts": parts}), "stop"
    if fault == "hostile_names":
        return json.dumps({"attributes": ["size/shape", "colour:hue", "tone=dark", "\x1b[2Jgloss"]}), "stop"
    if fault == "deep":  # JSON nested far deeper than any parser's recursion limit
        return '{"' + next(iter(good)) + '": ' + "[" * 100_000 + "]" * 100_000 + "}", "stop"
    if fault == "bad_items":
        key = next(iter(good))
        items = [item for item in good[key] if isinstance(item, str)]
        copies = ["\x1b[31m- " + items[0] + "\x1b[0m", items[0].upper()] if items else []
        bad = ["", 42, "x" * 400, *copies]
        return json.dumps({key: [*bad, *items]}), "stop"
    raise ValueError(fault)


@dataclass
class StubState:
    faults: list[tuple[str | None, str]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    reject_json_schema: bool = False
    reject_status: int = 400
    retry_after: str = "2"
    slow_seconds: float = 1.5
    drip_seconds: float = 1.0
    answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)  # by step
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_fault(self, kind: str, step: str | None = None, times: int = 1) -> None:
        assert kind in FAULTS, kind
        self.faults.extend([(step, kind)] * times)

    def take_fault(self, step: str) -> str | None:
        with self.lock:
            for i, (fault_step, kind) in enumerate(self.faults):
                if fault_step in (None, step):
                    del self.faults[i]
                    return kind
        return None

    def steps(self) -> list[str]:
        return [r["step"] for r in self.requests]


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 whose ``base_url`` is an OpenAI-style ``/v1`` root (shared by the stubs)."""

    daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def serve_on_loopback(server_class: type[ServerT], handler: type[BaseHTTPRequestHandler], state: Any) -> ServerT:
    """Start ``server_class`` on a free loopback port in a daemon thread, with ``state`` attached."""
    server = server_class(("127.0.0.1", 0), handler)
    server.state = state  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class JSONHandler(BaseHTTPRequestHandler):
    """Quiet request handler that answers JSON (shared by the stubs)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


class StubServer(LoopbackServer):
    state: StubState


class Handler(JSONHandler):
    server: StubServer

    def _drip(self, payload: dict[str, Any], interval: float, headers_too: bool = False) -> None:
        """Send a 200 answer one byte at a time, ``interval`` seconds apart (a stalling server); with
        ``headers_too`` the status line and headers trickle as well."""
        data = json.dumps(payload).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        try:
            if headers_too:
                data = head.encode() + data
            else:
                self.wfile.write(head.encode())
                self.wfile.flush()
            for index in range(len(data)):
                self.wfile.write(data[index : index + 1])
                self.wfile.flush()
                time.sleep(interval)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def do_POST(self) -> None:
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        step = detect_step(body)
        with state.lock:
            state.requests.append(
                {"step": step, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}
            )
        response_format = body.get("response_format") or {}
        if state.reject_json_schema and response_format.get("type") == "json_schema":
            message = "Input should be 'text' or 'json_object' at body.response_format.type: 'json_schema'"
            self._send(state.reject_status, {"error": {"message": message, "type": "invalid"}})
            return
        fault = state.take_fault(step)
        if fault == "429":
            self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": state.retry_after})
            return
        if fault == "401":
            self._send(401, {"error": {"message": "Incorrect API key provided"}})
            return
        if fault == "404":
            self._send(404, {"error": {"message": f"model {body.get('model')!r} not found"}})
            return
        if fault == "echo401_late":
            # the bare key, placed where a 300-character cut of the body would split it
            key = str(self.headers.get("Authorization", "")).removeprefix("Bearer ")
            self._send(401, {"error": {"message": "x" * 250 + f" invalid token {key}", "type": "auth"}})
            return
        if fault in ("echo401", "echo500"):
            # a server that quotes the request's Authorization header back in its error
            message = f"Invalid header Authorization: {self.headers.get('Authorization')}"
            self._send(int(fault[4:]), {"error": {"message": message, "type": "invalid_request_error"}})
            return
        if fault == "500":
            self._send(500, {"error": {"message": "internal error"}})
            return
        if fault == "slow":
            time.sleep(state.slow_seconds)
        if fault in (None, "ok", "slow", "drip", "drip_headers"):
            answer = state.answers[step](body) if step in state.answers else canned_answer(step, body)
            content, finish = json.dumps(answer), "stop"
        else:
            content, finish = faulty_answer(fault, step, body)
        prompt_chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{len(state.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_chars // 4,
                "completion_tokens": len(content) // 4,
                "total_tokens": prompt_chars // 4 + len(content) // 4,
            },
        }
        if fault in ("drip", "drip_headers"):
            self._drip(payload, state.drip_seconds, headers_too=fault == "drip_headers")
        else:
            self._send(200, payload)


def start_stub() -> StubServer:
    return serve_on_loopback(StubServer, Handler, StubState())
