"""BackboneSpec: every way to name a CLIP backbone, parsed once, stored in the artefacts, loaded back.

A spec is what ``concepts.json`` and ``manifest.json`` record under ``"backbone"``. Its JSON keys are those
:func:`~conceptforest.features.backbone.load_backbone` has always written into ``Backbone.description``
(``model``, ``weights``, ``preprocess``, ``random_weights``, ``precision``, ``checkpoint``,
``checkpoint_sha256``), plus ``pretrained``, ``cache_dir`` and ``runtime``; a description written before those
existed still parses (the pretrained tag is the recorded weights tag of a plain open_clip name; the runtime is
torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from conceptforest.defaults import DEFAULT_PRETRAINED, PACKAGED_BACKBONES, PRECISIONS, TINY_RANDOM, WORLD_CLIP
from conceptforest.errors import BadInputError

if TYPE_CHECKING:
    from conceptforest.features.backbone import Backbone

RUNTIMES = ("torch", "onnxruntime")
LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
SHA_PREFIX = "sha256-"
BackboneKind = Literal["tiny-random", "local-dir", "hf-hub", "checkpoint", "open_clip"]


class BackboneSpec(BaseModel):
    """One CLIP backbone, by name.

    Attributes
    ----------
    model : str
        An open_clip model name (``ViT-B-32``), ``hf-hub:org/repo``, ``local-dir:/path`` or
        ``conceptforest-tiny-random``.
    pretrained : str, optional
        The pretrained tag of a plain model name (or of an ``hf-hub:`` name, rarely needed).
    checkpoint, checkpoint_sha256 : str, optional
        A local weights file for ``model`` and, once loaded, its full sha256.
    precision : {"fp32", "int8", "fp16", "bf16"}
    runtime : {"torch", "onnxruntime"}
        What runs the image tower. ``onnxruntime`` gives the same embeddings (checked on every load), so it is
        not part of the backbone id; it is recorded so that :meth:`load` runs the same way.
    cache_dir : str, optional
        open_clip's download folder; :meth:`load` may override it.
    weights, preprocess, random_weights, synthetic_world
        Recorded after loading: the weights part of the backbone id, the preprocessing, whether untrained, whether
        trained only on the synthetic world (``conceptforest-world``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    pretrained: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    precision: Literal["fp32", "int8", "fp16", "bf16"] = "fp32"
    runtime: Literal["torch", "onnxruntime"] = "torch"
    cache_dir: str | None = None
    weights: str | None = None
    preprocess: str | None = None
    random_weights: bool = False
    synthetic_world: bool = False

    @model_validator(mode="before")
    @classmethod
    def _older_descriptions(cls, data: Any) -> Any:
        """A description written before ``pretrained`` was recorded: its weights tag is the pretrained tag."""
        if not isinstance(data, dict) or "pretrained" in data:
            return data
        model, weights = str(data.get("model", "")), data.get("weights")
        named = model not in PACKAGED_BACKBONES and not model.startswith(LOCAL_DIR) and not data.get("checkpoint")
        if named and isinstance(weights, str) and weights != "none" and not weights.startswith(SHA_PREFIX):
            return {**data, "pretrained": weights}
        return data

    @field_validator("model")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip() or value in (LOCAL_DIR, HF_HUB):
            raise ValueError("a backbone needs a model name (or an hf-hub:/local-dir: name with its target)")
        return value

    @classmethod
    def parse(
        cls,
        model: str = TINY_RANDOM,
        pretrained: str | None = DEFAULT_PRETRAINED,
        *,
        checkpoint: str | Path | None = None,
        precision: str = "fp32",
        cache_dir: str | Path | None = None,
        runtime: str = "torch",
    ) -> BackboneSpec:
        """The spec of command-line style flags (``--clip``, ``--pretrained``, ``--checkpoint``, ``--precision``,
        ``--runtime``).

        A pretrained tag is dropped where it does not apply (the tiny random model, a ``local-dir:`` folder or a
        checkpoint file), so two ways of naming the same backbone give equal specs.

        Raises
        ------
        BadInputError
            For an unknown precision or runtime, or an empty model name.
        """
        if precision not in PRECISIONS:
            raise BadInputError(f"Unknown precision {precision!r}.", hint=f"use one of {list(PRECISIONS)}.")
        if runtime not in RUNTIMES:
            raise BadInputError(f"Unknown runtime {runtime!r}.", hint=f"use one of {list(RUNTIMES)}.")
        if not model.strip() or model in (LOCAL_DIR, HF_HUB):
            raise BadInputError(f"{model!r} names no CLIP model.", hint="pass --clip MODEL (e.g. ViT-B-32).")
        own_weights = model in PACKAGED_BACKBONES or model.startswith(LOCAL_DIR) or checkpoint is not None
        return cls(
            model=model,
            pretrained=None if own_weights else pretrained,
            checkpoint=str(checkpoint) if checkpoint is not None else None,
            precision=precision,  # checked against PRECISIONS above
            runtime=runtime,  # checked against RUNTIMES above
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )

    @property
    def kind(self) -> BackboneKind:
        """Which naming form this is."""
        if self.model == TINY_RANDOM:
            return "tiny-random"
        if self.model.startswith(LOCAL_DIR) or self.model == WORLD_CLIP:
            return "local-dir"
        if self.checkpoint is not None or (self.weights or "").startswith(SHA_PREFIX):
            return "checkpoint"
        return "hf-hub" if self.model.startswith(HF_HUB) else "open_clip"

    @property
    def folder(self) -> Path | None:
        """The folder of a ``local-dir:`` backbone."""
        if self.model == WORLD_CLIP:
            from conceptforest.features.backbone import world_clip_folder

            return world_clip_folder()
        return Path(self.model.removeprefix(LOCAL_DIR)) if self.kind == "local-dir" else None

    def expected_id_prefix(self) -> str | None:
        """``<model>__<weights>__`` of the backbone this spec loads, computed without loading it.

        None when it cannot be known cheaply (a missing file or folder: loading then gives the clear error).
        """
        from conceptforest.features.backbone import (
            checkpoint_sha256,
            checkpoint_weights,
            local_dir_weights_id,
            model_id_part,
        )

        if self.kind == "tiny-random":
            weights = "random-seed0"
        elif self.checkpoint is not None:
            path = Path(self.checkpoint)
            if not path.is_file():
                return None
            weights = checkpoint_weights(checkpoint_sha256(path))
        elif self.folder is not None:
            if not (self.folder / "open_clip_config.json").is_file():
                return None
            weights = local_dir_weights_id(self.folder)
        else:
            weights = self.pretrained or "none"
        return f"{model_id_part(self.model)}__{weights}__"

    def load(
        self, *, device: str | None = None, cache_dir: str | Path | None = None, strict_runtime: bool = True
    ) -> Backbone:
        """The backbone this spec names (``cache_dir`` overrides the recorded one).

        ``strict_runtime=False`` (reloading a run's backbone for a later stage) runs torch, with a warning, where
        the recorded ONNX runtime cannot run (another device, the extra missing): its outputs are torch's anyway.
        """
        from conceptforest.features.backbone import load_backbone

        runtime: str = self.runtime
        if runtime != "torch" and not strict_runtime:
            runtime = _usable_runtime(runtime, device, self.precision)
        return load_backbone(
            self.model,
            self.pretrained,
            checkpoint=self.checkpoint,
            device=device,
            cache_dir=cache_dir if cache_dir is not None else self.cache_dir,
            precision=self.precision,
            runtime=runtime,
        )


def _usable_runtime(runtime: str, device: str | None, precision: str) -> str:
    """``runtime`` when it can run here, else torch (same outputs), with a warning saying why."""
    import warnings

    from conceptforest.features.devices import select_device
    from conceptforest.features.onnx_visual import check_runtime

    try:
        check_runtime(runtime, select_device(device), precision)
    except BadInputError as exc:
        warnings.warn(
            f"the run's image tower ran on {runtime}, which cannot run here ({exc}); torch runs it "
            "instead, with the same outputs.",
            RuntimeWarning,
            stacklevel=3,
        )
        return "torch"
    return runtime
