"""Hostile LLM answers, secrets in messages and URIs, interrupts, and the exit codes of bad request settings."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conceptforest.cache import redact_uri
from conceptforest.cli import app
from conceptforest.concepts.generate import generate_tree
from conceptforest.concepts.llm import extract_json
from conceptforest.concepts.llm_transport import redact_secrets
from conceptforest.config import load_config
from conceptforest.errors import BadInputError, LLMError
from conceptforest.features.synthetic import SHAPES, make_shape_images
from conceptforest.llm.vision import OpenAIVisionLLM
from conceptforest.llm.vision_types import VisionAnswer
from conceptforest.models.methods.vision import classification_prompt
from tests.conftest import SECRET_KEY, SleepRecorder
from tests.llm_stub import StubServer
from tests.test_vision_mllm import inputs_for
from tests.vision_stub import VisionStubServer

LABELS = list(SHAPES)
runner = CliRunner()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = make_shape_images(tmp_path_factory.mktemp("shapes"), per_label=2)
    return sorted(root.glob("*/*.png"))


def vision(server: VisionStubServer, tmp_path: Path, **options: Any) -> OpenAIVisionLLM:
    settings: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": SECRET_KEY,
        "timeout": 5.0,
        "cache_dir": tmp_path / "cache",
        "sleep": SleepRecorder(),
        "concurrency": 1,
    }
    settings.update(options)
    return OpenAIVisionLLM("stub-vision", **settings)


def cache_text(tmp_path: Path) -> str:
    return "".join(f.read_text() for f in (tmp_path / "cache").rglob("*.json"))


# -- item 9: an answer far beyond max_tokens ----------------------------------------------------------------------


def test_a_huge_vision_answer_is_an_error_kept_short_and_never_cached(
    vision_stub: VisionStubServer, shapes: list[Path], tmp_path: Path
) -> None:
    vision_stub.state.add_fault("huge")
    llm = vision(vision_stub, tmp_path)
    answers = llm.ask(shapes[:3], classification_prompt(LABELS), step="s", choices=LABELS)
    assert answers[0].error is not None and "max_tokens" in answers[0].error, answers[0].text[:100]
    assert len(answers[0].text) + len(answers[0].error) < 1000
    assert all(a.error is None for a in answers[1:])
    assert len(cache_text(tmp_path)) < 5000  # the two good answers only
    free = llm.ask(shapes[:1], "What do you see?", step="describe")  # no choices: the raw text path
    assert free[0].error is None
    vision_stub.state.add_fault("huge")
    (free,) = vision(vision_stub, tmp_path, cache_dir=False).ask(shapes[:1], "What do you see?", step="d2")
    assert free.error is not None and len(free.text) < 1000


class LongAnswers:
    """A vision LLM (the protocol's fake) whose answers are long but within its own limit."""

    model = "long"

    def ask(self, images: Sequence[Path], prompt: str, **options: Any) -> list[VisionAnswer]:
        return [VisionAnswer(sha256="", text="It is hard to say. " * 200) for _ in images]


def test_mllm_explanations_show_a_bounded_answer(shapes: list[Path]) -> None:
    from conceptforest.models.methods.base import MethodResult, run_methods

    inputs = inputs_for(shapes[:2], [p.parent.name for p in shapes[:2]], LongAnswers())  # type: ignore[arg-type]
    (result,) = run_methods(inputs, ["mllm"])
    assert isinstance(result, MethodResult) and result.explanations is not None
    items = list(result.explanations["item"])
    assert all(len(item) <= 600 for item in items), [len(item) for item in items]
    assert all("characters" in item for item in items)  # says how long the whole answer was


# -- item 10: the key in a debug traceback, and the redaction's own marks -----------------------------------------


def test_a_debug_traceback_never_prints_an_echoed_key(
    stub: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    monkeypatch.setenv("CONCEPTFOREST_DEBUG", "1")
    stub.state.add_fault("echo401")
    labels = tmp_path / "labels.txt"
    labels.write_text("husky\npug\n")
    args = ["concepts", "generate", "--domain", "dog", "--labels", str(labels), "--llm", "m"]
    result = runner.invoke(app, [*args, "--llm-base-url", stub.base_url, "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 2, result.output
    assert "Traceback" in result.output  # the debug traceback was printed ...
    assert SECRET_KEY not in result.output and SECRET_KEY[3:] not in result.output  # ... without the key
    assert "check the API key: export OPENAI_API_KEY" in result.output
    assert "]]" not in result.output


def test_redaction_keeps_its_own_hint_and_marks() -> None:
    hint = "check the API key: export OPENAI_API_KEY with a key that the server accepts."
    assert redact_secrets(hint) == hint
    once = redact_secrets("Authorization: Bearer sk-abcdef123456 api_key=abc123XYZ789")
    assert once == "Authorization: Bearer [redacted] api_key=[redacted]"
    assert redact_secrets(once) == once  # redacting twice changes nothing
    assert redact_secrets('{"api_key": "Zq81_lmA02xd"}') == '{"api_key": "[redacted]"}'


# -- item 11: answers nested too deeply, NaN log-probabilities ----------------------------------------------------


def test_deep_nesting_is_an_invalid_answer() -> None:
    with pytest.raises(ValueError, match="nested"):
        extract_json('{"parts": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_the_text_client_repairs_a_deeply_nested_answer(stub: StubServer, make_client: Any) -> None:
    stub.state.add_fault("deep", step="parts")
    tree = generate_tree("dog", ["husky", "pug"], make_client(max_repairs=1, cache_dir=False), progress=False)
    assert tree.parts and stub.state.steps().count("parts") == 2
    stub.state.add_fault("deep", step="parts", times=2)
    with pytest.raises(LLMError, match="nested"):
        generate_tree("cat", ["tabby", "sphynx"], make_client(max_repairs=1, cache_dir=False), progress=False)


def test_the_vision_client_survives_a_deeply_nested_answer(
    vision_stub: VisionStubServer, shapes: list[Path], tmp_path: Path
) -> None:
    vision_stub.state.add_fault("deep")
    llm = vision(vision_stub, tmp_path, max_tokens=100_000)  # so that its length alone does not refuse it
    answers = llm.ask(shapes[:2], classification_prompt(LABELS), step="s", choices=LABELS)
    assert answers[0].error is not None and "nested" in answers[0].error and answers[1].error is None


def test_nan_logprobs_are_dropped(vision_stub: VisionStubServer, shapes: list[Path], tmp_path: Path) -> None:
    vision_stub.state.add_fault("nan_logprobs", times=2)
    answers = vision(vision_stub, tmp_path).ask(shapes[:2], classification_prompt(LABELS), step="s", choices=LABELS)
    assert all(a.error is None and a.text in LABELS for a in answers)
    assert all(math.isfinite(v) for a in answers for v in (a.logprobs or {}).values())
    assert "NaN" not in cache_text(tmp_path)
    again = vision(vision_stub, tmp_path).ask(shapes[:2], classification_prompt(LABELS), step="s", choices=LABELS)
    assert all(a.cached for a in again)


# -- item 12: a secret in a cache URI's query string --------------------------------------------------------------


def test_credential_query_values_are_redacted() -> None:
    uri = "s3://bucket/p?region=eu&secret_key=TOPSECRET1&access_key=AKIA99&X-Amz-Signature=abc&token=t0k"
    redacted = redact_uri(uri)
    assert redacted == "s3://bucket/p?region=eu&secret_key=***&access_key=***&X-Amz-Signature=***&token=***"
    assert redact_uri(f"pyarrow says: bad query in {uri!r}") == f"pyarrow says: bad query in {redacted!r}"
    pasted = "s3://AKIAEXAMPLE:ab/cdSECRET+ef@bucket/prefix"  # an AWS secret key with an unencoded "/"
    assert redact_uri(pasted) == "s3://***@bucket/prefix"


def test_a_debug_traceback_never_prints_a_uri_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCEPTFOREST_DEBUG", "1")
    images = make_shape_images(tmp_path / "images", per_label=3)
    uri = "s3://AKIAEXAMPLE:ab/cdSECRET9@127.0.0.1:9/bucket?secret_key=TOPSECRET123"
    args = ["run", str(images), "--domain", "shape", "--llm", "none", "--clip", "conceptforest-tiny-random"]
    result = runner.invoke(app, [*args, "--cache-dir", uri, "-o", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "SECRET9" not in result.output and "TOPSECRET123" not in result.output


def test_a_secret_in_a_cache_uri_is_never_printed_or_written(tmp_path: Path) -> None:
    images = make_shape_images(tmp_path / "images", per_label=3)
    out = tmp_path / "run"
    uri = "s3://bucket/prefix?secret_key=TOPSECRET123"
    args = ["run", str(images), "--domain", "shape", "--llm", "none", "--clip", "conceptforest-tiny-random"]
    result = runner.invoke(app, [*args, "--cache-dir", uri, "-o", str(out), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "TOPSECRET123" not in result.output and "secret_key=***" in result.output
    written = "".join(f.read_text(errors="replace") for f in out.rglob("*") if f.is_file())
    assert "TOPSECRET123" not in written
    assert not (out / "config.json").exists()  # the URI is checked before the run records its settings


# -- item 18: an interrupt stops in-flight vision requests --------------------------------------------------------

_INTERRUPTED_CLIENT = """
import sys
from pathlib import Path
from conceptforest.llm.vision import OpenAIVisionLLM
llm = OpenAIVisionLLM("m", base_url=sys.argv[1], api_key="sk-local-0123456789", timeout=30, max_attempts=6,
                      concurrency=2, cache_dir=False, backoff_base=0.5)
try:
    llm.ask([Path(p) for p in sys.argv[2:]], "Which?", step="s", choices=["red disc", "blue tile"])
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
"""


def test_an_interrupt_stops_vision_retries(vision_stub: VisionStubServer, shapes: list[Path]) -> None:
    vision_stub.state.slow_seconds = 1.5
    vision_stub.state.add_fault("slow500", times=40)
    command = [sys.executable, "-c", textwrap.dedent(_INTERRUPTED_CLIENT), vision_stub.base_url, *map(str, shapes)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(300):  # both requests in flight (the interpreter takes a few seconds to start)
            if len(vision_stub.state.requests) >= 2:
                break
            time.sleep(0.05)
        assert len(vision_stub.state.requests) == 2
        process.send_signal(signal.SIGINT)
        sent = len(vision_stub.state.requests)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    time.sleep(vision_stub.state.slow_seconds + 1)  # any retry would have reached the stub by now
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert len(vision_stub.state.requests) == sent == 2


@pytest.mark.parametrize("verb", ["compare", "explain"])
def test_compare_and_explain_offer_the_vision_clients_timeout(verb: str) -> None:
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0 and "--timeout" in result.output and "--max-attempts" in result.output


# -- item 19: bad request settings are exit 2 naming the input ----------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "-1", "0"])
def test_a_bad_vision_timeout_is_exit_2(value: str, tmp_path: Path) -> None:
    images = make_shape_images(tmp_path / "images", per_label=3)
    args = ["zeroshot", str(images), "--method", "mllm", "--mllm", "m", "--mllm-base-url", "http://127.0.0.1:9/v1"]
    result = runner.invoke(
        app, [*args, "--clip", "conceptforest-tiny-random", "--timeout", value, "-o", str(tmp_path / "z")]
    )
    assert result.exit_code == 2, result.output
    assert "--timeout" in result.output and "bug" not in result.output


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "-1"])
def test_a_bad_text_timeout_is_exit_2(value: str, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("husky\npug\n")
    args = ["concepts", "generate", "--domain", "dog", "--labels", str(labels), "--llm", "m", "--timeout", value]
    result = runner.invoke(app, [*args, "--llm-base-url", "http://127.0.0.1:9/v1", "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 2, result.output
    assert "llm.timeout (from the command-line options)" in result.output and "bug" not in result.output
    with_file = tmp_path / "c.toml"
    with_file.write_text("[llm]\nmax_attempts = 3\n")
    both = runner.invoke(app, [*args, "--config", str(with_file), "-o", str(tmp_path / "t.json")])
    assert both.exit_code == 2 and "llm.timeout (from the command-line options)" in both.output


def test_the_vision_client_refuses_bad_limits_itself() -> None:
    for options in ({"timeout": float("inf")}, {"timeout": 0.0}, {"max_attempts": 0}, {"max_attempts": 10**9}):
        with pytest.raises(BadInputError):
            OpenAIVisionLLM("m", base_url="http://127.0.0.1:9/v1", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[llm]\ntimeout = inf\n", "llm.timeout"),
        ("[llm]\ntimeout = nan\n", "llm.timeout"),
        ("[llm]\nmax_attempts = 0\n", "llm.max_attempts"),
        ("cache_dir = 5\n", "cache_dir"),
    ],
)
def test_bad_settings_in_a_config_file_name_the_setting(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(BadInputError) as caught:
        load_config(path)
    text = str(caught.value)
    assert message in text and "lax-or-strict" not in text and "union[" not in text and "Value error" not in text


def test_a_config_file_that_is_not_utf8_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'[llm]\nmodel = "caf\xe9"\n')
    labels = tmp_path / "labels.txt"
    labels.write_text("husky\npug\n")
    args = ["concepts", "generate", "--domain", "dog", "--labels", str(labels), "--config", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "c.toml" in result.output and "UTF-8" in result.output
