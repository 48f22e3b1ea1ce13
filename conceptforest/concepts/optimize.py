"""Optimise label descriptions with visual feedback from a few labelled images (Han et al., arXiv 2311.11904).

The loop of the authors' ``main.py`` (zhuole1025/LLMs_as_Visual_Explainers), on cached CLIP embeddings:

1. Labels are grouped by their mean text embeddings (about ``group_size`` per group); each group is optimised on
   its own labels' images only.
2. Per group, the confusions of the current descriptors (:mod:`~conceptforest.concepts.optimize_feedback`) are
   sent to the LLM: the first time with the *initial* prompt (``initial`` concepts per label) when no start set is
   given, afterwards with the *mutation* prompt (replace ``replace`` concepts per label, given the helpful and
   harmful word banks).
3. ``candidates`` answers are sampled; each is scored by accuracy on the group's images and the best is kept.
4. After every iteration the accuracy of the whole set on all the images is measured; the best set ever seen is
   what is returned, so the result is never worse on these images than any set kept before.

This module sees no image and no model: :class:`FewShotImages` carries the image embeddings and a text encoder
(the features stage builds it), so concepts/ never imports features/.

Departures from the authors' code (recorded in the result's provenance note and the report):
- answers are JSON through a schema (the authors parse a Python list of ``"label: a, b"`` strings);
- no crossover step (the authors also ask the LLM to recombine the sampled versions, and keep the recombination
  when it scores better);
- candidates are separate requests with seeds ``seed .. seed + candidates - 1`` (the authors: one request, n=4);
- groups: k-means centres and a greedy size cap (the authors: ``k_means_constrained``);
- with a start set, its accuracy is the first "best so far" (the authors start from bare label names).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from conceptforest._version import package_version
from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.concepts.generate import usage_totals
from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.optimize_feedback import (
    LabelScorer,
    accuracy,
    confusions,
    contributions,
    feedback_text,
    group_labels,
    update_banks,
)
from conceptforest.concepts.optimize_record import (
    CandidateRecord,
    DescriptorContribution,
    IterationRecord,
    LabelChange,
    OptimizationRecord,
)
from conceptforest.concepts.optimize_schema import GroupAnswer, group_schema
from conceptforest.concepts.prompts import PromptTemplate, load_prompt
from conceptforest.concepts.provenance import CallRecord, Provenance
from conceptforest.errors import BadInputError, LLMError

__all__ = ["DEPARTURES", "FewShotImages", "OptimizeSettings", "optimize_descriptors"]

DEPARTURES = (
    "Search scores '{label}, {descriptor}' as the authors' search does; the method row scores the result with "
    "DCLIP's 'which is/has' sentences, as the authors' final test does. Departures: JSON answers through a schema "
    "(the authors parse a Python list), with descriptors that name another label of the group, repeats and lists "
    "past twice the asked length dropped; no crossover step; candidates are separate requests with their own "
    "seeds (the authors: one request with n samples); groups by k-means centres with a greedy size cap (the "
    "authors: k_means_constrained); word banks judge removals as the authors' code intends (their loop "
    "overwrites the removal logits, so for all but the first class removals are never judged); a group whose "
    "every candidate fails stops the run, answers kept in the cache (the authors retry, then skip the group); a "
    "start set's accuracy is the first best; at most --shots images per label, drawn with a seed (the authors "
    "use every training image)."
)


SEEDS_PER_ITERATION = 1000  # candidate seeds: seed + candidates * (group + 1000 * (iteration - 1)) + candidate
TOKENS_PER_DESCRIPTOR = 12  # room asked for per descriptor in an answer (JSON quoting included)
TOKENS_PER_ANSWER = 300


@dataclass(frozen=True)
class FewShotImages:
    """The labelled images the optimisation may look at (training images only), as cached CLIP embeddings."""

    embeddings: np.ndarray  # (images, dim)
    truth: np.ndarray  # index into ``labels`` per image
    labels: list[str]
    sha256: list[str]
    backbone_id: str
    logit_scale: float
    encode: Callable[[Sequence[str]], np.ndarray]  # sentences -> embeddings (cached by the caller)
    shots: int = 0
    draw_seed: int = 0  # the seed of the draw of at most ``shots`` images per label


@dataclass(frozen=True)
class OptimizeSettings:
    """The authors' defaults: 10 iterations, 4 candidates, 30 initial concepts, 15 replaced, groups of 10, T=1."""

    iterations: int = 10
    candidates: int = 4
    initial: int = 30
    replace: int = 15
    group_size: int = 10
    temperature: float = 1.0
    seed: int = 42
    budget_tokens: int | None = None

    def check(self) -> None:
        for name in ("iterations", "candidates", "initial", "replace", "group_size"):
            if getattr(self, name) < 1:
                raise BadInputError(f"--{name.replace('_', '-')} must be at least 1.", hint="use 1 or more.")
        if self.budget_tokens is not None and self.budget_tokens < 0:
            raise BadInputError("--budget-tokens must not be negative.", hint="leave it out for no budget.")


