"""Request bodies: every one read through an ``Intake`` (a size limit and a pace, per request), and those that carry
images, raw (``Content-Type: image/*``) or multipart, held in a per-process byte budget as they stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.budget import Budget
from gateway.errors import ApiError, Error, error_response
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


# The body limit of a route that sets none of its own (model control's list of versions, any route added later):
# the routes that take more (images, items) raise it for their request before they read.
BODY_LIMIT = 16 * 1024
_INTAKE = "gateway.intake"


class BodyRefused(HTTPException):
    """A body refused as it arrives (413, 408), raised from inside ``receive``. An ``HTTPException`` so that
    FastAPI's own body parsing (a route with a ``Body`` parameter) passes it on instead of answering 400 for it;
    the app answers it as the ``ApiError`` it carries (``answer_refusal``)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.error.status, error.message, error.headers)
        self.error = error


async def answer_refusal(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyRefused)
    return error_response(exc.error.error, exc.error.message, exc.error.headers)


def too_large(limit: int) -> BodyRefused:
    # The connection stays open: uvicorn reads the rest of the body and drops it, and a client that sends its whole
    # body before reading (most do) gets this answer instead of a reset.
    return BodyRefused(ApiError(Error.PAYLOAD_TOO_LARGE, f"the request body is over the limit of {limit} bytes"))


class Intake:
    """One request's body as the app receives it: at most ``limit`` bytes (a larger Content-Length is refused
    before a byte is read) arriving at ``pace`` from the first read, else 413 or 408. Once the body is whole,
    ``receive`` only waits for the client to leave, untimed."""

    def __init__(self, receive: Receive, scope: Scope, pace: Pace) -> None:
        self._receive = receive
        self.pace = pace
        self.limit = BODY_LIMIT
        declared = Headers(scope=scope).get("content-length", "")
        self._declared = int(declared) if declared.isdigit() else 0
        self._received = 0
        self._started: float | None = None
        self._whole = False

    async def __call__(self) -> Message:
        if self._whole:
            return await self._receive()
        loop = asyncio.get_running_loop()
        if self._started is None:
            if self._declared > self.limit:
                raise too_large(self.limit)
            self._started = loop.time()
        try:
            async with asyncio.timeout_at(self.pace.due(self._started, self._received)):
                message = await self._receive()
        except TimeoutError:
            why = (
                f"the body arrived too slowly ({self._received:,} bytes in {loop.time() - self._started:.1f} s; at "
                f"least {self.pace.min_bytes_per_s:,} bytes/s after {self.pace.grace_s:g} s, all within "
                f"{self.pace.timeout_s:g} s)"
            )
            # Closed: waiting for the rest of a body that trickles is what the pace is there to stop.
            raise BodyRefused(ApiError(Error.REQUEST_TIMEOUT, why, {"Connection": "close"})) from None
        self._whole = message["type"] != "http.request" or not message.get("more_body", False)
        self._received += len(message.get("body", b""))
        if self._received > self.limit:
            raise too_large(self.limit)
        return message


class BodyIntake:
    """Every request's body goes through an ``Intake``: the one body reader of the app, so no route, present or
    added later, reads a body without a size limit and a pace."""

    def __init__(self, app: ASGIApp, pace: Pace) -> None:
        self.app = app
        self.pace = pace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        intake = Intake(receive, scope, self.pace)
        scope[_INTAKE] = intake
        await self.app(scope, intake, send)


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


async def limited_stream(request: Request, limit: int, held: BodyBytes | None = None) -> AsyncGenerator[bytes, None]:
    """The body's chunks, up to ``limit`` bytes (this route's, instead of ``BODY_LIMIT``) at the app's pace, and
    with 429 when ``held`` has no room for them."""
    request.scope[_INTAKE].limit = limit
    async for chunk in request.stream():
        if held is not None:
            held.take(request, len(chunk))
        yield chunk


# bytes.join copies without the GIL from 1 MiB: a larger body is joined in a thread, so dozens of 10 MB uploads
# completing together do not hold every other request (a join of 10 MB takes up to ~7 ms here) behind them.
JOIN_OFF_LOOP_BYTES = 1 << 20


async def read_body(request: Request, limit: int, held: BodyBytes | None = None) -> bytes:
    chunks = [chunk async for chunk in limited_stream(request, limit, held)]
    if sum(map(len, chunks)) < JOIN_OFF_LOOP_BYTES:
        return b"".join(chunks)
    return await asyncio.to_thread(b"".join, chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def image_parts(
    request: Request, limit: int, max_files: int, held: BodyBytes | None = None
) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` for each image in the request, in order: the raw body, or the multipart files; read as
    ``limited_stream`` says."""
    kind = media_type(request)
    if kind in RAW_MEDIA_TYPES:
        return [("body", await read_body(request, limit, held))]
    if kind != "multipart/form-data":
        got = f"Content-Type {kind!r}" if kind else "no Content-Type"
        hint = f"; {URL_HINT}" if kind.startswith("text/") or kind.endswith(("json", "urlencoded")) else ""
        raise ApiError(
            Error.UNSUPPORTED_MEDIA_TYPE,
            f"{got}: send the image as the raw body ({', '.join(IMAGE_MEDIA_TYPES)}) or multipart/form-data{hint}",
        )
    parser = MultiPartParser(request.headers, limited_stream(request, limit, held), max_files=max_files, max_fields=16)
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
