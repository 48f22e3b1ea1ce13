"""Descriptor sets from an LLM (DCLIP, CuPL) through the real client and the stub server, and the describe CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from conceptforest.cli._common import PlainHelpCommand, new_app
from conceptforest.cli.describe import SHORT_HELP, describe
from conceptforest.concepts.describe import (
    CUPL_QUESTIONS,
    cupl_questions,
    describe_labels,
    describe_prompt,
    plan_description,
)
from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.concepts.template import template_tree
from conceptforest.errors import BadInputError, LLMError
from tests.llm_stub import StubServer, describe_answer

LABELS = ["husky", "pug", "owl"]
# DCLIP's two-shot examples, as its generate_descriptors.py writes them
DCLIP_SHOTS = [
    "Q: What are useful visual features for distinguishing a lemur in a photo?",
    "- wet and hairless nose with curved nostrils",
    "- clawed hands and feet",
    "Q: What are useful visual features for distinguishing a television in a photo?",
    "- a large, rectangular screen",
    "- a remote control",
]

runner = CliRunner()


def user_prompts(stub: StubServer) -> list[str]:
    return [next(m["content"] for m in r["body"]["messages"] if m["role"] == "user") for r in stub.state.requests]


def expected_dclip(label: str) -> list[str]:
    """The stub's canned descriptors for ``label``, computed from the stub directly."""
    return list(describe_answer("dclip", f"distinguishing a {label} in a photo?")["descriptors"])


def test_dclip_asks_once_per_label_and_records_provenance(stub: StubServer, make_client: Any) -> None:
    result = describe_labels(LABELS, make_client(), style="dclip", progress=False)
    assert stub.state.steps() == ["dclip"] * 3
    assert result.style == "dclip" and result.labels == LABELS
    assert result.descriptors == {label: expected_dclip(label) for label in LABELS}
    body = stub.state.requests[0]["body"]
    assert body["response_format"]["type"] == "json_schema"  # structured output, not free text
    assert body["response_format"]["json_schema"]["schema"]["properties"]["descriptors"]["maxItems"] == 12
    prov = result.provenance
    assert prov.generator == "llm" and prov.llm_model == "stub-model" and prov.llm_base_url == stub.base_url
    assert prov.prompt_templates == {"dclip": describe_prompt("dclip").ref}
    assert prov.prompt_templates["dclip"].startswith("dclip.v1@")
    assert prov.params["style"] == "dclip" and prov.params["temperature"] == 0.0
    assert prov.usage.calls == 3 and prov.usage.cached_calls == 0
    assert prov.usage.prompt_tokens == sum(c.prompt_tokens for c in prov.calls) > 0
    assert prov.note is not None and "two-shot" in prov.note
    assert result.sentences("pug")[0] == f"pug, which has {expected_dclip('pug')[0]}"


def test_dclip_prompt_has_the_two_shot_examples_and_no_answer_for_the_label(stub: StubServer, make_client: Any) -> None:
    describe_labels(["pug"], make_client(), style="dclip", progress=False)
    (prompt,) = user_prompts(stub)
    lines = prompt.splitlines()
    assert all(shot in lines for shot in DCLIP_SHOTS)
    question = "Q: What are useful features for distinguishing a pug in a photo?"
    assert question in lines
    after = lines[lines.index(question) + 1 :]
    assert after[0] == "A: There are several useful visual features to tell there is a pug in a photo:"
    assert not [line for line in after if line.startswith("-")]  # nothing answered for the label asked
    assert lines.index(question) > max(lines.index(shot) for shot in DCLIP_SHOTS)


def test_dclip_asks_at_temperature_zero_whatever_the_client(stub: StubServer, make_client: Any) -> None:
    client = make_client(temperature=0.7)
    result = describe_labels(["pug"], client, style="dclip", progress=False)
    assert stub.state.requests[0]["body"]["temperature"] == 0.0
    assert client.temperature == 0.7 and result.provenance.params["temperature"] == 0.0


def test_a_domain_is_one_line_of_the_prompt_and_part_of_the_cache_key(stub: StubServer, make_client: Any) -> None:
    describe_labels(["pug"], make_client(), style="dclip", progress=False)
    describe_labels(["pug"], make_client(), style="dclip", domain="dog", progress=False)
    describe_labels(["pug"], make_client(), style="cupl", domain="dog", progress=False)
    prompts = user_prompts(stub)
    assert len(prompts) == 2 + 5
    assert "kind of" not in prompts[0] and "The pug is a kind of dog." in prompts[1]
    assert all("(The pug is a kind of dog.)" in prompt for prompt in prompts[2:])


