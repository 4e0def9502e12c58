"""The shared backend: PostgreSQL through psycopg 3 (async), for several server processes.

Every call is one transaction on a connection of a small pool of this store's own
(at most ``pool_size``): idle connections are reused, a new one is made when none is
idle. Several processes share the queue safely: :meth:`Store.claim` locks the rows it
takes with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers skip each other's rows
instead of waiting or taking them twice. A call that finds the server gone (connection
refused, lost, shut down: psycopg's ``OperationalError``) or that gets no answer within
``timeout`` raises :class:`StoreUnavailable` and drops its connection (and, on a
connection error, every idle one): the next call connects afresh, so the store
recovers by itself when the server is back. Leases use the store's clock (keep the
servers' clocks in sync, e.g. NTP).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

from .base import Clock, Store, StoreError, StoreLimits, StoreUnavailable, T
from .sql import (
    HISTORY_COLUMNS,
    MESSAGE_COLUMNS,
    NOTIFICATION_COLUMNS,
    Row,
    Statements,
    Transaction,
)

__all__ = ["PostgresStore"]

_M, _H, _N = MESSAGE_COLUMNS, HISTORY_COLUMNS, NOTIFICATION_COLUMNS
_CLAIMABLE = "recipient = %s AND (lease_until IS NULL OR lease_until <= %s)"
_MIGRATION_LOCK = 0x7079696D  # "pyim": the advisory lock key of migrate()

SQL = Statements(
    migrate_lock=f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})",
    create_version_table=(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
    ),
    schema_version="SELECT max(version) FROM schema_version",
    set_version="INSERT INTO schema_version (version, applied) VALUES (%s, %s)",
    migrations=(
        (
            "CREATE TABLE users (username TEXT NOT NULL, realm TEXT NOT NULL, "
            "ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL, PRIMARY KEY (username, realm))",
            "CREATE TABLE queue (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "recipient TEXT NOT NULL, sender TEXT NOT NULL, content_type TEXT NOT NULL, "
            "body BYTEA NOT NULL, message_id TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, "
            "imdn BOOLEAN NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
            "claimed_by TEXT, lease_until DOUBLE PRECISION)",
            "CREATE INDEX queue_recipient ON queue (recipient, id)",
            "CREATE TABLE history (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "lo TEXT NOT NULL, hi TEXT NOT NULL, sender TEXT NOT NULL, "
            "recipient TEXT NOT NULL, content_type TEXT NOT NULL, body BYTEA NOT NULL, "
            "message_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX history_pair ON history (lo, hi, id)",
            "CREATE TABLE notifications (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "addressee TEXT NOT NULL, about_message_id TEXT NOT NULL, status TEXT NOT NULL, "
            "recipient TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX notifications_addressee ON notifications (addressee, id)",
        ),
    ),
    user_upsert=(
        "INSERT INTO users (username, realm, ha1_md5, ha1_sha256) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (username, realm) DO UPDATE "
        "SET ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256"
    ),
    user_get="SELECT ha1_md5, ha1_sha256 FROM users WHERE username = %s AND realm = %s",
    user_delete="DELETE FROM users WHERE username = %s AND realm = %s",
    user_list="SELECT username, realm, ha1_md5, ha1_sha256 FROM users ORDER BY realm, username",
    user_list_realm=(
        "SELECT username, realm, ha1_md5, ha1_sha256 FROM users WHERE realm = %s ORDER BY username"
    ),
    queue_depth="SELECT count(*) FROM queue WHERE recipient = %s",
    queue_total="SELECT count(*) FROM queue",
    queue_insert=(
        "INSERT INTO queue (recipient, sender, content_type, body, message_id, created, imdn) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id"
    ),
    queue_pending=f"SELECT {_M} FROM queue WHERE {_CLAIMABLE} ORDER BY id LIMIT %s",
    queue_claim=(
        "UPDATE queue SET claimed_by = %s, lease_until = %s, attempts = attempts + 1 "
        f"WHERE id IN (SELECT id FROM queue WHERE {_CLAIMABLE} ORDER BY id LIMIT %s "
        f"FOR UPDATE SKIP LOCKED) RETURNING {_M}"
    ),
    queue_ack=(
        "DELETE FROM queue WHERE id = ANY(%s) RETURNING recipient, sender, message_id, imdn"
    ),
    queue_release="UPDATE queue SET claimed_by = NULL, lease_until = NULL WHERE id = ANY(%s)",
    queue_release_device=(
        "UPDATE queue SET claimed_by = NULL, lease_until = NULL "
        "WHERE id = ANY(%s) AND claimed_by = %s"
    ),
    history_insert=(
        "INSERT INTO history (lo, hi, sender, recipient, content_type, body, message_id, at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
    ),
    history_page=f"SELECT {_H} FROM history WHERE lo = %s AND hi = %s ORDER BY id DESC LIMIT %s",
    history_before=(
        f"SELECT {_H} FROM history WHERE lo = %s AND hi = %s AND id < %s ORDER BY id DESC LIMIT %s"
    ),
    notification_insert=(
        "INSERT INTO notifications (addressee, about_message_id, status, recipient, at) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id"
    ),
    notification_pending=(
        f"SELECT {_N} FROM notifications WHERE addressee = %s ORDER BY id LIMIT %s"
    ),
    notification_ack="DELETE FROM notifications WHERE id = ANY(%s)",
)

Connection = psycopg.AsyncConnection[TupleRow]


class _Transaction:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def rows(self, sql: str, params: Sequence[object]) -> list[Row]:
        cursor = await self._conn.execute(sql, tuple(params) or None)
        return list(await cursor.fetchall())

    async def run(self, sql: str, params: Sequence[object]) -> int:
        cursor = await self._conn.execute(sql, tuple(params) or None)
        return cursor.rowcount


class PostgresStore(Store):
    """The store in the PostgreSQL database named by ``conninfo`` (a
    ``postgresql://`` URL or a libpq ``key=value`` string)."""

    backend = "postgresql"
    sql = SQL

    def __init__(
        self,
        conninfo: str,
        *,
        limits: StoreLimits | None = None,
        clock: Clock = time.time,
        timeout: float = 10.0,
        pool_size: int = 4,
    ) -> None:
        super().__init__(limits=limits, clock=clock, timeout=timeout)
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.pool_size = pool_size
        self._conninfo = conninfo
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(pool_size)
        self._open = False

    def __repr__(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self._conninfo)
        return f"PostgresStore(host={info.get('host')!r}, dbname={info.get('dbname')!r})"

    async def open(self) -> None:
        if self._open:
            return
        self._open = True
        try:
            async with self._transaction(write=False):
                pass  # one connection made and checked, kept idle
        except BaseException:
            self._open = False
            raise

    async def close(self) -> None:
        self._open = False
        await self._drop_idle()

    def _ids_param(self, ids: list[int]) -> object:
        return ids

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def _connect(self) -> Connection:
        return await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=max(2, math.ceil(self.timeout)),
            application_name="pyim",
        )

    async def _run(self, body: Callable[[Transaction], Awaitable[T]], *, write: bool) -> T:
        async with self._transaction(write=write) as tx:
            return await body(tx)

    @asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[Transaction]:
        if not self._open:
            raise StoreError("the store is not open")
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                conn = self._idle.pop() if self._idle else await self._connect()
                reusable = False
                try:
                    await conn.execute("BEGIN" if write else "BEGIN READ ONLY")
                    try:
                        yield _Transaction(conn)
                    except StoreError:  # the store's own refusal (a limit): roll back
                        await conn.execute("ROLLBACK")
                        reusable = True
                        raise
                    await conn.execute("COMMIT")
                    reusable = True
                finally:
                    # On any other error the connection is closed, not rolled back: that
                    # ends its transaction on the server, and cannot hang.
                    idle = conn.info.transaction_status == TransactionStatus.IDLE
                    if reusable and idle and self._open:
                        self._idle.append(conn)
                    else:
                        await conn.close()
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            await self._drop_idle()  # the server went away: they are dead too
            raise StoreUnavailable(f"postgresql: {error}".strip()) from error
        except TimeoutError as error:
            raise StoreUnavailable(f"postgresql: no answer within {self.timeout} s") from error
        except psycopg.Error as error:
            raise StoreError(f"postgresql: {error}") from error
