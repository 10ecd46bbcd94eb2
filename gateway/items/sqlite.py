"""SQLite item store: the embedded default.

WAL mode lets readers run beside the single writer, and this store keeps them apart all the way: reads (get,
list, ping) run on a pool of their own over read-only connections, one per thread, so they never queue behind
a write, even one waiting on a lock another process holds (a backup, the sqlite3 shell). Writes run on one
thread over one read-write connection: every write is one conditional statement (``UPDATE ... WHERE id = ?
AND version = ?``) or one ``BEGIN IMMEDIATE`` transaction, so no update is lost, and in-process writers never
compete in SQLite's polling busy handler (which let a waiting writer starve past its timeout). Each write has
a deadline, ``busy_timeout_s`` from the moment it was asked for, spent in the queue and on other processes'
locks together: under a lock held elsewhere every write answers 503 within it, instead of each queued write
waiting one more timeout (that made reads and readiness wait 19.5 s). A connection that fails with an outage
is closed and opened again by the next call, so a file that was read-only, missing or locked is used again as
soon as it is fixed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from gateway.items.store import (
    IdempotencyClaim,
    IfMatch,
    Item,
    ItemNotFound,
    ItemStore,
    Page,
    stored_item,
    take_page,
    unmet,
)

WRITE_TIMEOUT_S = 1.0  # a write's deadline: queue and other processes' locks together; then 503
READ_TIMEOUT_S = 0.25  # WAL readers wait on nothing but another process's recovery or exclusive locking mode
READERS = 4

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    data TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    item TEXT NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
"""
_COLUMNS = "id, version, created_at, updated_at, data"


def _insert_row(db: sqlite3.Connection, item: Item, text: str) -> None:
    db.execute(
        "INSERT INTO items (id, version, created_at, updated_at, data) VALUES (?, ?, ?, ?, ?)",
        (item.id, item.version, item.created_at, item.updated_at, text),
    )


def _where(if_match: IfMatch, statement: str) -> tuple[str, tuple[int, ...]]:
    """``statement`` restricted to the item (first parameter: its id) and the version ``if_match`` names."""
    if isinstance(if_match, int):
        return f"{statement} WHERE id = ? AND version = ?", (if_match,)
    return f"{statement} WHERE id = ?", ()