def test_cupl_asks_its_five_questions_per_label(stub: StubServer, make_client: Any) -> None:
    result = describe_labels(["pug", "owl"], make_client(), style="cupl", progress=False, sentences_per_question=4)
    assert stub.state.steps() == ["cupl"] * 10
    asked = [prompt.splitlines()[0] for prompt in user_prompts(stub)]
    assert asked == [*cupl_questions("pug"), *cupl_questions("owl")]
    assert asked[0] == "Describe what a pug looks like" and asked[5] == "Describe what an owl looks like"
    assert all("Write 4 different answers" in prompt for prompt in user_prompts(stub))
    answers = [s for prompt in user_prompts(stub)[5:] for s in describe_answer("cupl", prompt)["sentences"]]
    assert result.descriptors["owl"] == [s if s.endswith(("?", ".")) else f"{s}." for s in answers]
    assert result.sentences("owl") == result.descriptors["owl"]  # CuPL sentences are used as they are
    prov = result.provenance
    assert prov.prompt_templates == {"cupl": describe_prompt("cupl").ref}
    assert prov.params["questions"] == list(CUPL_QUESTIONS) and prov.params["sentences_per_question"] == 4
    assert prov.note is not None and "0.99" in prov.note and prov.usage.calls == 10


@pytest.mark.parametrize("style", ["dclip", "cupl"])
@pytest.mark.parametrize("fault", ["fenced", "truncated", "500", "bad_items", "schema_ignored"])
def test_faults_are_survived_with_the_same_result(
    stub: StubServer, make_client: Any, sleeps: Any, style: str, fault: str
) -> None:
    clean = describe_labels(["pug", "owl"], make_client(cache_dir=False), style=style, progress=False)  # type: ignore[arg-type]
    before = len(stub.state.requests)
    stub.state.add_fault(fault, step=style)
    faulted = describe_labels(["pug", "owl"], make_client(), style=style, progress=False)  # type: ignore[arg-type]
    assert faulted.descriptors == clean.descriptors
    extra = 0 if fault in ("fenced", "bad_items") else 1  # a repair or a retry costs one request
    assert len(stub.state.requests) - before == len(clean.provenance.calls) + extra
    assert sum(c.attempts for c in faulted.provenance.calls) == len(faulted.provenance.calls) + extra
    assert (sleeps.waits != []) == (fault == "500")


def test_an_answer_with_nothing_usable_fails_clearly_and_keeps_what_was_cached(
    stub: StubServer, make_client: Any
) -> None:
    stub.state.add_fault("empty", step="dclip", times=3)
    with pytest.raises(LLMError, match=r"LLM step 'dclip' for label 'husky'"):
        describe_labels(["husky", "pug"], make_client(max_repairs=2), style="dclip", progress=False)
    assert len(stub.state.requests) == 3
    result = describe_labels(["husky", "pug"], make_client(), style="dclip", progress=False)
    assert result.labels == ["husky", "pug"] and len(stub.state.requests) == 5


@pytest.mark.parametrize("style", ["dclip", "cupl"])
def test_rerun_makes_zero_requests(stub: StubServer, make_client: Any, style: str) -> None:
    first = describe_labels(LABELS, make_client(), style=style, progress=False)  # type: ignore[arg-type]
    count = len(stub.state.requests)
    second = describe_labels(LABELS, make_client(), style=style, progress=False)  # type: ignore[arg-type]
    assert len(stub.state.requests) == count
    assert second.descriptors == first.descriptors
    assert second.provenance.usage.cached_calls == second.provenance.usage.calls == len(first.provenance.calls)
    assert second.provenance.usage.prompt_tokens == 0


def test_descriptor_set_validates_and_round_trips(stub: StubServer, make_client: Any, tmp_path: Path) -> None:
    result = describe_labels(LABELS, make_client(), style="dclip", progress=False)
    path = result.save(tmp_path / "descriptors.json")
    loaded = DescriptorSet.load(path)
    assert loaded.model_dump() == result.model_dump()
    assert DescriptorSet.model_validate(json.loads(path.read_text())).labels == LABELS
    assert [loaded.sentences(label) for label in LABELS] == [result.sentences(label) for label in LABELS]


