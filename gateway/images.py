"""Uploaded images as the gateway handles them: header checked, pixels counted, bytes forwarded undecoded.

The gateway never decodes: Triton's decode step does, once, at the scale the model needs. What the gateway
reads is the header (format, size, EXIF orientation: tens of microseconds), so it refuses what Triton would
refuse before spending a gRPC call on it, and it admits an upload only while the pixels that Triton will
decode for this process's requests stay under a budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from gateway.budget import Budget
from gateway.errors import ApiError, Error
from imaging import Header, ImageError, Limits, read_header

T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    name: str  # "body" for a raw body, else the multipart file name
    data: bytes
    header: Header


class Admission:
    """At most ``pixel_budget`` decoded pixels in flight for this process's requests, each image of a batch
    counted, so a flood of large images is refused (429) instead of piling up in Triton."""

    def __init__(self, limits: Limits, pixel_budget: int, retry_after_s: int) -> None:
        self.limits = limits
        self.pixels = Budget(pixel_budget)
        self.retry_after_s = retry_after_s

    @asynccontextmanager
    async def admitted(self, parts: list[tuple[str, bytes]]) -> AsyncIterator[list[Upload]]:
        """Every part's header checked, then their pixels held until the block ends."""
        uploads = [Upload(name, data, _named(name, read_header, data, self.limits)) for name, data in parts]
        pixels = sum(upload.header.pixels for upload in uploads)
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
