"""Request bodies carrying images: raw (``Content-Type: image/*``) or multipart, limited as they stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.errors import ApiError, Error
from imaging.header import MEDIA_TYPES as IMAGE_MEDIA_TYPES

RAW_MEDIA_TYPES = (*IMAGE_MEDIA_TYPES, "application/octet-stream")


def too_large(limit: int) -> ApiError:
    return ApiError(Error.PAYLOAD_TOO_LARGE, f"the request body is over the limit of {limit:,} bytes")


async def limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks, refused with 413 as soon as they pass ``limit`` (not after buffering it all)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in limited_stream(request, limit)])


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def image_parts(request: Request, limit: int, max_files: int) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` for each image in the request, in order: the raw body, or the multipart files."""
    kind = media_type(request)
    if kind in RAW_MEDIA_TYPES:
        return [("body", await read_body(request, limit))]
    if kind != "multipart/form-data":
        got = f"Content-Type {kind!r}" if kind else "no Content-Type"
        raise ApiError(
            Error.UNSUPPORTED_MEDIA_TYPE,
            f"{got}: send the image as the raw body ({', '.join(IMAGE_MEDIA_TYPES)}) or multipart/form-data",
        )
    parser = MultiPartParser(request.headers, limited_stream(request, limit), max_files=max_files, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(Error.MALFORMED_MULTIPART, f"the multipart body could not be parsed: {exc.message}") from None
    try:
        files = [(value.filename or key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise ApiError(Error.MISSING_FILE, "the multipart body has no file part (send the image as `file`)")
        return [(name, await upload.read()) for name, upload in files]
    finally:
        await form.close()
