"""Scoring explanations against the synthetic world's ground truth (toy-world numbers, not photos).

What is measured:

- **Rankings.** An explanation ranks items (concepts, parts, or (part, attribute) slots). The truth
  (:class:`WorldTruth`) says which items distinguish the labels: the world's distinguishing values, parts and slots.
  The rest are constant (``eye``, which every label has) or nuisances (``background``, every value of which every
  label has). :func:`score_ranking` gives precision@k and recall@k of the relevant items, with k = the number of
  relevant items (so precision@k = recall@k), and the ROC AUC (a relevant item outranks an irrelevant one). Ties at
  the k-th place count as an even random draw among the tied items (the expected value), so a method that leaves
  many concepts at zero (a sparse head) is neither helped nor hurt by the order ties happen to come in.
- **Per label**, a label's relevant concepts are its own values that not every label shares; its other items are
  its constant and nuisance concepts. Other labels' values are left out of its ranking (neither right nor wrong).
- **Interventions** (after FunnyBirds): the slot an image's explanation ranks first (by magnitude) is redrawn with
  a value another class has; so is the slot ranked last. A faithful explanation moves the prediction in the first
  case and keeps it in the second, and the first change lowers the probability of the prediction more
  (:class:`InterventionScore`).
- **The shortcut** (Clever Hans): :func:`shortcut_backgrounds` ties each label to a background, and
  :func:`item_weight` measures the background's rank and share of importance.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from conceptforest.world.descriptors import part_phrase
from conceptforest.world.render import Creature
from conceptforest.world.spec import NUISANCE_PART, AttributeKey, WorldSpec

if TYPE_CHECKING:
    import pandas as pd

    from conceptforest.concepts.tree import Concept, ConceptTree

__all__ = [
    "AIM",
    "LEVELS",
    "InterventionScore",
    "ItemWeight",
    "Level",
    "RankingScore",
    "RankingSummary",
    "Responses",
    "WorldTruth",
    "changeable_slots",
    "descriptor_grounding",
    "extreme_slots",
    "item_weight",
    "level_groups",
    "replacement_value",
    "score_ranking",
    "score_rows",
    "shortcut_backgrounds",
    "slot_name",
    "summarize",
]

Level = Literal["concept", "part", "slot"]
LEVELS: tuple[Level, ...] = ("concept", "part", "slot")
AIM = 0.9  # the aim for precision@k and intervention agreement


@dataclass(frozen=True)
class RankingScore:
    """precision@k and recall@k of the relevant items in one ranking, and its ROC AUC (None without both kinds)."""

    items: int
    relevant: int
    k: int
    precision: float
    recall: float
    auc: float | None

    @property
    def chance_precision(self) -> float:
        """The expected precision@k of a random ranking (any k)."""
        return self.relevant / self.items


def score_ranking(scores: Mapping[str, float], relevant: Collection[str], k: int | None = None) -> RankingScore:
    """Score one ranking (higher score = ranked higher; NaN ranks last) against the relevant items.

    ``k`` defaults to the number of relevant items. Every relevant item must be among the scored ones: an id that
    does not match is an error, not a miss.
    """
    names = list(scores)
    wanted = set(relevant)
    if not wanted or wanted - set(names):
        raise ValueError(f"relevant items missing from the ranking: {sorted(wanted - set(names)) or 'none given'}")
    k = len(wanted) if k is None else k
    if not 1 <= k <= len(names):
        raise ValueError(f"k must be between 1 and {len(names)}; got {k}")
    values = np.nan_to_num(np.array([scores[n] for n in names], dtype=float), nan=-np.inf)
    is_relevant = np.array([n in wanted for n in names])
    threshold = np.sort(values)[::-1][k - 1]
    above, tied = values > threshold, values == threshold
    hits = is_relevant[above].sum() + (k - above.sum()) * is_relevant[tied].mean()
    return RankingScore(
        items=len(names),
        relevant=len(wanted),
        k=k,
        precision=float(hits / k),
        recall=float(hits / len(wanted)),
        auc=_auc(values[is_relevant], values[~is_relevant]),
    )


def _auc(relevant: np.ndarray, other: np.ndarray) -> float | None:
    if not len(relevant) or not len(other):
        return None
    wins = (relevant[:, None] > other[None, :]).mean() + 0.5 * (relevant[:, None] == other[None, :]).mean()
    return float(wins)


@dataclass(frozen=True)
class RankingSummary:
    """Many rankings of one kind (one per label or per image): means, the worst, and the share at the aim."""

    rankings: int
    precision_mean: float
    precision_min: float
    recall_mean: float
    auc_mean: float | None
    chance_precision_mean: float
    share_meeting_aim: float

    def to_json(self) -> dict[str, float | int | None]:
        return {key: _rounded(value) for key, value in asdict(self).items()}


def summarize(scores: Sequence[RankingScore], aim: float = AIM) -> RankingSummary:
    """Means over rankings (the AUC over those that have one)."""
    if not scores:
        raise ValueError("no rankings to summarize")
    precision = np.array([s.precision for s in scores])
    aucs = [s.auc for s in scores if s.auc is not None]
    return RankingSummary(
        rankings=len(scores),
        precision_mean=float(precision.mean()),
        precision_min=float(precision.min()),
        recall_mean=float(np.mean([s.recall for s in scores])),
        auc_mean=float(np.mean(aucs)) if aucs else None,
        chance_precision_mean=float(np.mean([s.chance_precision for s in scores])),
        share_meeting_aim=float(np.mean(precision >= aim)),
    )


def score_rows(
    values: np.ndarray,
    names: Sequence[str],
    relevant: Sequence[Collection[str]],
    kept: Sequence[Collection[str]] | None = None,
) -> list[RankingScore]:
    """One ranking per row of ``values`` (rows x items, higher = more important), each against its own relevant
    set; ``kept`` limits each row's ranking to some items (e.g. the concepts of the label it explains)."""
    found = []
    for row, wanted in enumerate(relevant):
        keep = set(names) if kept is None else set(kept[row])
        scores = {name: float(values[row, i]) for i, name in enumerate(names) if name in keep}
        found.append(score_ranking(scores, wanted))
    return found


