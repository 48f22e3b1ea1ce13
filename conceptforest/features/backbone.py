"""CLIP backbones through open_clip's one factory: a model name plus a pretrained tag, an ``hf-hub:`` or
``local-dir:`` name, or a local checkpoint file.

Every backbone has a stable id (model, weights, preprocessing) that keys the embedding cache and is recorded in
every artefact. Random weights exist only under the explicit name :data:`TINY_RANDOM`, and say so.
"""

from __future__ import annotations

import contextlib
import functools
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from conceptforest.cache import file_sha256, is_uri, stable_hash
from conceptforest.defaults import (  # re-exported: the stage modules have always offered these names
    DEFAULT_MODEL as DEFAULT_MODEL,
)
from conceptforest.defaults import (
    DEFAULT_PRETRAINED as DEFAULT_PRETRAINED,
)
from conceptforest.defaults import PACKAGED_BACKBONES, weights_warning
from conceptforest.defaults import (
    PRECISIONS as PRECISIONS,
)
from conceptforest.defaults import (
    RANDOM_WEIGHTS_WARNING as RANDOM_WEIGHTS_WARNING,
)
from conceptforest.defaults import (
    TINY_RANDOM as TINY_RANDOM,
)
from conceptforest.defaults import (
    WORLD_CLIP as WORLD_CLIP,
)
from conceptforest.errors import BadInputError
from conceptforest.features.devices import MIXED_PRECISION as MIXED_PRECISION
from conceptforest.features.devices import check_precision as check_precision
from conceptforest.features.devices import select_device as select_device
from conceptforest.features.packaged import TINY_CONFIG as TINY_CONFIG
from conceptforest.features.packaged import create_tiny, resolve_world_clip
from conceptforest.features.packaged import save_tiny_backbone as save_tiny_backbone
from conceptforest.features.packaged import world_clip_folder as world_clip_folder

if TYPE_CHECKING:
    from conceptforest.features.spec import BackboneSpec


def checkpoint_sha256(path: str | Path) -> str:
    """The full sha256 (64 hex digits) of a checkpoint file, as recorded in ``Backbone.description``.

    The backbone id's weights part is ``"sha256-" + checkpoint_sha256(path)[:16]`` (see :func:`checkpoint_weights`).
    Checking a model's backbone, building its spec and loading it each need this hash: it is computed once per
    (file, size, modification time), since a checkpoint is often half a gigabyte.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _checkpoint_sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _checkpoint_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def checkpoint_weights(sha256: str) -> str:
    """The weights part of a backbone id for a checkpoint file with this sha256."""
    return f"sha256-{sha256[:16]}"


@dataclass
class Backbone:
    """A loaded CLIP model with its preprocessing, tokenizer and stable id."""

    model: Any
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Any
    backbone_id: str
    device: torch.device
    random_weights: bool
    description: dict[str, Any]
    autocast: torch.dtype | None = None  # fp16/bf16 mixed precision; None: the model's own (fp32 or int8)
    synthetic_world: bool = False  # trained only on the synthetic world (conceptforest.world): toy-world numbers

    @property
    def weights_warning(self) -> str | None:
        """Random weights or a toy-world model, in one sentence; None for real weights."""
        return weights_warning(self.random_weights, self.synthetic_world)

    def autocast_context(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    @torch.inference_mode()
    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """L2-normalised image embeddings (float32) of a preprocessed batch."""
        with self.autocast_context():
            features = self.model.encode_image(to_device(batch, self.device))
        return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 256, trim: bool = True) -> np.ndarray:
        """L2-normalised text embeddings (float32); each batch is trimmed to its longest real token length."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size])).to(self.device)
            with self.autocast_context():
                features = encode_tokens_trimmed(self.model, tokens) if trim else self.model.encode_text(tokens)
            chunks.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
        if not chunks:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    @property
    def embed_dim(self) -> int:
        projection = getattr(self.model, "text_projection", None)
        if isinstance(projection, torch.nn.Linear):
            return int(projection.out_features)
        if projection is not None:
            return int(projection.shape[1])
        return int(self.model.visual.output_dim)

    @property
    def spec(self) -> BackboneSpec:
        """What artefacts record under ``"backbone"``: the spec that loads this backbone again."""
        from conceptforest.features.spec import BackboneSpec

        return BackboneSpec.model_validate(self.description)


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU batch bound for CUDA goes through pinned memory, so the copy is asynchronous; else a plain move."""
    if device.type == "cuda" and batch.device.type == "cpu":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def encode_tokens_trimmed(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``CLIP.encode_text`` on tokens cut to their longest real length.

    The text tower's causal mask means no position attends to a later one, so dropping trailing padding leaves
    every kept position unchanged. Models without the standard text tower fall back to ``encode_text``.
    """
    needed = ("token_embedding", "positional_embedding", "transformer", "attn_mask", "ln_final")
    if not all(hasattr(model, name) for name in needed) or getattr(model, "text_pool_type", "argmax") != "argmax":
        return model.encode_text(tokens)  # type: ignore[no-any-return]
    nonzero = (tokens != 0).any(dim=0).nonzero()
    length = int(nonzero.max()) + 1 if nonzero.numel() else 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    projection = model.text_projection
    if projection is None:
        return x  # type: ignore[no-any-return]
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection  # type: ignore[no-any-return]


