from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conceptforest.concepts.llm import LLMClient
from tests.llm_stub import StubServer, start_stub
from tests.vision_stub import VisionStubServer, start_vision_stub

SECRET_KEY = "sk-test-secret-never-written-0123456789"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own CONCEPTFOREST_HOME and no LLM settings from the environment."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("CONCEPTFOREST_HOME", str(home))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CONCEPTFOREST_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def vision_stub() -> Iterator[VisionStubServer]:
    server = start_vision_stub()
    yield server
    server.shutdown()
    server.server_close()


class SleepRecorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(stub: StubServer, sleeps: SleepRecorder, isolated_home: Path):  # type: ignore[no-untyped-def]
    def make(**kwargs: object) -> LLMClient:
        options: dict[str, object] = {"base_url": stub.base_url, "timeout": 5.0, "sleep": sleeps}
        options.update(kwargs)
        return LLMClient(str(options.pop("model", "stub-model")), **options)  # type: ignore[arg-type]

    return make
