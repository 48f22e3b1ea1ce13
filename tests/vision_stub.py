"""A stub OpenAI-compatible vision LLM on 127.0.0.1 that really looks at the image it is sent.

It decodes the JPEG data URI, finds the dominant saturated colour of the made-up shape images (red, blue, green,
yellow, purple) and answers: ``{"label": ...}`` from a json_schema enum; a loose free-text guess
("The answer is: RED-DISC!") when the prompt lists labels; otherwise a description. Faults come on schedule, one
per request in arrival order: ``429`` (Retry-After 0), ``500``, ``401`` (echoing the key), ``refusal``,
``off_label``, ``fenced``, ``loose``, ``empty``, ``huge`` (``huge_chars`` characters), ``deep`` (JSON nested 100,000
levels), ``nan_logprobs`` (every log-probability NaN), ``slow500`` (``slow_seconds``, then 500).
``reject_json_schema`` answers 400 to any json_schema request.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from conceptforest.features.synthetic import SHAPES
from tests.llm_stub import JSONHandler, LoopbackServer, serve_on_loopback

COLOURS = {label.split()[0]: rgb for label, (_, rgb) in SHAPES.items()}
FAULTS = (
    "429",
    "500",
    "401",
    "refusal",
    "off_label",
    "fenced",
    "loose",
    "empty",
    "huge",
    "deep",
    "nan_logprobs",
    "slow500",
)


def dominant_colour(url: str) -> tuple[str, tuple[int, int]]:
    """The colour name most pixels are near (saturated pixels only), and the image's size."""
    image = Image.open(io.BytesIO(base64.b64decode(url.split("base64,", 1)[1]))).convert("RGB")
    pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    saturated = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 60]
    names = list(COLOURS)
    if not len(saturated):
        return "grey", image.size
    refs = np.array([COLOURS[name] for name in names], dtype=np.float64)
    nearest = np.argmin(((saturated[:, None, :] - refs[None]) ** 2).sum(axis=2), axis=1)
    return names[int(np.bincount(nearest, minlength=len(names)).argmax())], image.size


def _parts(body: dict[str, Any]) -> tuple[str, str]:
    """The prompt text and the image URL of the (single) user message."""
    text, url = "", ""
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            text += content
            continue
        for part in content or []:
            if part.get("type") == "text":
                text += part["text"]
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"]
    return text, url


def _enum(body: dict[str, Any]) -> list[str] | None:
    response_format = body.get("response_format") or {}
    if response_format.get("type") != "json_schema":
        return None
    enum: list[str] = response_format["json_schema"]["schema"]["properties"]["label"]["enum"]
    return enum


def _logprobs(content: str, labels: list[str], chosen: str, nan: bool = False) -> dict[str, Any]:
    """Tokens of a ``{"label": "..."}`` answer; the label's first word carries the top alternatives (all NaN with
    ``nan``)."""
    head = content[: content.index(chosen)]
    words = re.findall(r"\S+|\s+\S+", chosen)
    tokens = [head, *words, content[len(head) + len(chosen) :]]
    firsts = list(dict.fromkeys(label.split()[0] for label in labels))
    top = [{"token": words[0], "logprob": -0.05, "bytes": None}]
    top += [{"token": w, "logprob": -4.0 - i, "bytes": None} for i, w in enumerate(f for f in firsts if f != words[0])]
    entries = []
    for index, token in enumerate(tokens):
        alternatives = top[:5] if index == 1 else [{"token": token, "logprob": -0.01, "bytes": None}]
        entries.append(
            {"token": token, "logprob": alternatives[0]["logprob"], "bytes": None, "top_logprobs": alternatives}
        )
    if nan:
        for entry in entries:
            entry["logprob"] = float("nan")
            for alternative in entry["top_logprobs"]:
                alternative["logprob"] = float("nan")
    return {"content": entries}


@dataclass
class VisionStubState:
    faults: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    reject_json_schema: bool = False
    logprobs: bool = False
    huge_chars: int = 1_000_000
    slow_seconds: float = 2.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_fault(self, kind: str, times: int = 1) -> None:
        assert kind in FAULTS, kind
        self.faults.extend([kind] * times)

    def take_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def prompts(self) -> list[str]:
        return [r["prompt"] for r in self.requests]


class VisionStubServer(LoopbackServer):
    state: VisionStubState


def answer_for(fault: str | None, prompt: str, enum: list[str] | None, colour: str, huge_chars: int) -> str:
    labels = enum or re.findall(r"^- (.+)$", prompt, flags=re.MULTILINE)
    label = next((item for item in labels if colour in item.split()), labels[0] if labels else "")
    if fault == "refusal":
        return "I'm sorry, I can't help with that."
    if fault == "off_label":
        return json.dumps({"label": "cat"}) if enum else "It is a cat."
    if fault == "fenced":
        return f'```json\n{{"label": "{label}"}}\n```'
    if fault == "empty":
        return ""
    if fault == "huge":
        return json.dumps({"label": label + " " * huge_chars}) if enum else "I see " + "a shape " * (huge_chars // 8)
    if fault == "deep":
        return '{"label": ' + "[" * 100_000 + "]" * 100_000 + "}"
    if labels and (fault == "loose" or not enum):
        return f"The answer is: {label.upper().replace(' ', '-')}!"
    if enum:
        return json.dumps({"label": label})
    return f"I see a {colour} object on a grey background."


class VisionHandler(JSONHandler):
    server: VisionStubServer

    def do_POST(self) -> None:
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        prompt, url = _parts(body)
        colour, size = dominant_colour(url) if url else ("none", (0, 0))
        enum = _enum(body)
        with state.lock:
            state.requests.append({"body": body, "prompt": prompt, "url": url, "size": size, "colour": colour})
        if state.reject_json_schema and enum is not None:
            message = "Input should be 'text' or 'json_object' at body.response_format.type: 'json_schema'"
            self._send(400, {"error": {"message": message, "type": "invalid"}})
            return
        fault = state.take_fault()
        if fault == "429":
            self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
            return
        if fault == "slow500":
            time.sleep(state.slow_seconds)
        if fault in ("500", "401", "slow500"):
            key = self.headers.get("Authorization", "")
            self._send(int(fault[-3:]), {"error": {"message": f"failure for {key}", "type": "server"}})
            return
        content = answer_for(fault, prompt, enum, colour, state.huge_chars)
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}}
        choice["finish_reason"] = "stop"
        if (
            (state.logprobs or fault == "nan_logprobs")
            and body.get("logprobs")
            and enum
            and fault in (None, "nan_logprobs")
        ):
            chosen = json.loads(content)["label"]
            choice["logprobs"] = _logprobs(content, enum, chosen, nan=fault == "nan_logprobs")
        prompt_tokens = len(prompt) // 4 + 85
        self._send(
            200,
            {
                "id": f"chatcmpl-{len(state.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "stub"),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": max(1, len(content) // 4),
                    "total_tokens": prompt_tokens + max(1, len(content) // 4),
                },
            },
        )


def start_vision_stub() -> VisionStubServer:
    return serve_on_loopback(VisionStubServer, VisionHandler, VisionStubState())
