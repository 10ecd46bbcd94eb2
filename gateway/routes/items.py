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
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from gateway.deps import SettingsDep
from gateway.errors import ApiError, ErrorResponse, error_response
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
    ItemStore,
    ItemStoreError,
    ItemTooLarge,
    PreconditionFailed,
    StoreUnavailable,
    WriteConflict,
)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


async def get_store(request: Request) -> ItemStore:
    """The store the app's lifespan opened."""
    return request.app.state.items


StoreDep = Annotated[ItemStore, Depends(get_store)]

_ANSWERS: dict[type[ItemStoreError], tuple[int, str]] = {
    ItemNotFound: (404, "not_found"),
    PreconditionFailed: (412, "precondition_failed"),
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
    InvalidCursor: (422, "invalid_cursor"),
    ItemTooLarge: (413, "payload_too_large"),
    WriteConflict: (409, "write_conflict"),
    StoreUnavailable: (503, "store_unavailable"),
}


async def answer_store_error(request: Request, exc: ItemStoreError) -> JSONResponse:
    """The app's handler for every store error of every route here; 409 and 503 say when to retry. (A handler,
    not a yield dependency around each route: that cost a tenth of a CRUD request's CPU.)"""
    status, code = _ANSWERS[type(exc)]
    retry_after = request.app.state.settings.retry_after_s
    return error_response(status, code, str(exc), {"Retry-After": str(retry_after)} if status in (409, 503) else None)


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
_ERRORS = {
    404: "no item with this id",
    409: "lost too many races for this item; retry (Retry-After)",
    412: "If-Match does not name the current version",
    413: "the body, or the item after the patch, is over the limit",
    415: "the Content-Type is not one listed",
    422: "invalid body, id, header, cursor or query, or an Idempotency-Key reused with another body",
    503: "the item store is unavailable; retry (Retry-After)",
}
_LINKS = {
    f"{verb.capitalize()}Item": {
        "operationId": f"{verb}_item",
        "parameters": {"item_id": "$response.body#/id"},
    }
    for verb in ("get", "replace", "patch", "delete")
}


def _body(example: dict[str, Any], *media_types: str) -> dict[str, Any]:
    content = {media_type: {"schema": _OBJECT, "example": example} for media_type in media_types}
    return {"requestBody": {"required": True, "content": content}}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse, "description": _ERRORS[status]} for status in statuses}


async def _read_object(request: Request, limit: int, media_types: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object, never buffering more than ``limit`` bytes whatever Content-Length says."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in media_types:
        raise ApiError(415, "unsupported_media_type", f"send the item as {' or '.join(media_types)}")
    too_large = ApiError(413, "payload_too_large", f"the body is over the {limit}-byte limit")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody reads this answer; the status is what the access log and the metrics count (nginx's 499).
        raise ApiError(499, "client_closed_request", "the client closed the connection mid-body") from None
    try:
        return parse_object(b"".join(chunks))
    except InvalidDocument as exc:
        raise ApiError(422, "invalid_json", str(exc)) from None


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
            412,
            "precondition_failed",
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
        **_errors(413, 415, 422, 503),
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
    responses=_errors(422, 503),
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
    responses={200: {"headers": _ETAG_HEADER}, **_errors(404, 422, 503)},
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
        **_errors(412, 413, 415, 422, 503),
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
    responses={200: {"headers": _ETAG_HEADER}, **_errors(404, 409, 412, 413, 415, 422, 503)},
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
    responses=_errors(404, 412, 422, 503),
)
async def delete_item(item_id: ItemId, store: StoreDep, if_match: IfMatchHeader = None) -> None:
    await store.delete(item_id, _precondition(if_match))
