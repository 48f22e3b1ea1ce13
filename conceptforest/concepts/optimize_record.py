"""What an optimisation with visual feedback did: stored inside the optimised :class:`DescriptorSet`.

The record travels with the descriptors it produced (one file, so the two can never be separated): the images it
used (by sha256), every iteration's candidates and their accuracy on those images, the set kept, what changed per
label, the confusions fed back, and each kept descriptor's contribution. The report draws its plots from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "CandidateRecord",
    "DescriptorContribution",
    "IterationRecord",
    "LabelChange",
    "LogitScaleForm",
    "OptimizationRecord",
]

# Which form of CLIP's ``logit_scale`` parameter multiplies the cosines: "raw", the parameter itself (ln 100 = 4.605
# for released CLIP weights), as the authors' utils.py does; or "exp", its exponential (100), as CLIP's training does.
LogitScaleForm = Literal["raw", "exp"]


class CandidateRecord(BaseModel):
    """One sampled rewrite of one group's descriptors, or the crossover of the samples (``kind``)."""

    group: int
    candidate: int
    kind: Literal["sample", "crossover"] = "sample"
    accuracy: float | None = None  # on the group's own images; None when the answer was unusable
    error: str = ""
    cached: bool = False
    tokens: int = 0
    omitted: list[str] = Field(default_factory=list)  # labels the answer left out: they kept their descriptors


class LabelChange(BaseModel):
    """Descriptors a label gained and lost in one iteration."""

    label: str
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)


class IterationRecord(BaseModel):
    """One pass over every group of labels."""

    iteration: int
    prompt: Literal["initial", "mutation"]
    groups: list[list[str]]
    feedback: list[str]  # the confusion text sent for each group, in group order
    candidates: list[CandidateRecord]
    train_accuracy: float  # of the current set after this iteration (it may drop), on all the images used
    best_accuracy: float  # the best set so far (never lower than the iteration before)
    changes: list[LabelChange]
    helpful: dict[str, list[str]] = Field(default_factory=dict)  # the word banks after this iteration
    harmful: dict[str, list[str]] = Field(default_factory=dict)
    tokens: int = 0
    failed_groups: list[str] = Field(default_factory=list)  # groups whose every request failed: they kept their set


class DescriptorContribution(BaseModel):
    """How much one kept descriptor helps: the mean drop in log-probability of the true label over the images used
    when the descriptor is left out of its label (positive: it helps)."""

    label: str
    descriptor: str
    contribution: float


class OptimizationRecord(BaseModel):
    """The settings, the images and the history of one optimisation."""

    method: str = "iterative optimisation with visual feedback (Han et al., 'LLMs as Visual Explainers')"
    backbone_id: str
    image_sha256: list[str]  # every image used, sorted; the methods refuse to score these images
    images_per_label: dict[str, int]
    shots: int
    draw_seed: int = 0
    iterations_asked: int
    candidates: int
    replace: int
    initial_descriptors: int
    group_size: int
    seed: int
    logit_scale: float  # the number the cosines were multiplied by, for the confusions and the contributions
    logit_scale_form: LogitScaleForm = "exp"  # records written before this field used exp(logit_scale)
    start: str
    start_accuracy: float | None = None
    best_iteration: int = 0
    best_accuracy: float = 0.0
    stopped: str = ""
    iterations: list[IterationRecord] = Field(default_factory=list)
    contributions: list[DescriptorContribution] = Field(default_factory=list)
    departures: str = ""
