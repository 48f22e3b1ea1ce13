"""Optimisation with visual feedback: the feedback text, grouping, keeping the best set, banks, resuming, budgets.

Made-up data with a made-up text encoder: images of label k lie near axis k; a descriptor word ``goodK`` points
along axis k (it helps label k), ``badK`` along the next label's axis (it hurts); other words are small
pseudo-random vectors. A stub OpenAI-compatible server (real HTTP, the real client) is scripted to answer the
mutation prompt with helpful or harmful descriptors depending on the sampling seed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.optimize import FewShotImages, OptimizeSettings, optimize_descriptors
from conceptforest.concepts.optimize_feedback import confusions, feedback_text, group_labels
from conceptforest.errors import LLMError
from tests.llm_stub import StubServer, asked_labels

DIM = 12
LABELS = ["red disc", "blue square", "green star"]
FIRST_SEED = 42


def hashed(text: str, scale: float) -> np.ndarray:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).normal(0, scale, DIM)


def word_vector(word: str, count: int) -> np.ndarray:
    for prefix, shift in (("good", 0), ("bad", 1)):
        if word.startswith(prefix) and word[len(prefix) :].isdigit():
            vector = np.zeros(DIM)
            vector[(int(word[len(prefix) :]) + shift) % count] = 3.0
            return vector
    return hashed(word, 0.3)


def make_encoder(count: int) -> Callable[[Sequence[str]], np.ndarray]:
    def encode(sentences: Sequence[str]) -> np.ndarray:
        rows = []
        for sentence in sentences:
            label, _, descriptor = sentence.partition(", ")
            vector = hashed(label, 1.0) + sum((word_vector(w, count) for w in descriptor.split()), np.zeros(DIM))
            rows.append(vector / np.linalg.norm(vector))
        return np.asarray(rows, dtype=np.float32)

    return encode


def few_shot(labels: Sequence[str] = LABELS, per_label: int = 8, seed: int = 0) -> FewShotImages:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(labels)), per_label)
    axes = np.eye(DIM)[truth % DIM]
    embeddings = (axes + rng.normal(0, 0.6, (len(truth), DIM))).astype(np.float32)
    return FewShotImages(
        embeddings=embeddings,
        truth=truth,
        labels=list(labels),
        sha256=[f"{i:064x}" for i in range(len(truth))],
        backbone_id="made-up",
        logit_scale=100.0,
        encode=make_encoder(len(labels)),
        shots=per_label,
    )


def neutral(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "labels": [
            {"label": label, "descriptors": [f"plain{i} shape" for i in range(4)]} for label in asked_labels(body)
        ]
    }


def candidate_of(body: dict[str, Any], candidates: int) -> int:
    """Which candidate a request is: the optimiser gives candidate c the seed FIRST_SEED + (a multiple of the
    number of candidates) + c."""
    return (int(body.get("seed") or 0) - FIRST_SEED) % candidates


def scripted(good: set[int], candidates: int = 3) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Mutation answers: helpful words from the candidates in ``good``, harmful words from the others."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        kind = "good" if candidate_of(body, candidates) in good else "bad"
        entries = []
        for label in asked_labels(body):
            k = LABELS.index(label) if label in LABELS else int(label.split()[-1])
            entries.append({"label": label, "descriptors": [f"{kind}{k} look", f"{kind}{k} tone", "plain0 shape"]})
        return {"labels": entries}

    return answer


def client(stub: StubServer, home: Path, **kwargs: Any) -> LLMClient:
    options: dict[str, Any] = {"base_url": stub.base_url, "timeout": 5.0, "cache_dir": home, "sleep": lambda s: None}
    return LLMClient("stub-model", **{**options, **kwargs})


def test_the_feedback_text_is_exactly_as_specified() -> None:
    probs = np.array(
        [
            [0.50, 0.46, 0.04],  # true A: B reaches 0.9 of A
            [0.50, 0.30, 0.20],  # true A: none
            [0.10, 0.80, 0.10],  # true B: none
            [0.34, 0.30, 0.36],  # true C: A reaches 0.9 of C, B does not
            [0.30, 0.35, 0.35],  # true C: B
            [0.10, 0.45, 0.45],  # true C: B
        ]
    )
    truth = np.array([0, 0, 1, 2, 2, 2])
    text = feedback_text(confusions(np.log(probs), truth), ["A", "B", "C"])
    assert text == ("A is confused with: B\nB is not confused with any other classes\nC is confused with: B, A\n")


def test_25_labels_give_groups_of_about_10() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 8)) * 5
    vectors = np.vstack([centres[i % 2] + rng.normal(size=8) for i in range(25)])
    groups = group_labels(vectors, 10, seed=0)
    assert len(groups) == 2
    assert sorted(i for g in groups for i in g) == list(range(25))
    assert all(10 <= len(g) <= 13 for g in groups)
    assert group_labels(vectors, 10, seed=0) == groups  # deterministic


def test_each_group_is_scored_on_its_own_images_only(stub: StubServer, tmp_path: Path) -> None:
    labels = [f"kind {i}" for i in range(25)]
    images = few_shot(labels, per_label=3)
    stub.state.answers["optimize_initial"] = neutral
    settings = OptimizeSettings(iterations=1, candidates=1, group_size=10)
    result = optimize_descriptors(images, client(stub, tmp_path), settings=settings, progress=False)
    record = result.optimization
    assert record is not None
    groups = record.iterations[0].groups
    assert len(groups) == 2 and sorted(label for group in groups for label in group) == sorted(labels)
    asked = [asked_labels(r["body"]) for r in stub.state.requests]
    assert sorted(map(sorted, asked)) == sorted(map(sorted, groups))  # one request per group, its labels only
    encode = make_encoder(len(labels))
    for number, group in enumerate(groups):
        members = [labels.index(label) for label in group]
        rows = np.flatnonzero(np.isin(images.truth, members))
        unit = images.embeddings[rows] / np.linalg.norm(images.embeddings[rows], axis=1, keepdims=True)
        columns = [
            (unit @ encode([f"{label}, {d}" for d in result.descriptors[label]]).T).mean(axis=1) for label in group
        ]
        expected = np.mean(np.argmax(np.column_stack(columns), axis=1) == np.arange(len(group)).repeat(3))
        (candidate,) = [c for c in record.iterations[0].candidates if c.group == number]
        assert candidate.accuracy == pytest.approx(expected)
        feedback = record.iterations[0].feedback[number]
        assert all(line.split(" is ")[0] in group for line in feedback.splitlines())


def test_the_best_set_is_kept_and_the_best_accuracy_never_drops(stub: StubServer, tmp_path: Path) -> None:
    stub.state.answers["optimize_initial"] = neutral
    stub.state.answers["optimize_mutation"] = scripted(good={1}, candidates=3)
    settings = OptimizeSettings(iterations=3, candidates=3)
    result = optimize_descriptors(few_shot(), client(stub, tmp_path), settings=settings, progress=False)
    record = result.optimization
    assert record is not None and result.style == "optimized"
    best = [it.best_accuracy for it in record.iterations]
    assert best == sorted(best)
    assert record.best_accuracy == max(it.train_accuracy for it in record.iterations)
    second = record.iterations[1]
    accuracies = [c.accuracy for c in second.candidates]
    assert accuracies[1] == max(a for a in accuracies if a is not None)  # the helpful candidate wins
    assert second.train_accuracy > record.iterations[0].train_accuracy
    assert all(f"good{k} look" in result.descriptors[label] for k, label in enumerate(LABELS))
    added = {change.label: change.added for change in second.changes}
    assert all(f"good{k} look" in added[label] for k, label in enumerate(LABELS))
    assert {c.label for c in record.contributions} == set(LABELS)


def test_harmful_rewrites_are_never_returned(stub: StubServer, tmp_path: Path) -> None:
    stub.state.answers["optimize_initial"] = neutral
    stub.state.answers["optimize_mutation"] = scripted(good=set(), candidates=2)
    settings = OptimizeSettings(iterations=3, candidates=2)
    result = optimize_descriptors(few_shot(), client(stub, tmp_path), settings=settings, progress=False)
    record = result.optimization
    assert record is not None
    first = record.iterations[0].train_accuracy
    assert record.iterations[1].train_accuracy < first  # the kept candidate was worse ...
    assert record.best_iteration == 1 and record.best_accuracy == first  # ... and is not what is returned
    assert all(result.descriptors[label] == [f"plain{i} shape" for i in range(4)] for label in LABELS)
    harmful = record.iterations[1].harmful
    assert any(word.startswith("bad") for words in harmful.values() for word in words)


def test_a_rerun_makes_no_request_and_a_run_killed_mid_iteration_resumes_to_the_same_result(
    stub: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = [f"kind {i}" for i in range(4)]  # two groups of labels: the kill falls between them
    stub.state.answers["optimize_initial"] = neutral
    healthy = scripted(good={0}, candidates=2)
    stub.state.answers["optimize_mutation"] = healthy
    settings = OptimizeSettings(iterations=3, candidates=2, group_size=2)
    clean = optimize_descriptors(few_shot(labels), client(stub, tmp_path / "a"), settings=settings, progress=False)
    assert clean.optimization is not None and len(clean.optimization.iterations[0].groups) == 2
    total = len(stub.state.requests)
    again = optimize_descriptors(few_shot(labels), client(stub, tmp_path / "a"), settings=settings, progress=False)
    assert len(stub.state.requests) == total and again.descriptors == clean.descriptors

    calls = {"n": 0}
    ask = LLMClient.ask

    def killed_after_nine(self: LLMClient, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 9:  # after iteration 1 and the first group of iteration 2
            raise KeyboardInterrupt
        return ask(self, *args, **kwargs)

    monkeypatch.setattr(LLMClient, "ask", killed_after_nine)
    with pytest.raises(KeyboardInterrupt):
        optimize_descriptors(few_shot(labels), client(stub, tmp_path / "b"), settings=settings, progress=False)
    monkeypatch.setattr(LLMClient, "ask", ask)
    before = len(stub.state.requests)
    resumed = optimize_descriptors(few_shot(labels), client(stub, tmp_path / "b"), settings=settings, progress=False)
    assert resumed.descriptors == clean.descriptors
    assert resumed.optimization is not None
    assert [it.train_accuracy for it in resumed.optimization.iterations] == [
        it.train_accuracy for it in clean.optimization.iterations
    ]
    # iteration 1 (2 groups x (2 samples + the crossover)) and group 1 of iteration 2 were cached before the kill
    assert len(stub.state.requests) - before == total - 6 - 3  # only what the killed run had not got


def test_a_token_budget_stops_cleanly_with_the_best_set_so_far(stub: StubServer, tmp_path: Path) -> None:
    stub.state.answers["optimize_mutation"] = scripted(good=set(), candidates=2)
    start = DescriptorSet(
        style="dclip", labels=LABELS, descriptors={k: ["plain1 shape", "plain2 shape"] for k in LABELS}
    )
    settings = OptimizeSettings(iterations=5, candidates=2, budget_tokens=1)
    result = optimize_descriptors(few_shot(), client(stub, tmp_path), start=start, settings=settings, progress=False)
    record = result.optimization
    assert record is not None
    assert "token budget reached" in record.stopped and len(stub.state.requests) == 1
    assert record.start_accuracy is not None and record.best_accuracy >= record.start_accuracy
    assert len(record.iterations) == 1
    nothing = OptimizeSettings(iterations=5, candidates=2, budget_tokens=0)
    with pytest.raises(LLMError, match="no complete descriptor set"):
        optimize_descriptors(few_shot(), client(stub, tmp_path / "c"), settings=nothing, progress=False)


def test_the_record_survives_a_save_and_load(stub: StubServer, tmp_path: Path) -> None:
    stub.state.answers["optimize_initial"] = neutral
    result = optimize_descriptors(
        few_shot(), client(stub, tmp_path), settings=OptimizeSettings(iterations=1, candidates=1), progress=False
    )
    loaded = DescriptorSet.load(result.save(tmp_path / "optimized.json"))
    assert loaded == result
    data = json.loads((tmp_path / "optimized.json").read_text())
    assert data["optimization"]["image_sha256"] == sorted(few_shot().sha256)
    assert "crossover" in data["provenance"]["note"]


def test_update_banks_judges_removed_and_added_descriptors() -> None:
    from conceptforest.concepts.optimize_feedback import LabelScorer, update_banks

    images = few_shot()
    scorer = LabelScorer(images.embeddings, images.encode, images.logit_scale)
    same = {label: ["plain1 shape"] for label in LABELS}
    before = {**same, LABELS[0]: ["plain1 shape", "bad0 tone"]}
    after = {**same, LABELS[0]: ["plain1 shape", "good0 look"]}
    old = [f"old{i} word" for i in range(12)]
    helpful: dict[str, list[str]] = {LABELS[0]: [*old, "plain1 shape"]}
    harmful: dict[str, list[str]] = {}
    update_banks(scorer, LABELS, before, after, images.truth, helpful, harmful)
    assert harmful[LABELS[0]] == ["bad0 tone"]  # leaving it out raised accuracy
    assert helpful[LABELS[0]] == [*old[3:], "good0 look"]  # added, the last 10 kept, kept words dropped
    assert all(helpful[label] == [] and harmful[label] == [] for label in LABELS[1:])  # unchanged labels


def test_confusions_keep_the_five_most_frequent_in_label_order_on_ties() -> None:
    near = np.log(0.95)
    logits = np.array([[0.0, near, near, near, near, near, near], [0.0, -9, -9, -9, -9, -9, near]])
    truth = np.array([0, 0])
    assert confusions(logits, truth)[0] == [6, 1, 2, 3, 4]
    names = [f"l{i}" for i in range(7)]
    assert feedback_text(confusions(logits, truth), names).splitlines()[0] == "l0 is confused with: l6, l1, l2, l3, l4"


def test_a_failed_candidate_is_recorded_and_its_tokens_count(stub: StubServer, tmp_path: Path) -> None:
    def second_fails(body: dict[str, Any]) -> dict[str, Any]:
        return neutral(body) if candidate_of(body, 2) == 0 else {"labels": []}

    stub.state.answers["optimize_initial"] = second_fails
    settings = OptimizeSettings(iterations=1, candidates=2)
    result = optimize_descriptors(few_shot(), client(stub, tmp_path, max_repairs=0), settings=settings, progress=False)
    assert result.optimization is not None
    (iteration,) = result.optimization.iterations
    ok, failed, mixed = iteration.candidates
    assert ok.accuracy is not None and not ok.error and mixed.kind == "crossover" and mixed.accuracy is not None
    assert failed.accuracy is None and "no usable descriptors" in failed.error and failed.tokens > 0
    assert iteration.tokens == ok.tokens + failed.tokens + mixed.tokens


def test_a_failed_optimisation_hint_names_what_applies_to_it(stub: StubServer, tmp_path: Path) -> None:
    stub.state.answers["optimize_initial"] = lambda body: {"labels": []}
    with pytest.raises(LLMError) as raised:
        optimize_descriptors(
            few_shot(), client(stub, tmp_path, max_repairs=0), settings=OptimizeSettings(iterations=1, candidates=1)
        )
    assert "--max-repairs" in raised.value.hint and "template tree" not in raised.value.hint


def test_the_crossover_recombines_the_samples_and_is_kept_when_better(stub: StubServer, tmp_path: Path) -> None:
    from tests.llm_stub import crossover_versions

    def half_good(body: dict[str, Any]) -> dict[str, Any]:  # candidate c helps only the labels k with k % 2 == c
        c = candidate_of(body, 2)
        entries = []
        for k, label in enumerate(asked_labels(body)):
            kind = "good" if k % 2 == c else "plain"
            entries.append({"label": label, "descriptors": [f"{kind}{k} look", f"{kind}{k} tone"]})
        return {"labels": entries}

    def per_label_best(body: dict[str, Any]) -> dict[str, Any]:  # each label from the version best for it
        versions = crossover_versions(body)
        entries = []
        for position, entry in enumerate(versions[0]["labels"]):
            best = max(versions, key=lambda v: float(v["labels"][position]["class_accuracy"].rstrip("%")))
            entries.append({"label": entry["label"], "descriptors": best["labels"][position]["descriptors"]})
        return {"labels": entries}

    stub.state.answers["optimize_initial"] = half_good
    stub.state.answers["optimize_crossover"] = per_label_best
    settings = OptimizeSettings(iterations=1, candidates=2)
    result = optimize_descriptors(few_shot(), client(stub, tmp_path), settings=settings, progress=False)
    assert result.optimization is not None
    first, second, mixed = result.optimization.iterations[0].candidates
    assert mixed.kind == "crossover" and mixed.accuracy is not None and first.accuracy is not None
    assert second.accuracy is not None and mixed.accuracy > max(first.accuracy, second.accuracy)
    assert all(result.descriptors[label][0] == f"good{k} look" for k, label in enumerate(LABELS))
    prompt = next(r for r in stub.state.requests if r["step"] == "optimize_crossover")["body"]
    assert len(crossover_versions(prompt)) == 2  # both valid samples, with their accuracies, were shown


# -- an LLM that leaves labels out or fails for a while (issue: the run must go on) ------------------------------


def test_the_schema_asks_for_every_label_by_name(stub: StubServer, tmp_path: Path) -> None:
    settings = OptimizeSettings(iterations=1, candidates=1)
    optimize_descriptors(few_shot(), client(stub, tmp_path), settings=settings, progress=False)
    body = stub.state.requests[0]["body"]
    schema = body["response_format"]["json_schema"]["schema"]["properties"]["labels"]
    assert schema["required"] == LABELS and set(schema["properties"]) == set(LABELS)


def test_labels_an_answer_leaves_out_keep_their_descriptors(stub: StubServer, tmp_path: Path) -> None:
    def leaves_out_the_last(body: dict[str, Any]) -> dict[str, Any]:  # keyed form, one label missing
        return {
            "labels": {
                label: scripted(good={0, 1})(body)["labels"][k]["descriptors"]
                for k, label in enumerate(asked_labels(body)[:-1])
            }
        }

    start = DescriptorSet(style="dclip", labels=LABELS, descriptors={k: [f"start {k}"] for k in LABELS})
    stub.state.answers["optimize_mutation"] = leaves_out_the_last
    for fault in ("429", "fenced"):
        stub.state.add_fault(fault, "optimize_mutation")
    settings = OptimizeSettings(iterations=2, candidates=2)
    result = optimize_descriptors(few_shot(), client(stub, tmp_path), start=start, settings=settings, progress=False)
    assert result.optimization is not None
    samples = [c for it in result.optimization.iterations for c in it.candidates if c.kind == "sample"]
    assert all(c.accuracy is not None for c in samples)  # the fenced answer is the stub's own, with every label
    assert [c.omitted for c in samples] == [[]] + [[LABELS[-1]]] * (len(samples) - 1) and len(samples) == 4
    assert result.descriptors[LABELS[-1]] == [f"start {LABELS[-1]}"]
    assert result.descriptors[LABELS[0]][0] == "good0 look"
    assert not result.optimization.stopped


def test_a_group_whose_every_candidate_fails_keeps_its_set_and_the_run_goes_on(
    stub: StubServer, tmp_path: Path
) -> None:
    labels = [f"kind {i}" for i in range(4)]
    healthy = scripted(good={0}, candidates=2)
    stub.state.answers["optimize_initial"] = neutral
    calls = {"n": 0}

    def second_iteration_first_group_fails(body: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        return {"labels": []} if calls["n"] <= 2 else healthy(body)  # both samples of group 1, iteration 2

    stub.state.answers["optimize_mutation"] = second_iteration_first_group_fails
    settings = OptimizeSettings(iterations=3, candidates=2, group_size=2)
    result = optimize_descriptors(
        few_shot(labels), client(stub, tmp_path, max_repairs=0, max_attempts=1), settings=settings, progress=False
    )
    record = result.optimization
    assert record is not None and len(record.iterations) == 3 and not record.stopped
    (failure,) = record.iterations[1].failed_groups
    assert failure.startswith("group 1 (") and "all 2 request(s) failed" in failure
    assert "no usable descriptors" in failure
    assert all(it.failed_groups == [] for it in (record.iterations[0], record.iterations[2]))


def test_an_llm_failing_throughout_stops_the_run_with_the_best_set_kept(stub: StubServer, tmp_path: Path) -> None:
    stub.state.answers["optimize_initial"] = neutral
    stub.state.answers["optimize_mutation"] = lambda body: {"labels": []}
    settings = OptimizeSettings(iterations=5, candidates=2)
    result = optimize_descriptors(
        few_shot(), client(stub, tmp_path, max_repairs=0, max_attempts=1), settings=settings, progress=False
    )
    record = result.optimization
    assert record is not None and len(record.iterations) == 3
    assert record.stopped == "the LLM failed every request of the last 2 iterations"
    assert record.best_iteration == 1 and result.descriptors[LABELS[0]] == [f"plain{i} shape" for i in range(4)]


def test_a_refused_key_stops_at_once_and_a_dead_server_after_twelve_failures(stub: StubServer, tmp_path: Path) -> None:
    stub.state.add_fault("401", "optimize_initial", times=50)
    settings = OptimizeSettings(iterations=3, candidates=4)
    with pytest.raises(LLMError, match="refused model"):
        optimize_descriptors(few_shot(), client(stub, tmp_path / "a"), settings=settings, progress=False)
    assert len(stub.state.requests) == 1
    stub.state.faults.clear()
    stub.state.answers["optimize_initial"] = neutral
    stub.state.answers["optimize_mutation"] = lambda body: {"labels": []}
    labels = [f"kind {i}" for i in range(12)]  # 6 groups x (4 samples): 24 requests an iteration
    settings = OptimizeSettings(iterations=3, candidates=4, group_size=2)
    failing = client(stub, tmp_path / "b", max_repairs=0, max_attempts=1)
    result = optimize_descriptors(few_shot(labels), failing, settings=settings, progress=False)
    record = result.optimization
    assert record is not None and record.stopped == "the LLM failed 12 requests in a row"
    mutation = [r for r in stub.state.requests if r["step"] == "optimize_mutation"]
    assert len(mutation) == 12 and record.best_iteration == 1


# -- issue 19: the logit scale of the confusions, and the authors' feedback sentences --------------------------------

# Cosines of 8 images with the sentences of 4 labels, CLIP-like (the true label about 0.30, others close behind).
# The authors' rule p_j >= 0.9 p_true is scale * (cos_true - cos_j) <= ln(1 / 0.9) = 0.10536: with their raw
# ``model.logit_scale`` (ln 100 = 4.6052) a label within 0.0229 in cosine is confused; with exp (100), within 0.00105.
FIXED_NAMES = ["beagle", "basset", "foxhound", "whippet"]
FIXED_TRUTH = np.array([0, 0, 1, 1, 2, 2, 2, 3])
FIXED_COSINES = np.array(
    [
        [0.300, 0.285, 0.270, 0.250],  # beagle: basset 0.015 behind (raw only); foxhound 0.030 (neither)
        [0.300, 0.290, 0.2995, 0.250],  # beagle: basset 0.010 (raw only), foxhound 0.0005 (both)
        [0.250, 0.310, 0.250, 0.250],  # basset: none
        [0.260, 0.310, 0.240, 0.240],  # basset: none
        [0.280, 0.270, 0.290, 0.275],  # foxhound: beagle 0.010, basset 0.020, whippet 0.015 (raw only)
        [0.280, 0.250, 0.290, 0.280],  # foxhound: beagle 0.010, whippet 0.010 (raw only)
        [0.250, 0.250, 0.290, 0.285],  # foxhound: whippet 0.005 (raw only)
        [0.250, 0.250, 0.250, 0.300],  # whippet: none
    ]
)
AUTHORS_RAW_FEEDBACK = (
    "beagle is confused with: basset, foxhound\n"
    "basset is not confused with any other classes\n"
    "foxhound is confused with: whippet, beagle, basset\n"
    "whippet is not confused with any other classes\n"
)
EXP_FEEDBACK = (
    "beagle is confused with: foxhound\n"
    "basset is not confused with any other classes\n"
    "foxhound is not confused with any other classes\n"
    "whippet is not confused with any other classes\n"
)


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The tiny random CLIP with the released weights' logit scale (ln 100), and 4 shape images per label."""
    import math

    import torch

    from conceptforest.features.backbone import load_backbone
    from conceptforest.features.dataset import load_dataset
    from conceptforest.features.synthetic import make_shape_images

    backbone = load_backbone("conceptforest-tiny-random", device="cpu")
    with torch.no_grad():
        backbone.model.logit_scale.fill_(math.log(100.0))
    folder = make_shape_images(tmp_path_factory.mktemp("shapes"), per_label=4, size=32)
    return backbone, load_dataset(folder, val_fraction=0.0, test_fraction=0.0, seed=0)


