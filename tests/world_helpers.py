"""Shared pieces of the world behaviour tests: one run on the synthetic creature world with the world CLIP, a wrong
tree, a vision-LLM stub that reports each image's true parts, and an LLM stub that knows the world.

Everything here is built from :mod:`conceptforest.world` (the specification, the renderer, the descriptor sets)
and the package's own stages; the numbers the tests assert are toy-world numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conceptforest.concepts.tree import ConceptTree
from conceptforest.features.backbone import Backbone, load_backbone, world_clip_folder
from conceptforest.features.dataset import ImageDataset, load_dataset
from conceptforest.features.extract import extract_features
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.llm.image_payload import DEFAULT_MAX_SIDE, image_payload, read_image_file
from conceptforest.models.bundle import ModelBundle, load_bundle
from conceptforest.models.methods.base import MethodInputs, MethodOutcome, MethodResult, run_methods
from conceptforest.models.methods.context import method_inputs
from conceptforest.models.methods.table import comparison_table
from conceptforest.models.methods.wdys import DESCRIBE_PROMPT
from conceptforest.models.train import train_model
from conceptforest.world import WorldSpec, load_world, make_world_images, read_truth
from conceptforest.world.descriptors import class_phrases, part_phrase, true_descriptor_sets
from conceptforest.world.spec import AttributeKey
from tests.llm_stub import JSONHandler, LoopbackServer, asked_labels, first_user, serve_on_loopback

# A developer override for trying the plumbing with another world-CLIP folder; the tests' margins were measured
# with the packaged model (``--clip conceptforest-world``).
WORLD_CLIP_ENV = "CONCEPTFOREST_TEST_WORLD_CLIP"
PER_LABEL = 40
SEED = 0
VAL_FRACTION = 0.0  # no model selection happens here, so every image not tested trains
TEST_FRACTION = 0.25
FOREST_TREES = 300
# The methods of the one comparison the tests share, in the registry's terms.
METHODS = ("forest", "clip", "dclip", "cupl", "waffle", "random-words", "shuffled-tree", "chance")


def world_backbone() -> Backbone:
    """The world CLIP on the CPU: the packaged model, or a ``local-dir`` folder named by :data:`WORLD_CLIP_ENV`."""
    override = os.environ.get(WORLD_CLIP_ENV)
    if override:
        return load_backbone(f"local-dir:{override}", device="cpu")
    folder = world_clip_folder()
    if not (folder / "open_clip_config.json").is_file():
        pytest.fail(f"the packaged world CLIP is missing ({folder}); the world behaviour tests need it")
    from conceptforest.defaults import WORLD_CLIP

    return load_backbone(WORLD_CLIP, device="cpu")


@dataclass
class WorldRun:
    """One run on the world: images, the true tree's features, the trained forest and every method's outcome."""

    root: Path  # the image folder (with ground_truth.jsonl)
    out: Path  # the run folder
    cache: Path  # the embedding cache
    spec: WorldSpec
    tree: ConceptTree
    dataset: ImageDataset
    backbone: Backbone
    matrix: FeatureMatrix
    bundle: ModelBundle
    inputs: MethodInputs
    outcomes: dict[str, MethodOutcome]
    table: pd.DataFrame  # comparison_table, indexed by method name
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def test_truth(self) -> np.ndarray:
        truth: np.ndarray = self.matrix.y("test").to_numpy()
        return truth

    def result(self, name: str) -> MethodResult:
        outcome = self.outcomes[name]
        assert isinstance(outcome, MethodResult), f"{name} was not computed: {outcome}"
        return outcome

    def accuracy(self, name: str) -> float:
        return float(self.table.loc[name, "accuracy"])

    def features(self, tree: ConceptTree, name: str) -> FeatureMatrix:
        """The same images scored against another tree (the image embeddings come from the cache)."""
        matrix, _ = extract_features(
            self.dataset, tree, self.backbone, self.out / name, cache_dir=self.cache, progress=False
        )
        return matrix


def build_world_run(base: Path, *, per_label: int = PER_LABEL, seed: int = SEED) -> WorldRun:
    """Render the world, extract the true tree's features, train the forest, run :data:`METHODS` on the test split."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    spec = load_world()
    tree = spec.true_tree()
    root, out, cache = base / "images", base / "run", base / "cache"
    make_world_images(root, spec, per_label=per_label, seed=seed)
    seconds["render"] = time.perf_counter() - started
    backbone = world_backbone()
    dataset = load_dataset(root, labels=tree.labels, seed=seed, val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION)
    started = time.perf_counter()
    matrix, _ = extract_features(dataset, tree, backbone, out, cache_dir=cache, progress=False)
    seconds["extract"] = time.perf_counter() - started
    started = time.perf_counter()
    train_model(matrix, out / "model", n_estimators=FOREST_TREES, random_state=seed)
    bundle = load_bundle(out / "model")
    seconds["train"] = time.perf_counter() - started
    inputs = method_inputs(
        matrix,
        split="test",
        seed=seed,
        bundle=bundle,
        tree=tree,
        descriptors=true_descriptor_sets(spec),
        backbone=backbone,
        cache_dir=cache,
    )
    started = time.perf_counter()
    outcomes = {outcome.name: outcome for outcome in run_methods(inputs, METHODS)}
    seconds["methods"] = time.perf_counter() - started
    table = comparison_table(list(outcomes.values()), matrix.y("test").tolist(), matrix.labels).set_index("name")
    return WorldRun(root, out, cache, spec, tree, dataset, backbone, matrix, bundle, inputs, outcomes, table, seconds)


