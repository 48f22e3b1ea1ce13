"""JPEG decoding and preprocessing as tensors: torchvision's decoder on the CPU, nvJPEG batched on a GPU.

open_clip preprocesses a Pillow image (bicubic ``Resize`` of the short side with antialiasing, ``CenterCrop``,
``ToTensor``, ``Normalize``). For JPEG files the same steps run here on uint8 tensors: on the CPU through
``torchvision.io.decode_jpeg`` (libjpeg-turbo) and torchvision's uint8 bicubic resize, which follows Pillow's;
on CUDA through one batched nvJPEG call per batch, the resize and normalisation on the GPU too. Measured on
made-up 500x375 JPEGs with ViT-B-32: the CPU path gives embeddings with cosine >= 0.9999997 to open_clip's own
(at most one grey level apart per pixel), at about twice the speed, so it shares open_clip's cache. GPU outputs
could not be measured here and are cached apart (see :data:`GPU_DECODER`).

Only the standard open_clip pipeline is handled (:func:`standard_preprocess` says so); anything else, any
file that is not a JPEG, and any JPEG the tensor decoder refuses go through Pillow, so a file is skipped for
the same reason on every path. Size guards read the header first: a decompression bomb is never decoded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from conceptforest.features.images import DEFAULT_MAX_ASPECT_RATIO, ImageDecodeError, check_image_size, decode_image

JPEG_MAGIC = b"\xff\xd8\xff"
GPU_DECODER = "nvjpeg"  # cached under its own key: its outputs are not measured against Pillow's here
_CONVERTERS = {"MaybeConvertMode", "_convert_to_rgb", "ToTensor", "MaybeToTensor"}


@dataclass(frozen=True)
class StandardPreprocess:
    """open_clip's inference preprocessing, read from its ``Compose``: what the tensor path reproduces."""

    resize: list[int]  # [short side] keeps the aspect ratio; [height, width] does not
    crop: list[int]  # [height, width]
    mean: torch.Tensor  # (3, 1, 1)
    std: torch.Tensor  # (3, 1, 1)

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        """A (3, H, W) uint8 image on any device -> the normalised float32 model input."""
        from torchvision.transforms.v2 import functional as tvf

        resized = tvf.resize(image, self.resize, interpolation=tvf.InterpolationMode.BICUBIC, antialias=True)
        cropped = tvf.center_crop(resized, self.crop).float().div_(255.0)
        normalised: torch.Tensor = (cropped - self.mean.to(cropped.device)) / self.std.to(cropped.device)
        return normalised


def _pair(value: Any) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def standard_preprocess(preprocess: Any) -> StandardPreprocess | None:
    """The steps of open_clip's standard inference ``Compose``, or None for any other pipeline."""
    from torchvision import transforms as tv

    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 3 or not isinstance(steps[0], tv.Resize) or not isinstance(steps[1], tv.CenterCrop):
        return None
    resize, crop, rest = steps[0], steps[1], steps[2:]
    bicubic = resize.interpolation == tv.InterpolationMode.BICUBIC
    if not bicubic or resize.max_size is not None or resize.antialias is False:
        return None
    if not isinstance(rest[-1], tv.Normalize):
        return None
    names = {getattr(step, "__name__", type(step).__name__) for step in rest[:-1]}
    if not names <= _CONVERTERS:
        return None
    size = [resize.size] if isinstance(resize.size, int) else list(resize.size)
    normalize = rest[-1]
    return StandardPreprocess(
        resize=[int(s) for s in size],
        crop=_pair(crop.size),
        mean=torch.tensor(normalize.mean, dtype=torch.float32).view(3, 1, 1),
        std=torch.tensor(normalize.std, dtype=torch.float32).view(3, 1, 1),
    )


def is_jpeg(data: bytes) -> bool:
    return data.startswith(JPEG_MAGIC)


