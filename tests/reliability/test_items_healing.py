"""The SQLite store heals: reads and ping never wait behind a write lock another process holds, writes under
that lock answer 503 within their deadline (queued ones too), and a file made read-only then writable again is
written again without a restart. Each lock is held by a real second process on a real file; the answer times
are recorded in the reliability figures, and the assertions are functional only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.items.sqlite import SQLiteItemStore
from gateway.items.store import StoreUnavailable
from tests.support.figures import record

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

BUSY_TIMEOUT_S = 0.3

# Another process holding SQLite's write lock, as the sqlite3 shell or a backup would: it says "locked" on
# stdout, then holds the lock until its stdin closes.
_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute(sys.argv[2])
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def write_lock_held_elsewhere(path: Path, begin: str) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), begin], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == b"locked\n"
        yield
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=10) == 0


async def timed(call: object) -> tuple[object, float]:
    """What the awaitable returned (or the StoreUnavailable it raised), and how long it took in ms."""
    started = time.perf_counter()
    try:
        result: object = await call  # type: ignore[misc]
    except StoreUnavailable as exc:
        result = exc
    return result, (time.perf_counter() - started) * 1000


@pytest.mark.parametrize("begin", ["BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"])
async def test_an_external_write_lock_fails_writes_fast_and_leaves_reads_and_ping_answering(
    tmp_path: Path, begin: str
) -> None:
    store = SQLiteItemStore(tmp_path / "items.sqlite3", max_data_bytes=1024, busy_timeout_s=BUSY_TIMEOUT_S)
    item, _ = await store.create({"n": 1})
    with write_lock_held_elsewhere(tmp_path / "items.sqlite3", begin):
        # Twenty writes at once: each has its own deadline from the moment it was asked for, so the last one
        # in the writer's queue answers as soon as the first, not after twenty busy timeouts.
        writes = [timed(store.put(item.id, {"n": n})) for n in range(20)]
        reads = [timed(store.get(item.id)) for _ in range(20)]
        pings = [timed(store.ping()) for _ in range(5)]
        answers = await asyncio.gather(*writes, *reads, *pings)
        write_answers, read_answers, ping_answers = answers[:20], answers[20:40], answers[40:]
        assert all(isinstance(result, StoreUnavailable) for result, _ in write_answers)
        assert all(getattr(result, "data", None) == {"n": 1} for result, _ in read_answers)
        assert all(result is None for result, _ in ping_answers)
        listed, list_ms = await timed(store.list(10))
        assert [found.id for found in listed.items] == [item.id]  # type: ignore[attr-defined]
    slowest_write = max(ms for _, ms in write_answers)
    slowest_read = max(ms for _, ms in read_answers + ping_answers + [(None, list_ms)])
    record(f"sqlite {begin} held by another process: 20 writes -> 503, slowest", slowest_write, unit="ms",
           detail=f"busy timeout {BUSY_TIMEOUT_S * 1000:.0f} ms")  # fmt: skip
    record(f"sqlite {begin} held by another process: slowest read/list/ping", slowest_read, unit="ms")
    replaced, _ = await store.put(item.id, {"n": 2})  # the lock is gone: writes go through again
    assert (replaced.version, replaced.data) == (2, {"n": 2})
    await store.close()


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` can't be opened for writing, even by root (which ignores file modes): immutable when root."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        undo = ["chattr", "-i", str(path)]
    else:
        path.chmod(0o444)
        undo = ["chmod", "644", str(path)]
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


async def test_a_file_made_read_only_then_writable_is_written_again_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite3"
    first = SQLiteItemStore(path, max_data_bytes=1024)
    item, _ = await first.create({"n": 1})
    await first.close()
    store = SQLiteItemStore(path, max_data_bytes=1024)  # a gateway started while the file is read-only
    with read_only(path):
        with pytest.raises(StoreUnavailable):
            await store.put(item.id, {"n": 2})
        with pytest.raises(StoreUnavailable):
            await store.create({"n": 3})
        assert (await store.get(item.id)).data == {"n": 1}  # reads still answer
        with pytest.raises(StoreUnavailable, match="cannot be written"):  # and readiness says why writes fail
            await store.ping()
    await store.ping()  # writable again: ready, no restart
    replaced, _ = await store.put(item.id, {"n": 2})
    assert (replaced.version, replaced.data) == (2, {"n": 2})
    assert (await store.get(item.id)).data == {"n": 2}
    await store.close()


async def test_a_page_is_cut_by_bytes_and_still_pages_through_everything(tmp_path: Path) -> None:
    budget = 10_000
    store = SQLiteItemStore(tmp_path / "items.sqlite3", max_data_bytes=4096, max_page_bytes=budget)
    sizes = [3000, 10, 10, 3000, 3000, 3000, 4000, 10, 3500, 3500, 3500, 3500]
    ids = [f"item-{n:02d}" for n in range(len(sizes))]
    for item_id, size in zip(ids, sizes, strict=True):
        await store.put(item_id, {"pad": "x" * size})
    pages, cursor = [], None
    while True:
        page = await store.list(1000, cursor)
        pages.append([item.id for item in page.items])
        stored = [len(item.data["pad"]) + len('{"pad":""}') for item in page.items]
        assert sum(stored[:-1]) <= budget  # only the item that passed the budget may go over it
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [item_id for page_ids in pages for item_id in page_ids] == ids  # none skipped, none repeated
    assert [len(page_ids) for page_ids in pages] == [6, 4, 2]
    assert [item.id for item in (await store.list(2)).items] == ids[:2]  # the count limit still holds
    await store.close()
