"""The optimisation loop: per iteration, per group of labels, sampled candidates scored on the group's images.

:mod:`conceptforest.concepts.optimize` holds the public entry point, the checks and the result; this module holds
the state, the prompts' variables, the LLM requests (candidates and the crossover) and one iteration.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.optimize_feedback import (
    LabelScorer,
    accuracy,
    confusions,
    feedback_text,
    group_labels,
    update_banks,
)
from conceptforest.concepts.optimize_record import CandidateRecord, IterationRecord, LabelChange, LogitScaleForm
from conceptforest.concepts.optimize_schema import GroupAnswer, group_schema
from conceptforest.concepts.prompts import PromptTemplate, load_prompt
from conceptforest.concepts.provenance import CallRecord
from conceptforest.errors import BadInputError, LLMError

__all__ = ["FewShotImages", "OptimizationState", "OptimizeSettings", "Optimizer"]

SEEDS_PER_ITERATION = 1000  # candidate seeds: seed + candidates * (group + 1000 * (iteration - 1)) + candidate
TOKENS_PER_DESCRIPTOR = 12  # room asked for per descriptor in an answer (JSON quoting included)
TOKENS_PER_ANSWER = 300
FAILED_REQUESTS_TO_STOP = 12  # failed requests in a row that end the run (a dead or overloaded server)


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
    logit_scale_form: LogitScaleForm = "raw"  # what ``logit_scale`` is: CLIP's raw parameter (the authors') or exp


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
class OptimizationState:
    current: dict[str, list[str]]
    helpful: dict[str, list[str]] = field(default_factory=dict)
    harmful: dict[str, list[str]] = field(default_factory=dict)
    best: dict[str, list[str]] | None = None
    best_accuracy: float = -1.0
    best_iteration: int = 0
    records: list[CallRecord] = field(default_factory=list)
    tokens: int = 0
    stopped: str = ""
    failure_hint: str = ""  # the hint of the last failed request (what the user can change)
    failed_in_a_row: int = 0


class Optimizer:
    def __init__(self, images: FewShotImages, llm: LLMClient, settings: OptimizeSettings) -> None:
        self.images = images
        self.llm = llm
        self.settings = settings
        self.labels = images.labels
        self.scorer = LabelScorer(images.embeddings, images.encode, images.logit_scale)
        self.templates = {kind: load_prompt(f"optimize_{kind}") for kind in ("initial", "mutation", "crossover")}

    def full_accuracy(self, descriptors: dict[str, list[str]]) -> float:
        rows = np.arange(len(self.images.truth))
        return accuracy(self.scorer.logits(descriptors, self.labels, rows), self.images.truth)

    def over_budget(self, state: OptimizationState) -> bool:
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

    def variables(self, kind: str, names: list[str], feedback: str, state: OptimizationState) -> dict[str, object]:
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

    def ask_one(
        self,
        template: PromptTemplate,
        variables: dict[str, object],
        names: list[str],
        where: tuple[int, int, int],
        state: OptimizationState,
    ) -> tuple[CandidateRecord, dict[str, list[str]] | None, LLMError | None]:
        """One request (``where``: iteration, group, candidate); a failure is recorded with its tokens, not cached
        (a rerun asks it again)."""
        iteration, group, candidate = where
        longest = max(self.settings.initial, max(len(state.current[n]) for n in names))
        limit = longest * 2
        client = self.sampler(
            iteration, group, candidate, TOKENS_PER_DESCRIPTOR * longest * len(names) + TOKENS_PER_ANSWER
        )
        kind = "crossover" if template.step.endswith("crossover") else "sample"
        record = CandidateRecord(group=group, candidate=candidate, kind=kind)
        try:
            answer = client.ask(
                template,
                variables,
                GroupAnswer,
                subject=f"group {group + 1} ({', '.join(names)[:60]}), {kind} {candidate + 1}",
                context={"labels": names, "max_items": limit},
                schema=group_schema(names, limit),
            )
        except LLMError as exc:
            if exc.fatal:  # a refused key or model: every other request would fail the same way
                raise
            state.tokens += exc.tokens
            state.failure_hint = exc.hint or state.failure_hint
            state.failed_in_a_row += 1
            if state.failed_in_a_row >= FAILED_REQUESTS_TO_STOP:
                state.stopped = f"the LLM failed {state.failed_in_a_row} requests in a row"
            return record.model_copy(update={"error": str(exc)[:300], "tokens": exc.tokens}), None, exc
        finally:
            self.llm._mode = client._mode  # a server that refused json_schema is not asked with it again
        tokens = answer.record.prompt_tokens + answer.record.completion_tokens
        state.failed_in_a_row = 0
        state.records.append(answer.record)
        state.tokens += tokens
        omitted = answer.value.omitted
        update = {"cached": answer.record.cached, "tokens": tokens, "omitted": omitted}
        kept = {name: list(state.current[name]) for name in omitted}  # a label left out keeps its descriptors
        return record.model_copy(update=update), {**answer.value.descriptors, **kept}, None

    def ask(
        self,
        template: PromptTemplate,
        variables: dict[str, object],
        names: list[str],
        where: tuple[int, int],
        state: OptimizationState,
    ) -> list[tuple[CandidateRecord, dict[str, list[str]] | None]]:
        """Every candidate of one group; a failed one costs only itself (its record keeps the error)."""
        found: list[tuple[CandidateRecord, dict[str, list[str]] | None]] = []
        for candidate in range(self.settings.candidates):
            if self.over_budget(state):
                break
            record, value, _ = self.ask_one(template, variables, names, (*where, candidate), state)
            found.append((record, value))
        return found

    def crossover(
        self,
        versions: list[tuple[float, dict[str, list[str]]]],
        names: list[str],
        where: tuple[int, int],
        scored: tuple[np.ndarray, np.ndarray],
        state: OptimizationState,
    ) -> tuple[CandidateRecord, dict[str, list[str]] | None]:
        """The authors' crossover: the LLM recombines the valid versions' existing descriptors, given each
        version's overall and per-label accuracy on the group's images."""
        rows, local = scored
        shown = []
        for number, (score, version) in enumerate(versions):
            predicted = np.argmax(self.scorer.logits(version, names, rows), axis=1)
            per_label = [
                float(np.mean(predicted[local == i] == i)) if (local == i).any() else 0.0 for i in range(len(names))
            ]
            entries = [
                {"label": n, "descriptors": version[n], "class_accuracy": f"{a:.2%}"}
                for n, a in zip(names, per_label, strict=True)
            ]
            shown.append({"version": number, "overall_accuracy": f"{score:.2%}", "labels": entries})
        variables: dict[str, object] = {
            "versions_count": len(versions),
            "count": self.settings.initial,
            "versions": json.dumps(shown, indent=1, ensure_ascii=False),
        }
        record, value, _ = self.ask_one(
            self.templates["crossover"], variables, names, (*where, self.settings.candidates), state
        )
        return record, value

    def optimise_group(
        self, members: list[int], where: tuple[int, int], state: OptimizationState
    ) -> tuple[str, list[CandidateRecord]]:
        """Sample, score and keep the best rewrite of one group; a group whose every request fails keeps its set.
        A group with a label that has no descriptors yet gets the initial prompt, every other the mutation one."""
        names = [self.labels[i] for i in members]
        kind = "initial" if any(not state.current[name] for name in names) else "mutation"
        rows = np.flatnonzero(np.isin(self.images.truth, members))
        position = {label: index for index, label in enumerate(members)}
        local = np.asarray([position[int(t)] for t in self.images.truth[rows]], dtype=np.int64)
        logits = self.scorer.logits(state.current, names, rows)
        feedback = feedback_text(confusions(logits, local), names)
        variables = self.variables(kind, names, feedback, state)
        records: list[CandidateRecord] = []
        versions: list[tuple[float, dict[str, list[str]]]] = []
        for record, value in self.ask(self.templates[kind], variables, names, where, state):
            if value is not None:
                score = accuracy(self.scorer.logits(value, names, rows), local)
                record = record.model_copy(update={"accuracy": score})
                versions.append((score, value))
            records.append(record)
        if not versions:
            return feedback, records
        best = max(versions, key=lambda version: version[0])  # the first of equals, as the authors' strict '>'
        if self.settings.candidates > 1 and not self.over_budget(state):
            record, mixed = self.crossover(versions, names, where, (rows, local), state)
            if mixed is not None:
                score = accuracy(self.scorer.logits(mixed, names, rows), local)
                record = record.model_copy(update={"accuracy": score})
                best = (score, mixed) if score > best[0] else best
            records.append(record)
        state.current.update(best[1])
        return feedback, records

    def iteration(self, number: int, state: OptimizationState) -> IterationRecord:
        before = {label: list(items) for label, items in state.current.items()}
        kind = "initial" if any(not items for items in before.values()) else "mutation"
        vectors = self.scorer.label_vectors(state.current, self.labels)
        groups = group_labels(vectors, self.settings.group_size, self.settings.seed)
        feedback: list[str] = []
        candidates: list[CandidateRecord] = []
        failed: list[str] = []
        spent = state.tokens
        for index, members in enumerate(groups):
            if self.over_budget(state):
                break
            text, records = self.optimise_group(members, (number, index), state)
            feedback.append(text)
            candidates.extend(records)
            if records and all(record.accuracy is None for record in records):
                failed.append(_failure(index, [self.labels[i] for i in members], records))
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
            failed_groups=failed,
        )


def _failure(index: int, names: list[str], records: list[CandidateRecord]) -> str:
    """Why one group kept its set: every request failed (the last error, cut short)."""
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"group {index + 1} ({shown}): all {len(records)} request(s) failed; last: {records[-1].error[:300]}"
