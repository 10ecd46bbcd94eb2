"""What every route taking an image shares, whatever its kind: the upload in the OpenAPI document (raw body or
multipart), the errors an upload and a Triton call can give, and the image's size as the answer reports it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gateway.errors import Error, error_responses
from gateway.images import Upload
from imaging.header import MEDIA_TYPES as IMAGE_MEDIA_TYPES


def image_body(multipart_field: str, multiple: bool) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its images itself (``Admission.received``)."""
    binary = {"type": "string", "format": "binary"}
    field = {"type": "array", "items": binary} if multiple else binary
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {multipart_field: field},
                "required": [multipart_field],
            }
        }
    }
    if not multiple:
        content |= {media: {"schema": binary} for media in IMAGE_MEDIA_TYPES}
    return {"requestBody": {"required": True, "content": content}}


UPLOAD_ERRORS = (
    Error.UNAUTHORIZED,
    Error.PAYLOAD_TOO_LARGE,
    Error.IMAGE_TOO_LARGE,
    Error.UNSUPPORTED_MEDIA_TYPE,
    Error.UNSUPPORTED_IMAGE,
    Error.REQUEST_TIMEOUT,
    Error.INVALID_REQUEST,
    Error.IMAGE_TOO_COMPLEX,
    Error.EMPTY_IMAGE,
    Error.CORRUPT_IMAGE,
    Error.ANIMATED_IMAGE,
    Error.IMAGE_TOO_SMALL,
    Error.BAD_ASPECT_RATIO,
    Error.INVALID_IMAGE,
    Error.MALFORMED_MULTIPART,
    Error.MISSING_FILE,
    Error.OVERLOADED,
    Error.TRITON_QUEUE_FULL,
    Error.TRITON_ERROR,
    Error.TRITON_UNAVAILABLE,
    Error.TRITON_SHARED_MEMORY_FULL,
    Error.CANCELLED,
    Error.DEADLINE_EXCEEDED,
)


def errors(*more: Error) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of an image route: every upload error, and the route's own."""
    return error_responses(*UPLOAD_ERRORS, *more)


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str = Field(examples=["JPEG"])


def image_info(upload: Upload) -> dict[str, Any]:
    """``ImageInfo`` of an upload, as the answer carries it. Answers are built as JSON directly (``JSONResponse``):
    their models document them, and FastAPI validating each answer against its model again cost an ImageNet-size
    classification 6% of its in-process CPU."""
    width, height = upload.header.oriented_size  # as the model saw it: after EXIF orientation
    return {"width": width, "height": height, "format": upload.header.format}
