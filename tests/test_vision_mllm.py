"""The vision LLM client and the direct "mllm" method, against a stub server that looks at the image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conceptforest.errors import LLMError
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.meta import FeatureMeta
from conceptforest.features.synthetic import SHAPES, draw_shape, make_shape_images
from conceptforest.llm.vision import OpenAIVisionLLM
from conceptforest.models.methods.base import MethodInputs, MethodResult, run_methods
from conceptforest.models.methods.vision import (
    NO_ANSWER,
    answer_bias,
    answer_type_counts,
    classification_prompt,
    match_answer,
)
from tests.conftest import SECRET_KEY, SleepRecorder
from tests.vision_stub import VisionStubServer, start_vision_stub

LABELS = list(SHAPES)


@pytest.fixture
def vstub() -> Iterator[VisionStubServer]:
    server = start_vision_stub()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[str]]:
    root = make_shape_images(tmp_path_factory.mktemp("shapes"), per_label=3)
    paths = sorted(root.glob("*/*.png"))
    return paths, [path.parent.name for path in paths]


def client(server: VisionStubServer, tmp_path: Path, **options: Any) -> OpenAIVisionLLM:
    settings: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": SECRET_KEY,
        "timeout": 5.0,
        "cache_dir": tmp_path / "cache",
        "sleep": SleepRecorder(),
    }
    settings.update(options)
    return OpenAIVisionLLM(str(settings.pop("model", "stub-vision")), **settings)


def inputs_for(paths: list[Path], truth: list[str], llm: OpenAIVisionLLM) -> MethodInputs:
    frame = pd.DataFrame({"path": [str(p) for p in paths], "label": truth, "split": "test"})
    frame["sha256"] = [f"{i:064x}" for i in range(len(paths))]
    frame["c:x=y"] = 0.0
    concepts = [{"id": "c:x=y", "sentence": "a thing", "labels": [LABELS[0]]}]
    meta = FeatureMeta.model_validate({"labels": LABELS, "concepts": concepts, "backbone_id": "none"})
    matrix = FeatureMatrix(frame=frame, meta=meta)
    return MethodInputs(matrix=matrix, vision_llm=llm)


def run_mllm(paths: list[Path], truth: list[str], llm: OpenAIVisionLLM) -> MethodResult:
    (outcome,) = run_methods(inputs_for(paths, truth, llm), ["mllm"])
    assert isinstance(outcome, MethodResult), outcome
    return outcome


def accuracy(result: MethodResult, truth: list[str]) -> float:
    return float(np.mean(np.asarray(result.predicted) == np.asarray(truth)))


def types(result: MethodResult) -> dict[str, int]:
    assert result.explanations is not None
    counts = answer_type_counts(result.explanations)
    return {str(k): int(v) for k, v in zip(counts["answer_type"], counts["count"], strict=True) if v}


def test_direct_classification_is_near_perfect_and_prompts_carry_no_example(
    vstub: VisionStubServer, shapes: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    paths, truth = shapes
    result = run_mllm(paths, truth, client(vstub, tmp_path))
    assert accuracy(result, truth) >= 0.9
    assert result.tokens > 0 and result.scores.shape == (len(paths), len(LABELS))
    assert types(result).get("exact", 0) == len(paths)
    assert len(vstub.state.requests) == len(paths)
    for request in vstub.state.requests:
        prompt = request["prompt"]
        assert all(f"- {label}" in prompt for label in LABELS)
        lowered = prompt.casefold()
        assert "e.g." not in lowered and "for example" not in lowered and "such as" not in lowered
        assert '"' not in prompt and "'" not in prompt  # no quoted sample answer
        assert request["url"].startswith("data:image/jpeg;base64,/9j/")
        assert request["body"]["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == LABELS


def test_second_run_makes_no_request_and_changes_miss_the_cache(
    vstub: VisionStubServer, shapes: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    paths = shapes[0][:4]
    prompt = classification_prompt(LABELS)
    first = client(vstub, tmp_path).ask(paths, prompt, step="s", choices=LABELS)
    assert len(vstub.state.requests) == 4
    again = client(vstub, tmp_path).ask(paths, prompt, step="s", choices=LABELS)
    assert len(vstub.state.requests) == 4
    assert all(a.cached and a.tokens == 0 for a in again)
    assert [a.text for a in again] == [a.text for a in first]
    client(vstub, tmp_path).ask(paths, prompt + " Please.", step="s", choices=LABELS)
    assert len(vstub.state.requests) == 8
    client(vstub, tmp_path, model="other-model").ask(paths, prompt, step="s", choices=LABELS)
    assert len(vstub.state.requests) == 12


def test_cache_holds_no_image_and_no_key_and_images_are_downscaled(vstub: VisionStubServer, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    draw_shape("green wedge", np.random.default_rng(1), size=900).save(big)
    (answer,) = client(vstub, tmp_path, max_side=128).ask(
        [big], classification_prompt(LABELS), step="s", choices=LABELS
    )
    assert answer.text == "green wedge"
    assert max(vstub.state.requests[0]["size"]) <= 128
    files = list((tmp_path / "cache").rglob("*"))
    text = "".join(f.read_text() for f in files if f.is_file())
    assert text and "/9j/" not in text and "iVBOR" not in text and SECRET_KEY not in text


def test_rate_limits_and_server_errors_are_retried(
    vstub: VisionStubServer, shapes: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    paths, truth = shapes
    vstub.state.add_fault("429")
    vstub.state.add_fault("500")
    sleeps = SleepRecorder()
    result = run_mllm(paths, truth, client(vstub, tmp_path, sleep=sleeps))
    assert accuracy(result, truth) >= 0.9
    assert len(vstub.state.requests) == len(paths) + 2
    assert len(sleeps.waits) == 2 and 0.0 in sleeps.waits  # the 429's Retry-After: 0 is honoured


def test_a_server_that_never_answers_fails_only_that_image(
    vstub: VisionStubServer, shapes: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    paths = shapes[0][:3]
    vstub.state.add_fault("500", times=2)
    llm = client(vstub, tmp_path, max_attempts=2, concurrency=1)
    answers = llm.ask(paths, classification_prompt(LABELS), step="s", choices=LABELS)
    assert answers[0].error and "HTTP 500" in answers[0].error and SECRET_KEY not in answers[0].error
    assert all(a.error is None for a in answers[1:])
    llm.ask(paths, classification_prompt(LABELS), step="s", choices=LABELS)  # the failure was not cached
    assert len(vstub.state.requests) == 2 + 2 + 1


def test_refusal_off_label_and_fences_are_counted_and_kept(
    vstub: VisionStubServer, shapes: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    paths, truth = shapes
    for fault in ("refusal", "off_label", "fenced", "loose"):
        vstub.state.add_fault(fault)
    result = run_mllm(paths, truth, client(vstub, tmp_path, concurrency=1))
    assert types(result) == {"exact": len(paths) - 3, "sentence": 1, "refused": 1, "off-label": 1}
    assert result.explanations is not None
    unmatched = result.explanations[result.explanations["label"].isin(["refused", "off-label"])]
    assert set(unmatched["item"]) == {"I'm sorry, I can't help with that.", "cat"}
    rows = unmatched["row"].to_numpy()
    assert all(result.predicted[r] == NO_ANSWER for r in rows) and not result.scores[rows].any()
    assert accuracy(result, truth) == pytest.approx((len(paths) - 2) / len(paths))
    assert "1 refused" in result.note and "1 off-label" in result.note


def test_a_refused_json_schema_falls_back_to_plain_text_once(
    vstub: VisionStubServer, shapes: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    paths, truth = shapes
    vstub.state.reject_json_schema = True
    result = run_mllm(paths, truth, client(vstub, tmp_path, concurrency=1))
    assert accuracy(result, truth) >= 0.9
    assert types(result) == {"sentence": len(paths)}  # "The answer is: RED-DISC!"
    with_schema = [r for r in vstub.state.requests if "response_format" in r["body"]]
    assert len(with_schema) == 1 and len(vstub.state.requests) == len(paths) + 1


def test_an_unauthorised_key_raises_without_the_key(
    vstub: VisionStubServer, shapes: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    vstub.state.add_fault("401")
    with pytest.raises(LLMError) as caught:
        client(vstub, tmp_path, concurrency=1).ask(shapes[0][:2], "Which?", step="s", choices=LABELS)
    assert SECRET_KEY not in str(caught.value) and "OPENAI_API_KEY" in str(caught.value)


def test_an_unreadable_image_gives_an_error_answer(vstub: VisionStubServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    answers = client(vstub, tmp_path).ask([broken, tmp_path / "missing.png"], "Which?", step="s")
    assert all(a.error and not a.text for a in answers)
    assert not vstub.state.requests


def test_logprobs_become_a_softmax_over_labels(
    vstub: VisionStubServer, shapes: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    paths, truth = shapes
    vstub.state.logprobs = True
    result = run_mllm(paths, truth, client(vstub, tmp_path))
    assert np.allclose(result.scores.sum(axis=1), 1.0)
    assert (result.scores < 1.0).all()  # spread over labels, not a one-hot
    assert list(np.asarray(LABELS)[result.scores.argmax(axis=1)]) == list(result.predicted)


def test_free_text_answers_without_choices(
    vstub: VisionStubServer, shapes: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    path, label = shapes[0][0], shapes[1][0]
    (answer,) = client(vstub, tmp_path).ask([path], "What do you see?", step="describe", temperature=0.3)
    assert label.split()[0] in answer.text and "response_format" not in vstub.state.requests[0]["body"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("red disc", ("red disc", "exact")),
        ("  Red_Disc. ", ("red disc", "normalised")),
        ("The answer is: RED-DISC!", ("red disc", "sentence")),
        ("It could be a red disc or a blue tile.", (None, "off-label")),
        ("I cannot help with that request.", (None, "refused")),
        ("a cat", (None, "off-label")),
        ("", (None, "error")),
    ],
)
def test_answer_matching(text: str, expected: tuple[str | None, str]) -> None:
    assert tuple(match_answer(text, LABELS)) == expected


def test_a_label_inside_a_longer_label_is_not_ambiguous() -> None:
    assert tuple(match_answer("I think it is a red disc.", ["red", "red disc"])) == ("red disc", "sentence")


def test_answer_bias_flags_the_cat_effect() -> None:
    truth = ["cat"] * 3 + ["dog"] * 5 + ["fox"] * 4
    predicted = ["cat"] * 3 + ["cat"] * 4 + ["dog"] + ["fox"] * 4
    table = answer_bias(truth, predicted, ["cat", "dog", "fox"]).set_index("label")
    assert table.loc["cat", "flagged"] and not table.loc["dog", "flagged"] and not table.loc["fox", "flagged"]
    assert table.loc["cat", "predicted"] == 7 and table.loc["cat", "ratio"] == pytest.approx(7 / 3)
