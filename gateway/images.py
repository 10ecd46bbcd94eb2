"""Uploaded images as the gateway handles them: header checked, pixels counted, bytes forwarded undecoded.

The gateway never decodes: Triton's decode step does, once, at the scale the model needs. What the gateway
reads is the header (format, size, EXIF orientation: tens of microseconds), so it refuses what Triton would
refuse before spending a gRPC call on it, and it admits an upload only while the pixels that Triton will
decode for this process's requests stay under a budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request

from gateway.budget import Budget
from gateway.errors import ApiError, Error
from gateway.settings import Settings
from gateway.uploads import BodyBytes, image_parts
from imaging import Header, ImageError, Limits, read_header

T = TypeVar("T")

# Headers of uploads totalling at least this many bytes are read off the event loop. A header walk is bounded (the
# worst file of the hostile corpus under 1 MiB took 0.9 ms here, a photo's 0.07 ms), but dozens of large ones at
# once would still queue every other request behind them; below this the thread hop costs more than the walk
# (two thread wakeups, about 0.3 ms of CPU on this 2-core VM, against 0.07 ms for an ImageNet-size JPEG).
HEADERS_OFF_LOOP_BYTES = 256 * 1024


@dataclass(frozen=True)
class Upload:
    name: str  # "body" for a raw body, else the multipart file name
    data: bytes
    header: Header


class Admission:
    """At most ``pixel_budget`` decoded pixels in flight for this process's requests, each image of a batch
    counted, so a flood of large images is refused (429) instead of piling up in Triton."""

    def __init__(
        self,
        limits: Limits,
        pixel_budget: int,
        retry_after_s: int,
        max_body_bytes: int = Settings.model_fields["max_body_bytes"].default,
        body_bytes_budget: int = Settings.model_fields["max_body_bytes_in_flight"].default,
    ) -> None:
        self.limits = limits
        self.pixels = Budget(pixel_budget)
        self.retry_after_s = retry_after_s
        self.max_body_bytes = max_body_bytes
        self.body_bytes = BodyBytes(body_bytes_budget, retry_after_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        return cls(
            Limits(settings.max_image_pixels, settings.min_image_side, settings.max_aspect_ratio),
            pixel_budget=settings.max_pixels_in_flight,
            retry_after_s=settings.retry_after_s,
            max_body_bytes=settings.max_body_bytes,
            body_bytes_budget=settings.max_body_bytes_in_flight,
        )

    @asynccontextmanager
    async def received(self, request: Request, max_files: int) -> AsyncIterator[list[Upload]]:
        """The request's images read (at the app's pace, their bytes held in the body budget), headers checked and
        pixels held until the block ends. Take an inference slot inside this block, never around it: a slow
        client then holds only the bytes it sent, not capacity."""
        try:
            parts = await image_parts(request, self.max_body_bytes, max_files, self.body_bytes)
            async with self.admitted(parts) as uploads:
                yield uploads
        finally:
            self.body_bytes.give_back(request)

    def _uploads(self, parts: list[tuple[str, bytes]]) -> list[Upload]:
        return [Upload(name, data, _named(name, read_header, data, self.limits)) for name, data in parts]

    @asynccontextmanager
    async def admitted(self, parts: list[tuple[str, bytes]]) -> AsyncIterator[list[Upload]]:
        """Every part's header checked, then their pixels held until the block ends. Each image of a batch counts:
        a batch over the whole budget is refused (413), never admitted as one oversized ask."""
        if sum(len(data) for _, data in parts) < HEADERS_OFF_LOOP_BYTES:
            uploads = self._uploads(parts)
        else:
            uploads = await asyncio.to_thread(self._uploads, parts)
        pixels = sum(upload.header.pixels for upload in uploads)
        if len(uploads) > 1 and pixels > self.pixels.capacity:
            raise ApiError(
                Error.IMAGE_TOO_LARGE,
                f"the {len(uploads)} images total {pixels:,} pixels, over this process's budget of "
                f"{self.pixels.capacity:,}; send fewer or smaller images per request",
            )
        if not self.pixels.try_take(pixels):
            raise ApiError(Error.OVERLOADED, "too many image pixels are being processed; retry shortly",
                {"Retry-After": str(self.retry_after_s)},
            )  # fmt: skip
        try:
            yield uploads
        finally:
            self.pixels.give_back(pixels)


def image_error(exc: ImageError) -> ApiError:
    return ApiError(Error.of_problem(exc.problem), exc.message)


def _named(name: str, function: Callable[..., T], *args: object) -> T:
    """Errors about one image of several say which one."""
    try:
        return function(*args)
    except ImageError as exc:
        error = image_error(exc)
        if name != "body":
            error.message = f"{name}: {error.message}"
        raise error from None
