"""Request bodies carrying images: raw (``Content-Type: image/*``) or multipart, limited as they stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.budget import Budget
from gateway.errors import ApiError, Error
from imaging.header import MEDIA_TYPES as IMAGE_MEDIA_TYPES
from imaging.header import URL_HINT

# image/jpg is not registered, but many clients send it for JPEGs.
RAW_MEDIA_TYPES = (*IMAGE_MEDIA_TYPES, "image/jpg", "application/octet-stream")


@dataclass(frozen=True)
class Pace:
    """How fast a body must arrive: whole within ``timeout_s``, and after ``grace_s`` at least ``min_bytes_per_s``
    on average. A client trickling bytes is answered 408 within seconds instead of holding a slot for ever."""

    timeout_s: float = 60.0
    min_bytes_per_s: int = 8 * 1024  # 64 kbit/s: a 10 MB body may take the whole minute
    grace_s: float = 2.0

    def due(self, started: float, received: int) -> float:
        """When the next chunk must have arrived (loop time), given ``received`` bytes so far."""
        return min(started + self.timeout_s, started + self.grace_s + received / self.min_bytes_per_s)


class BodyBytes:
    """Body bytes held by this process's requests, at most ``capacity``: each chunk is counted as it arrives
    (a trickling client holds only what it sent), and given back when its request ends."""

    def __init__(self, capacity: int, retry_after_s: int) -> None:
        self.budget = Budget(capacity)
        self.retry_after_s = retry_after_s

    def take(self, request: Request, units: int) -> None:
        if not self.budget.try_take(units):
            raise ApiError(
                Error.OVERLOADED, "too many upload bytes are being received; retry shortly",
                {"Retry-After": str(self.retry_after_s)},
            )  # fmt: skip
        request.state.body_bytes = self.held(request) + units

    def give_back(self, request: Request) -> None:
        self.budget.give_back(self.held(request))
        request.state.body_bytes = 0

    @staticmethod
    def held(request: Request) -> int:
        return int(getattr(request.state, "body_bytes", 0))


def too_large(limit: int) -> ApiError:
    return ApiError(Error.PAYLOAD_TOO_LARGE, f"the request body is over the limit of {limit} bytes")


async def limited_stream(
    request: Request, limit: int, pace: Pace | None = None, held: BodyBytes | None = None
) -> AsyncGenerator[bytes, None]:
    """The body's chunks, refused with 413 as soon as they pass ``limit`` (not after buffering it all), with 408
    when they arrive slower than ``pace`` (when given), and with 429 when ``held`` has no room for them."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    loop = asyncio.get_running_loop()
    started, received = loop.time(), 0
    chunks = aiter(request.stream())
    while True:
        try:
            async with asyncio.timeout_at(pace.due(started, received) if pace else None):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            assert pace is not None  # only a pace sets a deadline
            raise ApiError(
                Error.REQUEST_TIMEOUT,
                f"the body arrived too slowly ({received:,} bytes in {loop.time() - started:.1f} s; at least "
                f"{pace.min_bytes_per_s:,} bytes/s after {pace.grace_s:g} s, all within {pace.timeout_s:g} s)",
                {"Connection": "close"},
            ) from None
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        if held is not None:
            held.take(request, len(chunk))
        yield chunk


# bytes.join copies without the GIL from 1 MiB: a larger body is joined in a thread, so dozens of 10 MB uploads
# completing together do not hold every other request (a join of 10 MB takes up to ~7 ms here) behind them.
JOIN_OFF_LOOP_BYTES = 1 << 20


async def read_body(request: Request, limit: int, pace: Pace | None = None, held: BodyBytes | None = None) -> bytes:
    chunks = [chunk async for chunk in limited_stream(request, limit, pace, held)]
    if sum(map(len, chunks)) < JOIN_OFF_LOOP_BYTES:
        return b"".join(chunks)
    return await asyncio.to_thread(b"".join, chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def image_parts(
    request: Request, limit: int, max_files: int, pace: Pace | None = None, held: BodyBytes | None = None
) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` for each image in the request, in order: the raw body, or the multipart files; read as
    ``limited_stream`` says."""
    kind = media_type(request)
    if kind in RAW_MEDIA_TYPES:
        return [("body", await read_body(request, limit, pace, held))]
    if kind != "multipart/form-data":
        got = f"Content-Type {kind!r}" if kind else "no Content-Type"
        hint = f"; {URL_HINT}" if kind.startswith("text/") or kind.endswith(("json", "urlencoded")) else ""
        raise ApiError(
            Error.UNSUPPORTED_MEDIA_TYPE,
            f"{got}: send the image as the raw body ({', '.join(IMAGE_MEDIA_TYPES)}) or multipart/form-data{hint}",
        )
    parser = MultiPartParser(
        request.headers, limited_stream(request, limit, pace, held), max_files=max_files, max_fields=16
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(Error.MALFORMED_MULTIPART, f"the multipart body could not be parsed: {exc.message}") from None
    try:
        files = [(value.filename or key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise ApiError(
                Error.MISSING_FILE,
                "the multipart body has no file part (send the image as a file, e.g. `-F file=@a.jpg`)",
            )
        return [(name, await upload.read()) for name, upload in files]
    finally:
        await form.close()