@dataclass
class _State:
    current: dict[str, list[str]]
    helpful: dict[str, list[str]] = field(default_factory=dict)
    harmful: dict[str, list[str]] = field(default_factory=dict)
    best: dict[str, list[str]] | None = None
    best_accuracy: float = -1.0
    best_iteration: int = 0
    records: list[CallRecord] = field(default_factory=list)
    tokens: int = 0
    stopped: str = ""


class _Optimizer:
    def __init__(self, images: FewShotImages, llm: LLMClient, settings: OptimizeSettings, started: bool) -> None:
        self.images = images
        self.llm = llm
        self.settings = settings
        self.started = started
        self.labels = images.labels
        self.scorer = LabelScorer(images.embeddings, images.encode, images.logit_scale)
        self.templates = {kind: load_prompt(f"optimize_{kind}") for kind in ("initial", "mutation")}

    def full_accuracy(self, descriptors: dict[str, list[str]]) -> float:
        rows = np.arange(len(self.images.truth))
        return accuracy(self.scorer.logits(descriptors, self.labels, rows), self.images.truth)

    def over_budget(self, state: _State) -> bool:
        budget = self.settings.budget_tokens
        if budget is not None and state.tokens >= budget:
            state.stopped = f"token budget reached: {state.tokens:,} tokens used of {budget:,}"
        return bool(state.stopped)

    def sampler(self, iteration: int, group: int, candidate: int, max_tokens: int) -> LLMClient:
        """The client for one candidate: the authors' temperature, a seed of its own (deterministic, different
        for every iteration, group and candidate), and room for the whole group's answer."""
        client = copy.copy(self.llm)
        client.temperature = self.settings.temperature
        step = self.settings.candidates * (group + SEEDS_PER_ITERATION * (iteration - 1))
        client.seed = self.settings.seed + step + candidate
        client.max_tokens = max(self.llm.max_tokens, max_tokens)
        return client

    def variables(self, kind: str, names: list[str], feedback: str, state: _State) -> dict[str, object]:
        def lines(bank: dict[str, list[str]]) -> str:
            return "\n".join(f"{n}: {', '.join(bank.get(n, [])) or 'None'}" for n in names)

        current = "\n".join(f"{n}: {', '.join(state.current[n])}" if state.current[n] else n for n in names)
        found: dict[str, object] = {"current": current, "feedback": feedback.rstrip("\n")}
        if kind == "initial":
            return {**found, "count": self.settings.initial}
        return {
            **found,
            "replace": self.settings.replace,
            "helpful": lines(state.helpful),
            "harmful": lines(state.harmful),
        }

    def ask(
        self,
        template: PromptTemplate,
        variables: dict[str, object],
        names: list[str],
        where: tuple[int, int],
        state: _State,
    ) -> list[tuple[CandidateRecord, dict[str, list[str]] | None]]:
        """Every candidate of one group; a group whose every request fails raises the last error.

        A failed candidate's tokens count towards the budget; it is not cached, so a rerun asks it again."""
        iteration, group = where
        longest = max(self.settings.initial, max(len(state.current[n]) for n in names))
        limit = longest * 2
        room = TOKENS_PER_DESCRIPTOR * longest * len(names) + TOKENS_PER_ANSWER
        found: list[tuple[CandidateRecord, dict[str, list[str]] | None]] = []
        last: LLMError | None = None
        for candidate in range(self.settings.candidates):
            if self.over_budget(state):
                break
            record = CandidateRecord(group=group, candidate=candidate)
            client = self.sampler(iteration, group, candidate, room)
            try:
                answer = client.ask(
                    template,
                    variables,
                    GroupAnswer,
                    subject=f"group {group + 1} ({', '.join(names)[:60]}), candidate {candidate + 1}",
                    context={"labels": names, "max_items": limit},
                    schema=group_schema(names, limit),
                )
            except LLMError as exc:
                last = exc
                state.tokens += exc.tokens
                found.append((record.model_copy(update={"error": str(exc)[:300], "tokens": exc.tokens}), None))
                continue
            finally:
                self.llm._mode = client._mode  # a server that refused json_schema is not asked with it again
            tokens = answer.record.prompt_tokens + answer.record.completion_tokens
            state.records.append(answer.record)
            state.tokens += tokens
            update = {"cached": answer.record.cached, "tokens": tokens}
            found.append((record.model_copy(update=update), answer.value.descriptors))
        if last is not None and all(value is None for _, value in found):
            raise last
        return found

    def optimise_group(
        self, kind: str, members: list[int], where: tuple[int, int], state: _State
    ) -> tuple[str, list[CandidateRecord]]:
        names = [self.labels[i] for i in members]
        rows = np.flatnonzero(np.isin(self.images.truth, members))
        position = {label: index for index, label in enumerate(members)}
        local = np.asarray([position[int(t)] for t in self.images.truth[rows]], dtype=np.int64)
        logits = self.scorer.logits(state.current, names, rows)
        feedback = feedback_text(confusions(logits, local), names)
        variables = self.variables(kind, names, feedback, state)
        records: list[CandidateRecord] = []
        best: tuple[float, dict[str, list[str]]] | None = None
        for record, value in self.ask(self.templates[kind], variables, names, where, state):
            if value is not None:
                score = accuracy(self.scorer.logits(value, names, rows), local)
                record = record.model_copy(update={"accuracy": score})
                if best is None or score > best[0]:
                    best = (score, value)
            records.append(record)
        if best is not None:
            state.current.update(best[1])
        return feedback, records

    def iteration(self, number: int, state: _State) -> IterationRecord:
        before = {label: list(items) for label, items in state.current.items()}
        kind = "initial" if number == 1 and not self.started else "mutation"
        vectors = self.scorer.label_vectors(state.current, self.labels)
        groups = group_labels(vectors, self.settings.group_size, self.settings.seed)
        feedback: list[str] = []
        candidates: list[CandidateRecord] = []
        spent = state.tokens
        for index, members in enumerate(groups):
            if self.over_budget(state):
                break
            text, records = self.optimise_group(kind, members, (number, index), state)
            feedback.append(text)
            candidates.extend(records)
        complete = all(state.current[label] for label in self.labels)
        score = self.full_accuracy(state.current) if complete else 0.0
        if complete and all(before[label] for label in self.labels):
            truth = self.images.truth
            update_banks(self.scorer, self.labels, before, state.current, truth, state.helpful, state.harmful)
        if complete and score > state.best_accuracy:
            state.best = {label: list(items) for label, items in state.current.items()}
            state.best_accuracy, state.best_iteration = score, number
        changes = [
            LabelChange(
                label=label,
                added=[d for d in state.current[label] if d not in before[label]],
                removed=[d for d in before[label] if d not in state.current[label]],
            )
            for label in self.labels
        ]
        return IterationRecord(
            iteration=number,
            prompt=kind,
            groups=[[self.labels[i] for i in members] for members in groups],
            feedback=feedback,
            candidates=candidates,
            train_accuracy=score,
            best_accuracy=max(state.best_accuracy, 0.0),
            changes=changes,
            helpful={label: list(items) for label, items in state.helpful.items()},
            harmful={label: list(items) for label, items in state.harmful.items()},
            tokens=state.tokens - spent,
        )


