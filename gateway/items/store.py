"""The item store interface, the item model, and the errors every store raises.

Semantics all stores share (the HTTP layer maps them one to one):

- Versions start at 1 and grow by one per write. ``if_match`` is ``None`` (unconditional), ``"*"`` (the item
  must exist) or a version (it must be the current one); a precondition on a missing item fails too, as RFC
  9110 asks of ``If-Match``. A write that finds another version than it expects changes nothing.
- Backends implement blocking primitives (``_fetch``, ``_write``, ...). This base class runs them on its own
  bounded thread pools, so no store call blocks the event loop, and turns what a backend calls an outage into
  ``StoreUnavailable``. Reads (get, list, ping) may have a pool of their own, so they never queue behind writes
  stuck on a lock. Shared logic (ids, timestamps, cursors, pages, merge patch, idempotent replay) lives here.
- A page of a listing holds at most ``limit`` items and stops early once their stored data passes
  ``max_page_bytes``: a page's memory follows the byte budget, not ``limit`` x the item size limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gateway.items.document import dump, fingerprint, merge_patch

log = logging.getLogger("gateway.items")

ITEM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
MAX_WRITE_ATTEMPTS = 100  # a PATCH without If-Match retries lost races; each round one racer wins
MAX_PAGE_BYTES = 1024 * 1024  # stored JSON per listing page; 8 pages of 1000 x 64 KiB items once took 2.6 GB

IfMatch = int | Literal["*"] | None
T = TypeVar("T")

_ITEM_ID = re.compile(ITEM_ID_PATTERN)
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class Item(BaseModel):
    """One stored JSON object with its bookkeeping; ``version`` is its ETag."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f1c2a9e0b7d4c6e8a5f1b2c3d4e5f60",
                    "version": 2,
                    "created_at": "2026-01-05T09:30:00.000000Z",
                    "updated_at": "2026-01-05T09:31:12.250000Z",
                    "data": {"name": "widget", "tags": ["blue"], "stock": 7},
                }
            ]
        }
    )

    id: str = Field(pattern=ITEM_ID_PATTERN)
    version: int = Field(ge=1, description='grows by one per write; sent as the strong ETag `"<version>"`')
    created_at: str = Field(json_schema_extra={"format": "date-time"}, description="RFC 3339, UTC")
    updated_at: str = Field(json_schema_extra={"format": "date-time"}, description="RFC 3339, UTC")
    data: dict[str, Any] = Field(description="the client's JSON object, as last written")


class ItemPage(BaseModel):
    """One page of a listing; pass ``next_cursor`` back to get the next, ``null`` means there is none. A page
    may hold fewer items than asked for (large items) and still have a ``next_cursor``."""

    items: list[Item]
    next_cursor: str | None


class ItemStoreError(Exception):
    """A store failure the HTTP layer answers for; the message is meant for the client."""


class ItemNotFound(ItemStoreError):
    """No item has this id (404)."""


class PreconditionFailed(ItemStoreError):
    """``If-Match`` does not hold (412); nothing was written."""


class IdempotencyKeyReused(ItemStoreError):
    """The key already made an item from another body (422)."""


class InvalidCursor(ItemStoreError):
    """Not a cursor this API handed out (422)."""


class ItemTooLarge(ItemStoreError):
    """The data, as stored, would pass ``max_data_bytes`` (413)."""


class WriteConflict(ItemStoreError):
    """Lost the race for one item too often to go on; the client may simply retry."""


class StoreUnavailable(ItemStoreError):
    """The backing store can't be reached or used now (readiness turns red, CRUD answers 503)."""


def backoff_s(attempt: int) -> float:
    """Full-jitter exponential backoff (2 ms doubling, 0.5 s cap): racers spread out instead of colliding
    again at once, which on DynamoDB would also burn write capacity on one partition (50 racing PATCHes on
    the emulator: about 900 store calls this way, 1,450 with a 50 ms cap)."""
    return random.uniform(0, min(0.5, 0.002 * 2**attempt))


