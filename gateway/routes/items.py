"""``/v1/items``: CRUD on the item store; nothing here touches Triton.

Bodies are read by hand, not through a pydantic body model: the size limit then holds while the body streams
in (a chunked upload can't exceed it), and hostile JSON (too deep, not UTF-8, non-finite numbers) is refused
before it costs anything. ``openapi_extra`` still documents the body schema, so ``/docs`` shows it.

HTTP semantics: every item answer carries ``ETag: "<version>"``. ``If-Match`` (``*`` or one such ETag) makes
PUT, PATCH and DELETE conditional; a stale one answers 412. Tags compare strongly (RFC 9110 8.8.3.2): ``"02"``
is not ``"2"``, and a weak ``W/"2"`` never matches for a write; both answer 412. A POST retried with the same
``Idempotency-Key`` and body answers like the first one (201, same item, ``Location`` and ``ETag``) plus
``Idempotent-Replayed: true``, and creates nothing; the same key with another body answers 422.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from gateway.deps import SettingsDep, StoreDep
from gateway.errors import ApiError, Error, error_response, error_responses
from gateway.items.document import MAX_DEPTH, InvalidDocument, parse_object
from gateway.items.store import (
    ITEM_ID_PATTERN,
    MAX_PAGE_BYTES,
    IdempotencyKeyReused,
    IfMatch,
    InvalidCursor,
    Item,
    ItemNotFound,
    ItemPage,
    ItemTooLarge,
    PreconditionFailed,
    StoreUnavailable,
    WriteConflict,
)
from gateway.uploads import media_type, read_body

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


_ANSWERS: dict[type[Exception], Error] = {
    ItemNotFound: Error.NOT_FOUND,
    PreconditionFailed: Error.PRECONDITION_FAILED,
    IdempotencyKeyReused: Error.IDEMPOTENCY_KEY_REUSED,
    InvalidCursor: Error.INVALID_CURSOR,
    ItemTooLarge: Error.PAYLOAD_TOO_LARGE,
    WriteConflict: Error.WRITE_CONFLICT,
    StoreUnavailable: Error.STORE_UNAVAILABLE,
}


def store_error_handler(retry_after_s: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """The app's handler for every store error of every route here; 409 and 503 say when to retry. (A handler,
    not a yield dependency around each route: that cost a tenth of a CRUD request's CPU.)"""

    async def answer(_: Request, exc: Exception) -> JSONResponse:
        error = _ANSWERS[type(exc)]
        retry = {"Retry-After": str(retry_after_s)} if error.status in (409, 503) else None
        return error_response(error, str(exc), retry)

    return answer


router = APIRouter(prefix="/v1/items", tags=["items"])

ItemId = Annotated[str, Path(pattern=ITEM_ID_PATTERN, description="letters, digits, `_` and `-`; 1 to 128")]
IfMatchHeader = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='`*` (the item must exist) or its ETag, e.g. `"3"`: the write happens only if the item is '
        "still at that version, else 412",
        # Documented, not enforced: any other tag is a precondition that cannot hold (412, RFC 9110), not a 422.
        json_schema_extra={"pattern": r'^\s*(\*|"[1-9][0-9]{0,17}")\s*$'},
    ),
]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7E]{1,255}$",
        description="makes a retried POST return the first result instead of creating another item",
    ),
]

# Exactly the tags this API sends: an opaque-tag that merely parses to a version ("02", "+2") is another tag.
_ETAG = re.compile(r'^"([1-9][0-9]{0,17})"$')

# OpenAPI: the bodies read by hand, and the answers.
_OBJECT = {
    "type": "object",
    "additionalProperties": True,
    "description": "any JSON object, UTF-8, at most GATEWAY_MAX_ITEM_BYTES (64 KiB by default) and "
    f"{MAX_DEPTH} levels deep",
}
_EXAMPLE = {"name": "widget", "tags": ["blue"], "stock": 7}
_PATCH_EXAMPLE = {"stock": 6, "tags": None}
_ETAG_HEADER = {"ETag": {"description": 'the item\'s version, e.g. `"3"`', "schema": {"type": "string"}}}
_LINKS = {
    f"{verb.capitalize()}Item": {
        "operationId": f"{verb}_item",
        "parameters": {"item_id": "$response.body#/id"},
    }
    for verb in ("get", "replace", "patch", "delete")
}


# What a write of a body (PUT, PATCH) can answer besides its own cases.
_WRITE_ERRORS = (
    Error.PRECONDITION_FAILED,
    Error.PAYLOAD_TOO_LARGE,
    Error.UNSUPPORTED_MEDIA_TYPE,
    Error.INVALID_REQUEST,
    Error.INVALID_JSON,
    Error.STORE_UNAVAILABLE,
)


def _errors(*errors: Error) -> dict[int | str, dict[str, Any]]:
    """Every items route can also be asked without a key (401) when keys are configured."""
    return error_responses(Error.UNAUTHORIZED, *errors)


def _body(example: dict[str, Any], *media_types: str) -> dict[str, Any]:
    content = {media_type: {"schema": _OBJECT, "example": example} for media_type in media_types}
    return {"requestBody": {"required": True, "content": content}}