def _start_descriptors(images: FewShotImages, start: DescriptorSet | None) -> dict[str, list[str]]:
    if start is None:
        return {label: [] for label in images.labels}
    from conceptforest.concepts.optimize_schema import label_key

    by_key = {label_key(label): label for label in start.labels}
    missing = [label for label in images.labels if label_key(label) not in by_key]
    if missing:
        raise BadInputError(
            f"The start descriptor set does not describe the label(s) {', '.join(map(repr, missing))}.",
            hint="give a set that describes every label of the images (or leave it out to start from the LLM).",
        )
    return {label: list(start.descriptors[by_key[label_key(label)]]) for label in images.labels}


def _check_images(images: FewShotImages) -> None:
    from conceptforest.concepts.optimize_schema import label_key

    keys = [label_key(label) for label in images.labels]
    clashes = sorted({label for label, key in zip(images.labels, keys, strict=True) if keys.count(key) > 1})
    if clashes:
        raise BadInputError(
            f"Labels that differ only in case, spaces or underscores cannot be told apart in the LLM's answers: "
            f"{', '.join(map(repr, clashes))}.",
            hint="rename the label folders (or the manifest's labels) so that they differ in words.",
        )
    counts = np.bincount(images.truth, minlength=len(images.labels)) if len(images.truth) else np.zeros(0)
    empty = [label for label, count in zip(images.labels, counts, strict=False) if count == 0]
    if len(images.labels) < 2 or len(images.truth) == 0 or empty:
        raise BadInputError(
            f"The optimisation needs training images of at least 2 labels; none for: {', '.join(empty) or 'all'}.",
            hint="check the image folder or manifest: every label needs images in the train split.",
        )