def test_labels_are_checked_before_any_request(stub: StubServer, make_client: Any) -> None:
    client = make_client()
    with pytest.raises(BadInputError, match="repeat"):
        describe_labels(["Pug", " pug "], client, style="dclip", progress=False)
    with pytest.raises(BadInputError, match="No labels"):
        describe_labels([], client, style="cupl", progress=False)
    with pytest.raises(BadInputError, match="style"):
        describe_labels(["pug"], client, style="waffle", progress=False)  # type: ignore[arg-type]
    assert stub.state.requests == []
    result = describe_labels(["\x1b[31mpug\x1b[0m\x07"], client, style="dclip", progress=False)
    assert result.labels == ["pug"]
    assert "distinguishing a pug in a photo" in user_prompts(stub)[0]


# -- the CLI -----------------------------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = new_app("test")
    app.callback()(lambda: None)  # keep the group (and its error handling) with a single verb
    app.command("describe", cls=PlainHelpCommand, short_help=SHORT_HELP)(describe)
    return app


def run_cli(*args: str) -> Any:
    return runner.invoke(cli(), ["describe", *args])


def test_cli_writes_a_dclip_set_and_a_rerun_is_cached(stub: StubServer, tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("husky\npug\n# a comment\n\nowl\n")
    args = ["--style", "dclip", "--labels", str(tmp_path / "labels.txt"), "-o", str(tmp_path / "d.json")]
    llm = ["--llm", "stub-model", "--llm-base-url", stub.base_url, "--no-progress"]
    result = run_cli(*args, *llm)
    assert result.exit_code == 0, result.output
    loaded = DescriptorSet.load(tmp_path / "d.json")
    assert loaded.style == "dclip" and loaded.labels == LABELS
    assert f"3 labels, {sum(map(len, loaded.descriptors.values()))} descriptors" in result.output
    assert "LLM calls: 3 (0 from cache)" in result.output
    again = run_cli(*args, *llm)
    assert again.exit_code == 0 and "LLM calls: 3 (3 from cache)" in again.output
    assert len(stub.state.requests) == 3


def test_cli_cupl_prints_its_plan_and_asks_for_yes_past_the_limit(stub: StubServer, tmp_path: Path) -> None:
    (tmp_path / "few.txt").write_text("husky\npug\n")
    llm = ["--style", "cupl", "--llm", "stub-model", "--llm-base-url", stub.base_url, "--no-progress"]
    small = run_cli(*llm, "--labels", str(tmp_path / "few.txt"), "-o", str(tmp_path / "few.json"))
    assert small.exit_code == 0, small.output
    assert "Plan: up to 10 LLM requests" in small.output and len(stub.state.requests) == 10
    plan = plan_description(["husky", "pug"], None, style="cupl", count=10)
    assert plan.requests == 10 and plan.estimated_prompt_tokens > 10 * 50 and plan.estimated_cost_usd is None
    (tmp_path / "many.txt").write_text("\n".join(f"breed {i}" for i in range(41)) + "\n")
    many = run_cli(*llm, "--labels", str(tmp_path / "many.txt"), "-o", str(tmp_path / "many.json"))
    assert many.exit_code == 2, many.output
    assert "Plan: up to 205 LLM requests" in many.output
    assert "needs up to 205 LLM requests (more than 200)" in many.output and "--yes" in many.output
    assert len(stub.state.requests) == 10 and not (tmp_path / "many.json").exists()


def test_cli_refuses_clearly(stub: StubServer, tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("husky\npug\n")
    missing = run_cli("--style", "dclip", "--labels", str(tmp_path / "nope.txt"), "--llm", "m")
    assert missing.exit_code == 2 and "labels file" in missing.output and "does not exist" in missing.output
    no_llm = run_cli("--style", "dclip", "--labels", str(tmp_path / "labels.txt"), "-o", str(tmp_path / "x.json"))
    assert no_llm.exit_code == 2 and "no LLM was given" in no_llm.output and "--llm MODEL" in no_llm.output
    bad_style = run_cli("--style", "haiku", "--labels", str(tmp_path / "labels.txt"))
    assert bad_style.exit_code == 2 and "--style" in bad_style.output
    assert "Traceback" not in missing.output + no_llm.output + bad_style.output
    assert not (tmp_path / "x.json").exists() and stub.state.requests == []


def test_cli_converts_a_tree(tmp_path: Path) -> None:
    tree = template_tree("dog", ["husky", "pug"])
    tree.save(tmp_path / "tree.json")
    result = run_cli("--tree", str(tmp_path / "tree.json"), "-o", str(tmp_path / "d.json"))
    assert result.exit_code == 0, result.output
    loaded = DescriptorSet.load(tmp_path / "d.json")
    assert loaded.style == "tree" and loaded.labels == ["husky", "pug"]
    assert loaded.descriptors == DescriptorSet.from_tree(tree).descriptors
    both = run_cli("--tree", str(tmp_path / "tree.json"), "--style", "dclip")
    assert both.exit_code == 2 and "--tree" in both.output


def test_cli_waffle_needs_no_llm_and_gives_every_label_the_same_descriptors(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("husky\npug\n")
    out = tmp_path / "w.json"
    result = run_cli("--style", "waffle", "--labels", str(tmp_path / "labels.txt"), "--seed", "3", "-o", str(out))
    assert result.exit_code == 0, result.output
    loaded = DescriptorSet.load(out)
    assert loaded.style == "waffle" and loaded.descriptors["husky"] == loaded.descriptors["pug"]
    assert len(loaded.descriptors["pug"]) == 30 and loaded.provenance.params["seed"] == 3
    assert re.match(r"A photo of a pug, which", loaded.sentences("pug")[0])
    again = run_cli("--style", "waffle", "--labels", str(tmp_path / "labels.txt"), "--seed", "3", "-o", str(out))
    assert again.exit_code == 0 and DescriptorSet.load(out).descriptors == loaded.descriptors


# -- issue 19: CuPL's temperature, DCLIP's sentence forms on the command line ---------------------------------


def test_cupl_samples_at_099_by_default_and_a_given_temperature_wins(stub: StubServer, make_client: Any) -> None:
    client = make_client()  # the config default, temperature 0.0
    result = describe_labels(["pug"], client, style="cupl", progress=False, sentences_per_question=2)
    assert {r["body"]["temperature"] for r in stub.state.requests} == {0.99}  # CuPL's own
    assert client.temperature == 0.0 and result.provenance.params["temperature"] == 0.99
    assert result.provenance.note is not None and "temperature 0.99" in result.provenance.note
    chosen = describe_labels(["owl"], client, style="cupl", progress=False, sentences_per_question=2, temperature=0.5)
    assert stub.state.requests[-1]["body"]["temperature"] == 0.5 and chosen.provenance.params["temperature"] == 0.5
    describe_labels(["owl"], client, style="dclip", progress=False, temperature=0.3)
    assert stub.state.requests[-1]["body"]["temperature"] == 0.3


def test_cli_temperature_and_dclip_form_are_recorded(stub: StubServer, tmp_path: Path) -> None:
    helped = run_cli("--help")
    assert "--temperature" in helped.output and "0.99" in helped.output and "--dclip-form" in helped.output
    (tmp_path / "labels.txt").write_text("pug\n")
    llm = ["--llm", "stub-model", "--llm-base-url", stub.base_url, "--no-progress", "--labels"]
    out = tmp_path / "c.json"
    result = run_cli("--style", "cupl", *llm, str(tmp_path / "labels.txt"), "--temperature", "0.7", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert DescriptorSet.load(out).provenance.params["temperature"] == 0.7
    assert {r["body"]["temperature"] for r in stub.state.requests} == {0.7}
    args = ["--style", "dclip", *llm, str(tmp_path / "labels.txt"), "--dclip-form", "waffle", "-o", str(out)]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    waffle_form = DescriptorSet.load(out)
    assert waffle_form.sentence_form == "waffle" and waffle_form.sentences("pug")[0].startswith("A photo of a pug, ")
    assert "WaffleCLIP" in result.output  # the summary names the sentence form


def test_cli_rewrites_dclips_published_file_with_the_full_stop(tmp_path: Path) -> None:
    published = tmp_path / "descriptors_imagenet.json"
    published.write_text(json.dumps({"tench": ["olive-green body"], "goldfish": []}))
    out = tmp_path / "imagenet.json"
    with pytest.warns(UserWarning, match="'goldfish'"):
        result = run_cli("--from", str(published), "--full-stop", "-o", str(out))
    assert result.exit_code == 0, result.output
    loaded = DescriptorSet.load(out)
    assert loaded.full_stop and loaded.sentences("tench") == ["tench, which has olive-green body."]
    assert loaded.sentences("goldfish") == ["goldfish, which has ."]  # DCLIP's [''] on ImageNet
    refused = run_cli("--from", str(published), "--style", "cupl", "-o", str(out))
    assert refused.exit_code == 2 and "--from" in refused.output
