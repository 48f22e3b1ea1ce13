"""The LLM client against the stub server: every injected fault ends repaired, retried, or in a clear error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conceptforest.cache import DiskCache
from conceptforest.concepts.llm import LLMClient, extract_json, sanitize_base_url
from conceptforest.concepts.prompts import load_prompt
from conceptforest.concepts.schemas import AttributesAnswer, PartsAnswer, ValuesAnswer
from conceptforest.errors import LLMError
from tests.llm_stub import StubServer

PARTS_VARS = {"domain": "dog", "labels": "husky, pug", "max_parts": 6, "max_subparts": 3}
ATTR_VARS = {
    "domain": "dog",
    "labels": "husky, pug",
    "part": "ears",
    "part_path": "head ears",
    "max_attributes": 4,
}


def ask_parts(client: LLMClient) -> PartsAnswer:
    return client.ask(
        load_prompt("parts"),
        PARTS_VARS,
        PartsAnswer,
        subject="domain 'dog'",
        context={"max_parts": 6, "max_subparts": 3, "labels": ["husky", "pug"]},
    ).value


def ask_attributes(client: LLMClient) -> AttributesAnswer:
    return client.ask(
        load_prompt("attributes"),
        ATTR_VARS,
        AttributesAnswer,
        subject="part 'head/ears'",
        context={"max_attributes": 4},
    ).value


def cache_size(home: Path) -> int:
    return len(DiskCache(home / "cache", "llm"))


def test_happy_path_uses_json_schema_and_caches(stub: StubServer, make_client, isolated_home: Path) -> None:
    answer = ask_parts(make_client())
    assert [p.name for p in answer.parts] == ["head", "tail"]
    assert answer.parts[0].subparts == ["ears", "eyes"]
    request = stub.state.requests[0]
    assert request["body"]["response_format"]["type"] == "json_schema"
    assert request["body"]["temperature"] == 0.0
    assert cache_size(isolated_home) == 1
    again = ask_parts(make_client())
    assert again == answer
    assert len(stub.state.requests) == 1  # the second call made no request


def test_cache_misses_on_a_new_template_or_model(stub: StubServer, make_client) -> None:
    ask_parts(make_client())
    edited = dataclasses.replace(load_prompt("parts"), user=load_prompt("parts").user + "\nBe brief.")
    make_client().ask(edited, PARTS_VARS, PartsAnswer, subject="d", context={"labels": []})
    assert len(stub.state.requests) == 2
    ask_parts(make_client(model="another-model"))
    assert len(stub.state.requests) == 3
    ask_parts(make_client(temperature=0.7))
    assert len(stub.state.requests) == 4


def test_429_honours_retry_after(stub: StubServer, make_client, sleeps) -> None:
    stub.state.retry_after = "3"
    stub.state.add_fault("429")
    answer = ask_parts(make_client())
    assert answer.parts
    assert len(stub.state.requests) == 2
    assert sleeps.waits == [3.0]


def test_500_backs_off_exponentially_then_succeeds(stub: StubServer, make_client, sleeps) -> None:
    stub.state.add_fault("500", times=2)
    assert ask_parts(make_client(backoff_base=0.5)).parts
    assert len(stub.state.requests) == 3
    assert sleeps.waits == [0.5, 1.0]


def test_persistent_500_gives_a_clear_error_and_no_cache_entry(stub, make_client, isolated_home) -> None:
    stub.state.add_fault("500", times=10)
    with pytest.raises(LLMError) as info:
        ask_parts(make_client(max_attempts=3))
    message = str(info.value)
    assert "step 'parts'" in message and "domain 'dog'" in message and "HTTP 500" in message
    assert "internal error" in message  # what the server said
    assert len(stub.state.requests) == 3
    assert cache_size(isolated_home) == 0


def test_401_is_not_retried_and_says_what_to_check(stub: StubServer, make_client, sleeps) -> None:
    stub.state.add_fault("401")
    with pytest.raises(LLMError, match=r"refused model 'stub-model'.*HTTP 401.*Incorrect API key") as info:
        ask_parts(make_client())
    assert "OPENAI_API_KEY" in (info.value.hint or "")
    assert len(stub.state.requests) == 1 and sleeps.waits == []


def test_timeout_is_retried(stub: StubServer, make_client) -> None:
    stub.state.slow_seconds = 1.5
    stub.state.add_fault("slow")
    assert ask_parts(make_client(timeout=0.5)).parts
    assert len(stub.state.requests) == 2


def test_persistent_timeout_names_the_timeout(stub: StubServer, make_client) -> None:
    stub.state.slow_seconds = 1.0
    stub.state.add_fault("slow", times=2)
    with pytest.raises(LLMError, match=r"timed out after 0.3 s"):
        ask_parts(make_client(timeout=0.3, max_attempts=2))


def test_fenced_json_is_repaired_without_a_retry(stub: StubServer, make_client) -> None:
    stub.state.add_fault("fenced")
    assert [p.name for p in ask_parts(make_client()).parts] == ["head", "tail"]
    assert len(stub.state.requests) == 1


def test_truncated_json_is_retried_with_the_error_fed_back(stub: StubServer, make_client) -> None:
    stub.state.add_fault("truncated")
    assert ask_parts(make_client()).parts
    assert len(stub.state.requests) == 2
    feedback = stub.state.requests[1]["body"]["messages"][-1]["content"]
    assert "not valid" in feedback and "cut off" in feedback


def test_runaway_repeated_list_is_repaired(stub: StubServer, make_client) -> None:
    stub.state.add_fault("runaway")
    assert ask_attributes(make_client()).attributes == ["shape"]
    assert len(stub.state.requests) == 1


def test_a_list_over_the_limit_is_cut_to_the_limit(stub: StubServer, make_client) -> None:
    stub.state.add_fault("overlong")
    assert ask_attributes(make_client()).attributes == ["shape", "colour", "size", "texture"]
    assert len(stub.state.requests) == 1


def test_runaway_distinct_list_is_retried(stub: StubServer, make_client) -> None:
    stub.state.add_fault("runaway_distinct")
    assert ask_attributes(make_client()).attributes == ["shape", "colour"]
    assert "at most 4" in stub.state.requests[1]["body"]["messages"][-1]["content"]


def test_empty_list_is_retried_then_a_clear_error(stub: StubServer, make_client, isolated_home) -> None:
    stub.state.add_fault("empty")
    assert ask_attributes(make_client()).attributes
    assert len(stub.state.requests) == 2
    stub.state.requests.clear()
    stub.state.add_fault("empty", times=5)
    with pytest.raises(LLMError, match=r"step 'attributes' for part 'head/ears'.*at least 1 item"):
        make_client().ask(
            load_prompt("attributes"),
            {**ATTR_VARS, "part": "eyes"},
            AttributesAnswer,
            subject="part 'head/ears'",
        )
    assert len(stub.state.requests) == 3  # one request and max_repairs=2 repairs
    assert cache_size(isolated_home) == 1  # only the valid first answer


def test_value_naming_the_label_is_retried(stub: StubServer, make_client) -> None:
    stub.state.add_fault("leak")
    variables = {
        "domain": "dog",
        "label": "husky",
        "other_labels": "pug",
        "pairs": "- tail: shape",
        "max_values": 2,
    }
    answer = make_client().ask(
        load_prompt("values"),
        variables,
        ValuesAnswer,
        subject="label 'husky'",
        context={"pairs": [["tail", "shape"]], "labels": ["husky", "pug"], "max_values": 2},
    )
    assert not any("husky" in v for entry in answer.value.values for v in entry.values)
    assert "names the kind 'husky'" in stub.state.requests[1]["body"]["messages"][-1]["content"]


def test_answer_ignoring_the_schema_ends_in_a_clear_error(stub, make_client, isolated_home) -> None:
    stub.state.add_fault("schema_ignored", times=3)
    with pytest.raises(LLMError) as info:
        ask_parts(make_client())
    assert "no JSON object" in str(info.value)
    assert "Sure! A dog" in str(info.value)  # what the server said
    assert info.value.hint
    assert cache_size(isolated_home) == 0


@pytest.mark.parametrize("status", [400, 422, 500])
def test_rejected_json_schema_falls_back_to_json_mode(stub: StubServer, make_client, status: int) -> None:
    stub.state.reject_json_schema = True
    stub.state.reject_status = status
    client = make_client()
    assert ask_parts(client).parts
    assert ask_attributes(client).attributes
    formats = [r["body"].get("response_format", {}).get("type") for r in stub.state.requests]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert "schema" in stub.state.requests[1]["body"]["response_format"]


def test_unreachable_server_is_a_clear_error(make_client) -> None:
    client = make_client(base_url="http://127.0.0.1:9/v1", max_attempts=2)
    with pytest.raises(LLMError, match=r"could not connect to http://127.0.0.1:9/v1"):
        ask_parts(client)


def test_token_usage_is_recorded_per_call(stub: StubServer, make_client) -> None:
    stub.state.add_fault("truncated")
    result = make_client().ask(load_prompt("parts"), PARTS_VARS, PartsAnswer, subject="d", context={})
    assert result.record.attempts == 2
    assert result.record.prompt_tokens > 0 and result.record.completion_tokens > 0
    cached = make_client().ask(load_prompt("parts"), PARTS_VARS, PartsAnswer, subject="d", context={})
    assert cached.record.cached and cached.record.prompt_tokens == 0


def test_missing_key_without_base_url_is_a_clear_error() -> None:
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        LLMClient("gpt-4o-mini")


def test_base_url_is_recorded_without_credentials() -> None:
    assert sanitize_base_url("https://user:pw@example.org:8443/v1?key=abc") == "https://example.org:8443/v1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('Here it is: {"a": [1, 2]} hope it helps', {"a": [1, 2]}),
        ("[1, 2]", [1, 2]),
    ],
)
def test_extract_json(text: str, expected: object) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize(("text", "reason"), [("", "empty"), ("no json", "no JSON"), ('{"a": [1,', "truncated")])
def test_extract_json_reasons(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        extract_json(text)


def test_values_accept_the_keyed_and_the_list_form() -> None:
    context = {"pairs": [["tail", "shape"], ["head/ears", "shape"]], "labels": ["husky"], "max_values": 1}
    keyed = ValuesAnswer.model_validate(
        {"values": {"tail: shape": ["curled"], "head/ears: shape": ["pointed", "tall"], "extra: x": ["y"]}},
        context=context,
    )
    listed = ValuesAnswer.model_validate(
        {
            "values": [
                {"part": "tail", "attribute": "shape", "values": ["curled"]},
                {"part": "head/ears", "attribute": "shape", "values": ["pointed"]},
            ]
        },
        context=context,
    )
    assert keyed == listed  # extra pairs dropped, lists cut to max_values
    with pytest.raises(ValueError, match="no values for: head/ears shape"):
        ValuesAnswer.model_validate({"values": {"tail: shape": ["curled"]}}, context=context)


def test_values_request_carries_a_schema_with_every_pair_required(stub: StubServer, make_client) -> None:
    from conceptforest.concepts.generate import generate_tree

    generate_tree("dog", ["husky", "pug"], make_client(), progress=False)
    values_request = next(r for r in stub.state.requests if r["step"] == "values")
    schema = values_request["body"]["response_format"]["json_schema"]["schema"]
    required = schema["properties"]["values"]["required"]
    assert required == [
        "head/ears: shape",
        "head/ears: colour",
        "head/eyes: shape",
        "head/eyes: colour",
        "tail: shape",
        "tail: colour",
    ]
