"""Faithfulness of every explanation the tool offers, scored against the synthetic creature world's ground truth.

Toy-world numbers: a small CLIP trained on a synthetic world of 2D creatures. They show whether the explanations
behave correctly when the model really sees the parts; they say nothing about photos.

1. A world data set (train and test images of the 30 classes, random backgrounds) goes through the stages with the
   true concept tree: extract_features -> train_model (the concept forest) -> the explanations. Scored against the
   truth (conceptforest.world.faithfulness): permutation importance (single concepts, and grouped by part and by
   (part, attribute) slot), Gini, SHAP (global, per label, per image) and the sparse head's weights (global, per
   label, per image): precision@k and recall@k (k = number of relevant items) and ROC AUC. DCLIP with the true
   descriptors: its per-image descriptor scores against what each image shows (the true set holds no constant or
   nuisance descriptor, so ranking it against nuisances would score 1 by construction).
2. Interventions: for test images, the slot ranked first and the slot ranked last by the per-image explanation
   (SHAP for the forest, weight x standardised score for the sparse head) are redrawn with another class's value,
   and the new images are scored by the same feature extraction and predicted by the same model: how often the
   prediction moves (first) and stays (last), and how far the probability of the original prediction drops.
3. Clever Hans: a forest trained where the background is tied to the label (conceptforest.world.faithfulness.
   shortcut_backgrounds), explained on tied test images, evaluated on untied ones.

The baseline, measured in the same run: a random ranking (mean over draws; its expectation is
``chance_precision``) and a random slot's intervention (``random_moves``). Prints one JSON object to stdout,
progress to stderr.

    python benchmarks/faithfulness.py                       # default sizes: 1-2 minutes on 2 CPU cores
    python benchmarks/faithfulness.py --quick               # small sizes (the test's)
    python benchmarks/faithfulness.py --clip local-dir:/tmp/wc_trial
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from conceptforest.world.faithfulness import AIM, LEVELS, RankingScore, RankingSummary, score_ranking, summarize
from conceptforest.world.faithfulness_checks import ShortcutResult, intervention_scores, shortcut_check
from conceptforest.world.faithfulness_run import Settings, WorldRun, explanation_scores, train_world
from conceptforest.world.spec import load_world

NOTE = (
    "Toy-world numbers: a small CLIP trained on a synthetic world of 2D creatures, with the world's true concept "
    "tree. They show whether the explanations behave correctly when the model really sees the parts; they say "
    "nothing about photos."
)
TRUTH = {
    "global": "relevant: the values, parts and (part, attribute) slots that differ between classes; the others: "
    "the constant part 'eye' (every label) and the nuisance 'background' (every value in every label)",
    "per_label": "relevant: the label's own values that not every label shares (at part and slot level: the "
    "distinguishing parts and slots); ranked against the label's constant and nuisance concepts; other labels' "
    "values are left out of its ranking",
    "per_image": "the per-label truth of the image's predicted label, ranked by |contribution| to that label",
    "k": "the number of relevant items, so precision@k = recall@k; ties at the k-th place count as a random draw",
    "slot": "a (part, attribute) pair, as the report's roll-up groups 'part_attribute' (attribute kinds across "
    "parts, the roll-up's third level, mix 'eye' and 'background' colour with body colour and are not scored)",
}
METHODS = {
    "permutation": "permutation_table: accuracy drop when one concept is permuted (the forest, test rows)",
    "grouped permutation": "group_permutation_table: all concepts of a part or slot permuted together",
    "gini": "gini_table: the forest's mean decrease in impurity (train rows), summed over a group's concepts",
    "shap": "explain_shap (exact Tree SHAP) on the test rows: global = mean |SHAP| summed over labels; per label = "
    "the label's mean |SHAP| (as the report shades its tree); per image = |SHAP| for the predicted label; groups "
    "summed before the absolute value (ConceptShap.grouped)",
    "sparse head": "SparseConceptHead (the 'sparse' method's estimator, NEC about 5) on the train rows: global = "
    "|weight| summed over labels; per label = |weight|; per image = |weight x standardised score| for its "
    "predicted label; groups summed",
    "dclip": "the 'dclip' method with the world's true DCLIP descriptors (conceptforest.world.descriptors)",
}
AIMED = ("grouped permutation", "shap")  # the aim: grouped importances and SHAP; interventions too
RANDOM_DRAWS = 1000


def parse(argv: Sequence[str] | None) -> tuple[Settings, Path | None]:
    """Settings from the flags; ``--quick`` changes the defaults, so explicit sizes still win over it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = Settings().quick() if "--quick" in argv else Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--per-label", type=int, default=defaults.per_label, help="training images per class")
    parser.add_argument("--test-per-label", type=int, default=defaults.test_per_label, help="test images per class")
    parser.add_argument("--images", type=int, default=defaults.images, help="test images intervened on")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--trees", type=int, default=defaults.trees, help="forest size (the pipeline's default)")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="permutation repeats")
    parser.add_argument("--shortcut-rate", type=float, default=defaults.shortcut_rate, help="share of tied images")
    parser.add_argument("--clip", default=defaults.clip, help="the world CLIP: a name or local-dir:FOLDER")
    parser.add_argument("--work", type=Path, default=None, help="keep images and runs here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="small defaults: 8/4 images per class, 30 intervened")
    args = parser.parse_args(argv)
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)}), args.work


