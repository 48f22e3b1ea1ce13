from __future__ import annotations

from pathlib import Path

import pytest

from conceptforest.config import RunConfig, load_config
from conceptforest.errors import BadInputError


def test_toml_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('seed = 3\n[llm]\nmodel = "llama3.1"\ntimeout = 10\n[concepts]\ndomain = "dog"\nmax_values = 3\n')
    cfg = load_config(path, {"llm.model": "qwen", "concepts.max_values": None, "llm.base_url": "http://h/v1"})
    assert cfg.llm.model == "qwen"  # the flag wins
    assert cfg.concepts.max_values == 3  # an unset flag does not hide the file
    assert cfg.llm.timeout == 10 and cfg.seed == 3 and cfg.concepts.domain == "dog"
    assert cfg.concepts.limits.max_values == 3


def test_environment_fills_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("CONCEPTFOREST_LLM_MODEL", "llama3.1")
    cfg = load_config(None, {})
    assert cfg.llm.base_url == "http://localhost:11434/v1"
    assert cfg.resolved_llm_model() == "llama3.1"
    client = cfg.llm_client()
    assert client is not None and client.model == "llama3.1"


def test_llm_none_means_no_client() -> None:
    assert load_config(None, {"llm.model": "none"}).llm_client() is None


def test_no_model_is_a_clear_error() -> None:
    with pytest.raises(BadInputError, match="--llm none"):
        RunConfig().resolved_llm_model()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[llm]\nmodle = 'x'\n", "llm.modle \\(from config file .*\\): Extra inputs"),
        ("[concepts]\nmax_parts = 0\n", "concepts.max_parts"),
        ("[concepts]\nsentence_template = 'a {label}'\n", "class-free"),
        ("[llm\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_file_and_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(BadInputError, match=message) as info:
        load_config(path)
    assert "bad.toml" in str(info.value)


def test_public_dict_strips_credentials() -> None:
    cfg = load_config(None, {"llm.base_url": "https://u:secret@h.example/v1?api-key=secret"})
    assert "secret" not in str(cfg.public_dict())