def new_item_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a page continues after; the cursor is opaque to clients, so anything else is their mistake."""
    try:
        if not _CURSOR.fullmatch(cursor):
            raise ValueError
        last_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error):
        raise InvalidCursor("cursor is not one this API returned") from None
    if not _ITEM_ID.fullmatch(last_id):
        raise InvalidCursor("cursor is not one this API returned")
    return last_id


def stored_item(item_id: str, version: int, created_at: str, updated_at: str, data: str) -> Item:
    """An item from its stored columns; ``data`` is the text ``document.dump`` wrote."""
    return Item(id=item_id, version=version, created_at=created_at, updated_at=updated_at, data=json.loads(data))


Columns = tuple[str, int, str, str, str]  # id, version, created_at, updated_at, data: what ``stored_item`` takes


Page = tuple[list[Item], bool]  # a page's items, and whether more follow


def take_page(rows: Iterable[Columns], limit: int, max_bytes: int) -> Page:
    """The first items of ``rows`` (read lazily) up to ``limit`` of them, or up to the first whose data brings
    the total past ``max_bytes`` (so a page holds at least one item); and whether another row follows."""
    items: list[Item] = []
    size = 0
    rows_left: Iterator[Columns] = iter(rows)
    for row in rows_left:
        if len(items) == limit or size > max_bytes:
            return items, True
        size += len(row[4].encode())
        items.append(stored_item(*row))
    return items, False


def unmet(item_id: str, if_match: IfMatch) -> ItemStoreError:
    """Why a write changed nothing: 404 without a precondition, else 412 (the item is missing or moved on)."""
    if if_match is None:
        return ItemNotFound(f"no item {item_id}")
    if if_match == "*":
        return PreconditionFailed(f"item {item_id} does not exist (If-Match: *)")
    return PreconditionFailed(f"item {item_id} is not at version {if_match}")


@dataclass(frozen=True)
class IdempotencyClaim:
    """A create under an ``Idempotency-Key``: the first stores its item beside the key, retries replay it."""

    key: str
    fingerprint: str

    def replay(self, stored_fingerprint: str, stored_item_json: str) -> tuple[Item, bool]:
        """The first result for this key, if it was made from the same body."""
        if stored_fingerprint != self.fingerprint:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {self.key!r} was already used with a different body; use a new key"
            )
        return Item.model_validate_json(stored_item_json), True


class ItemStore(ABC):
    """What the routes use. Subclasses implement the blocking primitives below, nothing else."""

    def __init__(
        self, *, max_data_bytes: int, workers: int, read_workers: int = 0, max_page_bytes: int = MAX_PAGE_BYTES
    ) -> None:
        """``read_workers`` > 0 gives reads a pool of their own; 0 runs them on the one pool of ``workers``."""
        self.max_data_bytes = max_data_bytes
        self.max_page_bytes = max_page_bytes
        self._write_failure: str | None = None  # why writes fail, from the last one that did, until one works
        name = type(self).__name__
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._read_pool = (
            ThreadPoolExecutor(max_workers=read_workers, thread_name_prefix=f"{name}-read")
            if read_workers
            else self._pool
        )

    async def create(self, data: dict[str, Any], idempotency_key: str | None = None) -> tuple[Item, bool]:
        """A new item with a server-made id; with a key, a retry returns the first item and True (replayed)."""
        text = self._encode(data)
        now = utc_now()
        item = Item(id=new_item_id(), version=1, created_at=now, updated_at=now, data=data)
        if idempotency_key is None:
            await self._run(self._insert, item, text)
            return item, False
        claim = IdempotencyClaim(idempotency_key, fingerprint(data))
        item, replayed = await self._run(self._insert_once, item, text, claim)
        if replayed:
            try:
                await self.get(item.id)  # the first answer's Location must still lead somewhere
            except ItemNotFound:
                raise ItemNotFound(
                    f"item {item.id}, which Idempotency-Key {idempotency_key!r} created, has been deleted since; "
                    "send a new key to create another"
                ) from None
        return item, replayed

    async def get(self, item_id: str) -> Item:
        return await self._read(self._fetch, item_id)

    async def put(self, item_id: str, data: dict[str, Any], if_match: IfMatch = None) -> tuple[Item, bool]:
        """Create or replace ``data``; True when this created the item."""
        item = await self._run(self._write, item_id, self._encode(data), utc_now(), if_match)
        return item, item.version == 1

    async def patch(self, item_id: str, patch: dict[str, Any], if_match: IfMatch = None) -> Item:
        """RFC 7396 merge as read, merge, write-if-unchanged. A lost race is retried unless the client named
        the version it merged against (then the race is its 412): so no concurrent update is ever lost."""
        for attempt in range(MAX_WRITE_ATTEMPTS):
            try:
                current = await self.get(item_id)
            except ItemNotFound:
                raise unmet(item_id, if_match) from None
            if isinstance(if_match, int) and current.version != if_match:
                raise unmet(item_id, if_match)
            text = self._encode(merge_patch(current.data, patch))
            try:
                return await self._run(self._write, item_id, text, utc_now(), current.version)
            except PreconditionFailed:
                if isinstance(if_match, int):
                    raise unmet(item_id, if_match) from None
            await asyncio.sleep(backoff_s(attempt))
        raise WriteConflict(f"item {item_id} changed {MAX_WRITE_ATTEMPTS} times while patching it; retry")

    async def delete(self, item_id: str, if_match: IfMatch = None) -> None:
        await self._run(self._remove, item_id, if_match)

    async def list(self, limit: int, cursor: str | None = None) -> ItemPage:
        """Up to ``limit`` items in the store's stable order after ``cursor`` (fewer once ``max_page_bytes`` is
        passed); the cursor names the last id seen, so items written or deleted meanwhile never shift a page
        (none skipped, none repeated)."""
        after = None if cursor is None else decode_cursor(cursor)
        items, more = await self._read(self._page, after, limit, self.max_page_bytes)
        return ItemPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)

    async def ping(self) -> None:
        """Raises ``StoreUnavailable`` unless the store answers now, and takes writes if the last write failed
        (readiness: a file made read-only still answers reads, and is seen to take writes again by itself)."""
        await self._read(self._probe)
        if self._write_failure is not None:
            try:
                await self._read(self._probe_write)  # on the read pool: never queued behind writes
            except StoreUnavailable:
                raise StoreUnavailable(f"the item store cannot be written: {self._write_failure}") from None
            self._write_failure = None

    async def close(self) -> None:
        """Lets calls in flight finish, then releases connections."""
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        await asyncio.to_thread(self._read_pool.shutdown, wait=True)
        self._release()

    def _encode(self, data: dict[str, Any]) -> str:
        """The stored text; the limit holds for every write, so PATCHes can't grow an item past it either."""
        text = dump(data)
        if len(text.encode()) > self.max_data_bytes:
            raise ItemTooLarge(f"the item's data would exceed {self.max_data_bytes} bytes as JSON")
        return text

    async def _run(self, primitive: Callable[..., T], *args: Any) -> T:
        """A write (or any primitive that may change the store), on the main pool; whether it worked is what
        readiness says of writes."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._pool, self._guarded, primitive, *args)
        except StoreUnavailable as exc:
            self._write_failure = str(exc.__cause__ or exc)
            raise
        self._write_failure = None
        return result

    async def _read(self, primitive: Callable[..., T], *args: Any) -> T:
        """A read, on the read pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, self._guarded, primitive, *args)

    def _guarded(self, primitive: Callable[..., T], *args: Any) -> T:
        try:
            return primitive(*args)
        except ItemStoreError:
            raise
        except Exception as exc:
            if not self._is_outage(exc):
                raise
            log.warning("item store unavailable: %s: %s", type(exc).__name__, exc)
            raise StoreUnavailable("the item store is unavailable; retry later") from exc

    # Blocking primitives, run on the pool.

    @abstractmethod
    def _fetch(self, item_id: str) -> Item:
        """The item, or ``ItemNotFound``."""

    @abstractmethod
    def _insert(self, item: Item, text: str) -> None:
        """Store a new item."""

    @abstractmethod
    def _insert_once(self, item: Item, text: str, claim: IdempotencyClaim) -> tuple[Item, bool]:
        """Store ``item`` and ``claim`` atomically unless the key is taken; then ``claim.replay(...)``."""

    @abstractmethod
    def _write(self, item_id: str, text: str, now: str, if_match: IfMatch) -> Item:
        """Replace the data if ``if_match`` holds (upsert when it is None), bumping the version."""

    @abstractmethod
    def _remove(self, item_id: str, if_match: IfMatch) -> None:
        """Delete if ``if_match`` holds, else raise ``unmet(...)``."""

    @abstractmethod
    def _page(self, after: str | None, limit: int, max_bytes: int) -> Page:
        """The page following the id ``after`` in the store's stable order, as ``take_page`` cuts it."""

    @abstractmethod
    def _probe(self) -> None:
        """Touch the store cheaply."""

    @abstractmethod
    def _probe_write(self) -> None:
        """Write something that changes nothing, to learn whether writes work again; a store busy with another
        writer counts as writable."""

    @abstractmethod
    def _is_outage(self, exc: Exception) -> bool:
        """Whether a backend exception means the store can't be used (503) rather than a bug (500)."""

    @abstractmethod
    def _release(self) -> None:
        """Close connections; the pool has stopped."""