def _rounded(value: float | int | None) -> float | int | None:
    return round(value, 4) if isinstance(value, float) else value


# -- the truth ----------------------------------------------------------------------------------------------------


def slot_name(key: AttributeKey) -> str:
    """A slot as the roll-up names it (``concept_groups(..., "part_attribute")``): ``part:attribute``."""
    return f"{key.part}:{key.attribute}"


def level_groups(concepts: Sequence[Concept], level: Level) -> dict[str, list[str]]:
    """Concept ids grouped as the explanations group them: each concept alone, by part, or by slot."""
    from conceptforest.explain.importance import concept_groups

    if level == "concept":
        return {c.id: [c.id] for c in concepts}
    mappings = [asdict(c) for c in concepts]  # concept_groups reads mappings
    return concept_groups(mappings, "part" if level == "part" else "part_attribute")


@dataclass(frozen=True)
class WorldTruth:
    """Which items of the true tree distinguish the labels, at each level, and each label's own concepts."""

    concepts: frozenset[str]
    parts: frozenset[str]
    slots: frozenset[str]
    label_concepts: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, spec: WorldSpec, tree: ConceptTree) -> WorldTruth:
        """From the specification; the tree's concept ids must contain every distinguishing concept."""
        varying = [key for key in spec.slots() if len({c.value(key) for c in spec.classes}) > 1]
        concepts = frozenset(spec.distinguishing_concepts())
        ids = {c.id for c in tree.concepts()}
        if concepts - ids:
            raise ValueError(f"the tree lacks distinguishing concepts {sorted(concepts - ids)}")
        own = {label: frozenset(c.id for c in tree.concepts() if label in c.labels) for label in tree.labels}
        return cls(concepts, frozenset(k.part for k in varying), frozenset(map(slot_name, varying)), own)

    def relevant(self, level: Level, label: str | None = None) -> frozenset[str]:
        """The truly distinguishing items; for a label at concept level, its own values that not every label has."""
        found = {"concept": self.concepts, "part": self.parts, "slot": self.slots}[level]
        return found & self.label_concepts[label] if level == "concept" and label is not None else found

    def items_of(self, level: Level, label: str, every_item: Collection[str]) -> frozenset[str]:
        """The items a label's ranking holds: its own concepts at concept level, every part or slot otherwise."""
        return self.label_concepts[label] if level == "concept" else frozenset(every_item)