def check_jpeg_header(data: bytes, max_pixels: int) -> None:
    """Refuse what Pillow's path would refuse from the header alone (bombs, extreme strips, non-RGB modes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            header = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise ImageDecodeError("not a readable JPEG header") from exc
    if header.mode not in ("RGB", "L"):  # CMYK and friends: Pillow converts them its own way
        raise ImageDecodeError(f"JPEG mode {header.mode} is left to Pillow")
    check_image_size(*header.size, max_pixels, DEFAULT_MAX_ASPECT_RATIO)


def _jpeg_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_jpegs(data: torch.Tensor | list[torch.Tensor], device: torch.device | str = "cpu") -> Any:
    """torchvision's ``decode_jpeg`` (RGB, EXIF orientation applied). torchvision 0.29 deprecates its decoders
    in favour of TorchCodec; the pinned version still ships them, so the warning is not shown to users."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)


class TensorPreparer:
    """Prepares model inputs from file bytes: the tensor path for JPEGs, Pillow for everything else.

    ``pillow`` is the fallback that also gives the skip reason of a file no decoder can read.
    """

    def __init__(
        self, standard: StandardPreprocess, pillow: Callable[[bytes], torch.Tensor | str], max_pixels: int
    ) -> None:
        self.standard = standard
        self.pillow = pillow
        self.max_pixels = max_pixels

    def prepare(self, data: bytes) -> torch.Tensor | str:
        """One image on the CPU (run in worker threads): torchvision's decoder, else Pillow."""
        if not is_jpeg(data):
            return self.pillow(data)
        try:
            check_jpeg_header(data, self.max_pixels)
            image = decode_jpegs(_jpeg_tensor(data))
            return self.standard.apply(image)
        except Exception:  # refused or failed here: Pillow decides, and names the reason if it fails too
            return self.pillow(data)

    def prepare_batch(self, datas: Sequence[bytes], device: torch.device) -> list[torch.Tensor | str]:
        """A batch decoded on ``device`` in one call (nvJPEG on CUDA); files it cannot take go through Pillow."""
        prepared: list[torch.Tensor | str | None] = [None] * len(datas)
        batch: list[int] = []
        for position, data in enumerate(datas):
            try:
                if not is_jpeg(data):
                    raise ImageDecodeError("not a JPEG")
                check_jpeg_header(data, self.max_pixels)
                batch.append(position)
            except ImageDecodeError:
                prepared[position] = self.pillow(data)
        decoded: list[torch.Tensor | None]
        try:
            tensors = [_jpeg_tensor(datas[p]) for p in batch]
            decoded = list(decode_jpegs(tensors, device))
        except Exception:  # one bad file fails the batched call: decode those files one by one
            decoded = [_decode_one(datas[p], device) for p in batch]
        for position, image in zip(batch, decoded, strict=True):
            prepared[position] = self.pillow(datas[position]) if image is None else self.standard.apply(image)
        return [p if p is not None else "could not prepare the image" for p in prepared]


def _decode_one(data: bytes, device: torch.device) -> torch.Tensor | None:
    try:
        image: torch.Tensor = decode_jpegs(_jpeg_tensor(data), device)
    except Exception:
        return None
    return image


def pillow_preparer(
    preprocess: Callable[[Any], torch.Tensor], max_pixels: int
) -> Callable[[bytes], torch.Tensor | str]:
    """open_clip's own path: Pillow decoding (with every safety check), then the model's preprocess."""

    def prepare(data: bytes) -> torch.Tensor | str:
        try:
            return preprocess(decode_image(data, max_pixels=max_pixels))
        except ImageDecodeError as exc:
            return str(exc)
        except Exception as exc:  # a failure in conversion or preprocessing (MemoryError included)
            return f"could not prepare the image for the model: {type(exc).__name__}: {exc}"

    return prepare


def stack_inputs(tensors: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """One batch: stacked where the tensors are (CPU inputs are pinned and copied by the backbone); a GPU batch
    with a few Pillow-decoded CPU tensors moves those to the GPU first."""
    if all(t.device.type == "cpu" for t in tensors):
        return torch.stack(list(tensors))
    return torch.stack([t.to(device) for t in tensors])
