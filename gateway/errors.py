"""Every error the API answers, in one registry, and one JSON shape for all: ``{"error": {"code", "message"}}``.

Codes are stable (clients match on them); each has one HTTP status and a meaning, listed in the OpenAPI docs.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from imaging import Problem

log = logging.getLogger("gateway.errors")


class Error(Enum):
    """A stable error code with its HTTP status and what it means to a client."""

    status: int
    meaning: str

    def __new__(cls, code: str, status: int, meaning: str) -> Error:
        member = object.__new__(cls)
        member._value_ = code
        member.status = status
        member.meaning = meaning
        return member

    @property
    def code(self) -> str:
        return str(self.value)

    @classmethod
    def of_problem(cls, problem: Problem) -> Error:
        """An image problem's code is its error code (imaging owns the names; the statuses live here)."""
        return next(error for error in cls if error.code == problem.value)

    BAD_REQUEST = "bad_request", 400, "the request is malformed (HTTP level)"
    UNAUTHORIZED = "unauthorized", 401, "a valid API key is required (`Authorization: Bearer <key>` or `X-API-Key`)"
    FORBIDDEN = "forbidden", 403, "model control from another host needs API keys configured (`GATEWAY_API_KEYS`)"
    NOT_FOUND = "not_found", 404, "no such route, item or asset"
    MODEL_NOT_FOUND = "model_not_found", 404, "Triton serves no model of that name, or none of the kind the route takes"
    MODEL_VERSION_NOT_FOUND = "model_version_not_found", 404, "the pinned version is not served (GET /v1/models)"
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "the route does not take this method"
    REQUEST_TIMEOUT = "request_timeout", 408, "the request head or an image body did not arrive in time"
    WRITE_CONFLICT = "write_conflict", 409, "lost too many races for this item; retry after `Retry-After` seconds"
    MODEL_CONTROL_FAILED = "model_control_failed", 409, "Triton refused the load or unload (its message says why)"
    PRECONDITION_FAILED = "precondition_failed", 412, "`If-Match` does not name the item's current version"
    PAYLOAD_TOO_LARGE = Problem.TOO_MANY_BYTES.value, 413, "the body is over the byte limit (enforced while it streams)"
    IMAGE_TOO_LARGE = Problem.TOO_LARGE.value, 413, "the image is over the pixel limit (read from its header)"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415, "the Content-Type is not one the route takes"
    UNSUPPORTED_IMAGE = Problem.UNSUPPORTED.value, 415, "not an image, or a format the route does not take"
    INVALID_REQUEST = "invalid_request", 422, "a parameter, header or path segment is invalid"
    EMPTY_IMAGE = Problem.EMPTY.value, 422, "the request carries no image bytes"
    CORRUPT_IMAGE = Problem.CORRUPT.value, 422, "the image is truncated or corrupt"
    ANIMATED_IMAGE = Problem.ANIMATED.value, 422, "animated and multi-frame images are not classified"
    IMAGE_TOO_SMALL = Problem.TOO_SMALL.value, 422, "a side of the image is under the minimum"
    BAD_ASPECT_RATIO = Problem.BAD_ASPECT_RATIO.value, 422, "the image is too elongated"
    IMAGE_TOO_COMPLEX = (
        Problem.TOO_COMPLEX.value,
        422,
        ("the file's structure is abusive: more markers, chunks, progressive scans or directory entries than read"),
    )
    INVALID_IMAGE = "invalid_image", 422, "Triton refused the input for another reason (its message says which)"
    MALFORMED_MULTIPART = "malformed_multipart", 422, "the multipart body could not be parsed"
    MISSING_FILE = "missing_file", 422, "the multipart body has no file part"
    INVALID_JSON = "invalid_json", 422, "the body is not a JSON object the API stores (UTF-8, finite, not too deep)"
    INVALID_CURSOR = "invalid_cursor", 422, "the page cursor was not issued by this API"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused", 422, "the `Idempotency-Key` was used with another body"
    OVERLOADED = "overloaded", 429, "this gateway process is at its limit; retry after `Retry-After` seconds"
    TRITON_QUEUE_FULL = "triton_queue_full", 429, "Triton's queue is full; retry after `Retry-After` seconds"
    HEADERS_TOO_LARGE = "request_header_fields_too_large", 431, "the request head is over the size limit"
    CLIENT_CLOSED_REQUEST = "client_closed_request", 499, "the client went away before the answer (never sent)"
    INTERNAL = "internal", 500, "an unexpected error (logged with the request id)"
    TRITON_ERROR = "triton_error", 502, "Triton answered with an unexpected error"
    TRITON_UNAVAILABLE = "triton_unavailable", 503, "Triton is unavailable; retry after `Retry-After` seconds"
    TRITON_SHARED_MEMORY_FULL = (
        "triton_shared_memory_full",
        503,
        "Triton's shared memory (/dev/shm) is full; retry after `Retry-After` seconds (readiness says so meanwhile)",
    )
    CANCELLED = "cancelled", 503, "the call to Triton was cancelled; retry after `Retry-After` seconds"
    STORE_UNAVAILABLE = "store_unavailable", 503, "the item store is unavailable; retry after `Retry-After` seconds"
    DEADLINE_EXCEEDED = "deadline_exceeded", 504, "Triton did not answer within the deadline"


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """What every non-2xx answer carries."""

    error: ErrorBody


class ApiError(Exception):
    """An error meant for the client: a registered code, and a human message about this request."""

    def __init__(self, error: Error, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.headers = headers or {}


def error_response(error: Error, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": error.code, "message": message}}, status_code=error.status, headers=headers)


def error_responses(*errors: Error) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the errors a route can give: per status, its codes with meanings and examples."""
    by_status: dict[int, list[Error]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error)
    return {
        status: {
            "model": ErrorResponse,
            "description": "; ".join(f"`{e.code}`: {e.meaning}" for e in listed),
            "content": {
                "application/json": {
                    "examples": {e.code: {"value": {"error": {"code": e.code, "message": e.meaning}}} for e in listed}
                }
            },
        }
        for status, listed in sorted(by_status.items())
    }


def registry_table() -> str:
    """The registry as a Markdown table, for the API description."""
    rows = "\n".join(f"| `{e.code}` | {e.status} | {e.meaning} |" for e in Error)
    return f"| code | status | meaning |\n|---|---|---|\n{rows}"


_BY_STATUS = {400: Error.BAD_REQUEST, 401: Error.UNAUTHORIZED, 404: Error.NOT_FOUND, 405: Error.METHOD_NOT_ALLOWED}


def _describe(errors: list[dict]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.error, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(Error.INVALID_REQUEST, _describe(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = _BY_STATUS.get(exc.status_code, Error.BAD_REQUEST if exc.status_code < 500 else Error.INTERNAL)
        response = error_response(error, str(exc.detail), dict(exc.headers or {}))
        response.status_code = exc.status_code  # Starlette's own status stands (e.g. 406), under the nearest code
        return response

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, exc: ClientDisconnect) -> JSONResponse:
        # Nobody reads this answer; the status is what the access log and the metrics count (nginx's 499).
        return error_response(Error.CLIENT_CLOSED_REQUEST, "the client closed the connection mid-body")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(Error.INTERNAL, "internal server error")
