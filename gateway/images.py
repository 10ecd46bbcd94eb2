"""Image bytes -> ``uint8 [H, W, 3]`` BGR, refusing what is not a supported, sane, single-frame image.

The header is read first (Pillow opens lazily) so size limits are enforced before any pixel is decoded; the
decode itself is OpenCV's (libjpeg-turbo, libpng, libwebp), which honours EXIF orientation and turns
grayscale, RGBA, 16-bit and CMYK images into 8-bit BGR.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from gateway.budget import Budget
from gateway.errors import ApiError

T = TypeVar("T")

SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
                     "TIFF": "image/tiff"}  # fmt: skip
IMAGE_MEDIA_TYPES = tuple(SUPPORTED_FORMATS.values())
# Pillow's decompression-bomb check is a warning by default; make it refuse.
warnings.simplefilter("error", Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    min_side: int = 8
    max_aspect_ratio: float = 20.0


@dataclass(frozen=True)
class Header:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes, limits: Limits) -> Header:
    """Format and size from the header alone; 415 for what is not a supported image, 413/422 for bad sizes."""
    if not data:
        raise ApiError(422, "empty_image", "the request carries no image bytes")
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with Image.open(io.BytesIO(data)) as image:
            header = Header(image.format or "", *image.size)
            frames = getattr(image, "n_frames", 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(limits) from None
    except UnidentifiedImageError:
        if sniffed := _sniff(data):
            raise ApiError(422, "corrupt_image", f"this looks like a {sniffed} with a corrupt header") from None
        raise ApiError(
            415, "unsupported_image", f"not a supported image; send one of {', '.join(IMAGE_MEDIA_TYPES)}"
        ) from None
    except Exception as exc:  # a corrupt header: Pillow raises assorted errors
        raise ApiError(422, "corrupt_image", f"the image header could not be read: {exc}") from None
    if header.format not in SUPPORTED_FORMATS:
        raise ApiError(
            415, "unsupported_image", f"{header.format or 'this'} images are not supported; send one of "
            f"{', '.join(IMAGE_MEDIA_TYPES)}",
        )  # fmt: skip
    if frames > 1:
        raise ApiError(422, "animated_image", f"animated or multi-frame images ({frames} frames) are not supported")
    if header.pixels > limits.max_pixels:
        raise _too_many_pixels(limits, header)
    short, long = sorted((header.width, header.height))
    if short < limits.min_side:
        raise ApiError(
            422,
            "image_too_small",
            f"{header.width}x{header.height}: each side must be at least {limits.min_side} px",
        )
    if long / short > limits.max_aspect_ratio:
        raise ApiError(
            422, "bad_aspect_ratio",
            f"{header.width}x{header.height}: aspect ratios above {limits.max_aspect_ratio:g} are refused",
        )  # fmt: skip
    return header


_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def _sniff(data: bytes) -> str | None:
    """The format a file's first bytes announce, so a corrupt header is called corrupt, not unsupported."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _MAGIC.items() if data.startswith(magic)), None)


def _too_many_pixels(limits: Limits, header: Header | None = None) -> ApiError:
    size = f"{header.width}x{header.height} = {header.pixels:,} pixels" if header else "the image"
    return ApiError(413, "image_too_large", f"{size} is over the limit of {limits.max_pixels:,} pixels")


def decode(data: bytes, header: Header) -> np.ndarray:
    """Full decode to BGR; CPU-bound and GIL-free in OpenCV, so callers run it in a worker thread."""
    if header.format == "JPEG" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        # libjpeg fills a truncated JPEG with grey and only warns: refuse it rather than classify grey.
        raise ApiError(422, "corrupt_image", "the JPEG is truncated (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ApiError(422, "corrupt_image", f"the {header.format} data could not be decoded (truncated or corrupt)")
    return image


@dataclass(frozen=True)
class DecodedImage:
    name: str
    header: Header
    array: np.ndarray


class Decoder:
    """A bounded decode pool: at most ``threads`` decodes at once, and at most ``pixel_budget`` decoded pixels
    alive in this process, so a flood of large images is refused (429) instead of starving the event loop or
    exhausting memory."""

    def __init__(self, limits: Limits, threads: int, pixel_budget: int, retry_after_s: int) -> None:
        self.limits = limits
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")
        self.pixels = Budget(pixel_budget)
        self.retry_after_s = retry_after_s

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    @asynccontextmanager
    async def decoded(self, parts: list[tuple[str, bytes]]) -> AsyncIterator[list[DecodedImage]]:
        """Decode every part (all headers checked first) and hold their pixels until the block ends."""
        headers = [_named(name, read_header, data, self.limits) for name, data in parts]
        pixels = sum(header.pixels for header in headers)
        if not self.pixels.try_take(pixels):
            raise ApiError(
                429, "overloaded", "too many image pixels are being processed; retry shortly",
                {"Retry-After": str(self.retry_after_s)},
            )  # fmt: skip
        try:
            loop = asyncio.get_running_loop()
            arrays = await asyncio.gather(
                *(loop.run_in_executor(self.pool, _named, name, decode, data, header)
                  for (name, data), header in zip(parts, headers, strict=True))
            )  # fmt: skip
            yield [
                DecodedImage(name, header, array)
                for (name, _), header, array in zip(parts, headers, arrays, strict=True)
            ]
        finally:
            self.pixels.give_back(pixels)


def _named(name: str, function: Callable[..., T], *args: object) -> T:
    """Errors about one image of several say which one."""
    try:
        return function(*args)
    except ApiError as exc:
        if name != "body":
            exc.message = f"{name}: {exc.message}"
        raise
