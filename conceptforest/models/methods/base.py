"""The method registry: every way of classifying is a :class:`Method` that declares what it needs.

A method gets one :class:`MethodInputs` (the run's split, matrix, cached embeddings, tree, descriptor sets, model,
LLM clients) and returns a :class:`MethodResult` for the rows of that split: the predicted label, a score per label,
a per-image explanation, and its cost. A method whose needs are not met becomes a :class:`NotComputed` row that
says what is missing and which flag adds it. Registering is one decorator (the shape of cleanlab's and simonw/llm's
small registries)::

    @register
    class MyMethod(Method):
        name = "my-method"
        display = "my method"
        needs = frozenset({Need.IMAGE_EMBEDDINGS})

        def run(self, inputs: MethodInputs) -> MethodResult: ...
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from conceptforest.errors import BadInputError, LLMError

if TYPE_CHECKING:
    from conceptforest.concepts.descriptors import DescriptorSet
    from conceptforest.concepts.llm import LLMClient
    from conceptforest.concepts.tree import ConceptTree
    from conceptforest.features.backbone import Backbone
    from conceptforest.features.matrix import FeatureMatrix
    from conceptforest.features.store import EmbeddingStore
    from conceptforest.llm.vision_types import VisionLLM
    from conceptforest.models.bundle import ModelBundle
    from conceptforest.models.methods.wdys_weights import WdysClassWeight


class Need(StrEnum):
    """What a method needs before it can run."""

    IMAGE_EMBEDDINGS = "image embeddings"
    CONCEPT_MATRIX = "concept matrix"
    TREE = "concept tree"
    DESCRIPTORS = "descriptor set"
    TRAINING_ROWS = "training rows"
    MODEL = "trained concept forest"
    LLM = "LLM"
    VISION_LLM = "vision LLM"


# How a user supplies each need: shown in a "not computed" row.
NEED_HINTS: dict[Need, str] = {
    Need.IMAGE_EMBEDDINGS: "the model's backbone and the run's cached embeddings (same --cache-dir; "
    "--clip/--pretrained/--checkpoint)",
    Need.CONCEPT_MATRIX: "a run folder from 'features extract'",
    Need.TREE: "--tree FILE",
    Need.DESCRIPTORS: "--descriptors FILE (from 'concepts describe')",
    Need.TRAINING_ROWS: "train rows in the split",
    Need.MODEL: "a MODEL folder from 'conceptforest train'",
    Need.LLM: "--llm MODEL",
    Need.VISION_LLM: "--mllm MODEL (with --mllm-base-url URL for a local server)",
}


@dataclass
class MethodInputs:
    """Everything a method may use, shared by all methods of one comparison (one split, one embedding cache)."""

    matrix: FeatureMatrix
    split: str = "test"
    seed: int = 0
    backbone: Backbone | None = None
    embeddings: np.ndarray | None = None  # one row per matrix row, L2-normalised image embeddings
    text_store: EmbeddingStore | None = None
    tree: ConceptTree | None = None
    descriptors: dict[str, DescriptorSet] = field(default_factory=dict)  # by style: dclip, cupl, waffle, ...
    bundle: ModelBundle | None = None
    llm: LLMClient | None = None
    vision_llm: VisionLLM | None = None
    cache_dir: Path | None = None
    unavailable: dict[Need, str] = field(default_factory=dict)  # why a need is not met, when it was tried
    progress: bool = False  # progress bars on stderr for long work (vision-LLM requests)
    wdys_class_weight: WdysClassWeight | None = None  # WDYS's class-weight configuration (None: its default)

    def available(self) -> set[Need]:
        """The needs these inputs meet."""
        have = {Need.CONCEPT_MATRIX}
        if self.embeddings is not None and self.backbone is not None and self.text_store is not None:
            have.add(Need.IMAGE_EMBEDDINGS)
        if self.tree is not None:
            have.add(Need.TREE)
        if self.descriptors:
            have.add(Need.DESCRIPTORS)
        if (self.matrix.frame["split"] == "train").any():
            have.add(Need.TRAINING_ROWS)
        if self.bundle is not None:
            have.add(Need.MODEL)
        if self.llm is not None:
            have.add(Need.LLM)
        if self.vision_llm is not None:
            have.add(Need.VISION_LLM)
        return have

    @property
    def split_mask(self) -> np.ndarray:
        mask: np.ndarray = (self.matrix.frame["split"] == self.split).to_numpy()
        return mask

    @property
    def train_mask(self) -> np.ndarray:
        mask: np.ndarray = (self.matrix.frame["split"] == "train").to_numpy()
        return mask

    @property
    def labels(self) -> list[str]:
        return list(self.matrix.labels)

    def image_embeddings(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The cached image embeddings (of the evaluated split unless ``rows`` is given)."""
        if self.embeddings is None:
            raise BadInputError("This method needs the run's image embeddings.", hint=NEED_HINTS[Need.IMAGE_EMBEDDINGS])
        selected: np.ndarray = self.embeddings[self.split_mask if rows is None else rows]
        return selected

    def text_embeddings(self, sentences: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings of ``sentences``, encoded once per backbone (cached by text sha256)."""
        from conceptforest.features.extract import sentence_embeddings

        if self.backbone is None or self.text_store is None:
            raise BadInputError("This method needs the CLIP backbone.", hint=NEED_HINTS[Need.IMAGE_EMBEDDINGS])
        return sentence_embeddings(list(sentences), self.backbone, self.text_store)


@dataclass(frozen=True)
class MethodResult:
    """A method's answer on the evaluated split's rows (in matrix row order).

    ``scores`` has one column per label in ``labels`` order (higher is more likely; a method that only names a
    label puts 1 on it). ``explanations`` has one row per (image, item) with columns ``row`` (position within the
    split), ``label``, ``item`` and ``score``: the evidence each image's decision rests on, for example the score of
    every descriptor of its top labels. ``seconds`` and ``tokens`` are the method's cost on these rows.
    """

    name: str
    display: str
    labels: tuple[str, ...]
    predicted: np.ndarray
    scores: np.ndarray
    explanations: pd.DataFrame | None = None
    seconds: float = 0.0
    tokens: int = 0
    uses_label_names: bool = False
    note: str = ""
    accuracy_std: float | None = None  # for methods run over several seeds (WaffleCLIP) ...
    accuracy_mean: float | None = None  # ... their mean accuracy (predicted/scores are the first seed's)


@dataclass(frozen=True)
class NotComputed:
    """A method that could not run here, with what it lacks and how to add it."""

    name: str
    display: str
    missing: tuple[Need, ...]
    reason: str = ""

    @property
    def hint(self) -> str:
        if self.reason:
            return self.reason
        return "needs " + "; ".join(f"{need.value}: {NEED_HINTS[need]}" for need in self.missing)


MethodOutcome = MethodResult | NotComputed


class Method(ABC):
    """One way of classifying images. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]
    display: ClassVar[str]
    needs: ClassVar[frozenset[Need]] = frozenset()
    uses_label_names: ClassVar[bool] = False
    # Run by default in compare/run/the report; expensive or LLM-calling methods say False.
    default: ClassVar[bool] = True

    @abstractmethod
    def run(self, inputs: MethodInputs) -> MethodResult:
        """Classify the rows of ``inputs.split``."""

    def result(
        self,
        inputs: MethodInputs,
        scores: np.ndarray,
        *,
        explanations: pd.DataFrame | None = None,
        tokens: int = 0,
        note: str = "",
        accuracy_std: float | None = None,
        accuracy_mean: float | None = None,
    ) -> MethodResult:
        """A result from a (rows x labels) score matrix; the predicted label is the arg-max."""
        labels = tuple(inputs.labels)
        predicted = np.asarray(labels, dtype=object)[np.argmax(scores, axis=1)] if len(scores) else np.array([])
        return MethodResult(
            name=self.name,
            display=self.display,
            labels=labels,
            predicted=predicted,
            scores=np.asarray(scores, dtype=np.float64),
            explanations=explanations,
            tokens=tokens,
            uses_label_names=self.uses_label_names,
            note=note,
            accuracy_std=accuracy_std,
            accuracy_mean=accuracy_mean,
        )


REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry under its ``name`` (names are unique)."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"A method named {cls.name!r} is already registered ({REGISTRY[cls.name].__name__}).")
    REGISTRY[cls.name] = cls
    return cls


def registered_methods() -> dict[str, type[Method]]:
    """Every registered method, in registration order (importing the built-in methods first)."""
    import conceptforest.models.methods  # noqa: F401  (registers the built-in methods)

    return dict(REGISTRY)


def select_methods(names: Sequence[str] | None = None) -> list[type[Method]]:
    """The methods named (all default ones when ``names`` is None), refusing unknown names."""
    methods = registered_methods()
    if names is None:
        return [cls for cls in methods.values() if cls.default]
    unknown = [name for name in names if name not in methods]
    if unknown:
        raise BadInputError(
            f"Unknown method(s): {', '.join(map(repr, unknown))}.", hint=f"choose from: {', '.join(methods)}."
        )
    return [methods[name] for name in names]


def run_methods(
    inputs: MethodInputs,
    names: Sequence[str] | None = None,
    *,
    on_start: Callable[[str], None] | None = None,
) -> list[MethodOutcome]:
    """Run every selected method whose needs are met; the others become :class:`NotComputed` rows."""
    outcomes: list[MethodOutcome] = []
    have = inputs.available()
    for cls in select_methods(names):
        missing = tuple(need for need in Need if need in cls.needs and need not in have)
        if missing:
            why = "; ".join(inputs.unavailable[need] for need in missing if need in inputs.unavailable)
            outcomes.append(NotComputed(cls.name, cls.display, missing, reason=why))
            continue
        if on_start is not None:
            on_start(cls.display)
        started = time.perf_counter()
        try:
            result = cls().run(inputs)
        except (BadInputError, LLMError) as exc:  # e.g. a vision LLM that refuses the model: a row, not a crash
            outcomes.append(NotComputed(cls.name, cls.display, (), reason=str(exc)))
            continue
        seconds = result.seconds or time.perf_counter() - started
        outcomes.append(_with_seconds(result, seconds))
    return outcomes


def _with_seconds(result: MethodResult, seconds: float) -> MethodResult:
    from dataclasses import replace

    return replace(result, seconds=seconds)
