"""What only the SQLite store promises: WAL on disk, an outage that heals by itself, and a lock held past the
busy timeout answered as unavailable rather than waited on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.items import open_item_store
from gateway.items.sqlite import SQLiteItemStore
from gateway.items.store import StoreUnavailable
from gateway.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


async def test_the_settings_store_makes_its_directory_and_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deeper" / "items.sqlite3"
    store = await open_item_store(Settings(item_store="sqlite", sqlite_path=path, max_item_bytes=1024))
    assert isinstance(store, SQLiteItemStore) and not path.parent.exists()  # opening touches nothing
    item, _ = await store.create({"a": 1})
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT id, version FROM items").fetchall() == [(item.id, 1)]


async def test_an_outage_heals_without_a_restart(tmp_path: Path) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("a file where the directory should be")
    store = SQLiteItemStore(blocker / "items.sqlite3", max_data_bytes=1024)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    blocker.unlink()
    await store.ping()
    item, _ = await store.create({"back": True})
    assert (await store.get(item.id)).data == {"back": True}
    await store.close()


async def test_a_lock_held_past_the_busy_timeout_is_unavailable_then_clears(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite3"
    store = SQLiteItemStore(path, max_data_bytes=1024, busy_timeout_s=0.2)
    item, _ = await store.create({"n": 1})
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        with pytest.raises(StoreUnavailable):
            await store.put(item.id, {"n": 2})
        assert (await store.get(item.id)).data == {"n": 1}  # WAL: readers still read
    finally:
        other.execute("ROLLBACK")
        other.close()
    replaced, _ = await store.put(item.id, {"n": 2})
    assert (replaced.version, replaced.data) == (2, {"n": 2})
    await store.close()
