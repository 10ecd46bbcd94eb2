"""One contract for every item store, run on SQLite and DynamoDB (moto over HTTP), each at two levels: the
store's own async methods, and the same calls through the routes under a real uvicorn (``HttpItems``)."""

from __future__ import annotations

import asyncio
import functools
import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from deploy.ecs.dynamodb import create_table_if_missing
from gateway.items.dynamodb import DynamoDBItemStore
from gateway.items.sqlite import SQLiteItemStore
from gateway.items.store import (
    ITEM_ID_PATTERN,
    IdempotencyKeyReused,
    InvalidCursor,
    Item,
    ItemNotFound,
    ItemStore,
    ItemTooLarge,
    PreconditionFailed,
    StoreUnavailable,
)
from tests.support.items_support import HttpItems, closed_port, dynamodb_client, items_server, moto_server, serving

pytestmark = pytest.mark.anyio

MAX_BYTES = 4096
Items = ItemStore | HttpItems
STORE_LEVEL = pytest.mark.parametrize("items", ["sqlite-store", "dynamodb-store"], indirect=True)
# The load-shaped tests skip DynamoDB at the store level: the HTTP level runs the same store code under the
# same races, and the emulator (a few ms a request, one at a time) would double the suite's time.
UNDER_LOAD = pytest.mark.parametrize("items", ["sqlite-store", "sqlite-http", "dynamodb-http"], indirect=True)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The emulator, and both stores behind the routes, each opened by ``open_item_store`` from settings in
    its own uvicorn process; all three boot side by side."""
    moto = moto_server()
    limit = str(MAX_BYTES)
    sqlite_path = str(tmp_path_factory.mktemp("http") / "items.sqlite3")
    sqlite = items_server(item_store="sqlite", sqlite_path=sqlite_path, max_item_bytes=limit)
    dynamodb = items_server(
        item_store="dynamodb", dynamodb_table="http-items", dynamodb_endpoint_url=moto.url, max_item_bytes=limit
    )
    with serving(moto, sqlite, dynamodb):
        create_table_if_missing(dynamodb_client(moto.url), "http-items")
        yield {"moto": moto.url, "sqlite": sqlite.url, "dynamodb": dynamodb.url}


@pytest.fixture(scope="module")
def base_urls(servers: dict[str, str]) -> dict[str, str]:
    """Where the HTTP level sends its requests, per store; override to run it against a full gateway."""
    return {"sqlite": servers["sqlite"], "dynamodb": servers["dynamodb"]}


def fresh_store(kind: str, tmp_path: Path, moto_url: str) -> ItemStore:
    if kind == "sqlite":
        return SQLiteItemStore(tmp_path / "items.sqlite3", max_data_bytes=MAX_BYTES)
    client = dynamodb_client(moto_url)
    table = f"items-{uuid.uuid4().hex[:12]}"
    create_table_if_missing(client, table)
    return DynamoDBItemStore(client, table, max_data_bytes=MAX_BYTES)


@pytest.fixture(params=["sqlite-store", "dynamodb-store", "sqlite-http", "dynamodb-http"])
async def items(request: pytest.FixtureRequest, tmp_path: Path, servers: dict[str, str]) -> AsyncIterator[Items]:
    """A fresh store per test at the store level; at the HTTP level one store per module, shared by tests,
    so the tests below never assume a store is empty."""
    kind, level = request.param.split("-")
    if level == "http":
        base_url = request.getfixturevalue("base_urls")[kind]
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            yield HttpItems(client)
        return
    store = fresh_store(kind, tmp_path, servers["moto"])
    try:
        yield store
    finally:
        await store.close()


def new_id() -> str:
    return uuid.uuid4().hex


T = TypeVar("T")


async def retried(write: Callable[[], Awaitable[T]]) -> T:
    """A write as a client sends it: again after a 503, which says nothing was written (the store waits for its
    lock only so long, and dozens of writers queued on a busy host can outlast that)."""
    for attempt in range(20):
        try:
            return await write()
        except StoreUnavailable:
            await asyncio.sleep(random.uniform(0, min(1.0, 0.01 * 2**attempt)))
    return await write()


async def everything(items: Items) -> list[Item]:
    """Every item in the store, page by page."""
    found, cursor = [], None
    while True:
        page = await items.list(1000, cursor)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def marked(items: Items, marker: str) -> list[Item]:
    return [item for item in await everything(items) if item.data.get("run") == marker]


def utc(timestamp: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", timestamp), timestamp
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%f%z")


async def test_create_then_get_returns_the_object_as_sent(items: Items) -> None:
    data = {"name": "widget", "nested": {"list": [1, 2.5, "x", None, True]}, "text": "héllo ✓", "big": 2**70}
    item, replayed = await items.create(data)
    assert not replayed
    assert re.fullmatch(ITEM_ID_PATTERN, item.id)
    assert (item.version, item.data, item.created_at) == (1, data, item.updated_at)
    assert abs(utc(item.created_at) - datetime.now(UTC)) < timedelta(minutes=1)
    assert await items.get(item.id) == item


async def test_put_creates_then_replaces_the_whole_object(items: Items) -> None:
    item_id = new_id()
    created, was_created = await items.put(item_id, {"a": 1, "b": {"c": 2}})
    assert was_created and (created.id, created.version, created.data) == (item_id, 1, {"a": 1, "b": {"c": 2}})
    replaced, was_created = await items.put(item_id, {"z": [1]})
    assert not was_created and (replaced.version, replaced.data) == (2, {"z": [1]})
    assert replaced.created_at == created.created_at and utc(replaced.updated_at) >= utc(created.updated_at)
    assert await items.get(item_id) == replaced


async def test_an_unknown_id_is_not_found(items: Items) -> None:
    item_id = new_id()
    with pytest.raises(ItemNotFound):
        await items.get(item_id)
    with pytest.raises(ItemNotFound):
        await items.patch(item_id, {"a": 1})
    with pytest.raises(ItemNotFound):
        await items.delete(item_id)


async def test_if_match_makes_put_conditional(items: Items) -> None:
    item, _ = await items.create({"v": "first"})
    with pytest.raises(PreconditionFailed):
        await items.put(item.id, {"v": "from the future"}, if_match=2)
    second, _ = await items.put(item.id, {"v": "second"}, if_match=1)
    assert (second.version, second.data) == (2, {"v": "second"})
    with pytest.raises(PreconditionFailed):
        await items.put(item.id, {"v": "stale"}, if_match=1)
    third, created = await items.put(item.id, {"v": "third"}, if_match="*")
    assert (third.version, third.data, created) == (3, {"v": "third"}, False)
    assert await items.get(item.id) == third


async def test_if_match_on_a_missing_item_fails_and_creates_nothing(items: Items) -> None:
    item_id = new_id()
    for if_match in ("*", 1):
        with pytest.raises(PreconditionFailed):
            await items.put(item_id, {"a": 1}, if_match=if_match)
        with pytest.raises(PreconditionFailed):
            await items.patch(item_id, {"a": 1}, if_match=if_match)
        with pytest.raises(PreconditionFailed):
            await items.delete(item_id, if_match=if_match)
    with pytest.raises(ItemNotFound):
        await items.get(item_id)


async def test_patch_is_an_rfc_7396_merge(items: Items) -> None:
    # The example of RFC 7396, section 3.
    item, _ = await items.create(
        {
            "title": "Goodbye!",
            "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"],
            "content": "This will be unchanged",
        }
    )
    patch = {"title": "Hello!", "phoneNumber": "+01-555-1234", "author": {"familyName": None}, "tags": ["example"]}
    patched = await items.patch(item.id, patch)
    assert patched.data == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-555-1234",
    }
    assert (patched.version, patched.created_at) == (2, item.created_at)
    assert await items.get(item.id) == patched


async def test_if_match_makes_patch_conditional(items: Items) -> None:
    item, _ = await items.create({"n": 1})
    with pytest.raises(PreconditionFailed):
        await items.patch(item.id, {"n": 2}, if_match=7)
    assert await items.get(item.id) == item
    patched = await items.patch(item.id, {"n": 2}, if_match=1)
    assert (patched.version, patched.data) == (2, {"n": 2})


async def test_delete_honours_if_match_and_then_the_item_is_gone(items: Items) -> None:
    item, _ = await items.create({"doomed": True})
    with pytest.raises(PreconditionFailed):
        await items.delete(item.id, if_match=2)
    assert await items.get(item.id) == item
    await items.delete(item.id, if_match=1)
    with pytest.raises(ItemNotFound):
        await items.get(item.id)
    with pytest.raises(ItemNotFound):
        await items.delete(item.id)


async def test_no_write_can_grow_an_item_past_the_limit(items: Items) -> None:
    item, _ = await items.create({"blob": "x" * 3000})
    with pytest.raises(ItemTooLarge):
        await items.patch(item.id, {"more": "y" * 2000})
    with pytest.raises(ItemTooLarge):
        await items.put(item.id, {"blob": "z" * (MAX_BYTES + 1)})
    with pytest.raises(ItemTooLarge):
        await items.create({"blob": "z" * (MAX_BYTES + 1)})
    assert await items.get(item.id) == item


async def test_a_retried_create_replays_the_first_result(items: Items) -> None:
    key, marker = new_id(), new_id()
    first, replayed = await items.create({"run": marker, "b": 2, "a": 1}, key)
    again, replayed_again = await items.create({"a": 1, "run": marker, "b": 2}, key)  # same object, reordered
    assert (replayed, replayed_again, again) == (False, True, first)
    await items.patch(first.id, {"a": 5})
    late, _ = await items.create({"run": marker, "a": 1, "b": 2}, key)
    assert late == first  # the first result, not the item's state now
    with pytest.raises(IdempotencyKeyReused):
        await items.create({"run": marker, "a": 2}, key)
    assert [item.id for item in await marked(items, marker)] == [first.id]


async def test_20_concurrent_creates_with_one_key_make_one_item(items: Items) -> None:
    key, marker = new_id(), new_id()
    results = await asyncio.gather(*(retried(functools.partial(items.create, {"run": marker}, key)) for _ in range(20)))
    assert len({item.id for item, _ in results}) == 1
    assert sorted(replayed for _, replayed in results) == [False] + [True] * 19
    assert [item.id for item in await marked(items, marker)] == [results[0][0].id]


@UNDER_LOAD
async def test_50_clients_incrementing_with_if_match_lose_no_update(items: Items) -> None:
    item, _ = await items.create({"counter": 0})
    refused = 0

    async def increment() -> None:
        nonlocal refused
        for attempt in range(200):
            current = await items.get(item.id)
            try:
                data = {"counter": current.data["counter"] + 1}
                await retried(functools.partial(items.put, item.id, data, if_match=current.version))
                return
            except PreconditionFailed:
                refused += 1
                await asyncio.sleep(random.uniform(0, min(1.0, 0.005 * 2**attempt)))  # as a client would
        raise AssertionError("an increment never got through")

    await asyncio.gather(*(increment() for _ in range(50)))
    final = await items.get(item.id)
    assert (final.data, final.version) == ({"counter": 50}, 51)
    assert refused > 0, "the clients never raced"


@UNDER_LOAD
async def test_50_concurrent_patches_without_if_match_lose_no_update(items: Items) -> None:
    item, _ = await items.create({"seed": True})
    await asyncio.gather(*(retried(functools.partial(items.patch, item.id, {f"k{n}": n})) for n in range(50)))
    final = await items.get(item.id)
    assert final.data == {"seed": True, **{f"k{n}": n for n in range(50)}}
    assert final.version == 51


@UNDER_LOAD
async def test_paging_1000_items_by_7_returns_each_exactly_once(items: Items) -> None:
    marker = new_id()
    slots = asyncio.Semaphore(32)

    async def create(n: int) -> str:
        async with slots:
            item, _ = await retried(functools.partial(items.create, {"run": marker, "n": n}))
            return item.id

    created = set(await asyncio.gather(*(create(n) for n in range(1000))))
    seen: list[str] = []
    cursor = None
    while True:
        page = await items.list(7, cursor)
        assert len(page.items) <= 7
        seen.extend(item.id for item in page.items if item.data.get("run") == marker)
        if page.next_cursor is None:
            break
        assert len(page.items) == 7
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 1000
    assert set(seen) == created


async def test_an_invalid_cursor_is_refused(items: Items) -> None:
    for cursor in ("not base64!", "Zm9v#", "JSUl", "xxxxx"):  # "JSUl" is "%%%", not an id; "xxxxx" no base64
        with pytest.raises(InvalidCursor):
            await items.list(5, cursor)


@STORE_LEVEL
async def test_a_working_store_answers_ping(items: ItemStore) -> None:
    await items.ping()


@pytest.fixture(
    params=["sqlite-under-a-file", "sqlite-not-a-database", "dynamodb-closed-port", "dynamodb-missing-table"]
)
async def broken_store(
    request: pytest.FixtureRequest, tmp_path: Path, servers: dict[str, str]
) -> AsyncIterator[ItemStore]:
    store: ItemStore
    if request.param == "sqlite-under-a-file":
        (tmp_path / "var").write_text("a file where the directory should be")
        store = SQLiteItemStore(tmp_path / "var" / "items.sqlite3", max_data_bytes=MAX_BYTES)
    elif request.param == "sqlite-not-a-database":
        (tmp_path / "items.sqlite3").write_bytes(b"not a database " * 100)
        store = SQLiteItemStore(tmp_path / "items.sqlite3", max_data_bytes=MAX_BYTES)
    elif request.param == "dynamodb-closed-port":
        client = dynamodb_client(f"http://127.0.0.1:{closed_port()}")
        store = DynamoDBItemStore(client, "items", max_data_bytes=MAX_BYTES)
    else:
        store = DynamoDBItemStore(dynamodb_client(servers["moto"]), "no-such-table", max_data_bytes=MAX_BYTES)
    yield store
    await store.close()


async def test_a_store_that_is_down_raises_store_unavailable_on_every_call(broken_store: ItemStore) -> None:
    calls = [
        broken_store.ping,
        lambda: broken_store.get("abc"),
        lambda: broken_store.create({"a": 1}),
        lambda: broken_store.create({"a": 1}, "key"),
        lambda: broken_store.put("abc", {"a": 1}),
        lambda: broken_store.patch("abc", {"a": 1}),
        lambda: broken_store.delete("abc"),
        lambda: broken_store.list(5),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable, match="^the item store is unavailable; retry later$"):
            await call()
