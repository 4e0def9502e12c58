"""pyim's message store: users (HA1), the offline queue, history and the IMDN outbox.

One async interface (:class:`Store`), two backends: SQLite (embedded, the default;
WAL and fsync at every commit) and PostgreSQL (psycopg 3; for several server
processes sharing queues and history)::

    from pyim.store import open_store

    async with open_store("sqlite:///var/lib/pyim/pyim.db") as store:  # open + migrate
        await store.add_user("alice", "pyim.test", "secret")
        message = await store.enqueue("sip:bob@pyim.test", "sip:alice@pyim.test",
                                      "text/plain", b"hi", "m1", imdn=True)
        batch = await store.claim("sip:bob@pyim.test", "bob-phone", lease_seconds=30)
        await store.ack([m.id for m in batch], notify="delivered")  # after 200 / report

URLs: ``sqlite:///abs/path.db``, ``sqlite://relative/path.db``, ``sqlite://:memory:``;
``postgresql://user@host:port/db`` (or ``postgres://``), or a libpq ``key=value``
conninfo string. PostgreSQL needs the ``postgres`` extra (``psycopg[binary]``).
"""

from __future__ import annotations

import time

from .base import (
    Clock,
    QueueFull,
    Store,
    StoreError,
    StoreLimits,
    StoreUnavailable,
    TooLarge,
)
from .model import (
    IMDN_STATUSES,
    HistoryEntry,
    NewMessage,
    Notification,
    StoredMessage,
    UserRecord,
)

__all__ = [
    "IMDN_STATUSES",
    "HistoryEntry",
    "NewMessage",
    "Notification",
    "QueueFull",
    "Store",
    "StoreError",
    "StoreLimits",
    "StoreUnavailable",
    "StoredMessage",
    "TooLarge",
    "UserRecord",
    "open_store",
]


def open_store(
    url: str,
    *,
    limits: StoreLimits | None = None,
    clock: Clock = time.time,
    timeout: float = 10.0,
    pool_size: int = 4,
) -> Store:
    """The store named by ``url``, not yet connected: ``await store.open()`` and
    ``await store.migrate()``, or ``async with open_store(url) as store``.

    ``timeout`` bounds each call's wait for the database (SQLite: its lock;
    PostgreSQL: connecting and answering); ``pool_size`` is the most connections a
    PostgreSQL store keeps. ``clock`` stamps records and runs leases.
    """
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:")
        if not path.startswith("//") or len(path) == 2:
            raise StoreError(f"bad SQLite URL {url!r}: sqlite:///abs/path.db or sqlite://:memory:")
        from .sqlite import SqliteStore

        return SqliteStore(path[2:], limits=limits, clock=clock, timeout=timeout)
    is_conninfo = "://" not in url and "=" in url
    if url.startswith(("postgresql://", "postgres://")) or is_conninfo:
        try:
            from .postgres import PostgresStore
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise StoreError("PostgreSQL needs psycopg: pip install 'pyim[postgres]'") from error
        return PostgresStore(url, limits=limits, clock=clock, timeout=timeout, pool_size=pool_size)
    raise StoreError(f"unsupported store URL {url!r} (sqlite:///path.db or postgresql://...)")
