"""The opt-in ONNX Runtime image tower (``--runtime onnxruntime``): CPU, fp32, the same embeddings as torch.

The backbone's image tower (``model.visual``) is exported to ONNX once per backbone id and library versions,
cached under ``$CONCEPTFOREST_HOME/cache/onnx/`` (always local), and replaced by :class:`OnnxImageTower`, a
``torch.nn.Module`` that runs it in an ONNX Runtime session. ``model.encode_image`` and everything built on it
(the extraction, the Ray actors) then run through ONNX Runtime unchanged; the text tower stays torch.

Every load checks the session against eager torch on a fixed random batch (cosine >= :data:`MIN_COSINE` per
image) and refuses the runtime when it differs, so the backbone id does not change with the runtime and cached
embeddings are shared. ``onnx`` and ``onnxruntime`` (the ``onnx`` extra) are imported only here, when asked for.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from conceptforest.cache import cache_root, stable_hash
from conceptforest.errors import BadInputError
from conceptforest.features.spec import RUNTIMES
from conceptforest.features.store import safe_name

__all__ = [
    "MIN_COSINE",
    "OPSET",
    "RUNTIMES",
    "OnnxImageTower",
    "check_runtime",
    "export_image_tower",
    "onnx_image_tower",
    "onnx_model_path",
]

OPSET = 17
MIN_COSINE = 0.9999
EXPORT_FORMAT = 1  # bump when the export itself changes: cached files of the old format are then not reused
INSTALL_HINT = "pip install 'conceptforest[onnx]', or use --runtime torch."
CHECK_BATCH = 4  # images in the fixed check batch; the export traces 2, so a batch size baked in shows here
# what code reads from ``model.visual`` (conceptforest, open_clip's transforms and encode_image)
KEPT_ATTRIBUTES = ("output_dim", "image_size", "patch_size", "grid_size", "image_mean", "image_std", "preprocess_cfg")


def _import_runtime() -> Any:
    """The ``onnxruntime`` module, after checking that ``onnx`` (which the export needs) imports too."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime
    except ImportError as exc:
        raise BadInputError(
            f"--runtime onnxruntime needs the onnx and onnxruntime packages ({exc.name or exc} is not installed).",
            hint=INSTALL_HINT,
        ) from exc
    return onnxruntime


def check_runtime(runtime: str, device: torch.device, precision: str) -> None:
    """Refuse an unknown runtime, and ONNX Runtime off the CPU, below fp32 or without its packages."""
    if runtime not in RUNTIMES:
        raise BadInputError(f"Unknown runtime {runtime!r}.", hint=f"use one of {list(RUNTIMES)}.")
    if runtime == "torch":
        return
    if device.type != "cpu":
        raise BadInputError(
            f"--runtime onnxruntime runs on the CPU, not on {device.type}.",
            hint=f"use --runtime torch on {device.type}, or pass --device cpu.",
        )
    if precision != "fp32":
        raise BadInputError(
            f"--runtime onnxruntime runs in fp32 only, not in {precision}.",
            hint=f"use --precision fp32 with --runtime onnxruntime, or --runtime torch for {precision}.",
        )
    _import_runtime()


def onnx_model_path(backbone_id: str) -> Path:
    """Where the image tower of ``backbone_id`` is cached: one file per backbone id, library versions and opset."""
    import open_clip

    versions = {"torch": torch.__version__, "open_clip": open_clip.__version__, "opset": OPSET, "format": EXPORT_FORMAT}
    safe_id = safe_name(backbone_id).strip("._") or "backbone"
    return cache_root(None) / "onnx" / f"{safe_id}-{stable_hash(versions)[:12]}.onnx"


def _check_batch(visual: torch.nn.Module, n: int, *, seed: int = 0) -> torch.Tensor:
    """A fixed random batch of ``n`` preprocessed-image-like tensors for the tower's input size."""
    size = getattr(visual, "image_size", None)
    if size is None:
        raise BadInputError(
            f"The image tower {type(visual).__name__} does not say its input size (no image_size).",
            hint="use --runtime torch for this model.",
        )
    height, width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, height, width, generator=generator)


def _publish(staged: Path, target: Path) -> None:
    """Move a finished export from its temporary folder into place; the ``.onnx`` file appears last.

    A tower over protobuf's 2 GiB limit is exported with one external file per tensor: those are gathered into
    one ``<name>.onnx.data`` file next to the model, which ONNX Runtime finds by the model's recorded location.
    """
    folder = staged.parent
    if len(list(folder.iterdir())) > 1:
        import onnx

        model = onnx.load(str(staged))  # with its external tensors
        gathered = folder / target.name
        onnx.save_model(
            model,
            str(gathered),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{target.name}.data",
        )
        os.replace(folder / f"{target.name}.data", target.parent / f"{target.name}.data")
        staged = gathered
    with staged.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staged, target)


