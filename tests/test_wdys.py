"""WDYS fusion: the authors' formula, exact explanations, the ablation, shortening and vision-LLM errors.

A fake vision LLM looks at the made-up shape images (the colour of their saturated pixels) and answers with a
description and a guess naming the colour and shape; no server, no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from conceptforest.cli import app
from conceptforest.cli._common import WDYS_CLASS_WEIGHTS
from conceptforest.concepts.descriptors import DescriptorSet
from conceptforest.errors import BadInputError
from conceptforest.features.backbone import Backbone, load_backbone
from conceptforest.features.matrix import FeatureMatrix
from conceptforest.features.store import EmbeddingStore
from conceptforest.features.synthetic import SHAPES, demo_descriptor_sets, make_shape_images
from conceptforest.llm.vision_types import VisionAnswer
from conceptforest.models.methods.base import MethodInputs, MethodResult, NotComputed, run_methods
from conceptforest.models.methods.wdys import (
    CHAR_STEP,
    CHAR_THRESHOLD,
    DESCRIBE_PROMPT,
    MAX_WORDS,
    PHOTO_PROMPT,
    WdysClassWeight,
    answer_parts,
    ask_wdys,
    clip_text_fits,
    guess_prompt,
    run_wdys,
    shorten_for_clip,
    wdys_ablation,
)

LABELS = list(SHAPES)


class FakeVision:
    """A VisionLLM that sees the dominant saturated colour of an image and names the matching shape."""

    model = "fake-vision"

    def __init__(self, fail: Sequence[str] = (), long_description: bool = False) -> None:
        self.fail = set(fail)
        self.long_description = long_description
        self.calls: list[tuple[str, str, float]] = []

    def look(self, path: Path) -> str:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).reshape(-1, 3)
        vivid = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 80]
        mean = vivid.mean(axis=0) if len(vivid) else pixels.mean(axis=0)
        return min(SHAPES, key=lambda label: float(np.linalg.norm(np.subtract(SHAPES[label][1], mean))))

    def ask(
        self,
        images: Sequence[Path],
        prompt: str,
        *,
        step: str,
        temperature: float = 0.0,
        choices: Sequence[str] | None = None,
        progress: bool = False,
    ) -> list[VisionAnswer]:
        self.calls.append((step, prompt, temperature))
        answers = []
        for path in images:
            if path.name in self.fail and step.endswith("describe"):
                answers.append(VisionAnswer(sha256="0" * 64, text="", error="the server refused"))
                continue
            seen = self.look(path)
            colour, kind = seen.split()
            if prompt == DESCRIBE_PROMPT:
                text = f"I see {colour} {kind} shapes on a pale background."
                text = " ".join([text] * 40) if self.long_description else text
            else:
                text = seen.capitalize() + "."  # loose casing and punctuation
            answers.append(VisionAnswer(sha256="0" * 64, text=text, tokens=7))
        return answers


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone("conceptforest-tiny-random", device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shape_images(tmp_path_factory.mktemp("shapes"), per_label=6, size=48)


def shape_matrix(root: Path) -> FeatureMatrix:
    paths = sorted(root.rglob("*.png"))
    frame = pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "label": [p.parent.name for p in paths],
            "split": ["test" if i % 3 else "train" for i in range(len(paths))],
            "sha256": [f"{i:064x}" for i in range(len(paths))],
            "shape:kind=any": 0.0,
        }
    )
    concepts = [{"id": "shape:kind=any", "sentence": "a shape", "labels": LABELS}]
    meta = {"labels": LABELS, "concepts": concepts, "backbone_id": "made-up", "tree_hash": "abc"}
    return FeatureMatrix(frame=frame, meta=meta)  # type: ignore[arg-type]


def make_inputs(
    backbone: Backbone,
    images: Path,
    tmp_path: Path,
    *,
    vision: FakeVision | None,
    seed: int = 0,
    styles: Sequence[str] = ("cupl",),
    class_weight: WdysClassWeight | None = None,
) -> MethodInputs:
    matrix = shape_matrix(images)
    rows = np.random.default_rng(seed).normal(size=(len(matrix.frame), backbone.embed_dim)).astype(np.float32)
    sets: dict[str, DescriptorSet] = {s.style: s for s in demo_descriptor_sets() if s.style in styles}
    return MethodInputs(
        matrix=matrix,
        backbone=backbone,
        embeddings=rows / np.linalg.norm(rows, axis=1, keepdims=True),
        text_store=EmbeddingStore(tmp_path, backbone.backbone_id, "texts"),
        descriptors=sets,
        vision_llm=vision,
        wdys_class_weight=class_weight,
    )


def unit(rows: np.ndarray) -> np.ndarray:
    normalised: np.ndarray = rows / np.linalg.norm(rows, axis=-1, keepdims=True)
    return normalised


def test_query_and_weights_follow_the_formula(backbone: Backbone, images: Path, tmp_path: Path) -> None:
    vision = FakeVision()
    inputs = make_inputs(backbone, images, tmp_path, vision=vision, class_weight=WdysClassWeight.SUM)
    result = run_wdys(inputs).result
    assert [c[0] for c in vision.calls] == ["wdys-describe", "wdys-guess"]
    assert vision.calls[0][2] == 0.0 and vision.calls[1][2] == 0.3
    assert vision.calls[1][1] == guess_prompt(LABELS) and vision.calls[1][1].endswith(
        "red disc, blue tile, green wedge, yellow star, purple ring"
    )

    def enc(texts: list[str]) -> np.ndarray:
        return unit(backbone.encode_texts(texts).astype(np.float64))

    cupl = next(s for s in demo_descriptor_sets() if s.style == "cupl")
    weights = unit(
        enc(LABELS)
        + enc([f"A photo of {label}" for label in LABELS])
        + np.stack([enc(cupl.sentences(label)).mean(axis=0) for label in LABELS])
    )
    paths = [Path(p) for p in inputs.matrix.frame["path"][inputs.split_mask]]
    seen = [vision.look(p) for p in paths]
    descriptions = enc([f"I see {s.split()[0]} {s.split()[1]} shapes on a pale background." for s in seen])
    guesses = enc([s.capitalize() + "." for s in seen])
    query = unit(unit(inputs.image_embeddings().astype(np.float64)) + descriptions + guesses)
    np.testing.assert_allclose(result.scores, query @ weights.T, atol=1e-5)
    assert result.tokens == 2 * 7 * len(paths)
    assert "cupl" in result.note and "0 text(s) shortened" in result.note


def test_explanation_contributions_sum_to_the_logits(backbone: Backbone, images: Path, tmp_path: Path) -> None:
    result = run_wdys(make_inputs(backbone, images, tmp_path, vision=FakeVision())).result
    frame = result.explanations
    assert frame is not None and list(frame.columns) == ["row", "label", "item", "score"]
    labels = list(result.labels)
    for (row, label), group in frame.groupby(["row", "label"]):
        assert len(group) == 3
        assert group["item"].iloc[0] == "image"
        assert group["item"].iloc[1].startswith("description: I see ")
        assert group["item"].iloc[2].startswith("guess: ")
        assert group["score"].sum() == pytest.approx(result.scores[int(row), labels.index(str(label))], abs=1e-6)
    ranked = np.argsort(-result.scores, axis=1)[:, :2]
    for row in range(len(result.scores)):  # the chosen label and the runner-up, in that order
        chosen = frame[frame["row"] == row]["label"].drop_duplicates().tolist()
        assert chosen == [labels[i] for i in ranked[row]]


def test_ablation_rows_and_guess_beats_image_only(backbone: Backbone, images: Path, tmp_path: Path) -> None:
    # Robust for any weights: the guess names the label's words, and the label-name embedding is one of the three
    # parts of its class weight, while random image embeddings carry no information (checked over 20 seeds with
    # this tiny random backbone: image + guess >= 0.62, image only <= 0.28 at 40 images).
    for seed in range(3):
        inputs = make_inputs(backbone, images, tmp_path, vision=FakeVision(), seed=seed)
        run = run_wdys(inputs)
        table = run.ablation
        assert table["query"].tolist() == [
            "image",
            "image + description",
            "image + guess",
            "image + description + guess",
        ]
        truth = inputs.matrix.frame["label"][inputs.split_mask].to_numpy()
        zero_shot = np.asarray(LABELS, dtype=object)[np.argmax(inputs.image_embeddings() @ run.weights.T, axis=1)]
        assert table["accuracy"].iloc[0] == pytest.approx(float(np.mean(zero_shot == truth)))
        all_three = float(np.mean(run.result.predicted == truth))
        assert table["accuracy"].iloc[3] == pytest.approx(all_three)
        assert table["accuracy"].iloc[2] > table["accuracy"].iloc[0]
        assert table.equals(wdys_ablation(inputs, run.answers))


def test_shortening_follows_the_authors_rule() -> None:
    def fits_100(text: str) -> bool:
        return len(text) <= 100

    long_words = " ".join(["word"] * 300)
    cut, was_cut = shorten_for_clip(long_words, fits_100)
    assert was_cut and cut == long_words[:100]  # 100 words, then 200, 150, 100 characters
    assert shorten_for_clip("short", fits_100) == ("short", False)
    seen: list[str] = []

    def record(text: str) -> bool:
        seen.append(text)
        return len(text) <= 10

    shorten_for_clip(" ".join(["ab"] * (MAX_WORDS + 50)), record)
    assert len(seen[1].split()) == MAX_WORDS
    # 150 words -> 100 words, then 200, 150, 100, 50 and 0 characters: their loop lowers the threshold first
    assert [len(t) for t in seen[2:]] == [CHAR_THRESHOLD - k * CHAR_STEP for k in range(1, 6)]


def test_long_descriptions_are_shortened_and_counted(backbone: Backbone, images: Path, tmp_path: Path) -> None:
    inputs = make_inputs(backbone, images, tmp_path, vision=FakeVision(long_description=True))
    fits = clip_text_fits(backbone.tokenizer)
    parts = answer_parts(inputs, ask_wdys(inputs))
    texts = [t for t in parts.texts["description"] if t is not None]
    assert texts and all(fits(t) for t in texts) and all(len(t) <= CHAR_THRESHOLD for t in texts)
    assert parts.shortened == len(texts)
    assert f"{len(texts)} text(s) shortened" in run_wdys(inputs).result.note


def test_errors_are_left_out_per_image(backbone: Backbone, images: Path, tmp_path: Path) -> None:
    inputs = make_inputs(backbone, images, tmp_path, vision=FakeVision(fail=["0001.png"]))  # one per label
    run = run_wdys(inputs)
    parts = answer_parts(inputs, run.answers)
    bad = [i for i, error in enumerate(parts.errors["description"]) if error is not None]
    names = [Path(p).name for p in inputs.matrix.frame["path"][inputs.split_mask]]
    assert bad == [i for i, name in enumerate(names) if name == "0001.png"] and len(bad) > 1
    assert all(parts.texts["description"][i] is None for i in bad) and None not in parts.texts["guess"]
    assert not parts.vectors["description"][bad].any()
    assert f"{len(bad)} description(s)" in run.result.note
    frame = run.result.explanations
    assert frame is not None
    left = frame[frame["item"].str.startswith("description (left out: the server refused")]
    assert set(left["row"]) == set(bad) and (left["score"] == 0).all()
    assert np.isfinite(run.result.scores).all()


def test_without_descriptor_set_the_note_says_so(backbone: Backbone, images: Path, tmp_path: Path) -> None:
    result = run_wdys(make_inputs(backbone, images, tmp_path, vision=FakeVision(), styles=())).result
    assert "no description set given" in result.note
    dclip = run_wdys(make_inputs(backbone, images, tmp_path, vision=FakeVision(), styles=("dclip",))).result
    assert "dclip descriptions" in dclip.note


def test_without_vision_llm_not_computed(backbone: Backbone, images: Path, tmp_path: Path) -> None:
    inputs = make_inputs(backbone, images, tmp_path, vision=None)
    (outcome,) = run_methods(inputs, ["wdys"])
    assert isinstance(outcome, NotComputed) and "--mllm" in outcome.hint
    (done,) = run_methods(make_inputs(backbone, images, tmp_path, vision=FakeVision()), ["wdys"])
    assert isinstance(done, MethodResult) and done.uses_label_names


# -- the class weight: the authors' three runnable configurations and our three-part sum ---------------------------


def weight_texts(backbone: Backbone, style: str = "cupl") -> dict[str, np.ndarray]:
    """The normalised label-name and photo-prompt embeddings and the mean description embedding, per label."""

    def enc(texts: list[str]) -> np.ndarray:
        return unit(backbone.encode_texts(texts).astype(np.float64))

    described = next(s for s in demo_descriptor_sets() if s.style == style)
    return {
        "name": enc(LABELS),
        "photo": enc([PHOTO_PROMPT.format(label=label) for label in LABELS]),
        "descriptions": np.stack([enc(described.sentences(label)).mean(axis=0) for label in LABELS]),
    }


EXPECTED_PARTS = {
    WdysClassWeight.DESCRIPTIONS: ("descriptions",),  # their README: --use_class_descriptions
    WdysClassWeight.CLASS_NAME: ("name",),  # --use_class_name
    WdysClassWeight.PHOTO: ("name", "photo"),  # --use_a_photo_of turns 'class_name' on by substring match
    WdysClassWeight.SUM: ("name", "photo", "descriptions"),  # ours
}


@pytest.mark.parametrize("choice", list(WdysClassWeight))
def test_each_configuration_builds_its_class_weight(
    choice: WdysClassWeight, backbone: Backbone, images: Path, tmp_path: Path
) -> None:
    texts = weight_texts(backbone)
    inputs = make_inputs(backbone, images, tmp_path, vision=FakeVision(), class_weight=choice)
    run = run_wdys(inputs)
    expected = unit(sum((texts[part] for part in EXPECTED_PARTS[choice]), start=np.zeros_like(texts["name"])))
    np.testing.assert_allclose(run.weights, expected, atol=1e-6)
    assert run.class_weight is choice
    assert f"class weight: {choice.value} " in run.result.note
    # the ablation scores every query against the method's own class weight, and names it: its last row (all
    # three parts) is the method's accuracy, its first zero-shot CLIP against that weight
    assert run.ablation["class weight"].tolist() == [choice.value] * 4
    truth = inputs.matrix.frame["label"][inputs.split_mask].to_numpy()
    assert run.ablation["accuracy"].iloc[3] == pytest.approx(float(np.mean(run.result.predicted == truth)))
    zero_shot = np.asarray(LABELS, dtype=object)[np.argmax(inputs.image_embeddings() @ expected.T, axis=1)]
    assert run.ablation["accuracy"].iloc[0] == pytest.approx(float(np.mean(zero_shot == truth)))


def test_default_is_descriptions_only_when_a_set_is_given(backbone: Backbone, images: Path, tmp_path: Path) -> None:
    run = run_wdys(make_inputs(backbone, images, tmp_path, vision=FakeVision(), styles=("cupl",)))
    assert run.class_weight is WdysClassWeight.DESCRIPTIONS
    np.testing.assert_allclose(run.weights, unit(weight_texts(backbone)["descriptions"]), atol=1e-6)
    assert "class weight: descriptions (the authors' README configuration" in run.result.note
    # the default for dclip sentences too
    dclip = run_wdys(make_inputs(backbone, images, tmp_path, vision=FakeVision(), styles=("dclip",)))
    np.testing.assert_allclose(dclip.weights, unit(weight_texts(backbone, "dclip")["descriptions"]), atol=1e-6)


def test_without_a_description_set_the_default_is_photo_and_the_others_are_refused(
    backbone: Backbone, images: Path, tmp_path: Path
) -> None:
    run = run_wdys(make_inputs(backbone, images, tmp_path, vision=FakeVision(), styles=()))
    texts = weight_texts(backbone)
    assert run.class_weight is WdysClassWeight.PHOTO
    np.testing.assert_allclose(run.weights, unit(texts["name"] + texts["photo"]), atol=1e-6)
    assert "class weight: photo " in run.result.note and "no description set given" in run.result.note
    for needs_descriptions in (WdysClassWeight.DESCRIPTIONS, WdysClassWeight.SUM):
        inputs = make_inputs(
            backbone, images, tmp_path, vision=FakeVision(), styles=(), class_weight=needs_descriptions
        )
        with pytest.raises(BadInputError, match="needs a description set") as caught:
            run_wdys(inputs)
        assert "--descriptors" in (caught.value.hint or "")
        (row,) = run_methods(inputs, ["wdys"])  # in a comparison: a row that says why
        assert isinstance(row, NotComputed) and "--wdys-class-weight" in row.hint


def test_the_flag_reaches_the_method_and_the_report(vision_stub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from conceptforest.features import save_tiny_backbone
    from conceptforest.features.synthetic import make_shape_images

    labels = ["red disc", "blue tile", "green wedge"]
    data = make_shape_images(tmp_path / "images", per_label=4, labels=labels)
    tiny = save_tiny_backbone(tmp_path / "tiny")
    cupl = next(s for s in demo_descriptor_sets() if s.style == "cupl").save(tmp_path / "cupl.json")
    runner = CliRunner()

    def zeroshot(out: str, *extra: str):  # type: ignore[no-untyped-def]
        args = ["zeroshot", str(data), "--method", "wdys", "--clip", f"local-dir:{tiny}", "-o", str(tmp_path / out)]
        mllm = ["--mllm", "stub-vision", "--mllm-base-url", vision_stub.base_url, "--descriptors", str(cupl)]
        return runner.invoke(app, [*args, *mllm, "--cache-dir", str(tmp_path / "cache"), "--no-progress", *extra])

    for out, extra, shown in (
        ("default", (), "descriptions"),
        ("name", ("--wdys-class-weight", "class-name"), "class-name"),
    ):
        done = zeroshot(out, *extra)
        assert done.exit_code == 0, done.output
        ablation = pd.read_csv(tmp_path / out / "report" / "tables" / "wdys_ablation.csv")
        assert ablation["class weight"].tolist() == [shown] * 4
        assert f"class weight: {shown} " in (tmp_path / out / "report" / "report.md").read_text()
    bad = zeroshot("bad", "--wdys-class-weight", "everything")
    assert bad.exit_code == 2 and "descriptions, class-name, photo, sum" in bad.output
    assert tuple(WdysClassWeight) == WDYS_CLASS_WEIGHTS  # the CLI's light list names every configuration
    for verb in ("zeroshot", "compare", "explain", "run"):
        shown_help = runner.invoke(app, [verb, "--help"], terminal_width=200)
        assert "--wdys-class-weight" in shown_help.output, verb