# -- interventions ------------------------------------------------------------------------------------------------


def changeable_slots(spec: WorldSpec) -> list[AttributeKey]:
    """The slots an intervention can change: every slot with more than one value (the constant ``eye`` has one)."""
    return [key for key in spec.all_slots() if len(spec.values(key)) > 1]


def replacement_value(spec: WorldSpec, creature: Creature, key: AttributeKey, rng: np.random.Generator) -> str:
    """A value for ``key`` that another class has and this creature does not (any other background for the
    nuisance, which every class has), drawn at random."""
    current = creature.values[key]
    if key.part == NUISANCE_PART:
        pool = [v for v in spec.values(key) if v != current]
    else:
        pool = sorted({c.value(key) for c in spec.classes if c.name != creature.label} - {current})
    if not pool:
        raise ValueError(f"no other class has another value of {key}")
    return pool[int(rng.integers(len(pool)))]


def extreme_slots(scores: Mapping[AttributeKey, float], rng: np.random.Generator) -> tuple[AttributeKey, AttributeKey]:
    """The slots with the largest and the smallest |score| (ties broken at random)."""
    keys = list(scores)
    magnitude = np.abs(np.array([scores[k] for k in keys], dtype=float))
    top = np.flatnonzero(magnitude == magnitude.max())
    bottom = np.flatnonzero(magnitude == magnitude.min())
    return keys[int(rng.choice(top))], keys[int(rng.choice(bottom))]


@dataclass(frozen=True)
class Responses:
    """A model's answers on a set of images: each label, and the probability it gives the label it predicted for
    the original image (the same label as ``labels`` on the originals themselves)."""

    labels: Sequence[str]
    original_probability: Sequence[float]


@dataclass(frozen=True)
class InterventionScore:
    """How predictions respond when an image's first- and last-ranked slots are changed.

    ``first_moves``: share of images whose prediction changes when the first-ranked slot changes;
    ``last_stays``: share whose prediction stays when the last-ranked slot changes; ``agreement``: share where both
    hold. ``*_drop``: mean drop in the probability of the original prediction; ``first_over_last``: share of
    images where the first-ranked change lowers it more than the last-ranked change (ties count half).
    ``random_*`` is the baseline (a slot drawn at random, not from the explanation) and ``rerender_same`` the
    control (the unchanged creature drawn again predicts as the original image did).
    """

    images: int
    first_moves: float
    last_stays: float
    agreement: float
    random_moves: float
    first_drop: float
    last_drop: float
    random_drop: float
    first_over_last: float
    rerender_same: float

    @classmethod
    def from_responses(
        cls, original: Responses, first: Responses, last: Responses, random: Responses, rerendered: Responses
    ) -> InterventionScore:
        base = np.asarray(original.labels, dtype=object)
        moves = base != np.asarray(first.labels, dtype=object)
        stays = base == np.asarray(last.labels, dtype=object)
        kept = np.asarray(original.original_probability, dtype=float)
        drops = {
            name: kept - np.asarray(answers.original_probability, dtype=float)
            for name, answers in (("first", first), ("last", last), ("random", random))
        }
        return cls(
            images=len(base),
            first_moves=float(moves.mean()),
            last_stays=float(stays.mean()),
            agreement=float((moves & stays).mean()),
            random_moves=float((base != np.asarray(random.labels, dtype=object)).mean()),
            first_drop=float(drops["first"].mean()),
            last_drop=float(drops["last"].mean()),
            random_drop=float(drops["random"].mean()),
            first_over_last=float(np.mean((drops["first"] > drops["last"]) + 0.5 * (drops["first"] == drops["last"]))),
            rerender_same=float((base == np.asarray(rerendered.labels, dtype=object)).mean()),
        )

    def to_json(self) -> dict[str, float | int | None]:
        return {key: _rounded(value) for key, value in asdict(self).items()}


