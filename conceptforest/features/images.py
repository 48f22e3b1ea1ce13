"""Safe image decoding: every file either becomes an RGB image or a skip reason; nothing takes the run down."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from conceptforest.defaults import (  # re-exported: the stage modules have always offered these names
    DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS,
)

# resizing the short side of a 1x2,000,000 strip to 224 pixels would allocate gigabytes: refuse such shapes first
DEFAULT_MAX_ASPECT_RATIO = 100.0
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class ImageDecodeError(Exception):
    """A file that cannot be used as an image; ``str(error)`` is the reason listed in ``skipped.csv``."""


@dataclass(frozen=True)
class SkippedImage:
    path: str
    reason: str


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
