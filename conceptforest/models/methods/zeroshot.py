"""CLIP zero-shot classification from label prompts: one prompt ("clip") and a prompt ensemble ("ensemble").

Both score an image by the cosine similarity of its (L2-normalised) embedding with one class weight per label,
use the run's cached image embeddings, and encode each prompt once per backbone (the text cache). Neither trains
anything; both put the label name in every prompt (``uses_label_names``).

The ensemble follows open_clip's ``build_zero_shot_classifier``: a label's weight is the normalised mean of its
templates' normalised embeddings. The template list is configurable; named sets (:func:`template_sets`) are the 80
OpenAI ImageNet templates and the 7 "simple" ones, both as open_clip ships them, and five short photo prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from conceptforest.concepts.descriptors import wordify
from conceptforest.errors import BadInputError
from conceptforest.models.methods.base import Method, MethodInputs, MethodResult, Need, register

Template = str | Callable[[str], str]
Encoder = Callable[[Sequence[str]], np.ndarray]

CLIP_PROMPT = "a photo of a {label}."
SHORT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {label}.",
    "a blurry photo of a {label}.",
    "a close-up photo of a {label}.",
    "a good photo of a {label}.",
    "a bad photo of a {label}.",
)
DEFAULT_TEMPLATES = "imagenet80"


def _open_clip_sets() -> dict[str, tuple[Template, ...]]:
    from open_clip import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    return {
        "imagenet80": tuple(OPENAI_IMAGENET_TEMPLATES),
        "imagenet-simple7": tuple(SIMPLE_IMAGENET_TEMPLATES),
    }


def template_sets() -> dict[str, tuple[Template, ...]]:
    """The named template lists: ``imagenet80`` (CLIP's 80 ImageNet prompts), ``imagenet-simple7``, ``short5``.

    The ImageNet lists are read from the installed open_clip (``OPENAI_IMAGENET_TEMPLATES``,
    ``SIMPLE_IMAGENET_TEMPLATES``), not copied.
    """
    return {**_open_clip_sets(), "short5": SHORT_TEMPLATES}


def resolve_templates(templates: str | Sequence[Template]) -> tuple[Template, ...]:
    """A template list from its name (see :func:`template_sets`) or as given, refusing an empty one."""
    if isinstance(templates, str):
        sets = template_sets()
        if templates not in sets:
            raise BadInputError(f"Unknown prompt template set {templates!r}.", hint=f"choose from: {', '.join(sets)}.")
        return sets[templates]
    resolved = tuple(templates)
    if not resolved:
        raise BadInputError("The prompt ensemble needs at least one template.", hint="give one or more templates.")
    return resolved


def fill_template(template: Template, label: str) -> str:
    """One prompt: a callable is called with the label; a string may name it ``{label}`` or ``{}``."""
    label = wordify(label)
    if callable(template):
        return template(label)
    try:
        return template.format(label, label=label)
    except (KeyError, IndexError, ValueError) as exc:
        raise BadInputError(
            f"The prompt template {template!r} has a placeholder other than {{label}} or {{}} ({exc}).",
            hint="write templates like 'a photo of a {label}.'.",
        ) from exc


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    normalised: np.ndarray = rows / np.where(norms == 0, 1.0, norms)
    return normalised


def ensemble_weights(labels: Sequence[str], templates: Sequence[Template], encode: Encoder) -> np.ndarray:
    """Class weights of a prompt ensemble, one row per label (as open_clip's ``build_zero_shot_classifier``).

    Parameters
    ----------
    labels : sequence of str
        The class names, in score-column order.
    templates : sequence of str or callable
        Each turns a label into one prompt (see :func:`fill_template`).
    encode : callable
        Text encoder: a list of sentences -> one embedding row per sentence.

    Returns
    -------
    numpy.ndarray
        ``(len(labels), dim)``: ``normalise(mean_t normalise(encode(template_t(label))))`` per label. open_clip
        returns the transpose (dim x classes).
    """
    if not templates:
        raise BadInputError("The prompt ensemble needs at least one template.", hint="give one or more templates.")
    texts = [fill_template(template, label) for label in labels for template in templates]
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    embedded = _normalise(np.asarray(encode(texts), dtype=np.float64))
    per_label = embedded.reshape(len(labels), len(templates), -1).mean(axis=1)
    return _normalise(per_label).astype(np.float32)


@register
class ClipZeroShot(Method):
    """CLIP zero-shot: score = cosine(image, "a photo of a {label}."), as CLIP's paper and code do."""

    name = "clip"
    display = "CLIP zero-shot"
    needs = frozenset({Need.IMAGE_EMBEDDINGS})
    uses_label_names = True

    def run(self, inputs: MethodInputs) -> MethodResult:
        prompts = [fill_template(CLIP_PROMPT, label) for label in inputs.labels]
        weights = inputs.text_embeddings(prompts)
        scores = inputs.image_embeddings() @ weights.T
        return self.result(inputs, scores, note=f"prompt {CLIP_PROMPT!r}")


@register
class PromptEnsemble(Method):
    """CLIP zero-shot with a prompt ensemble (open_clip's ``build_zero_shot_classifier``).

    The default templates are the 80 OpenAI ImageNet prompts (``imagenet80``): the ensemble the CLIP paper and
    open_clip's evaluation use, so the row is comparable with published numbers. Their sentences are encoded
    once per backbone and cached. Pass ``templates`` (a set's name or a list) to change them, or subclass and set
    the class attribute.
    """

    name = "ensemble"
    display = "CLIP zero-shot, prompt ensemble"
    needs = frozenset({Need.IMAGE_EMBEDDINGS})
    uses_label_names = True
    templates: ClassVar[str | Sequence[Template]] = DEFAULT_TEMPLATES

    def __init__(self, templates: str | Sequence[Template] | None = None) -> None:
        given = self.templates if templates is None else templates
        self.chosen = resolve_templates(given)
        self.set_name = given if isinstance(given, str) else None

    def run(self, inputs: MethodInputs) -> MethodResult:
        weights = ensemble_weights(inputs.labels, self.chosen, inputs.text_embeddings)
        scores = inputs.image_embeddings() @ weights.T
        which = f"{self.set_name!r} " if self.set_name else ""
        return self.result(inputs, scores, note=f"{len(self.chosen)} templates {which}(open_clip's recipe)".strip())
