"""Group commit: the server's queue writes, batched.

Every message the server accepts is durable before its 200, and leaves the queue
only by an acknowledgement write after its delivery: two store transactions per
message, each a commit (an fsync with SQLite). :class:`StoreWriter` makes those
writes in batches: while one transaction runs, the writes asked for meanwhile
gather, and go together in the next one (``Store.enqueue_many`` / ``Store.ack_many``).
Nobody waits longer than one transaction for a batch to fill; under load a commit
carries many messages. Writes go to the store in the order they were asked for,
so the messages of one sender keep their order in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from ..store import NewMessage, Store, StoredMessage, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most writes of one kind in one transaction.
MAX_BATCH = 256


class StoreWriter:
    """Queue writes of one server, in batches (one flushing task at a time)."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._enqueues: list[tuple[NewMessage, asyncio.Future[StoredMessage]]] = []
        self._acks: list[tuple[int, str | None, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False
        self.transactions = 0  # how many, for the metrics and the benchmark

    def enqueue(self, message: NewMessage) -> asyncio.Future[StoredMessage]:
        """Queue ``message`` (with the next batch); the future is its record once
        committed, or the :class:`StoreError` that refused it."""
        future: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(StoreError("the server is stopping"))
            return future
        self._enqueues.append((message, future))
        self._start()
        return future

    def ack(self, message_id: int, notify: str | None = None) -> asyncio.Future[None]:
        """Acknowledge a delivered message (``Store.ack`` with ``notify``), batched."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(StoreError("the server is stopping"))
            return future
        self._acks.append((message_id, notify, future))
        self._start()
        return future

    async def close(self) -> None:
        """Write what was asked for (the store stays open), then take no more."""
        self._closed = True
        if self._flushing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._flushing)

    def _start(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        while self._enqueues or self._acks:
            if self._enqueues:
                batch, self._enqueues = (
                    self._enqueues[: self.max_batch],
                    self._enqueues[self.max_batch :],
                )
                await self._write_enqueues(batch)
            if self._acks:
                acks, self._acks = self._acks[: self.max_batch], self._acks[self.max_batch :]
                await self._write_acks(acks)

    async def _write_enqueues(
        self, batch: list[tuple[NewMessage, asyncio.Future[StoredMessage]]]
    ) -> None:
        messages = [message for message, _ in batch]
        await self._write([future for _, future in batch], self.store.enqueue_many(messages))

    async def _write_acks(self, acks: list[tuple[int, str | None, asyncio.Future[None]]]) -> None:
        async def ack() -> list[None]:
            await self.store.ack_many([(message_id, notify) for message_id, notify, _ in acks])
            return [None] * len(acks)

        await self._write([future for _, _, future in acks], ack())

    async def _write(
        self,
        futures: list[asyncio.Future[T]],
        transaction: Awaitable[Sequence[T | StoreError]],
    ) -> None:
        """Run one transaction and settle the futures of its writes: each its result
        (or its own refusal), or all the transaction's StoreError."""
        results: Sequence[T | StoreError]
        try:
            results = await transaction
        except StoreError as exc:
            results = [exc] * len(futures)
        except BaseException as exc:  # cancelled, or a bug: nobody is left waiting
            results = [StoreError(f"not written: {exc!r}")] * len(futures)
            raise
        else:
            self.transactions += 1
        finally:
            for future, result in zip(futures, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, StoreError):
                    future.set_exception(result)
                else:
                    future.set_result(result)
