"""StoreWriter: the server's queue writes, group-committed (a real SQLite store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyim.server.writes import StoreWriter
from pyim.store import NewMessage, QueueFull, Store, StoreError, StoreLimits, open_store

BOB = "sip:bob@pyim.test"
ALICE = "sip:alice@pyim.test"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    limits = StoreLimits(max_queue_depth=300)
    async with open_store(f"sqlite://{tmp_path / 's.db'}", limits=limits) as opened:
        yield opened


def message(i: int, recipient: str = BOB) -> NewMessage:
    return NewMessage(recipient, ALICE, "text/plain", b"%d" % i, f"m{i}", history=True)


async def test_concurrent_writes_share_commits_and_keep_their_order(store: Store) -> None:
    writer = StoreWriter(store)
    futures = [writer.enqueue(message(i)) for i in range(200)]
    stored = await asyncio.gather(*futures)
    assert [m.message_id for m in stored] == [f"m{i}" for i in range(200)]
    assert [m.id for m in stored] == sorted(m.id for m in stored)
    # asked for before the first commit: one transaction (at most a few), not 200
    assert writer.transactions <= 2
    assert [m.message_id for m in await store.pending(BOB, limit=1000)] == [
        f"m{i}" for i in range(200)
    ]
    assert len(await store.history(ALICE, BOB, limit=1000)) == 200

    acks = [writer.ack(m.id, "delivered" if m.id % 2 else None) for m in stored]
    await asyncio.gather(*acks)
    assert await store.depth(BOB) == 0
    notes = await store.pending_notifications(ALICE, limit=1000)
    assert len(notes) == sum(1 for m in stored if m.id % 2 and m.imdn)


async def test_a_refusal_fails_only_its_own_message(store: Store) -> None:
    writer = StoreWriter(store)
    futures = [writer.enqueue(message(i)) for i in range(305)]  # the queue holds 300
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(not isinstance(r, BaseException) for r in results[:300])
    assert all(isinstance(r, QueueFull) for r in results[300:])
    big = NewMessage("sip:carol@pyim.test", ALICE, "text/plain", b"x" * (2 << 20), "big")
    with pytest.raises(StoreError):
        await writer.enqueue(big)
    assert (await writer.enqueue(message(1, "sip:carol@pyim.test"))).message_id == "m1"


async def test_close_writes_what_was_asked_then_refuses(store: Store) -> None:
    writer = StoreWriter(store)
    futures = [writer.enqueue(message(i)) for i in range(10)]
    await writer.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert await store.depth(BOB) == 10
    with pytest.raises(StoreError, match="stopping"):
        await writer.enqueue(message(11))
    with pytest.raises(StoreError, match="stopping"):
        await writer.ack(1)


async def test_a_store_that_fails_fails_every_waiting_write(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path / 'closed.db'}")  # never opened
    writer = StoreWriter(store)
    futures = [writer.enqueue(message(i)) for i in range(5)] + [writer.ack(1)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results)
    assert writer.transactions == 0