def test_the_feedback_on_fixed_cosines_is_the_authors_with_the_raw_logit_scale(
    tiny_shapes: tuple[Any, Any], tmp_path: Path
) -> None:
    from conceptforest.features.fewshot import few_shot_images

    backbone, dataset = tiny_shapes
    images, _ = few_shot_images(dataset, backbone, shots=2, cache_dir=tmp_path)
    assert images.logit_scale == pytest.approx(4.60517, abs=1e-5)  # model.logit_scale as the authors' utils.py
    raw = feedback_text(confusions(images.logit_scale * FIXED_COSINES, FIXED_TRUTH), FIXED_NAMES)
    assert raw == AUTHORS_RAW_FEEDBACK
    exp_images, _ = few_shot_images(dataset, backbone, shots=2, cache_dir=tmp_path, logit_scale="exp")
    assert exp_images.logit_scale == pytest.approx(100.0, rel=1e-5)
    assert feedback_text(confusions(exp_images.logit_scale * FIXED_COSINES, FIXED_TRUTH), FIXED_NAMES) == EXP_FEEDBACK


def test_the_record_and_the_report_say_which_logit_scale_fed_the_confusions(stub: StubServer, tmp_path: Path) -> None:
    from dataclasses import replace

    from conceptforest.explain.optimization_section import add_optimization
    from conceptforest.explain.report import Report

    stub.state.answers["optimize_initial"] = neutral
    stub.state.answers["optimize_mutation"] = scripted(good={0}, candidates=2)
    settings = OptimizeSettings(iterations=1, candidates=2)
    images = replace(few_shot(), logit_scale=4.6052)
    result = optimize_descriptors(images, client(stub, tmp_path), settings=settings, progress=False)
    record = result.optimization
    assert record is not None and record.logit_scale_form == "raw" and record.logit_scale == 4.6052
    report = Report("optimised")
    add_optimization(report, result)
    markdown = report.to_markdown().replace("\\_", "_")  # the markdown escapes underscores
    assert "logits = 4.605 x cosine: the raw logit_scale parameter, as the authors' utils.py" in markdown
    exp_images = replace(few_shot(), logit_scale_form="exp")
    exp_result = optimize_descriptors(exp_images, client(stub, tmp_path), settings=settings, progress=False)
    assert exp_result.optimization is not None and exp_result.optimization.logit_scale_form == "exp"
    assert "exp(logit_scale)" in exp_result.optimization.departures


