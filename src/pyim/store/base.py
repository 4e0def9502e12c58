"""The store's one interface, its errors and limits, and the logic both backends share.

A backend supplies its SQL (:class:`pyim.store.sql.Statements`: the same statements
with the same parameters in the same order, in its own dialect), a way to run one
transaction (:meth:`Store._run`: a body of statements, committed at its end; driver
errors mapped to :class:`StoreError` and :class:`StoreUnavailable`), and how a list
of ids travels as one parameter. Everything else (validation, limits, which
statements make up each transaction) is written once, here.

A transaction's body is an ``async def`` taking a :class:`~pyim.store.sql.Transaction`
whose only awaits are that transaction's statements: a backend may run it on its
database thread in one go (SQLite does: one thread hand-off per transaction).
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

from pyim.digest import Algorithm, DigestError, ha1

from .model import (
    IMDN_STATUSES,
    HistoryEntry,
    NewMessage,
    Notification,
    StoredMessage,
    UserRecord,
)
from .sql import Row, Statements, Transaction, history_entry, notification, stored_message

__all__ = [
    "Clock",
    "QueueFull",
    "Store",
    "StoreError",
    "StoreLimits",
    "StoreUnavailable",
    "TooLarge",
]

Clock = Callable[[], float]
T = TypeVar("T")

#: Longest lease a claim may take (seconds).
MAX_LEASE = 7 * 86400.0


class StoreError(Exception):
    """The store refused the operation (bad input, a limit, a broken schema...)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or is busy (answer 503); the next call retries."""


class TooLarge(StoreError):
    """A body or a field exceeds its :class:`StoreLimits` bound (answer 413)."""


class QueueFull(StoreError):
    """The recipient's offline queue holds :attr:`StoreLimits.max_queue_depth` messages."""


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Bounds on what the store accepts (lengths of text fields are in characters)."""

    max_body: int = 1 << 20
    max_address: int = 1024  # recipient, sender, device, notification target (URIs)
    max_content_type: int = 255
    max_message_id: int = 255
    max_username: int = 255  # and realm
    max_password: int = 1024
    max_queue_depth: int = 10_000  # messages per recipient
    max_batch: int = 1000  # ids per ack/release, rows per read


class Store(abc.ABC):
    """The message store: users (HA1), the offline queue, history, IMDN outbox.

    Create one with :func:`pyim.store.open_store`; ``async with store:`` opens it,
    migrates the schema and closes it. Every method is a coroutine and one
    transaction; a write is durable when it returns. Errors: :class:`StoreError`
    (:class:`TooLarge`, :class:`QueueFull` for limits), :class:`StoreUnavailable`
    when the database cannot be reached (the next call reconnects).
    """

    backend: str = ""
    sql: Statements

    def __init__(
        self, *, limits: StoreLimits | None = None, clock: Clock = time.time, timeout: float = 10.0
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        self.limits = limits or StoreLimits()
        self.timeout = timeout
        self._clock = clock

    # -- backend hooks --------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (idempotent); :class:`StoreUnavailable` if the database is down."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect (idempotent)."""

    @abc.abstractmethod
    async def _run(self, body: Callable[[Transaction], Awaitable[T]], *, write: bool) -> T:
        """Run ``body`` as one transaction (rolled back if it raises); its result."""

    @abc.abstractmethod
    def _ids_param(self, ids: list[int]) -> object:
        """A list of ids as the one parameter the backend's statements take."""

    async def _rows(self, sql: str, params: Sequence[object], *, write: bool) -> list[Row]:
        """One statement in a transaction of its own; its rows."""

        async def body(tx: Transaction) -> list[Row]:
            return await tx.rows(sql, params)

        return await self._run(body, write=write)

    async def _count(self, sql: str, params: Sequence[object]) -> int:
        """One writing statement in a transaction of its own; the rows it changed."""

        async def body(tx: Transaction) -> int:
            return await tx.run(sql, params)

        return await self._run(body, write=True)

    async def __aenter__(self) -> Self:
        await self.open()
        try:
            await self.migrate()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- schema ---------------------------------------------------------------

    async def migrate(self) -> int:
        """Bring the schema to this version (idempotent, safe to run concurrently);
        returns the version. A database newer than this code is a :class:`StoreError`."""
        target = len(self.sql.migrations)

        async def body(tx: Transaction) -> None:
            await tx.run(self.sql.migrate_lock, ())
            await tx.run(self.sql.create_version_table, ())
            current = (await tx.rows(self.sql.schema_version, ()))[0][0] or 0
            if current > target:
                raise StoreError(f"database schema version {current} is newer than {target}")
            for version in range(current + 1, target + 1):
                for statement in self.sql.migrations[version - 1]:
                    await tx.run(statement, ())
                await tx.run(self.sql.set_version, (version, self._clock()))

        await self._run(body, write=True)
        return target

    # -- users ----------------------------------------------------------------

    async def add_user(self, username: str, realm: str, password: str) -> UserRecord:
        """Add a user or change the password: stores HA1 (MD5 and SHA-256), never the
        password."""
        self._text("username", username, self.limits.max_username)
        self._text("realm", realm, self.limits.max_username, empty_ok=True)
        self._text("password", password, self.limits.max_password)
        record = UserRecord(
            username,
            realm,
            ha1(username, realm, password, Algorithm.MD5),
            ha1(username, realm, password, Algorithm.SHA_256),
        )
        await self._count(
            self.sql.user_upsert, (username, realm, record.ha1_md5, record.ha1_sha256)
        )
        return record

    async def get_ha1(
        self, username: str, realm: str, algorithm: Algorithm | str = Algorithm.MD5
    ) -> str | None:
        """The stored HA1 for ``algorithm`` (a ``-sess`` variant: its base's), or None
        for an unknown user or an algorithm whose HA1 is not stored."""
        try:
            base = Algorithm.parse(algorithm).base
        except DigestError:
            return None
        if base not in (Algorithm.MD5, Algorithm.SHA_256):
            return None
        self._text("username", username, self.limits.max_username)
        self._text("realm", realm, self.limits.max_username, empty_ok=True)
        rows = await self._rows(self.sql.user_get, (username, realm), write=False)
        if not rows:
            return None
        return str(rows[0][0] if base is Algorithm.MD5 else rows[0][1])

    async def delete_user(self, username: str, realm: str) -> bool:
        """Remove a user; False if there was none."""
        self._text("username", username, self.limits.max_username)
        self._text("realm", realm, self.limits.max_username, empty_ok=True)
        return await self._count(self.sql.user_delete, (username, realm)) > 0

    async def list_users(self, realm: str | None = None) -> list[UserRecord]:
        """Every user (of ``realm`` if given), ordered by realm and username."""
        if realm is None:
            rows = await self._rows(self.sql.user_list, (), write=False)
        else:
            rows = await self._rows(self.sql.user_list_realm, (realm,), write=False)
        return [UserRecord(*row) for row in rows]

    # -- offline queue --------------------------------------------------------

    async def enqueue(
        self,
        recipient: str,
        sender: str,
        content_type: str,
        body: bytes,
        message_id: str,
        *,
        imdn: bool = False,
        history: bool = False,
    ) -> StoredMessage:
        """Queue a message for ``recipient``: on disk (committed) when this returns.
        With ``history`` the conversation history gets it in the same transaction."""
        new = NewMessage(recipient, sender, content_type, body, message_id, imdn, history)
        (result,) = await self.enqueue_many([new])
        if isinstance(result, StoreError):
            raise result
        return result

    async def enqueue_many(
        self, messages: Sequence[NewMessage]
    ) -> list[StoredMessage | StoreError]:
        """Queue several messages in one transaction (one commit: group commit), in
        order; each is stored or refused on its own (:class:`TooLarge`,
        :class:`QueueFull`...: that error in its place of the result). A failure of
        the transaction itself (:class:`StoreUnavailable`...) raises: none is stored."""
        if len(messages) > self.limits.max_batch:
            raise TooLarge(f"more than {self.limits.max_batch} messages at once")
        # each message's outcome by its index: refused here, or (valid) its record or
        # QueueFull in the transaction
        outcome: dict[int, StoredMessage | StoreError] = {}
        valid: list[tuple[int, NewMessage, bytes]] = []
        for index, message in enumerate(messages):
            try:
                valid.append((index, message, self._new_message(message)))
            except StoreError as error:
                outcome[index] = error
        now = self._clock()
        max_depth = self.limits.max_queue_depth

        async def body(tx: Transaction) -> None:
            depths: dict[str, int] = {}
            for index, m, data in valid:
                depth = depths.get(m.recipient)
                if depth is None:
                    depth = int((await tx.rows(self.sql.queue_depth, (m.recipient,)))[0][0])
                if depth >= max_depth:
                    outcome[index] = QueueFull(f"{depth} messages queued for {m.recipient}")
                    depths[m.recipient] = depth
                    continue
                depths[m.recipient] = depth + 1
                params = (m.recipient, m.sender, m.content_type, data, m.message_id, now, m.imdn)
                rows = await tx.rows(self.sql.queue_insert, params)
                if m.history:
                    lo, hi = sorted((m.sender, m.recipient))
                    entry = (lo, hi, m.sender, m.recipient, m.content_type, data, m.message_id)
                    await tx.rows(self.sql.history_insert, (*entry, now))
                outcome[index] = StoredMessage(
                    int(rows[0][0]),
                    m.recipient,
                    m.sender,
                    m.content_type,
                    data,
                    m.message_id,
                    now,
                    bool(m.imdn),
                    0,
                )

        if valid:
            await self._run(body, write=True)
        return [outcome[index] for index in range(len(messages))]

    def _new_message(self, message: NewMessage) -> bytes:
        """Check a message against the limits; its body as bytes."""
        limits = self.limits
        self._text("recipient", message.recipient, limits.max_address)
        self._text("sender", message.sender, limits.max_address)
        self._text("content_type", message.content_type, limits.max_content_type)
        self._text("message_id", message.message_id, limits.max_message_id, empty_ok=True)
        return self._body(message.body)

    async def pending(self, recipient: str, limit: int = 100) -> list[StoredMessage]:
        """Queued messages of ``recipient`` that nobody holds a live claim on, oldest
        first (what :meth:`claim` would take next; nothing is changed)."""
        args = (recipient, self._clock(), self._limit(limit))
        rows = await self._rows(self.sql.queue_pending, args, write=False)
        return [stored_message(row) for row in rows]

    async def claim(
        self, recipient: str, device: str, lease_seconds: float, *, limit: int = 100
    ) -> list[StoredMessage]:
        """Take up to ``limit`` messages of ``recipient`` for ``device`` for
        ``lease_seconds``, oldest first: those unclaimed or whose lease lapsed. Two
        claimers (processes sharing the database) never get the same message while its
        lease runs. Each claim counts one attempt. Then :meth:`ack` what the device
        confirmed (200 / Success-Report) and :meth:`release` the rest."""
        self._text("device", device, self.limits.max_address)
        if not (0 < lease_seconds <= MAX_LEASE and math.isfinite(lease_seconds)):
            raise StoreError(f"lease_seconds must be in (0, {MAX_LEASE}]")
        now = self._clock()
        args = (device, now + lease_seconds, recipient, now, self._limit(limit))
        rows = await self._rows(self.sql.queue_claim, args, write=True)
        return sorted((stored_message(row) for row in rows), key=lambda message: message.id)

    async def ack(self, message_ids: Iterable[int], *, notify: str | None = None) -> int:
        """Remove delivered messages (ids already gone are ignored); the number removed.

        With ``notify`` (an IMDN status such as ``"delivered"``), the same transaction
        queues that notification to the sender of each removed message that asked for
        one (``imdn``): a crash cannot separate the two."""
        return await self.ack_many([(i, notify) for i in message_ids])

    async def ack_many(self, acks: Iterable[tuple[int, str | None]]) -> int:
        """:meth:`ack` of several messages, each with its own ``notify`` (or None), in
        one transaction; the number removed."""
        by_status: dict[str | None, list[int]] = {}
        for message_id, notify in acks:
            if notify is not None:
                self._status(notify)
            by_status.setdefault(notify, []).append(message_id)
        groups = [(notify, self._ids(ids)) for notify, ids in by_status.items()]
        if sum(len(ids) for _, ids in groups) > self.limits.max_batch:
            raise TooLarge(f"more than {self.limits.max_batch} ids at once")
        groups = [(notify, ids) for notify, ids in groups if ids]
        if not groups:
            return 0
        now = self._clock()

        async def body(tx: Transaction) -> int:
            removed = 0
            for notify, ids in groups:
                rows = await tx.rows(self.sql.queue_ack, (self._ids_param(ids),))
                removed += len(rows)
                if notify is None:
                    continue
                for recipient, sender, message_id, imdn in rows:
                    if imdn:
                        args = (sender, message_id, notify, recipient, now)
                        await tx.rows(self.sql.notification_insert, args)
            return removed

        return await self._run(body, write=True)

    async def release(self, message_ids: Iterable[int], *, device: str | None = None) -> int:
        """Give claimed messages back to the queue (only ``device``'s claims if given);
        the number released."""
        ids = self._ids(message_ids)
        if not ids:
            return 0
        if device is None:
            return await self._count(self.sql.queue_release, (self._ids_param(ids),))
        return await self._count(self.sql.queue_release_device, (self._ids_param(ids), device))

    async def depth(self, recipient: str) -> int:
        """How many messages are queued for ``recipient`` (claimed or not)."""
        rows = await self._rows(self.sql.queue_depth, (recipient,), write=False)
        return int(rows[0][0])

    async def total_depth(self) -> int:
        """How many messages are queued, for every recipient."""
        rows = await self._rows(self.sql.queue_total, (), write=False)
        return int(rows[0][0])

    # -- history --------------------------------------------------------------

    async def add_history(
        self,
        sender: str,
        recipient: str,
        content_type: str,
        body: bytes,
        message_id: str,
        *,
        at: float | None = None,
    ) -> HistoryEntry:
        """Record a message of the conversation between ``sender`` and ``recipient``."""
        limits = self.limits
        self._text("sender", sender, limits.max_address)
        self._text("recipient", recipient, limits.max_address)
        self._text("content_type", content_type, limits.max_content_type)
        self._text("message_id", message_id, limits.max_message_id, empty_ok=True)
        data = self._body(body)
        when = self._clock() if at is None else float(at)
        lo, hi = sorted((sender, recipient))
        args = (lo, hi, sender, recipient, content_type, data, message_id, when)
        rows = await self._rows(self.sql.history_insert, args, write=True)
        return HistoryEntry(
            int(rows[0][0]), sender, recipient, content_type, data, message_id, when
        )

    async def history(
        self, a: str, b: str, *, limit: int = 50, before_id: int | None = None
    ) -> list[HistoryEntry]:
        """The conversation of ``a`` and ``b`` (both directions), newest first; the
        next page is ``before_id=`` the last entry's id."""
        lo, hi = sorted((a, b))
        count = self._limit(limit)
        if before_id is None:
            rows = await self._rows(self.sql.history_page, (lo, hi, count), write=False)
        else:
            args = (lo, hi, int(before_id), count)
            rows = await self._rows(self.sql.history_before, args, write=False)
        return [history_entry(row) for row in rows]

    # -- IMDN outbox ----------------------------------------------------------

    async def add_notification(
        self, to: str, about_message_id: str, status: str, *, recipient: str = ""
    ) -> Notification:
        """Queue an IMDN with ``status`` for ``to`` about its message ``about_message_id``
        (``recipient``: whose disposition it reports)."""
        self._text("to", to, self.limits.max_address)
        self._text("about_message_id", about_message_id, self.limits.max_message_id)
        self._text("recipient", recipient, self.limits.max_address, empty_ok=True)
        self._status(status)
        now = self._clock()
        args = (to, about_message_id, status, recipient, now)
        rows = await self._rows(self.sql.notification_insert, args, write=True)
        return Notification(int(rows[0][0]), to, about_message_id, status, now, recipient)

    async def pending_notifications(self, to: str, *, limit: int = 100) -> list[Notification]:
        """Notifications waiting for ``to``, oldest first."""
        args = (to, self._limit(limit))
        rows = await self._rows(self.sql.notification_pending, args, write=False)
        return [notification(row) for row in rows]

    async def ack_notifications(self, ids: Iterable[int]) -> int:
        """Remove sent notifications (idempotent); the number removed."""
        wanted = self._ids(ids)
        if not wanted:
            return 0
        return await self._count(self.sql.notification_ack, (self._ids_param(wanted),))

    # -- validation -----------------------------------------------------------

    @staticmethod
    def _text(name: str, value: str, maximum: int, *, empty_ok: bool = False) -> None:
        if not isinstance(value, str):
            raise StoreError(f"{name} must be a string")
        if not value and not empty_ok:
            raise StoreError(f"{name} is empty")
        if len(value) > maximum:
            raise TooLarge(f"{name} is longer than {maximum} characters")
        if "\x00" in value:
            raise StoreError(f"{name} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise StoreError(f"{name} is not valid Unicode text") from error

    def _body(self, body: bytes) -> bytes:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise StoreError("body must be bytes")
        data = bytes(body)
        if len(data) > self.limits.max_body:
            raise TooLarge(f"body of {len(data)} bytes exceeds {self.limits.max_body}")
        return data

    def _limit(self, limit: int) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise StoreError("limit must be a positive integer")
        return min(limit, self.limits.max_batch)

    def _ids(self, ids: Iterable[int]) -> list[int]:
        given = list(ids)
        if any(isinstance(i, bool) or not isinstance(i, int) for i in given):
            raise StoreError("ids must be integers")
        wanted = sorted({i for i in given if 0 < i < 2**63})  # others name no record
        if len(wanted) > self.limits.max_batch:
            raise TooLarge(f"more than {self.limits.max_batch} ids at once")
        return wanted

    @staticmethod
    def _status(status: str) -> None:
        if status not in IMDN_STATUSES:
            raise StoreError(f"unknown IMDN status {status!r}")
