"""The embedded backend: one SQLite file, on a thread of its own.

Durability: ``journal_mode=WAL`` and ``synchronous=FULL``, so the WAL is fsync'ed at
every commit and a write is on disk when its call returns. One connection per store,
used only by the store's database thread: each transaction (BEGIN, its statements,
COMMIT) runs there in one go, one thread hand-off per call (a wrapper that hands off
each statement, fetch and cursor, as aiosqlite does, costs ~6 per statement). Writers
take the database lock up front (``BEGIN IMMEDIATE``), so several stores on the same
file (several processes) serialise their claims; a lock held longer than ``timeout``
is :class:`StoreUnavailable`. A new database file is created mode 0600 (it holds HA1
values); its -wal and -shm files take the same mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .base import Clock, Store, StoreError, StoreLimits, StoreUnavailable, T
from .sql import (
    HISTORY_COLUMNS,
    MESSAGE_COLUMNS,
    NOTIFICATION_COLUMNS,
    Row,
    Statements,
    Transaction,
)

__all__ = ["SqliteStore"]

_M, _H, _N = MESSAGE_COLUMNS, HISTORY_COLUMNS, NOTIFICATION_COLUMNS
_IDS = "(SELECT value FROM json_each(?))"  # a JSON array of ids as one parameter
_CLAIMABLE = "recipient = ? AND (lease_until IS NULL OR lease_until <= ?)"

SQL = Statements(
    migrate_lock="SELECT 1",  # BEGIN IMMEDIATE holds the write lock already
    create_version_table=(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
    ),
    schema_version="SELECT max(version) FROM schema_version",
    set_version="INSERT INTO schema_version (version, applied) VALUES (?, ?)",
    migrations=(
        (
            "CREATE TABLE users (username TEXT NOT NULL, realm TEXT NOT NULL, "
            "ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL, PRIMARY KEY (username, realm))",
            "CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "recipient TEXT NOT NULL, sender TEXT NOT NULL, content_type TEXT NOT NULL, "
            "body BLOB NOT NULL, message_id TEXT NOT NULL, created REAL NOT NULL, "
            "imdn INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
            "claimed_by TEXT, lease_until REAL)",
            "CREATE INDEX queue_recipient ON queue (recipient, id)",
            "CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "lo TEXT NOT NULL, hi TEXT NOT NULL, sender TEXT NOT NULL, "
            "recipient TEXT NOT NULL, content_type TEXT NOT NULL, body BLOB NOT NULL, "
            "message_id TEXT NOT NULL, at REAL NOT NULL)",
            "CREATE INDEX history_pair ON history (lo, hi, id)",
            "CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "addressee TEXT NOT NULL, about_message_id TEXT NOT NULL, status TEXT NOT NULL, "
            "recipient TEXT NOT NULL, at REAL NOT NULL)",
            "CREATE INDEX notifications_addressee ON notifications (addressee, id)",
        ),
    ),
    user_upsert=(
        "INSERT INTO users (username, realm, ha1_md5, ha1_sha256) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (username, realm) DO UPDATE "
        "SET ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256"
    ),
    user_get="SELECT ha1_md5, ha1_sha256 FROM users WHERE username = ? AND realm = ?",
    user_delete="DELETE FROM users WHERE username = ? AND realm = ?",
    user_list="SELECT username, realm, ha1_md5, ha1_sha256 FROM users ORDER BY realm, username",
    user_list_realm=(
        "SELECT username, realm, ha1_md5, ha1_sha256 FROM users WHERE realm = ? ORDER BY username"
    ),
    queue_depth="SELECT count(*) FROM queue WHERE recipient = ?",
    queue_total="SELECT count(*) FROM queue",
    queue_insert=(
        "INSERT INTO queue (recipient, sender, content_type, body, message_id, created, imdn) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
    ),
    queue_pending=f"SELECT {_M} FROM queue WHERE {_CLAIMABLE} ORDER BY id LIMIT ?",
    queue_claim=(
        "UPDATE queue SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 "
        f"WHERE id IN (SELECT id FROM queue WHERE {_CLAIMABLE} ORDER BY id LIMIT ?) "
        f"RETURNING {_M}"
    ),
    queue_ack=f"DELETE FROM queue WHERE id IN {_IDS} RETURNING recipient, sender, message_id, imdn",
    queue_release=f"UPDATE queue SET claimed_by = NULL, lease_until = NULL WHERE id IN {_IDS}",
    queue_release_device=(
        "UPDATE queue SET claimed_by = NULL, lease_until = NULL "
        f"WHERE id IN {_IDS} AND claimed_by = ?"
    ),
    history_insert=(
        "INSERT INTO history (lo, hi, sender, recipient, content_type, body, message_id, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
    ),
    history_page=f"SELECT {_H} FROM history WHERE lo = ? AND hi = ? ORDER BY id DESC LIMIT ?",
    history_before=(
        f"SELECT {_H} FROM history WHERE lo = ? AND hi = ? AND id < ? ORDER BY id DESC LIMIT ?"
    ),
    notification_insert=(
        "INSERT INTO notifications (addressee, about_message_id, status, recipient, at) "
        "VALUES (?, ?, ?, ?, ?) RETURNING id"
    ),
    notification_pending=(
        f"SELECT {_N} FROM notifications WHERE addressee = ? ORDER BY id LIMIT ?"
    ),
    notification_ack=f"DELETE FROM notifications WHERE id IN {_IDS}",
)

# Primary result codes that mean "the database cannot serve now", not "bad request":
# BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN, PROTOCOL.
_UNAVAILABLE_CODES = frozenset({5, 6, 7, 10, 13, 14, 15})


def _error(error: sqlite3.Error) -> StoreError:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        return StoreUnavailable(f"sqlite: {error}")
    return StoreError(f"sqlite: {error}")


class _Transaction:
    """Statements of one transaction, on the database thread: its coroutines return
    without ever suspending, so a body made of them runs to its end in one call."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def rows(self, sql: str, params: Sequence[object]) -> list[Row]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    async def run(self, sql: str, params: Sequence[object]) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount


