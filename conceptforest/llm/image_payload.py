"""Images as a vision LLM receives them: read safely, decoded safely, downscaled, re-encoded as a JPEG data URI.

A 20 MB photo should not cost 20 MB of request (or its tokens): the image goes through the same safe decoder as the
features (:func:`conceptforest.features.images.decode_image`: decompression-bomb and aspect-ratio guards, EXIF
rotation, any mode to RGB), is shrunk so that its longest side is at most ``max_side`` pixels (never enlarged) and
is re-encoded as a JPEG. Only the sha256 of the original file's bytes identifies it in caches; the image itself
is never stored.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from conceptforest.features.images import ImageDecodeError, decode_image

DEFAULT_MAX_SIDE = 768
JPEG_QUALITY = 90
DATA_URI_PREFIX = "data:image/jpeg;base64,"


@dataclass(frozen=True)
class ImagePayload:
    """One image ready to send: ``url`` is the JPEG data URI, ``size`` its (width, height) after downscaling."""

    sha256: str
    url: str
    size: tuple[int, int]


def read_image_file(path: str | Path) -> bytes:
    """The bytes of a regular file, or :class:`ImageDecodeError` with the reason.

    The file is opened non-blocking and checked to be a regular file, so a path that is a FIFO or a device is
    refused instead of waited on (as in feature extraction).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ImageDecodeError("not a regular file")
            return handle.read()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read the file: {exc.strerror or exc}") from exc


def downscale(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` shrunk (aspect kept, Lanczos) so that its longest side is at most ``max_side``; never enlarged."""
    if max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    width, height = image.size
    longest = max(width, height)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def jpeg_data_uri(image: Image.Image, quality: int = JPEG_QUALITY) -> str:
    """``image`` (RGB) encoded as a base64 JPEG data URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return DATA_URI_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_payload(data: bytes, *, max_side: int = DEFAULT_MAX_SIDE, sha256: str | None = None) -> ImagePayload:
    """Decode ``data`` safely, downscale it to ``max_side`` and re-encode it as a JPEG data URI.

    Raises :class:`ImageDecodeError` (with the reason) for bytes that are not a usable image.

    Examples
    --------
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (2000, 1000), (200, 30, 30)).save(buffer, format="PNG")
    >>> payload = image_payload(buffer.getvalue(), max_side=100)
    >>> payload.size, payload.url.startswith("data:image/jpeg;base64,/9j/")
    ((100, 50), True)
    """
    digest = sha256 or hashlib.sha256(data).hexdigest()
    image = downscale(decode_image(data), max_side)
    return ImagePayload(sha256=digest, url=jpeg_data_uri(image), size=image.size)