def test_the_command_uses_the_raw_logit_scale_unless_asked_for_exp(stub: StubServer, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from conceptforest.cli import app
    from conceptforest.features.synthetic import make_shape_images

    stub.state.answers["optimize_initial"] = neutral
    shapes = make_shape_images(tmp_path / "shapes", per_label=4, size=32)
    args = ["concepts", "optimize", str(shapes), "--llm", "stub-model", "--llm-base-url", stub.base_url]
    args += ["--clip", "conceptforest-tiny-random", "--shots", "2", "--iterations", "1", "--candidates", "1"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    scales, outputs = {}, {}
    for form in ("raw", "exp"):
        out = tmp_path / f"{form}.json"
        result = CliRunner().invoke(app, [*args, "--logit-scale", form, "-o", str(out)])
        assert result.exit_code == 0, result.output
        record = DescriptorSet.load(out).optimization
        assert record is not None and record.logit_scale_form == form
        scales[form], outputs[form] = record.logit_scale, " ".join(result.output.split())
    # the tiny random CLIP keeps open_clip's initial parameter ln(1 / 0.07); the authors multiply by it, not by 1/0.07
    assert scales["raw"] == pytest.approx(2.65926, abs=1e-5) and scales["exp"] == pytest.approx(1 / 0.07, rel=1e-5)
    assert "confusions from logits = 2.659 x cosine (raw logit_scale)" in outputs["raw"]
    assert "confusions from logits = 14.29 x cosine (exp logit_scale)" in outputs["exp"]