def quantize_linear_int8(model: Any) -> Any:
    """Dynamic int8 quantisation of the image tower's ``nn.Linear`` layers (the hot path), in place.

    The text tower stays fp32: it runs once per concept set, and open_clip reads its weight dtype directly.
    """
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao; it still works in the pinned torch
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        model.visual = quantize_dynamic(model.visual, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
    return model


def _preprocess_id(preprocess: Any) -> str:
    return stable_hash(repr(preprocess))[:12]


@dataclass(frozen=True)
class _Weights:
    """Where a backbone's weights come from and how the backbone id names them."""

    source: str | None  # what open_clip's ``pretrained`` receives
    tag: str  # the weights part of the backbone id
    random: bool = False
    checkpoint: dict[str, str] = field(default_factory=dict)  # path and full sha256 of a checkpoint file
    synthetic_world: bool = False  # trained only on the synthetic world (its config says so)


def local_dir_weights_id(folder: Path) -> str:
    """``sha256-<16 hex>`` of a ``local-dir:`` folder's weight files, as backbone ids record it."""
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pth"))
    return "sha256-" + stable_hash([file_sha256(f) for f in files])[:16]


def _weights_for(name: str, pretrained: str | None, checkpoint: str | Path | None) -> _Weights:
    """Resolve the weights of a named (non tiny-random) backbone, refusing what cannot be loaded."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise BadInputError(
                f"Checkpoint file {str(path)!r} does not exist.",
                hint="give the path of a .pt/.bin/.safetensors weights file for --clip MODEL.",
            )
        digest = checkpoint_sha256(path)
        recorded = {"checkpoint": str(path.resolve()), "checkpoint_sha256": digest}
        return _Weights(str(path), checkpoint_weights(digest), checkpoint=recorded)
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise BadInputError(
                f"{str(folder)!r} is not an open_clip model folder (no open_clip_config.json).",
                hint="point local-dir: at a folder with open_clip_config.json and weights.",
            )
        config = json.loads((folder / "open_clip_config.json").read_text())
        ours = config.get("conceptforest", {})
        return _Weights(
            None,
            local_dir_weights_id(folder),
            random=bool(ours.get("random_weights", False)),
            synthetic_world=bool(ours.get("synthetic_world", False)),
        )
    if not pretrained and not name.startswith("hf-hub:"):
        raise BadInputError(
            f"No weights were given for CLIP model {name!r}.",
            hint=f"pass --pretrained TAG (e.g. {DEFAULT_PRETRAINED}) or --checkpoint FILE; untrained "
            f"weights exist only as --clip {TINY_RANDOM}.",
        )
    return _Weights(pretrained, pretrained or "none")


def _create_named(
    name: str,
    weights: _Weights,
    torch_device: torch.device,
    cache_dir: str | Path | None,
    image_mean: Sequence[float] | None,
    image_std: Sequence[float] | None,
) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer) of a named backbone through open_clip's factory."""
    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name,
            pretrained=weights.source,
            device=torch_device,
            cache_dir=str(cache_dir) if cache_dir else None,
            image_mean=tuple(image_mean) if image_mean is not None else None,
            image_std=tuple(image_std) if image_std is not None else None,
            require_pretrained=True,
        )
    except (RuntimeError, FileNotFoundError, ValueError, OSError, AssertionError, KeyError) as exc:
        raise BadInputError(
            f"Could not load CLIP model {name!r} with weights {weights.source or weights.tag!r}: {exc}",
            hint="check the model name and tag (open_clip.list_pretrained()), or use a local file with "
            "--checkpoint FILE or --clip local-dir:/path when offline.",
        ) from exc
    return model, preprocess, open_clip.get_tokenizer(name)


def model_id_part(name: str) -> str:
    """The model part of a backbone id."""
    if name == TINY_RANDOM:
        return "tiny-random"
    if name.startswith("local-dir:") or name == WORLD_CLIP:
        return "local-dir"  # the folder's place on disk is not part of what the model is
    return name.replace("/", "_")


