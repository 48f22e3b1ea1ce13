"""Reload the backbone a model bundle was trained on, and refuse any other before any weights are fetched.

The weights part of a backbone id (a pretrained tag, the sha256 of a checkpoint file or of a ``local-dir:`` folder's
weights, or ``random-seed0``) can be computed without loading a model, so a wrong backbone is refused before a
download starts; the full id (with the preprocessing hash) is checked again after loading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conceptforest.errors import BadInputError
from conceptforest.features.backbone import (
    TINY_RANDOM,
    Backbone,
    checkpoint_sha256,
    checkpoint_weights,
    load_backbone,
    local_dir_weights_id,
    model_id_part,
)
from conceptforest.models.bundle import ModelBundle

LOCAL_DIR = "local-dir:"


def expected_id_prefix(name: str, pretrained: str | None, checkpoint: Path | None) -> str | None:
    """``<model>__<weights>__`` of the backbone these arguments would load, without loading it.

    None when it cannot be known cheaply (a missing file or folder: loading then gives the clear error).
    """
    if name == TINY_RANDOM:
        weights = "random-seed0"
    elif checkpoint is not None:
        if not checkpoint.is_file():
            return None
        weights = checkpoint_weights(checkpoint_sha256(checkpoint))
    elif name.startswith(LOCAL_DIR):
        folder = Path(name.removeprefix(LOCAL_DIR))
        if not (folder / "open_clip_config.json").is_file():
            return None
        weights = local_dir_weights_id(folder)
    else:
        weights = pretrained or "none"
    return f"{model_id_part(name)}__{weights}__"


def trained_with(spec: dict[str, Any], backbone_id: str) -> tuple[str, str]:
    """What the model was trained with, in words, and the flags that load it again."""
    name, weights = str(spec.get("model", "?")), str(spec.get("weights", "?"))
    recorded = spec.get("checkpoint")
    if name == TINY_RANDOM:
        how = f"pass --clip {TINY_RANDOM} (or no backbone flags)."
    elif name.startswith(LOCAL_DIR):
        how = f"pass --clip local-dir:FOLDER with a folder whose weight files have {weights} (it was {name!r})."
    elif weights.startswith("sha256-"):
        where = f" (it was at {str(recorded)!r})" if recorded else ""
        how = f"pass --clip {name} --checkpoint FILE with the weights file whose sha256 starts {weights[7:]}{where}."
    else:
        how = f"pass --clip {name} --pretrained {weights} (or no backbone flags)."
    return f"CLIP {name!r} with weights {weights!r} (backbone id {backbone_id!r})", how


def _recorded_checkpoint(spec: dict[str, Any], backbone_id: str) -> Path:
    """The checkpoint file recorded in the manifest, when it is still there with the same content."""
    weights, recorded = str(spec.get("weights", "")), spec.get("checkpoint")
    path = Path(str(recorded)) if recorded else None
    if path is not None and path.is_file():
        digest = checkpoint_sha256(path)
        # the full sha256 when the manifest has it (newer bundles), else the id's 16-digit prefix
        if digest == spec.get("checkpoint_sha256", digest) and checkpoint_weights(digest) == weights:
            return path
    described, how = trained_with(spec, backbone_id)
    if path is None:
        why = "its manifest does not record where that file was"
    elif not path.is_file():
        why = f"{str(path)!r} no longer exists"
    else:
        why = f"{str(path)!r} has changed since (its sha256 differs)"
    raise BadInputError(f"The model was trained on a checkpoint file ({described}) and {why}.", hint=how)


def _resolve(
    spec: dict[str, Any], backbone_id: str, clip: str | None, pretrained: str | None, checkpoint: Path | None
) -> tuple[str, str | None, Path | None, bool]:
    """The model name, pretrained tag and checkpoint to load (the flags given, else the manifest's record), and
    whether the weights are already known to be the trained ones (a recorded checkpoint whose sha256 matched)."""
    name = clip or spec.get("model")
    if not name:
        raise BadInputError(
            "The model's manifest does not say which CLIP backbone made its features.",
            hint="pass --clip MODEL with --pretrained TAG or --checkpoint FILE.",
        )
    name = str(name)
    if clip is None and name.startswith(LOCAL_DIR):
        folder = Path(name.removeprefix(LOCAL_DIR))
        if not (folder / "open_clip_config.json").is_file():
            described, how = trained_with(spec, backbone_id)
            raise BadInputError(
                f"The model was trained on the model folder {str(folder)!r} ({described}), which is no longer there.",
                hint=how,
            )
    if pretrained is None and checkpoint is None and name != TINY_RANDOM and not name.startswith(LOCAL_DIR):
        weights = str(spec.get("weights", ""))
        if weights.startswith("sha256-"):
            return name, None, _recorded_checkpoint(spec, backbone_id), name == spec.get("model")
        if weights and weights != "none":
            pretrained = weights
    return name, pretrained, checkpoint, False


def _refuse(given: str, spec: dict[str, Any], backbone_id: str) -> BadInputError:
    described, how = trained_with(spec, backbone_id)
    return BadInputError(f"The backbone {given} is not the one the model was trained on ({described}).", hint=how)


def backbone_for(
    bundle: ModelBundle,
    *,
    clip: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    cache_dir: str | Path | None = None,
) -> Backbone:
    """Load the backbone the model was trained on (or the one given), and refuse any other.

    Without flags, a checkpoint-file backbone is loaded from the path the manifest records when the file there
    still has the recorded sha256. A backbone whose weights differ is refused before any weights are loaded or
    downloaded; ``cache_dir`` is open_clip's download folder.
    """
    spec = bundle.manifest.get("backbone")
    spec = spec if isinstance(spec, dict) else {}
    trained_id = str(bundle.manifest["backbone_id"])
    name, tag, checkpoint_path, verified = _resolve(
        spec, trained_id, clip, pretrained, Path(checkpoint) if checkpoint is not None else None
    )
    prefix = None if verified else expected_id_prefix(name, tag, checkpoint_path)
    if prefix is not None and not trained_id.startswith(prefix):
        raise _refuse(repr(prefix.removesuffix("__")), spec, trained_id)
    backbone = load_backbone(
        name,
        tag,
        checkpoint=checkpoint_path,
        device=device,
        cache_dir=cache_dir,
        precision=str(spec.get("precision", "fp32")),
    )
    if backbone.backbone_id != trained_id:
        raise _refuse(repr(backbone.backbone_id), spec, trained_id)
    return backbone
