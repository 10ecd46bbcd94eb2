"""SQLite item store: the embedded default.

WAL mode lets readers run beside the single writer. Every write is one conditional statement
(``UPDATE ... WHERE id = ? AND version = ?``) or one ``BEGIN IMMEDIATE`` transaction, so concurrent writers
serialise in SQLite itself and no update is lost. Each pool thread keeps its own connection. Writers of one
process also queue on a lock first: SQLite's busy handler polls, and under a stream of writes it let a waiting
writer starve past its timeout (4 threads inserting flat out: a few "database is locked" per 8,000 inserts).
The busy timeout then only bounds waits on other processes; a lock held longer than that, or a file that can't
be opened, is an outage (503), not a hang.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.items.store import (
    IdempotencyClaim,
    IfMatch,
    Item,
    ItemNotFound,
    ItemStore,
    stored_item,
    unmet,
)

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

    def __init__(self, path: Path, *, max_data_bytes: int, busy_timeout_s: float = 2.0, workers: int = 4) -> None:
        super().__init__(max_data_bytes=max_data_bytes, workers=workers)
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again after a failed open)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # One open at a time: four threads opening a new file together (switching it to WAL, creating
            # the tables) failed with "database is locked" 5 times in 800 tries here.
            with self._connections_lock:
                db = self._connect()
                self._connections.append(db)
            self._local.db = db
        return db

    @contextmanager
    def _writer(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, holding the store's write lock."""
        with self._write_lock:
            yield self._db()

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, transactions only where this module begins one.
        db = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _fetch(self, item_id: str) -> Item:
        row = self._db().execute(f"SELECT {_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise ItemNotFound(f"no item {item_id}")
        return stored_item(*row)

    def _insert(self, item: Item, text: str) -> None:
        with self._writer() as db:
            _insert_row(db, item, text)

    def _insert_once(self, item: Item, text: str, claim: IdempotencyClaim) -> tuple[Item, bool]:
        with self._writer() as db, db:  # `with db`: the transaction commits, or rolls back on any error
            db.execute("BEGIN IMMEDIATE")  # takes the write lock first: concurrent claims queue here
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
        with self._writer() as db:
            # fetchall, not fetchone: a RETURNING statement holds the write lock until stepped to its end.
            rows = db.execute(f"{sql} RETURNING {_COLUMNS}", params).fetchall()
        if not rows:
            raise unmet(item_id, if_match)
        return stored_item(*rows[0])

    def _remove(self, item_id: str, if_match: IfMatch) -> None:
        sql, version = _where(if_match, "DELETE FROM items")
        with self._writer() as db:
            deleted = db.execute(sql, (item_id, *version)).rowcount
        if deleted == 0:
            raise unmet(item_id, if_match)

    def _page(self, after: str | None, count: int) -> list[Item]:
        rows = (
            self._db()
            .execute(f"SELECT {_COLUMNS} FROM items WHERE id > ? ORDER BY id LIMIT ?", (after or "", count))
            .fetchall()
        )
        return [stored_item(*row) for row in rows]

    def _probe(self) -> None:
        self._db().execute("SELECT 1 FROM items LIMIT 1").fetchall()

    def _is_outage(self, exc: Exception) -> bool:
        # OperationalError: locked past the timeout, can't open, read-only, disk I/O; a bare DatabaseError:
        # "file is not a database" / corrupt; OSError: the directory can't be made.
        return isinstance(exc, OSError) or type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)

    def _release(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