class SQLiteItemStore(ItemStore):
    """Items in one SQLite file. Nothing touches the file until the first call, so the gateway starts (and
    serves inference) while the store is broken, and recovers by itself once it is fixed."""

    def __init__(
        self,
        path: Path,
        *,
        max_data_bytes: int,
        busy_timeout_s: float = WRITE_TIMEOUT_S,
        readers: int = READERS,
        **options: Any,
    ) -> None:
        super().__init__(max_data_bytes=max_data_bytes, workers=1, read_workers=readers, **options)
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()  # each thread's connection: read-write on the writer, else read-only
        self._connections: set[sqlite3.Connection] = set()
        self._connections_lock = threading.Lock()
        self._prepared = False

    async def _run(self, primitive: Callable[..., T], *args: Any) -> T:
        return await super()._run(self._writing, time.monotonic() + self._busy_timeout_s, primitive, *args)

    async def _read(self, primitive: Callable[..., T], *args: Any) -> T:
        return await super()._read(self._reading, primitive, *args)

    def _writing(self, deadline: float, primitive: Callable[..., T], *args: Any) -> T:
        """``primitive`` on the writer connection, waiting for locks only as long as its deadline allows."""
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            raise sqlite3.OperationalError("database is locked: the write spent its timeout queued")
        with self._connected(writable=True) as db:
            db.execute(f"PRAGMA busy_timeout = {left_ms}")
            return primitive(*args)

    def _reading(self, primitive: Callable[..., T], *args: Any) -> T:
        with self._connected(writable=False):
            return primitive(*args)

    @contextmanager
    def _connected(self, *, writable: bool) -> Iterator[sqlite3.Connection]:
        """This thread's connection, opened if needed; an outage closes it, so the next call starts from the
        file as it is then (writable again, back in place) rather than from a broken handle."""
        try:
            if getattr(self._local, "db", None) is None:
                self._local.db = self._open(writable=writable)
            yield self._local.db
        except (sqlite3.DatabaseError, OSError) as exc:
            if self._is_outage(exc):
                self._discard()
            raise

    def _db(self) -> sqlite3.Connection:
        """The connection ``_writing`` or ``_reading`` opened for this thread."""
        db: sqlite3.Connection = self._local.db
        return db

    def _discard(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        self._local.db = None
        self._prepared = False  # the file may be gone: the next connection makes it again
        if db is not None:
            with self._connections_lock:
                self._connections.discard(db)
            db.close()

    def _open(self, *, writable: bool) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions only where this module begins one). The first one
        makes the directory and the file, switches it to WAL and creates the tables; read-only connections
        need that done, so they do it first when no writer has."""
        with self._connections_lock:  # one open at a time: threads preparing a new file together lock it
            if writable or not self._prepared:
                db = self._prepare()
                if not writable:
                    db.close()
            if not writable:
                uri = f"{self._path.absolute().as_uri()}?mode=ro"
                db = sqlite3.connect(
                    uri, uri=True, timeout=READ_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
            self._connections.add(db)
            return db

    def _prepare(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        self._prepared = True
        return db

    def _fetch(self, item_id: str) -> Item:
        row = self._db().execute(f"SELECT {_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise ItemNotFound(f"no item {item_id}")
        return stored_item(*row)

    def _insert(self, item: Item, text: str) -> None:
        _insert_row(self._db(), item, text)

    def _insert_once(self, item: Item, text: str, claim: IdempotencyClaim) -> tuple[Item, bool]:
        db = self._db()
        with db:  # the transaction commits, or rolls back on any error
            db.execute("BEGIN IMMEDIATE")  # takes the write lock first: claims from other processes queue here
            row = db.execute("SELECT fingerprint, item FROM idempotency_keys WHERE key = ?", (claim.key,)).fetchone()
            if row is None:
                _insert_row(db, item, text)
                db.execute(
                    "INSERT INTO idempotency_keys (key, fingerprint, item, created_at) VALUES (?, ?, ?, ?)",
                    (claim.key, claim.fingerprint, item.model_dump_json(), item.created_at),
                )
        return (item, False) if row is None else claim.replay(*row)

    def _write(self, item_id: str, text: str, now: str, if_match: IfMatch) -> Item:
        if if_match is None:
            sql = (
                "INSERT INTO items (id, version, created_at, updated_at, data) VALUES (?, 1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "version = version + 1, updated_at = excluded.updated_at, data = excluded.data"
            )
            params: tuple[object, ...] = (item_id, now, now, text)
        else:
            sql, version = _where(if_match, "UPDATE items SET version = version + 1, updated_at = ?, data = ?")
            params = (now, text, item_id, *version)
        # fetchall, not fetchone: a RETURNING statement holds the write lock until stepped to its end.
        rows = self._db().execute(f"{sql} RETURNING {_COLUMNS}", params).fetchall()
        if not rows:
            raise unmet(item_id, if_match)
        return stored_item(*rows[0])

    def _remove(self, item_id: str, if_match: IfMatch) -> None:
        sql, version = _where(if_match, "DELETE FROM items")
        if self._db().execute(sql, (item_id, *version)).rowcount == 0:
            raise unmet(item_id, if_match)

    def _page(self, after: str | None, limit: int, max_bytes: int) -> Page:
        # The cursor is read row by row, so a page cut short by its byte budget reads one row past it, no more.
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM items WHERE id > ? ORDER BY id", (after or "",))
        try:
            return take_page(rows, limit, max_bytes)
        finally:
            rows.close()

    def _probe(self) -> None:
        self._db().execute("SELECT 1 FROM items LIMIT 1").fetchall()

    def _probe_write(self) -> None:
        # The header's user_version written back as it is: one WAL frame, no data. On a connection of its own, as
        # it runs on a reader's thread; a lock held elsewhere means the file can be written, only not this instant.
        db = sqlite3.connect(self._path, timeout=0, isolation_level=None)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
        finally:
            db.close()

    def _is_outage(self, exc: Exception) -> bool:
        # OperationalError: locked past the timeout, can't open, read-only, disk I/O; a bare DatabaseError:
        # "file is not a database" / corrupt; OSError: the directory can't be made.
        return isinstance(exc, OSError) or type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)

    def _release(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
