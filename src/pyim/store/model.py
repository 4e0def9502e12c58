"""The records the store keeps: users, queued messages, history, IMDN notifications.

Times are seconds since the epoch (float) from the store's clock; ids are the
database's, increasing and never reused (so an old id acknowledged twice never
removes a newer record).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "IMDN_STATUSES",
    "HistoryEntry",
    "NewMessage",
    "Notification",
    "StoredMessage",
    "UserRecord",
]

#: Disposition statuses of RFC 5438 (§7.2.1.1 delivery, §7.2.1.2 display,
#: §7.2.1.3 processing): what a :class:`Notification` may say.
IMDN_STATUSES = frozenset(
    {"delivered", "failed", "forbidden", "error", "displayed", "processed", "stored"}
)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user of one realm: the HA1 values of RFC 7616 / RFC 8760, never a password."""

    username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to queue for ``recipient`` (:meth:`pyim.store.Store.enqueue_many`).

    ``imdn``: the sender asked for a delivery notification; ``history``: record it in
    the conversation history of the pair too (same transaction).
    """

    recipient: str
    sender: str
    content_type: str
    body: bytes
    message_id: str
    imdn: bool = False
    history: bool = False


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message waiting in the offline queue of ``recipient``.

    ``imdn`` says the sender asked for a delivery notification (RFC 5438);
    ``attempts`` counts the claims so far; ``claimed_by``/``lease_until`` name the
    device holding the current claim and when it lapses (None when unclaimed).
    """

    id: int
    recipient: str
    sender: str
    content_type: str
    body: bytes
    message_id: str
    created: float
    imdn: bool
    attempts: int
    claimed_by: str | None = None
    lease_until: float | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One message of the conversation between ``sender`` and ``recipient``."""

    id: int
    sender: str
    recipient: str
    content_type: str
    body: bytes
    message_id: str
    at: float


@dataclass(frozen=True, slots=True)
class Notification:
    """An IMDN (RFC 5438) to send to ``to``, the sender of message ``about_message_id``.

    ``recipient`` is the recipient of that message, whose disposition ``status``
    reports (the IMDN's ``recipient-uri``); empty when not recorded.
    """

    id: int
    to: str
    about_message_id: str
    status: str
    at: float
    recipient: str = ""