def _drive(work: Awaitable[T]) -> T:
    """Run a transaction's body (a coroutine whose only awaits are its statements)
    to its end, here, without an event loop."""
    if not isinstance(work, Coroutine):
        raise TypeError("a store transaction body must be a coroutine")
    coroutine: Coroutine[Any, Any, T] = work
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a store transaction awaited something other than its statements")


class SqliteStore(Store):
    """The store in the SQLite file ``path`` (``":memory:"``: a private, volatile one)."""

    backend = "sqlite"
    sql = SQL

    def __init__(
        self,
        path: str,
        *,
        limits: StoreLimits | None = None,
        clock: Clock = time.time,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(limits=limits, clock=clock, timeout=timeout)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    async def open(self) -> None:
        if self._conn is not None:
            return
        thread = ThreadPoolExecutor(1, thread_name_prefix="pyim-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(thread, self._connect)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        self._conn, self._thread = conn, thread

    def _connect(self) -> sqlite3.Connection:
        """(database thread) The connection, in WAL mode with synchronous=FULL."""
        memory = self.path == ":memory:"
        try:
            if not memory and not os.path.exists(self.path):
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except OSError as error:
            raise StoreUnavailable(f"sqlite: cannot open {self.path}: {error}") from error
        except sqlite3.Error as error:
            raise _error(error) from error
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if not memory and (mode is None or str(mode[0]).lower() != "wal"):
                raise StoreError(f"sqlite: cannot use WAL on {self.path} (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as error:
            conn.close()
            raise _error(error) from error
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        conn, thread = self._conn, self._thread
        self._conn = self._thread = None
        if conn is None or thread is None:
            return
        try:  # after the transactions already handed to the thread
            with contextlib.suppress(sqlite3.Error):
                await asyncio.get_running_loop().run_in_executor(thread, conn.close)
        finally:
            thread.shutdown(wait=False)

    def _ids_param(self, ids: list[int]) -> object:
        return json.dumps(ids)

    async def _run(self, body: Callable[[Transaction], Awaitable[T]], *, write: bool) -> T:
        conn, thread = self._conn, self._thread
        if conn is None or thread is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(thread, _transact, conn, body, write)


def _transact(
    conn: sqlite3.Connection, body: Callable[[Transaction], Awaitable[T]], write: bool
) -> T:
    """(database thread) One transaction: committed, or rolled back if anything raised."""
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = _drive(body(_Transaction(conn)))
            conn.execute("COMMIT")
            return result
        finally:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
    except sqlite3.Error as error:
        raise _error(error) from error
