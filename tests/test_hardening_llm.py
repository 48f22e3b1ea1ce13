"""Regression tests for issue 7's LLM items: deadlines, hostile names, key redaction, label checks, hints, plans."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from conceptforest.concepts.generate import extend_tree, generate_tree, read_labels
from conceptforest.concepts.prompts import load_prompt
from conceptforest.concepts.schemas import AttributesAnswer, PartsAnswer, SentencesAnswer, ValuesAnswer
from conceptforest.errors import BadInputError, LLMError
from tests.conftest import SECRET_KEY
from tests.llm_stub import StubServer
from tests.test_llm import ask_attributes, ask_parts

LABELS = ["husky", "pug", "beagle"]


def error_of(call: object) -> LLMError:
    with pytest.raises(LLMError) as info:
        call()  # type: ignore[operator]
    return info.value


# -- item 4: the timeout bounds each request as a whole ----------------------------------------------------------


@pytest.mark.parametrize("fault", ["drip", "drip_headers"])
def test_a_dripping_server_ends_in_a_timeout_error(stub: StubServer, make_client, fault: str) -> None:
    stub.state.drip_seconds = 0.5
    stub.state.add_fault(fault, times=3)
    client = make_client(timeout=2.0, max_attempts=1)
    outcome: list[BaseException | object] = []

    def work() -> None:
        try:
            outcome.append(ask_parts(client))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "a dripping server kept the request waiting past its timeout"
    assert len(outcome) == 1 and isinstance(outcome[0], LLMError), outcome
    assert "timed out after 2 s" in outcome[0].message
    assert "--timeout" in (outcome[0].hint or "")


# -- item 9: reserved characters, control characters, one bad item ------------------------------------------------


def test_reserved_characters_in_names_are_repaired_not_retried(stub: StubServer, make_client) -> None:
    stub.state.add_fault("hostile_names", step="parts")
    stub.state.add_fault("hostile_names", step="attributes", times=10)
    tree = generate_tree("dog", LABELS, make_client(max_repairs=0), progress=False)
    names = [part.name for part in tree.parts]
    assert names[:2] == ["head or neck", "< script>"]
    assert "tail" in names  # ANSI colour codes stripped
    attributes = next(iter(tree.leaf_attributes().values()))
    assert attributes == ["size or shape", "colour hue", "tone dark", "gloss"]
    assert stub.state.steps().count("parts") == 1  # nothing was retried


def test_one_bad_item_never_costs_the_others() -> None:
    attributes = AttributesAnswer.model_validate({"attributes": ["", "x" * 90, 7, "shape", None, "colour"]})
    assert attributes.attributes == ["shape", "colour"]
    parts = PartsAnswer.model_validate(
        {"parts": [{"name": ""}, {"name": "head", "subparts": ["ears", "", "y" * 90]}, {"nom": 1}, "tail"]},
        context={"labels": ["husky"]},
    )
    assert [(p.name, p.subparts) for p in parts.parts] == [("head", ["ears"]), ("tail", [])]
    naming = PartsAnswer.model_validate({"parts": ["husky ears", "tail"]}, context={"labels": ["husky"]})
    assert [p.name for p in naming.parts] == ["tail"]
    context = {"pairs": [["tail", "shape"]], "labels": ["husky", "pug"], "max_values": 2}
    values = ValuesAnswer.model_validate(
        {"values": {"tail: shape": ["z" * 120, "like a pug", "curled"]}}, context=context
    )
    assert values.values[0].values == ["curled"]
    sentences = SentencesAnswer.model_validate(
        {"sentences": [{"id": "a:b=c", "sentence": "a curled tail"}, {"id": "", "sentence": "x"}, 3]},
        context={"ids": ["a:b=c"], "labels": []},
    )
    assert [s.id for s in sentences.sentences] == ["a:b=c"]


def test_a_list_with_nothing_valid_left_still_fails() -> None:
    with pytest.raises(ValidationError, match="none of the attributes is usable"):
        AttributesAnswer.model_validate({"attributes": ["", "   ", "\x1b[0m"]})
    with pytest.raises(ValidationError, match="names the kind 'pug'"):
        ValuesAnswer.model_validate(
            {"values": {"tail: shape": ["like a pug"]}},
            context={"pairs": [["tail", "shape"]], "labels": ["husky", "pug"], "max_values": 2},
        )


def test_control_characters_are_stripped_from_every_name_and_value() -> None:
    attributes = AttributesAnswer.model_validate({"attributes": ["\x1b[31mshape\x1b[0m", "col\x07our\x9b", "a\tb"]})
    assert attributes.attributes == ["shape", "colour", "a b"]
    values = ValuesAnswer.model_validate(
        {"values": {"tail: shape": ["\x1b]0;pwned\x07curled\x00", "\u0085long"]}},
        context={"pairs": [["tail", "shape"]], "labels": [], "max_values": 2},
    )
    assert values.values[0].values == ["curled", "long"]
    sentences = SentencesAnswer.model_validate(
        {"sentences": [{"id": "a:b=c", "sentence": "a \x1b[1mcurled\x1b[0m tail"}]}, context={"ids": ["a:b=c"]}
    )
    assert sentences.sentences[0].sentence == "a curled tail"


# -- item 15: the API key never reaches a message ----------------------------------------------------------------


@pytest.mark.parametrize("fault", ["echo401", "echo500"])
def test_a_server_echoing_the_key_is_redacted(stub: StubServer, make_client, fault: str) -> None:
    stub.state.add_fault(fault, times=5)
    error = error_of(lambda: ask_parts(make_client(api_key=SECRET_KEY, max_attempts=2)))
    text = f"{error.message} {error.hint}"
    assert SECRET_KEY not in text and SECRET_KEY[:12] not in text
    assert "Bearer sk" not in text
    assert "[redacted]" in text
    assert "HTTP" in text  # the rest of the server's answer is still shown


def test_a_key_cut_in_half_by_the_message_limit_is_still_redacted(stub: StubServer, make_client) -> None:
    key = "gsk_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef"
    stub.state.add_fault("echo401_late", times=2)
    error = error_of(lambda: ask_parts(make_client(api_key=key, max_attempts=1)))
    text = f"{error.message} {error.hint}"
    assert key[:10] not in text and "[redacted]" in text


def test_redaction_of_tokens_that_are_not_the_clients_key() -> None:
    from conceptforest.concepts.llm_transport import redact_secrets

    text = 'auth "Bearer abc.def-123" and sk-proj-AbCdEf0123456789xyz and api_key=hunter2secret, my-key-1234'
    redacted = redact_secrets(text, ["my-key-1234"])
    for secret in ("abc.def-123", "sk-proj-AbCdEf0123456789xyz", "hunter2secret", "my-key-1234"):
        assert secret not in redacted
    assert redacted.startswith('auth "Bearer [redacted]"')


# -- item 22: labels are checked before the first request ---------------------------------------------------------


def test_duplicate_labels_are_refused_before_any_request(stub: StubServer, make_client) -> None:
    with pytest.raises(BadInputError, match=r"'Husky'.*'husky'") as info:
        generate_tree("dog", ["Husky", "pug", "husky "], make_client(), progress=False)
    assert info.value.hint
    with pytest.raises(BadInputError, match="empty"):
        generate_tree("dog", ["husky", " ", "pug"], make_client(), progress=False)
    tree = generate_tree("dog", LABELS, None, progress=False)
    with pytest.raises(BadInputError, match=r"'poodle'.*'Poodle'"):
        extend_tree(tree, ["poodle", "Poodle"], None, progress=False)
    assert stub.state.requests == []


def test_read_labels_names_duplicate_lines() -> None:
    with pytest.raises(BadInputError, match=r"line 1.*line 3"):
        read_labels("husky\npug\nHUSKY\n")


def test_whitespace_inside_a_label_does_not_break_the_tree(stub: StubServer, make_client) -> None:
    tree = generate_tree("dog", ["golden  retriever", "pug"], make_client(), progress=False)
    assert tree.labels == ["golden retriever", "pug"]
    assert tree.missing_values() == []


# -- item 23: the hint follows the failure ------------------------------------------------------------------------


def test_a_timeout_hint_points_at_timeout_and_max_tokens(stub: StubServer, make_client) -> None:
    stub.state.slow_seconds = 1.0
    stub.state.add_fault("slow", times=2)
    error = error_of(lambda: ask_parts(make_client(timeout=0.3, max_attempts=2)))
    assert "--timeout" in (error.hint or "") and "--max-tokens" in (error.hint or "")
    assert "stronger model" not in (error.hint or "")


def test_a_refused_connection_hint_asks_whether_the_server_runs(make_client) -> None:
    error = error_of(lambda: ask_parts(make_client(base_url="http://127.0.0.1:9/v1", max_attempts=1)))
    assert "is the server running at http://127.0.0.1:9/v1" in (error.hint or "")


def test_status_hints(stub: StubServer, make_client) -> None:
    stub.state.add_fault("401")
    unauthorised = error_of(lambda: ask_parts(make_client()))
    assert "API key" in (unauthorised.hint or "")
    stub.state.add_fault("404")
    missing = error_of(lambda: ask_parts(make_client()))
    assert "model name" in (missing.hint or "") and "base URL" in (missing.hint or "")
    assert "API key" not in (missing.hint or "")


def test_a_validation_failure_hint_names_repairs_and_a_stronger_model(stub: StubServer, make_client) -> None:
    stub.state.add_fault("schema_ignored", times=3)
    error = error_of(lambda: ask_parts(make_client()))
    assert "stronger model" in (error.hint or "") and "--max-repairs" in (error.hint or "")
    assert "--timeout" not in (error.hint or "")
    stub.state.add_fault("truncated", times=3)
    cut = error_of(lambda: ask_attributes(make_client()))
    assert "--max-tokens" in (cut.hint or "")


# -- prompt volume: a plan before any request ----------------------------------------------------------------------


def test_plan_generation_counts_requests_and_makes_none(stub: StubServer, make_client) -> None:
    from conceptforest.concepts.generate import GenerationLimits, plan_generation

    limits = GenerationLimits(max_parts=2, max_subparts=2, max_attributes=2, max_values=1)
    plan = plan_generation("dog", LABELS, limits=limits)
    assert plan.requests == 1 + 2 * 2 + len(LABELS)
    assert plan.estimated_prompt_tokens > 0 and plan.prompt_chars > plan.estimated_prompt_tokens
    assert plan.estimated_cost_usd is None
    priced = plan_generation("dog", LABELS, limits=limits, llm=make_client(price_per_1k_prompt=1.0))
    assert priced.estimated_cost_usd is not None and priced.estimated_cost_usd > 0
    with_sentences = plan_generation("dog", LABELS, limits=limits, llm_sentences=True)
    assert with_sentences.requests > plan.requests
    small = plan_generation("dog", [f"kind {i}" for i in range(40)], limits=limits)
    large = plan_generation("dog", [f"kind {i}" for i in range(400)], limits=limits)
    assert large.prompt_chars > 20 * small.prompt_chars  # the square: ten times the labels, more than 10x the text
    tree = generate_tree("dog", LABELS, make_client(), progress=False)
    stub.state.requests.clear()
    extension = plan_generation("dog", [*LABELS, "poodle"], tree=tree)
    assert extension.requests == 1
    with pytest.raises(BadInputError):
        plan_generation("dog", ["pug", "Pug"])
    assert stub.state.requests == []


def test_plan_prompt_chars_match_the_real_prompts_roughly(stub: StubServer, make_client) -> None:
    from conceptforest.concepts.generate import GenerationLimits, plan_generation

    limits = GenerationLimits(max_parts=2, max_subparts=2, max_attributes=2, max_values=1)
    generate_tree("dog", LABELS, make_client(), limits=limits, progress=False)
    sent = sum(len(m["content"]) for r in stub.state.requests for m in r["body"]["messages"])
    plan = plan_generation("dog", LABELS, limits=limits)
    assert sent / 3 < plan.prompt_chars < sent * 3
    assert load_prompt("values").step == "values"


def test_home_is_untouched_by_planning(isolated_home: Path) -> None:
    from conceptforest.concepts.generate import plan_generation

    plan_generation("dog", LABELS)
    assert not any(isolated_home.rglob("*.json"))
