"""JPEG decoding and preprocessing as tensors: torchvision's decoder on the CPU, nvJPEG batched on a GPU.

open_clip preprocesses a Pillow image (bicubic ``Resize`` of the short side with antialiasing, ``CenterCrop``,
``ToTensor``, ``Normalize``). For JPEG files the same steps run here on uint8 tensors: on the CPU through
``torchvision.io.decode_jpeg`` (libjpeg-turbo) and torchvision's uint8 bicubic resize, which follows Pillow's;
on CUDA through batched nvJPEG calls, the resize and normalisation on the GPU too. Measured on made-up 500x375
JPEGs with ViT-B-32: the CPU path gives embeddings with cosine >= 0.9999996 to open_clip's own (the same pixels
decoded, the resize a grey level apart on a few), decoding at about twice the speed. GPU outputs could not be
measured here (no GPU); nvJPEG ignores EXIF orientation, so rotated JPEGs are prepared on the CPU path instead.
The embedding cache is shared by the decoders (keyed by image content and backbone id): a cache filled by one
decoder serves the others.

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
GPU_DECODER = "nvjpeg"
GPU_DECODE_PIXELS = 256 * 2**20  # decoded pixels per nvJPEG call: about 0.75 GiB of uint8 RGB on the GPU
EXIF_ORIENTATION = 0x0112
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


@dataclass(frozen=True)
class JpegHeader:
    pixels: int
    upright: bool  # no EXIF rotation or mirroring to apply (nvJPEG ignores EXIF orientation)


def check_jpeg_header(data: bytes, max_pixels: int) -> JpegHeader:
    """Refuse what Pillow's path would refuse from the header alone (bombs, including Pillow's own limit,
    extreme strips, non-RGB modes): those files go to Pillow, which gives the skip reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            header = Image.open(io.BytesIO(data))
            orientation = header.getexif().get(EXIF_ORIENTATION, 1)
    except Exception as exc:
        raise ImageDecodeError("not a readable JPEG header, or over Pillow's pixel limit") from exc
    if header.mode not in ("RGB", "L"):  # CMYK and friends: Pillow converts them its own way
        raise ImageDecodeError(f"JPEG mode {header.mode} is left to Pillow")
    check_image_size(*header.size, max_pixels, DEFAULT_MAX_ASPECT_RATIO)
    return JpegHeader(pixels=header.size[0] * header.size[1], upright=orientation in (0, 1))


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
        """A batch decoded on ``device`` (nvJPEG on CUDA) in calls of at most :data:`GPU_DECODE_PIXELS` decoded
        pixels; files it cannot take go through Pillow, and EXIF-rotated JPEGs through :meth:`prepare`."""
        prepared: list[torch.Tensor | str | None] = [None] * len(datas)
        groups: list[list[int]] = [[]]
        pixels = 0
        for position, data in enumerate(datas):
            try:
                if not is_jpeg(data):
                    raise ImageDecodeError("not a JPEG")
                header = check_jpeg_header(data, self.max_pixels)
            except ImageDecodeError:
                prepared[position] = self.pillow(data)
                continue
            if not header.upright:
                prepared[position] = self.prepare(data)  # on the CPU, where EXIF orientation is applied
                continue
            if groups[-1] and pixels + header.pixels > GPU_DECODE_PIXELS:
                groups.append([])
                pixels = 0
            groups[-1].append(position)
            pixels += header.pixels
        for group in groups:
            for position, result in zip(group, self._decode_group([datas[p] for p in group], device), strict=True):
                prepared[position] = result
        return [p if p is not None else "could not prepare the image" for p in prepared]

    def _decode_group(self, datas: list[bytes], device: torch.device) -> list[torch.Tensor | str]:
        """One batched decode; a failed call is retried file by file, and a file that still fails (or whose
        resize fails, out of memory included) goes through Pillow."""
        if not datas:
            return []
        if device.type == "cuda":  # nvJPEG decodes on its own stream: let queued work on these blocks finish
            torch.cuda.current_stream(device).synchronize()
        decoded: list[torch.Tensor | None]
        try:
            decoded = list(decode_jpegs([_jpeg_tensor(d) for d in datas], device))
        except Exception:  # one bad file fails the batched call
            decoded = [_decode_one(d, device) for d in datas]
        results: list[torch.Tensor | str] = []
        for index, data in enumerate(datas):
            image, decoded[index] = decoded[index], None  # each full-size image is freed once resized
            try:
                results.append(self.pillow(data) if image is None else self.standard.apply(image))
            except Exception:
                results.append(self.pillow(data))
        return results


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