def _description(
    name: str,
    pretrained: str | None,
    weights: _Weights,
    cache_dir: str | Path | None,
    preprocess: str,
    precision: str,
    runtime: str,
) -> dict[str, Any]:
    """What ``Backbone.description`` (and so the recorded ``BackboneSpec``) holds."""
    return {
        "model": name,
        "pretrained": pretrained if weights.source == pretrained and name not in PACKAGED_BACKBONES else None,
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "weights": weights.tag,
        "preprocess": preprocess,
        "random_weights": weights.random,
        "synthetic_world": weights.synthetic_world,
        "precision": precision,
        "runtime": runtime,
        **weights.checkpoint,  # where a checkpoint file was, and its sha256: predict can reload it from there
    }


def load_backbone(
    name: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    *,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    precision: str = "fp32",
    runtime: str = "torch",
) -> Backbone:
    """Load a CLIP backbone.

    Parameters
    ----------
    name : str
        An open_clip model name (``ViT-B-32``), ``hf-hub:org/repo``, ``local-dir:/path``, or
        ``conceptforest-tiny-random`` (untrained, for fast tests; labelled as random everywhere), or
        ``conceptforest-world`` (the packaged small CLIP trained on the synthetic world; labelled as a toy-world
        model everywhere).
    pretrained : str, optional
        A pretrained tag for a plain model name; downloaded on first use into ``cache_dir``.
    checkpoint : path, optional
        A local weights file for ``name`` (overrides ``pretrained``). Its sha256 enters the backbone id, and its
        absolute path and full sha256 enter ``description`` (``checkpoint``, ``checkpoint_sha256``).
    device : str, optional
        Default: cuda, then mps, then cpu.
    image_mean, image_std : sequence of float, optional
        Preprocessing for a checkpoint file, which open_clip would otherwise load with default values.
    precision : {"fp32", "int8", "fp16", "bf16"}
        ``int8`` quantises the image tower's Linear layers dynamically (CPU only): faster on CPUs, slightly
        different image embeddings, so it is part of the backbone id and never the default. ``fp16`` (CUDA or
        MPS) and ``bf16`` (CUDA or CPU) run the model under autocast; outputs stay float32 and are recorded
        under their own backbone id (``benchmarks/encode_images.py --precision`` measures the cosine to fp32).
    runtime : {"torch", "onnxruntime"}
        ``onnxruntime`` (CPU and fp32 only; the ``onnx`` extra) runs the image tower as an ONNX export, cached
        and checked against torch on every load (cosine >= 0.9999): same backbone id, so the embedding cache is
        shared. Recorded in ``description["runtime"]``. See :mod:`conceptforest.features.onnx_visual`.
    """
    import open_clip

    if is_uri(cache_dir):  # an object-store --cache-dir holds embeddings only: weights go to open_clip's default
        cache_dir = None
    if precision not in PRECISIONS:
        raise BadInputError(f"Unknown precision {precision!r}.", hint=f"use one of {list(PRECISIONS)}.")
    torch_device = select_device(device)
    check_precision(precision, torch_device)
    if runtime != "torch":
        from conceptforest.features.onnx_visual import check_runtime

        check_runtime(runtime, torch_device, precision)
    if name == TINY_RANDOM:
        weights = _Weights(None, "random-seed0", random=True)
        model = create_tiny(0)
        preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
        tokenizer = open_clip.get_tokenizer(DEFAULT_MODEL)
    else:
        source = resolve_world_clip(name)
        weights = _weights_for(source, pretrained, checkpoint)
        model, preprocess, tokenizer = _create_named(source, weights, torch_device, cache_dir, image_mean, image_std)
    model = model.to(torch_device).eval()
    if precision == "int8":
        model = quantize_linear_int8(model)
    backbone_id = f"{model_id_part(name)}__{weights.tag}__pre-{_preprocess_id(preprocess)}"
    if runtime == "onnxruntime":  # the same outputs (checked), so the same backbone id
        from conceptforest.features.onnx_visual import onnx_image_tower

        model.visual = onnx_image_tower(model.visual, backbone_id, name)
    return Backbone(
        autocast=MIXED_PRECISION.get(precision),
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        backbone_id=backbone_id + ("" if precision == "fp32" else f"__{precision}"),
        device=torch_device,
        random_weights=weights.random,
        synthetic_world=weights.synthetic_world,
        description=_description(name, pretrained, weights, cache_dir, repr(preprocess), precision, runtime),
    )