def swapped_tree(spec: WorldSpec, key: AttributeKey, first: str, second: str) -> ConceptTree:
    """The true tree with two values of one slot swapped in every class (a deliberately wrong tree): each class
    whose ``key`` is ``first`` is said to have ``second``, and the other way round."""
    data = spec.true_tree().model_dump()
    swap = {first: second, second: first}
    for label in data["values"]:
        values = data["values"][label][key.part][key.attribute]
        data["values"][label][key.part][key.attribute] = [swap.get(value, value) for value in values]
    return ConceptTree.from_dict(data, source="deliberately wrong tree")


# -- a vision LLM that reports the true parts of each world image ---------------------------------------------------


def description_of(spec: WorldSpec, values: dict[AttributeKey, str]) -> str:
    """What the stub sees: every distinguishing part value as the world's noun phrases, in specification order."""
    return ", ".join(part_phrase(key.part, values[key]) for key in spec.slots())


@dataclass
class WorldVisionState:
    described: dict[str, str]  # sha256 of the image's data URI -> description
    guess: str
    prompts: list[str] = field(default_factory=list)
    unknown: int = 0  # requests for an image the stub was not told about
    lock: threading.Lock = field(default_factory=threading.Lock)


class WorldVisionServer(LoopbackServer):
    state: WorldVisionState


class WorldVisionHandler(JSONHandler):
    """Answers the WDYS description prompt with the image's true parts, any other prompt with the fixed guess."""

    server: WorldVisionServer

    def do_POST(self) -> None:
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        prompt, url = "", ""
        for message in body.get("messages", []):
            content = message.get("content")
            pieces: list[dict[str, Any]] = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for part in pieces or []:
                if part.get("type") == "text":
                    prompt += part["text"]
                elif part.get("type") == "image_url":
                    url = part["image_url"]["url"]
        key = hashlib.sha256(url.encode()).hexdigest()
        with state.lock:
            state.prompts.append(prompt)
            if key not in state.described:
                state.unknown += 1
        if key not in state.described:
            self._send(400, {"error": {"message": "the stub was not told about this image", "type": "invalid"}})
            return
        content = state.described[key] if prompt == DESCRIBE_PROMPT else state.guess
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        reply = {"id": "world", "object": "chat.completion", "created": 0, "model": "world-vision-stub"}
        self._send(200, {**reply, "choices": [choice], "usage": usage})