# -- the shortcut and the nuisance's weight -----------------------------------------------------------------------


def _slot_distance(spec: WorldSpec, a: str, b: str) -> int:
    one, other = spec.world_class(a), spec.world_class(b)
    return sum(one.value(key) != other.value(key) for key in spec.slots())


def shortcut_backgrounds(spec: WorldSpec) -> dict[str, str]:
    """Tie every label to one background so that the background helps: each background goes to an equal share
    of the labels, and each label (in spec order) takes the background least used among its nearest classes (the
    fewest differing slots), then the least used overall. The background then separates exactly the classes the
    parts separate least; with 30 labels and 5 backgrounds it never names a label alone."""
    backgrounds = spec.nuisances[NUISANCE_PART]
    capacity = math.ceil(len(spec.labels) / len(backgrounds))
    tied: dict[str, str] = {}
    used: Counter[str] = Counter()
    for label in spec.labels:
        others = [other for other in spec.labels if other != label]
        nearest = min(_slot_distance(spec, label, other) for other in others)
        near = Counter(tied[o] for o in others if o in tied and _slot_distance(spec, label, o) == nearest)
        free = [b for b in backgrounds if used[b] < capacity]
        choice = min(free, key=lambda b: (near[b], used[b], backgrounds.index(b)))
        tied[label] = choice
        used[choice] += 1
    return tied


@dataclass(frozen=True)
class ItemWeight:
    """One item's place in a ranking: its rank (1 = first) among ``items`` and its share of the positive weight."""

    rank: int
    items: int
    share: float


def item_weight(scores: Mapping[str, float], item: str) -> ItemWeight:
    """The rank (ties: the best place) and the share of the summed positive scores that ``item`` holds."""
    values = {name: float(value) for name, value in scores.items()}
    positive = sum(max(v, 0.0) for v in values.values())
    rank = 1 + sum(v > values[item] for v in values.values())
    share = max(values[item], 0.0) / positive if positive > 0 else 0.0
    return ItemWeight(rank=rank, items=len(values), share=share)


# -- DCLIP's per-descriptor scores --------------------------------------------------------------------------------


def _phrases(spec: WorldSpec) -> dict[str, tuple[AttributeKey, str]]:
    table = {part_phrase(key.part, value): (key, value) for key in spec.slots() for value in spec.values(key)}
    if len(table) != sum(len(spec.values(key)) for key in spec.slots()):
        raise ValueError("two part values of the world share one descriptor phrase")
    return table


def descriptor_grounding(evidence: pd.DataFrame, creatures: Sequence[Creature], spec: WorldSpec) -> RankingSummary:
    """DCLIP's per-image evidence (``row, label, item, score``: every descriptor of the image's top two labels)
    ranked against what the image shows: a descriptor is relevant when the creature has that part value.

    Images whose listed descriptors are all true (or all false) have nothing to rank and are left out."""
    phrases = _phrases(spec)
    scores = []
    for row, group in evidence.groupby("row", sort=True):
        creature = creatures[int(row)]
        rows = group[["label", "item", "score"]].itertuples(index=False)
        named = {f"{label}: {item}": (str(item), float(score)) for label, item, score in rows}
        shown = {name for name, (item, _) in named.items() if _shows(creature, phrases[item])}
        if shown and len(shown) < len(named):
            scores.append(score_ranking({name: score for name, (_, score) in named.items()}, shown))
    return summarize(scores)


def _shows(creature: Creature, slot_value: tuple[AttributeKey, str]) -> bool:
    key, value = slot_value
    return creature.values.get(key) == value
