"""Safe image decoding: every file either becomes an RGB image or a skip reason; nothing takes the run down."""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from conceptforest.defaults import (  # re-exported: the stage modules have always offered these names
    DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS,
)

# resizing the short side of a 1x2,000,000 strip to 224 pixels would allocate gigabytes: refuse such shapes first
DEFAULT_MAX_ASPECT_RATIO = 100.0
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# the byte cap of an image file: a 16-bit RGBA image stored uncompressed (TIFF, PNG) takes 8 bytes a pixel, the
# most of any format read here; EXIF, ICC profiles and embedded previews rarely pass a few MiB
MAX_BYTES_PER_PIXEL = 8
METADATA_ALLOWANCE = 16 * 2**20


class ImageDecodeError(Exception):
    """A file that cannot be used as an image; ``str(error)`` is the reason listed in ``skipped.csv``."""


@dataclass(frozen=True)
class SkippedImage:
    path: str
    reason: str


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file read: :data:`MAX_BYTES_PER_PIXEL` per allowed pixel + :data:`METADATA_ALLOWANCE`.

    At the default 50 million pixels that is about 416 MB; a file over it could not hold an image under the pixel
    limit, so it is skipped unread.
    """
    return MAX_BYTES_PER_PIXEL * max_pixels + METADATA_ALLOWANCE


def read_image_file(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of the regular file ``path``, or :class:`ImageDecodeError` with the reason; never waits, never
    reads past :func:`max_file_bytes`.

    The file is opened non-blocking (a FIFO does not wait for a writer), checked with ``fstat`` to be a regular
    file whose size is under the cap, and read at most one byte past the cap (a file that grows meanwhile).
    """
    cap = max_file_bytes(max_pixels)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageDecodeError("not a regular file")
            data = b"" if info.st_size > cap else _read_capped(handle, info.st_size, cap)
    except OSError as exc:
        raise ImageDecodeError(f"cannot read the file: {exc.strerror or exc}") from exc
    except MemoryError as exc:
        raise ImageDecodeError(f"cannot read the file: MemoryError: {exc}") from exc
    size = max(info.st_size, len(data))
    if size > cap:
        raise ImageDecodeError(
            f"file too large: {size:,} bytes, over the cap of {cap:,} bytes for --max-pixels {max_pixels:,} "
            f"({MAX_BYTES_PER_PIXEL} bytes per pixel + {METADATA_ALLOWANCE // 2**20} MiB; raise --max-pixels if the "
            "image is genuine)"
        )
    return data


def _read_capped(handle: BinaryIO, size: int, cap: int) -> bytes:
    """At most ``cap + 1`` bytes: the ``size`` the file had (one more shows it grew), then what it grew by."""
    data = handle.read(size + 1)  # a buffer of the file's size, not of the cap
    if len(data) > size:
        data += handle.read(cap - size)
    return data


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer/float grey images scaled to 8-bit ``L``."""
    array = np.asarray(image)
    if image.mode == "F":
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        scaled = (array - low) / (high - low or 1.0) * 255.0
    else:
        top = 65535.0 if array.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0
        scaled = array.astype(np.float64) / top * 255.0
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any Pillow mode as RGB: transparency composited on ``background``, CMYK/palette/grey converted."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def check_image_size(width: int, height: int, max_pixels: int, max_aspect_ratio: float) -> None:
    """Refuse sizes that would exhaust memory when decoded or resized, before any pixel is read."""
    if width < 1 or height < 1:
        raise ImageDecodeError(f"empty image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"decompression bomb guard: {width}x{height} = {width * height:,} pixels is over the limit of "
            f"{max_pixels:,} (raise --max-pixels if the image is genuine)"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > max_aspect_ratio:
        raise ImageDecodeError(
            f"extreme aspect ratio: {width}x{height} is {ratio:,.0f}:1, over the limit of {max_aspect_ratio:g}:1 "
            "(resizing its short side to the model's input size would exhaust memory)"
        )


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO
) -> Image.Image:
    """Decode image bytes into an upright RGB image, or raise :class:`ImageDecodeError` with the reason.

    Parameters
    ----------
    data : bytes
        The file's content.
    max_pixels : int
        Larger images are refused from their header (decompression bombs).
    max_aspect_ratio : float
        Long side over short side; narrower strips are refused from their header, since resizing their short side
        to the model's input size would allocate gigabytes.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            check_image_size(*opened.size, max_pixels, max_aspect_ratio)
            opened.seek(0)  # animated images: the first frame
            opened.load()
            upright: Image.Image = ImageOps.exif_transpose(opened) or opened
            return to_rgb(upright)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image Pillow can read (wrong extension or corrupt header)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb guard: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"truncated or corrupt image data: {exc}") from exc
    except Exception as exc:  # any other failure of one file (MemoryError, a Pillow bug) skips only that file
        raise ImageDecodeError(f"could not decode the image: {type(exc).__name__}: {exc}") from exc
