"""Reload the backbone a model bundle was trained on, and refuse any other before any weights are fetched.

The weights part of a backbone id (a pretrained tag, the sha256 of a checkpoint file or of a ``local-dir:`` folder's
weights, or ``random-seed0``) can be computed without loading a model, so a wrong backbone is refused before a
download starts; the full id (with the preprocessing hash) is checked again after loading.
"""

from __future__ import annotations

from pathlib import Path

from conceptforest.defaults import PACKAGED_BACKBONES
from conceptforest.errors import BadInputError
from conceptforest.features.backbone import TINY_RANDOM, WORLD_CLIP, Backbone, checkpoint_sha256, checkpoint_weights
from conceptforest.features.spec import LOCAL_DIR, BackboneSpec
from conceptforest.models.bundle import ModelBundle

__all__ = ["LOCAL_DIR", "backbone_for", "backbone_spec_for", "trained_with"]


def trained_with(spec: BackboneSpec | None, backbone_id: str) -> tuple[str, str]:
    """What the model was trained with, in words, and the flags that load it again."""
    name = spec.model if spec is not None else "?"
    weights = (spec.weights or "?") if spec is not None else "?"
    recorded = spec.checkpoint if spec is not None else None
    if name == TINY_RANDOM:
        how = f"pass --clip {TINY_RANDOM} (or no backbone flags)."
    elif name == WORLD_CLIP:
        how = (
            f"the model was trained with another version of the packaged {WORLD_CLIP} (weights {weights}): train "
            "it again, or pass --clip local-dir:FOLDER with the world CLIP folder of that version."
        )
    elif name.startswith(LOCAL_DIR):
        how = f"pass --clip local-dir:FOLDER with a folder whose weight files have {weights} (it was {name!r})."
    elif weights.startswith("sha256-"):
        where = f" (it was at {str(recorded)!r})" if recorded else ""
        how = f"pass --clip {name} --checkpoint FILE with the weights file whose sha256 starts {weights[7:]}{where}."
    else:
        how = f"pass --clip {name} --pretrained {weights} (or no backbone flags)."
    return f"CLIP {name!r} with weights {weights!r} (backbone id {backbone_id!r})", how


def _recorded_checkpoint(spec: BackboneSpec, backbone_id: str) -> Path:
    """The checkpoint file recorded in the manifest, when it is still there with the same content."""
    weights, recorded = spec.weights or "", spec.checkpoint
    path = Path(recorded) if recorded else None
    if path is not None and path.is_file():
        digest = checkpoint_sha256(path)
        # the full sha256 when the manifest has it (newer bundles), else the id's 16-digit prefix
        if digest == (spec.checkpoint_sha256 or digest) and checkpoint_weights(digest) == weights:
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
    recorded: BackboneSpec | None,
    backbone_id: str,
    clip: str | None,
    pretrained: str | None,
    checkpoint: Path | None,
) -> tuple[str, str | None, Path | None, bool]:
    """The model name, pretrained tag and checkpoint to load (the flags given, else the manifest's record), and
    whether the weights are already known to be the trained ones (a recorded checkpoint whose sha256 matched)."""
    name = clip or (recorded.model if recorded is not None else None)
    if not name:
        raise BadInputError(
            "The model's manifest does not say which CLIP backbone made its features.",
            hint="pass --clip MODEL with --pretrained TAG or --checkpoint FILE.",
        )
    if clip is None and name.startswith(LOCAL_DIR):
        folder = Path(name.removeprefix(LOCAL_DIR))
        if not (folder / "open_clip_config.json").is_file():
            described, how = trained_with(recorded, backbone_id)
            raise BadInputError(
                f"The model was trained on the model folder {str(folder)!r} ({described}), which is no longer there.",
                hint=how,
            )
    own_weights = name in PACKAGED_BACKBONES or name.startswith(LOCAL_DIR)
    if pretrained is None and checkpoint is None and not own_weights and recorded is not None:
        if (recorded.weights or "").startswith("sha256-"):
            return name, None, _recorded_checkpoint(recorded, backbone_id), name == recorded.model
        pretrained = recorded.pretrained
    return name, pretrained, checkpoint, False


def _refuse(given: str, spec: BackboneSpec | None, backbone_id: str) -> BadInputError:
    described, how = trained_with(spec, backbone_id)
    return BadInputError(f"The backbone {given} is not the one the model was trained on ({described}).", hint=how)


def _requested(
    bundle: ModelBundle,
    clip: str | None,
    pretrained: str | None,
    checkpoint: str | Path | None,
    cache_dir: str | Path | None,
) -> tuple[BackboneSpec, bool]:
    recorded = bundle.manifest.backbone
    name, tag, checkpoint_path, verified = _resolve(
        recorded, bundle.manifest.backbone_id, clip, pretrained, Path(checkpoint) if checkpoint is not None else None
    )
    precision = recorded.precision if recorded is not None else "fp32"
    if cache_dir is None and recorded is not None:
        cache_dir = recorded.cache_dir  # where the weights were downloaded when the model was trained
    spec = BackboneSpec.parse(name, tag, checkpoint=checkpoint_path, precision=precision, cache_dir=cache_dir)
    return spec, verified


def backbone_spec_for(
    bundle: ModelBundle,
    *,
    clip: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> BackboneSpec:
    """The spec :func:`backbone_for` loads: the flags given, else what the manifest records (nothing is loaded)."""
    return _requested(bundle, clip, pretrained, checkpoint, cache_dir)[0]


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
    spec, verified = _requested(bundle, clip, pretrained, checkpoint, cache_dir)
    trained_id, recorded = bundle.manifest.backbone_id, bundle.manifest.backbone
    prefix = None if verified else spec.expected_id_prefix()
    if prefix is not None and not trained_id.startswith(prefix):
        raise _refuse(repr(prefix.removesuffix("__")), recorded, trained_id)
    backbone = spec.load(device=device)
    if backbone.backbone_id != trained_id:
        raise _refuse(repr(backbone.backbone_id), recorded, trained_id)
    return backbone
