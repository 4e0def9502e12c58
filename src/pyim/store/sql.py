"""The SQL layer both backends share: the statements a backend supplies, its
transaction, and rows back to records.

A backend writes the same statements (:class:`Statements`) with the same parameters in
the same order, in its own dialect; :class:`pyim.store.base.Store` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .model import HistoryEntry, Notification, StoredMessage

__all__ = [
    "HISTORY_COLUMNS",
    "MESSAGE_COLUMNS",
    "NOTIFICATION_COLUMNS",
    "Row",
    "Statements",
    "Transaction",
    "history_entry",
    "notification",
    "stored_message",
]

Row = Sequence[Any]


class Transaction(Protocol):
    """One database transaction of a backend (committed when its block ends)."""

    async def rows(self, sql: str, params: Sequence[object]) -> list[Row]: ...

    async def run(self, sql: str, params: Sequence[object]) -> int: ...


@dataclass(frozen=True, slots=True)
class Statements:
    """A backend's SQL. Parameters (same order everywhere) are in the comments."""

    migrate_lock: str  # () serialises concurrent migrations
    create_version_table: str  # ()
    schema_version: str  # () -> max(version) or NULL
    set_version: str  # (version, applied_at)
    migrations: tuple[tuple[str, ...], ...]  # statements of versions 1, 2, ...
    user_upsert: str  # (username, realm, ha1_md5, ha1_sha256)
    user_get: str  # (username, realm) -> ha1_md5, ha1_sha256
    user_delete: str  # (username, realm)
    user_list: str  # () -> username, realm, ha1_md5, ha1_sha256
    user_list_realm: str  # (realm,) -> same
    queue_depth: str  # (recipient,) -> count
    queue_total: str  # () -> count of every recipient's queue
    queue_insert: str  # (recipient, sender, content_type, body, message_id, created, imdn) -> id
    queue_pending: str  # (recipient, now, limit) -> message columns
    queue_claim: str  # (device, lease_until, recipient, now, limit) -> message columns
    queue_ack: str  # (ids,) -> recipient, sender, message_id, imdn of the removed rows
    queue_release: str  # (ids,)
    queue_release_device: str  # (ids, device)
    history_insert: str  # (lo, hi, sender, recipient, content_type, body, message_id, at) -> id
    history_page: str  # (lo, hi, limit) -> history columns
    history_before: str  # (lo, hi, before_id, limit) -> history columns
    notification_insert: str  # (to, about_message_id, status, recipient, at) -> id
    notification_pending: str  # (to, limit) -> notification columns
    notification_ack: str  # (ids,)


# Column lists the statements return (in this order).
MESSAGE_COLUMNS = (
    "id, recipient, sender, content_type, body, message_id, created, imdn, attempts, "
    "claimed_by, lease_until"
)
HISTORY_COLUMNS = "id, sender, recipient, content_type, body, message_id, at"
NOTIFICATION_COLUMNS = "id, addressee, about_message_id, status, at, recipient"


def stored_message(row: Row) -> StoredMessage:
    lease = row[10]
    return StoredMessage(
        id=int(row[0]),
        recipient=row[1],
        sender=row[2],
        content_type=row[3],
        body=bytes(row[4]),
        message_id=row[5],
        created=float(row[6]),
        imdn=bool(row[7]),
        attempts=int(row[8]),
        claimed_by=row[9],
        lease_until=None if lease is None else float(lease),
    )


def history_entry(row: Row) -> HistoryEntry:
    return HistoryEntry(int(row[0]), row[1], row[2], row[3], bytes(row[4]), row[5], float(row[6]))


def notification(row: Row) -> Notification:
    return Notification(int(row[0]), row[1], row[2], row[3], float(row[4]), row[5])