@contextlib.contextmanager
def _traceable() -> Iterator[None]:
    """Export conditions: torch's fused attention fast path (taken under no_grad) has no ONNX form."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def export_image_tower(visual: torch.nn.Module, target: Path) -> Path:
    """Export ``visual`` (batch axis dynamic) to ``target`` through a temporary folder next to it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    example = _check_batch(visual, 2)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as tmp, _traceable():
        staged = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values: the check below is the judge
            torch.onnx.export(
                visual,
                (example,),
                str(staged),
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        _publish(staged, target)
    return target


class OnnxImageTower(torch.nn.Module):
    """``model.visual`` run by ONNX Runtime on the CPU: fp32 in, fp32 out, the eager tower's attributes kept.

    The session is made on first use with ORT_ENABLE_ALL and ``torch.get_num_threads()`` intra-op threads, and
    is left out of pickles and copies (made again from :attr:`onnx_path`).
    """

    def __init__(self, onnx_path: Path, source: torch.nn.Module) -> None:
        super().__init__()
        self.onnx_path = Path(onnx_path)
        for name in KEPT_ATTRIBUTES:
            if hasattr(source, name):
                setattr(self, name, getattr(source, name))
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            ort = _import_runtime()
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = torch.get_num_threads()
            options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
            self._session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        return self._session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:  # the exported reshapes cannot infer a size from an empty batch
            return torch.zeros((0, int(getattr(self, "output_dim", 0))), dtype=torch.float32)
        array = x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
        session = self.session
        (result,) = session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: array})
        return torch.from_numpy(result)

    def extra_repr(self) -> str:
        return f"onnx_path={str(self.onnx_path)!r}"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None  # an InferenceSession neither pickles nor copies
        return state


def _mismatch(visual: torch.nn.Module, tower: OnnxImageTower) -> str | None:
    """Why the ONNX tower differs from eager torch on the fixed check batch, or None when it matches."""
    batch = _check_batch(visual, CHECK_BATCH)
    with torch.no_grad():
        eager = visual(batch)
    eager = eager[0] if isinstance(eager, tuple) else eager
    try:
        exported = tower(batch)
    except Exception as exc:  # ONNX Runtime raises its own (pybind) exception types
        return f"ONNX Runtime could not run it ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
    if exported.shape != eager.shape:
        return f"its output has shape {tuple(exported.shape)}, torch's {tuple(eager.shape)}"
    cosine = float(torch.nn.functional.cosine_similarity(exported, eager.float(), dim=-1).min())
    return None if cosine >= MIN_COSINE else f"cosine to torch {cosine:.6f} < {MIN_COSINE}"


def _export_or_refuse(visual: torch.nn.Module, target: Path, model_name: str) -> None:
    try:
        export_image_tower(visual, target)
    except (BadInputError, MemoryError, OSError):
        raise
    except Exception as exc:  # torch's exporter raises many types (unsupported operators, tracing errors)
        raise BadInputError(
            f"Could not export the image tower of CLIP model {model_name!r} to ONNX: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
            hint="use --runtime torch for this model.",
        ) from exc


def onnx_image_tower(visual: torch.nn.Module, backbone_id: str, model_name: str) -> OnnxImageTower:
    """The ONNX Runtime replacement of ``visual``: exported once (cached), checked against torch on every load.

    A cached export that no longer loads or matches is exported once more.

    Raises
    ------
    BadInputError
        When the export fails, or its outputs differ from torch's (cosine below :data:`MIN_COSINE`).
    """
    target = onnx_model_path(backbone_id)
    fresh = not target.is_file()
    if fresh:
        _export_or_refuse(visual, target, model_name)
    tower = OnnxImageTower(target, visual)
    problem = _mismatch(visual, tower)
    if problem is not None and not fresh:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        _export_or_refuse(visual, target, model_name)
        tower = OnnxImageTower(target, visual)
        problem = _mismatch(visual, tower)
    if problem is not None:
        raise BadInputError(
            f"The ONNX Runtime image tower of CLIP model {model_name!r} does not match torch: {problem}.",
            hint="use --runtime torch for this model.",
        )
    return tower
