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
- candidates are separate requests, each with its own seed (the authors: one request, n=4); the crossover (the
  LLM recombines the valid samples' descriptors, given each one's overall and per-label accuracy; kept when it
  scores better than the best sample) is one more request, as theirs;
- groups: k-means centres and a greedy size cap (the authors: ``k_means_constrained``);
- with a start set, its accuracy is the first "best so far" (the authors start from bare label names);
- only with ``logit_scale_form="exp"`` (``--logit-scale exp``): confusions use exp(logit_scale); by default they use
  the raw parameter, as the authors' ``utils.py``.
"""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
from tqdm.auto import tqdm

from conceptforest._version import package_version
from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.concepts.generate import usage_totals
from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.optimize_feedback import contributions, logit_scale_departure
from conceptforest.concepts.optimize_loop import FewShotImages, OptimizationState, Optimizer, OptimizeSettings
from conceptforest.concepts.optimize_record import DescriptorContribution, IterationRecord, OptimizationRecord
from conceptforest.concepts.provenance import Provenance
from conceptforest.errors import BadInputError, LLMError

__all__ = ["DEPARTURES", "FewShotImages", "OptimizeSettings", "optimize_descriptors"]

FAILED_ITERATIONS_TO_STOP = 2  # iterations in a row whose every request failed: the LLM fails throughout

DEPARTURES = (
    "Search scores '{label}, {descriptor}' as the authors' search does; the method row scores the result with "
    "DCLIP's 'which is/has' sentences, as the authors' final test does. Departures: JSON answers through a schema "
    "(the authors parse a Python list), with descriptors that name another label of the group, repeats and lists "
    "past twice the asked length dropped; candidates (and the crossover) are separate requests with their own "
    "seeds (the authors: one request with n samples); groups by k-means centres with a greedy size cap (the "
    "authors: k_means_constrained); word banks judge removals as the authors' code intends (their loop "
    "overwrites the removal logits, so for all but the first class removals are never judged); a label an answer "
    "leaves out keeps its descriptors, a group whose every candidate fails keeps its set for that iteration (the "
    "authors retry, then skip the group); the run stops, with the best set so far, only after two iterations in "
    "a row in which every request failed or 12 failed requests in a row, and at once when the server refuses the "
    "key or the model; a "
    "start set's accuracy is the first best; at most --shots images per label, drawn with a seed (the authors "
    "use every training image)."
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
    key_counts = Counter(keys)  # linear in the labels, however many
    clashes = sorted({label for label, key in zip(images.labels, keys, strict=True) if key_counts[key] > 1})
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
        When no complete set was produced (answers so far stay cached). A label an answer leaves out keeps its
        descriptors, a group whose every candidate fails keeps its set (``IterationRecord.failed_groups`` says
        why); two iterations in a row whose every request fails, or 12 failed requests in a row, stop the loop
        (``stopped``) with the best set so far; a refused key or model (401/403/404) is raised at once.
    """
    settings = settings or OptimizeSettings()
    settings.check()
    _check_images(images)
    state = OptimizationState(current=_start_descriptors(images, start))
    optimizer = Optimizer(images, llm, settings)
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
            recent = iterations[-FAILED_ITERATIONS_TO_STOP:]
            if not state.stopped and len(recent) == FAILED_ITERATIONS_TO_STOP and all(map(_all_failed, recent)):
                state.stopped = f"the LLM failed every request of the last {FAILED_ITERATIONS_TO_STOP} iterations"
            if state.stopped:
                break
    finally:
        bar.close()
    if state.best is None:
        failures = [why for record in iterations for why in record.failed_groups]
        raise LLMError(
            f"The optimisation produced no complete descriptor set ({state.stopped or 'no usable answer'})"
            + (f"; {failures[-1]}" if failures else "")
            + ".",
            hint=(state.failure_hint if failures else "")
            or "raise --budget-tokens, or check the LLM's answers; answers so far are cached.",
        )
    return _result(images, optimizer, settings, state, iterations, start, start_accuracy)


def _all_failed(record: IterationRecord) -> bool:
    """Whether an iteration asked and every request failed (a budget stop asks nothing: that is not a failure)."""
    return bool(record.candidates) and all(candidate.accuracy is None for candidate in record.candidates)


def _result(
    images: FewShotImages,
    optimizer: Optimizer,
    settings: OptimizeSettings,
    state: OptimizationState,
    iterations: list[IterationRecord],
    start: DescriptorSet | None,
    start_accuracy: float | None,
) -> DescriptorSet:
    assert state.best is not None
    found = contributions(optimizer.scorer, state.best, images.labels, images.truth)
    departures = DEPARTURES + logit_scale_departure(images.logit_scale_form)
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
        logit_scale_form=images.logit_scale_form,
        start=f"descriptor set (style {start.style})" if start is not None else "the LLM (initial prompt)",
        start_accuracy=start_accuracy,
        best_iteration=state.best_iteration,
        best_accuracy=state.best_accuracy,
        stopped=state.stopped,
        iterations=iterations,
        contributions=[DescriptorContribution(label=a, descriptor=b, contribution=c) for a, b, c in found],
        departures=departures,
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
        note=departures,
    )
    return DescriptorSet(
        style="optimized",
        labels=list(images.labels),
        descriptors=state.best,
        provenance=provenance,
        optimization=record,
    )