def optimize_descriptors(
    images: FewShotImages,
    llm: LLMClient,
    *,
    start: DescriptorSet | None = None,
    settings: OptimizeSettings | None = None,
    progress: bool = True,
) -> DescriptorSet:
    """Optimise every label's descriptors with visual feedback; return the best set seen (style ``optimized``).

    Every LLM answer goes through ``llm`` (schema-validated, repaired, retried, cached): a killed run resumes
    where it stopped, and a rerun with the same seed makes no request. ``settings.budget_tokens`` stops cleanly
    before the next request once that many tokens were spent by new requests (cached answers cost nothing, so a
    rerun goes on from where a budget stopped), keeping the best set so far.

    Raises
    ------
    BadInputError
        For unusable images or settings, before any request.
    LLMError
        When every candidate of a group failed (answers so far stay cached), or when no complete set was produced.
    """
    settings = settings or OptimizeSettings()
    settings.check()
    _check_images(images)
    state = _State(current=_start_descriptors(images, start))
    optimizer = _Optimizer(images, llm, settings, started=start is not None)
    start_accuracy = optimizer.full_accuracy(state.current) if start is not None else None
    if start is not None:
        state.best, state.best_accuracy = copy.deepcopy(state.current), float(start_accuracy or 0.0)
    iterations: list[IterationRecord] = []
    bar = tqdm(total=settings.iterations, desc="optimise descriptors", unit="iter", disable=not progress)
    try:
        for number in range(1, settings.iterations + 1):
            iterations.append(optimizer.iteration(number, state))
            bar.update(1)
            bar.set_postfix_str(
                f"acc {iterations[-1].train_accuracy:.3f}, best {state.best_accuracy:.3f}, tokens {state.tokens:,}"
            )
            if state.stopped:
                break
    finally:
        bar.close()
    if state.best is None:
        raise LLMError(
            f"The optimisation produced no complete descriptor set ({state.stopped or 'no usable answer'}).",
            hint="raise --budget-tokens, or check the LLM's answers; answers so far are cached.",
        )
    return _result(images, optimizer, settings, state, iterations, start, start_accuracy)


def _result(
    images: FewShotImages,
    optimizer: _Optimizer,
    settings: OptimizeSettings,
    state: _State,
    iterations: list[IterationRecord],
    start: DescriptorSet | None,
    start_accuracy: float | None,
) -> DescriptorSet:
    assert state.best is not None
    found = contributions(optimizer.scorer, state.best, images.labels, images.truth)
    counts = np.bincount(images.truth, minlength=len(images.labels))
    record = OptimizationRecord(
        backbone_id=images.backbone_id,
        image_sha256=sorted(images.sha256),
        images_per_label={label: int(n) for label, n in zip(images.labels, counts, strict=True)},
        shots=images.shots,
        draw_seed=images.draw_seed,
        iterations_asked=settings.iterations,
        candidates=settings.candidates,
        replace=settings.replace,
        initial_descriptors=settings.initial,
        group_size=settings.group_size,
        seed=settings.seed,
        logit_scale=images.logit_scale,
        start=f"descriptor set (style {start.style})" if start is not None else "the LLM (initial prompt)",
        start_accuracy=start_accuracy,
        best_iteration=state.best_iteration,
        best_accuracy=state.best_accuracy,
        stopped=state.stopped,
        iterations=iterations,
        contributions=[DescriptorContribution(label=a, descriptor=b, contribution=c) for a, b, c in found],
        departures=DEPARTURES,
    )
    llm = optimizer.llm
    provenance = Provenance(
        generator="llm",
        llm_model=llm.model,
        llm_base_url=llm.safe_base_url,
        prompt_templates={kind: template.ref for kind, template in optimizer.templates.items()},
        params={**llm.params, "temperature": settings.temperature, "seed": settings.seed, "style": "optimized"},
        package_version=package_version(),
        usage=usage_totals(state.records, llm),
        calls=state.records,
        note=DEPARTURES,
    )
    return DescriptorSet(
        style="optimized",
        labels=list(images.labels),
        descriptors=state.best,
        provenance=provenance,
        optimization=record,
    )