async def _read_object(request: Request, limit: int, media_types: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object, never buffering more than ``limit`` bytes whatever Content-Length says (a
    client that goes away: the app's ClientDisconnect handler, 499)."""
    if media_type(request) not in media_types:
        raise ApiError(Error.UNSUPPORTED_MEDIA_TYPE, f"send the item as {' or '.join(media_types)}")
    body = await read_body(request, limit)
    try:
        return parse_object(body)
    except InvalidDocument as exc:
        raise ApiError(Error.INVALID_JSON, str(exc)) from None


def _precondition(if_match: str | None) -> IfMatch:
    """``If-Match`` as the store takes it; a tag no version can match (weak, foreign, a list) fails at once."""
    if if_match is None:
        return None
    value = if_match.strip()
    if value == "*":
        return "*"
    match = _ETAG.fullmatch(value)
    if match is None:
        raise ApiError(
            Error.PRECONDITION_FAILED,
            f'If-Match {value[:64]!r} names no version; send * or one ETag like "3"',
        )
    return int(match.group(1))


def _describe(response: Response, item: Item) -> Item:
    response.headers["ETag"] = f'"{item.version}"'
    return item


def _created(request: Request, response: Response, item: Item) -> Item:
    response.status_code = 201
    response.headers["Location"] = request.url_for("get_item", item_id=item.id).path
    return _describe(response, item)


@router.post(
    "",
    status_code=201,
    operation_id="create_item",
    summary="Create an item with a server-made id",
    responses={
        201: {"description": "created (or replayed)", "headers": _ETAG_HEADER, "links": _LINKS},
        **_errors(
            Error.PAYLOAD_TOO_LARGE,
            Error.UNSUPPORTED_MEDIA_TYPE,
            Error.INVALID_REQUEST,
            Error.INVALID_JSON,
            Error.IDEMPOTENCY_KEY_REUSED,
            Error.STORE_UNAVAILABLE,
        ),
    },
    openapi_extra=_body(_EXAMPLE, JSON),
)
async def create_item(
    request: Request,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Item:
    data = await _read_object(request, settings.max_item_bytes, (JSON,))
    item, replayed = await store.create(data, idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _created(request, response, item)


@router.get(
    "",
    operation_id="list_items",
    summary="List items, a page at a time",
    responses=_errors(Error.INVALID_REQUEST, Error.INVALID_CURSOR, Error.STORE_UNAVAILABLE),
)
async def list_items(
    store: StoreDep,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=1000,
            description=f"most items per page; a page of large items ends early, past {MAX_PAGE_BYTES} bytes",
        ),
    ] = 50,
    cursor: Annotated[str | None, Query(max_length=256, description="`next_cursor` of the previous page")] = None,
) -> ItemPage:
    return await store.list(limit, cursor)


@router.get(
    "/{item_id}",
    operation_id="get_item",
    summary="Read an item",
    responses={
        200: {"headers": _ETAG_HEADER},
        **_errors(Error.NOT_FOUND, Error.INVALID_REQUEST, Error.STORE_UNAVAILABLE),
    },
)
async def get_item(item_id: ItemId, response: Response, store: StoreDep) -> Item:
    return _describe(response, await store.get(item_id))


@router.put(
    "/{item_id}",
    operation_id="replace_item",
    summary="Create or replace an item under a client-chosen id",
    responses={
        200: {"description": "replaced", "headers": _ETAG_HEADER},
        201: {"description": "created", "headers": _ETAG_HEADER, "model": Item},
        **_errors(*_WRITE_ERRORS),
    },
    openapi_extra=_body(_EXAMPLE, JSON),
)
async def replace_item(
    item_id: ItemId,
    request: Request,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    if_match: IfMatchHeader = None,
) -> Item:
    precondition = _precondition(if_match)
    data = await _read_object(request, settings.max_item_bytes, (JSON,))
    item, created = await store.put(item_id, data, precondition)
    return _created(request, response, item) if created else _describe(response, item)


@router.patch(
    "/{item_id}",
    operation_id="patch_item",
    summary="Change part of an item (RFC 7396 JSON merge patch: null removes a key)",
    responses={
        200: {"headers": _ETAG_HEADER},
        **_errors(Error.NOT_FOUND, Error.WRITE_CONFLICT, *_WRITE_ERRORS),
    },
    openapi_extra=_body(_PATCH_EXAMPLE, MERGE_PATCH, JSON),
)
async def patch_item(
    item_id: ItemId,
    request: Request,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    if_match: IfMatchHeader = None,
) -> Item:
    precondition = _precondition(if_match)
    patch = await _read_object(request, settings.max_item_bytes, (MERGE_PATCH, JSON))
    return _describe(response, await store.patch(item_id, patch, precondition))


@router.delete(
    "/{item_id}",
    status_code=204,
    operation_id="delete_item",
    summary="Delete an item",
    responses=_errors(Error.NOT_FOUND, Error.PRECONDITION_FAILED, Error.INVALID_REQUEST, Error.STORE_UNAVAILABLE),
)
async def delete_item(item_id: ItemId, store: StoreDep, if_match: IfMatchHeader = None) -> None:
    await store.delete(item_id, _precondition(if_match))