def start_world_vision(
    spec: WorldSpec, root: Path, paths: Sequence[Path], *, guess: str, max_side: int = DEFAULT_MAX_SIDE
) -> WorldVisionServer:
    """A stub told the true parts (from ``ground_truth.jsonl``) of ``paths``, keyed by the JPEG data URI that the
    vision client sends for each (the same decoding, downscaling and encoding)."""
    truth = read_truth(root)
    described = {}
    for path in paths:
        url = image_payload(read_image_file(path), max_side=max_side).url
        creature = truth[Path(path).relative_to(root).as_posix()]
        described[hashlib.sha256(url.encode()).hexdigest()] = description_of(spec, creature.values)
    return serve_on_loopback(WorldVisionServer, WorldVisionHandler, WorldVisionState(described, guess))


# -- an LLM that knows the world and reads the optimiser's feedback ---------------------------------------------------


def prompt_section(prompt: str, start: str, end: str) -> str:
    return prompt.split(start, 1)[1].split(end, 1)[0].strip("\n")


def confused_with(prompt: str) -> dict[str, list[str]]:
    """The optimiser's feedback as the prompt states it: label -> the labels it is confused with (maybe none)."""
    found: dict[str, list[str]] = {}
    for line in prompt_section(prompt, "The confusion classes for CLIP are:\n", "\nNote,").splitlines():
        if match := re.fullmatch(r"(.+?) is confused with: (.+)", line):
            found[match.group(1)] = match.group(2).split(", ")
        elif match := re.fullmatch(r"(.+?) is not confused with any other classes", line):
            found[match.group(1)] = []
    return found


def current_descriptors(prompt: str, labels: Sequence[str]) -> dict[str, list[str]]:
    """The current descriptors the mutation prompt shows, per asked label."""
    found: dict[str, list[str]] = {label: [] for label in labels}
    for line in prompt_section(prompt, "The current class names are:\n", "\n\nThe confusion classes").splitlines():
        for label in labels:
            if line.startswith(f"{label}: "):
                found[label] = line[len(label) + 2 :].split(", ")
    return found


@dataclass
class WorldLLMLog:
    """What the stub was asked and answered, per mutation request."""

    feedback: list[dict[str, list[str]]] = field(default_factory=list)
    changed: list[set[str]] = field(default_factory=list)  # labels whose descriptors the answer changed


def world_mutation(spec: WorldSpec, log: WorldLLMLog) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The mutation answer of an LLM that knows the world: a label the feedback calls confused gets the phrases
    true of it that tell it from the labels it is confused with (vague or untrue descriptors are dropped); a
    label the feedback calls not confused keeps its descriptors. Odd sampling seeds add only the first such
    phrase (a more timid candidate), so the candidates differ."""
    vocabulary = {phrase for label in spec.labels for phrase in class_phrases(spec, label)}

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        prompt = first_user(body)
        labels = asked_labels(body)
        feedback = confused_with(prompt)
        current = current_descriptors(prompt, labels)
        timid = int(body.get("seed") or 0) % 2 == 1
        entries, changed = [], set()
        for label in labels:
            others = feedback.get(label, [])
            kept = list(current[label])
            if others:
                own = class_phrases(spec, label)
                telling = [p for p in own if any(p not in class_phrases(spec, o) for o in others if o in spec.labels)]
                new = [p for p in telling if p not in kept][: 1 if timid else None]
                kept = [d for d in kept if d in vocabulary and d in own] + new
                if not kept:
                    kept = own[:1]
            if kept != current[label]:
                changed.add(label)
            entries.append({"label": label, "descriptors": kept})
        log.feedback.append(feedback)
        log.changed.append(changed)
        return {"labels": entries}

    return answer