def say(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


def rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def ranking_entry(method: str, level: str, score: RankingScore) -> dict[str, Any]:
    return {
        "method": method,
        "level": level,
        "items": score.items,
        "relevant": score.relevant,
        "k": score.k,
        "precision_at_k": rounded(score.precision),
        "recall_at_k": rounded(score.recall),
        "auc": rounded(score.auc),
        "chance_precision": rounded(score.chance_precision),
        "aim_applies": method in AIMED,
        "meets_aim": score.precision >= AIM,
    }


def summary_entry(method: str, level: str, summary: RankingSummary) -> dict[str, Any]:
    return {
        "method": method,
        "level": level,
        **summary.to_json(),
        "aim_applies": method in AIMED,
        "meets_aim": summary.precision_mean >= AIM,
    }


def random_baseline(run: WorldRun, seed: int) -> dict[str, float]:
    """Mean precision@k of uniformly random scores over each level's global items (measured, not the formula)."""
    rng = np.random.default_rng(seed)
    measured = {}
    for level in LEVELS:
        items, wanted = list(run.groups[level]), run.truth.relevant(level)
        draws = [
            score_ranking(dict(zip(items, rng.random(len(items)), strict=True)), wanted) for _ in range(RANDOM_DRAWS)
        ]
        measured[level] = round(summarize(draws).precision_mean, 4)
    return measured


def shortcut_json(result: ShortcutResult) -> dict[str, Any]:
    labels, backgrounds = len(result.backgrounds), len(set(result.backgrounds.values()))
    return {
        "tie": f"each background tied to about {labels // max(1, backgrounds)} of the {labels} labels; each "
        "label takes the background least used among its nearest classes (fewest differing slots), so the "
        "background separates the classes the parts separate least; training and the explained test images tied, "
        "the evaluated test images untied (the clean run's)",
        "rate": result.rate,
        "backgrounds": result.backgrounds,
        "accuracy": {
            "clean_forest_untied_test": round(result.accuracy_clean_untied, 4),
            "shortcut_forest_tied_test": round(result.accuracy_shortcut_tied, 4),
            "shortcut_forest_untied_test": round(result.accuracy_shortcut_untied, 4),
            "drop_vs_clean_forest": round(result.accuracy_clean_untied - result.accuracy_shortcut_untied, 4),
        },
        "background_part": {
            method: {
                "clean": {key: rounded(v) for key, v in asdict(result.background_clean[method]).items()},
                "shortcut": {key: rounded(v) for key, v in asdict(weight).items()},
            }
            for method, weight in result.background_shortcut.items()
        },
        "finding": {
            "rule": "the report's warning (explain/shortcuts.py): a part the tree gives every label (eye, background) "
            "whose grouped permutation interval lies above zero and whose drop is worth at least two images",
            "fired_clean": result.finding_clean is not None,
            "fired_shortcut": result.finding_shortcut is not None,
            "sentence_clean": result.finding_clean,
            "sentence_shortcut": result.finding_shortcut,
        },
    }


def short_of_aim(result: dict[str, Any]) -> list[str]:
    """Every aimed score that misses the aim, named ``section: method/level``."""
    missed = [
        f"{section}: {entry['method']}/{entry['level']}"
        for section in ("global", "per_label", "per_image")
        for entry in result[section]
        if entry["aim_applies"] and not entry["meets_aim"]
    ]
    return missed + [f"interventions: {e['method']}" for e in result["interventions"] if not e["meets_aim"]]


def measure(settings: Settings, work: Path, started: float) -> dict[str, Any]:
    def progress(message: str) -> None:
        say(message, started)

    run = train_world(load_world(), work, settings, progress)
    scores = explanation_scores(run, settings, progress)
    interventions, constant_first = intervention_scores(run, settings, progress)
    clever_hans = shortcut_check(run, settings, progress)
    result: dict[str, Any] = {
        "benchmark": "faithfulness",
        "note": NOTE,
        "backbone_id": run.matrix.backbone_id,
        "synthetic_world": run.matrix.synthetic_world,
        "random_weights": run.matrix.random_weights,
        "settings": asdict(settings),
        "images": {"train": len(run.matrix.rows("train")), "test": len(run.matrix.rows("test"))},
        "accuracy_test": {name: round(value, 4) for name, value in scores.accuracy.items()},
        "aim": {"precision_at_k": AIM, "intervention_agreement": AIM, "applies_to": [*AIMED, "interventions"]},
        "truth": TRUTH,
        "methods": METHODS,
        "global": [ranking_entry(m, level, s) for (m, level), s in scores.global_scores.items()],
        "per_label": [summary_entry(m, level, s) for (m, level), s in scores.per_label.items()],
        "per_image": [summary_entry(m, level, s) for (m, level), s in scores.per_image.items()],
        "dclip_descriptor_grounding": {
            "truth": "per image, the descriptors of DCLIP's top two labels ranked by their scores; relevant: the "
            "descriptors the image shows (the true set has no constant or nuisance descriptor to rank against)",
            **scores.dclip.to_json(),
        },
        "interventions": [
            {
                "method": method,
                "explains": "forest" if method == "shap" else "sparse head",
                **score.to_json(),
                "constant_slot_ranked_first": constant_first[method],
                "aim_applies": True,
                "meets_aim": score.agreement >= AIM,
            }
            for method, score in interventions.items()
        ],
        "clever_hans": shortcut_json(clever_hans),
        "baseline": {
            "random_ranking_precision_at_k": random_baseline(run, settings.seed),
            "random_slot_moves": {method: round(score.random_moves, 4) for method, score in interventions.items()},
        },
    }
    result["short_of_aim"] = short_of_aim(result)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the JSON."""
    settings, work = parse(argv)
    started = time.perf_counter()
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        result = measure(settings, work, started)
    else:
        with tempfile.TemporaryDirectory(prefix="faithfulness-") as tmp:
            result = measure(settings, Path(tmp), started)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
