"""pyim.store against both backends: SQLite (a file in tmp_path) and PostgreSQL (a fresh
database per test on the session's throw-away server, tests/postgres.py).

Durability: a writer process is SIGKILLed at a random point; every message whose
enqueue had returned (it printed the id) must be there after reopening, and every
message whose ack had returned must be gone. Availability: a PostgreSQL server that
stops (or is SIGKILLed) turns calls into StoreUnavailable; when it is back, the next
call works.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from peers import free_port
from postgres import Postgres
from pyim.digest import Algorithm, ha1
from pyim.store import (
    NewMessage,
    QueueFull,
    Store,
    StoreError,
    StoreLimits,
    StoreUnavailable,
    TooLarge,
    open_store,
)

pytest_plugins = ["postgres"]

BOB = "sip:bob@pyim.test"
ALICE = "sip:alice@pyim.test"
CAROL = "sip:carol@pyim.test"
SRC = Path(__file__).resolve().parent.parent / "src"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    async with open_store(store_url, clock=clock, timeout=10.0) as opened:
        yield opened


def raw_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, read without pyim.store."""
    tables: dict[str, list[tuple[object, ...]]] = {}
    if url.startswith("sqlite://"):
        with sqlite3.connect(url.removeprefix("sqlite://")) as conn:
            names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for (name,) in names.fetchall():
                tables[name] = conn.execute(f'SELECT * FROM "{name}"').fetchall()
        return tables
    with psycopg.connect(url) as conn:
        names = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        for (name,) in names:
            tables[name] = conn.execute(f'SELECT * FROM "{name}"').fetchall()  # type: ignore[arg-type]
    return tables


# --------------------------------------------------------------------------------------
# users


async def test_users_store_ha1_never_the_password(store: Store, store_url: str) -> None:
    password = "correct-horse-battery-staple"
    record = await store.add_user("alice", "pyim.test", password)
    assert record.ha1_md5 == ha1("alice", "pyim.test", password, Algorithm.MD5)
    assert record.ha1_sha256 == ha1("alice", "pyim.test", password, Algorithm.SHA_256)
    assert await store.get_ha1("alice", "pyim.test", Algorithm.MD5) == record.ha1_md5
    assert await store.get_ha1("alice", "pyim.test", "SHA-256") == record.ha1_sha256
    assert await store.get_ha1("alice", "pyim.test", Algorithm.SHA_256_SESS) == record.ha1_sha256
    assert await store.get_ha1("alice", "pyim.test", "md5-sess") == record.ha1_md5
    assert await store.get_ha1("alice", "pyim.test", Algorithm.SHA_512_256) is None
    assert await store.get_ha1("alice", "pyim.test", "bogus") is None
    assert await store.get_ha1("alice", "other.realm") is None
    assert await store.get_ha1("nobody", "pyim.test") is None

    dumped = repr(raw_rows(store_url))
    assert record.ha1_md5 in dumped and record.ha1_sha256 in dumped
    assert password not in dumped
    if store_url.startswith("sqlite://"):
        path = Path(store_url.removeprefix("sqlite://"))
        for part in (path, path.with_name(path.name + "-wal")):
            if part.exists():
                assert password.encode() not in part.read_bytes()
        assert path.stat().st_mode & 0o777 == 0o600

    changed = await store.add_user("alice", "pyim.test", "new password")
    assert await store.get_ha1("alice", "pyim.test") == changed.ha1_md5 != record.ha1_md5
    await store.add_user("bob", "pyim.test", "b")
    await store.add_user("carol", "elsewhere", "c")
    assert [u.username for u in await store.list_users()] == ["carol", "alice", "bob"]
    assert [u.username for u in await store.list_users("pyim.test")] == ["alice", "bob"]
    assert await store.delete_user("alice", "pyim.test") is True
    assert await store.delete_user("alice", "pyim.test") is False
    assert await store.get_ha1("alice", "pyim.test") is None
    with pytest.raises(StoreError):
        await store.add_user("", "pyim.test", "x")
    with pytest.raises(StoreError):
        await store.add_user("dave", "pyim.test", "")


# --------------------------------------------------------------------------------------
# the offline queue


async def test_queue_order_depth_and_pending(store: Store, clock: FakeClock) -> None:
    sent = []
    for i in range(5):
        clock.advance(1)
        sent.append(await store.enqueue(BOB, ALICE, "text/plain", b"m%d" % i, f"id{i}"))
    await store.enqueue(CAROL, ALICE, "text/plain", b"other", "c0", imdn=True)
    assert [m.id for m in sent] == sorted(m.id for m in sent)
    assert await store.depth(BOB) == 5 and await store.depth(CAROL) == 1
    assert await store.depth("sip:nobody@pyim.test") == 0
    pending = await store.pending(BOB)
    assert pending == sent
    first = pending[0]
    assert (first.recipient, first.sender, first.content_type) == (BOB, ALICE, "text/plain")
    assert (first.body, first.message_id, first.imdn, first.attempts) == (b"m0", "id0", False, 0)
    assert first.created == 1_700_000_001.0 and first.claimed_by is None
    assert [m.body for m in await store.pending(BOB, limit=2)] == [b"m0", b"m1"]
    assert (await store.pending(CAROL))[0].imdn is True
    binary = bytes(range(256)) * 4
    message = await store.enqueue(BOB, ALICE, "application/octet-stream", binary, "bin")
    assert (await store.pending(BOB))[-1].body == binary == message.body


async def test_claim_ack_release(store: Store) -> None:
    ids = [(await store.enqueue(BOB, ALICE, "text/plain", b"%d" % i, f"m{i}")).id for i in range(6)]
    phone = await store.claim(BOB, "phone", 30, limit=2)
    assert [m.id for m in phone] == ids[:2]
    assert all(m.attempts == 1 and m.claimed_by == "phone" for m in phone)
    assert [m.id for m in await store.pending(BOB)] == ids[2:]
    laptop = await store.claim(BOB, "laptop", 30, limit=3)
    assert [m.id for m in laptop] == ids[2:5]
    assert await store.release([ids[0]], device="laptop") == 0  # not laptop's claim
    assert await store.release([ids[0]], device="phone") == 1
    assert await store.release([ids[2]]) == 1  # any claim
    again = await store.claim(BOB, "tablet", 30)
    assert [m.id for m in again] == [ids[0], ids[2], ids[5]]
    assert [m.attempts for m in again] == [2, 2, 1]
    assert await store.claim(BOB, "tablet", 30) == []
    assert await store.ack([ids[0], ids[1], ids[1]]) == 2
    assert await store.ack([ids[0], ids[1]]) == 0  # idempotent
    assert await store.ack([]) == 0
    assert await store.ack([999_999_999, -1, 2**70]) == 0
    assert await store.depth(BOB) == 4
    assert await store.ack(ids) == 4
    assert await store.depth(BOB) == 0
    assert await store.release(ids) == 0
    with pytest.raises(StoreError):
        await store.claim(BOB, "phone", 0)
    with pytest.raises(StoreError):
        await store.claim(BOB, "phone", float("nan"))
    with pytest.raises(StoreError):
        await store.ack(["1"])  # type: ignore[list-item]


async def test_leases_expire(store: Store, clock: FakeClock) -> None:
    message = await store.enqueue(BOB, ALICE, "text/plain", b"x", "m")
    [claimed] = await store.claim(BOB, "phone", 30)
    assert claimed.lease_until == clock.now + 30
    clock.advance(29.5)
    assert await store.claim(BOB, "laptop", 30) == []
    assert await store.pending(BOB) == []
    clock.advance(0.5)  # the lease has lapsed: the phone went away without an answer
    assert [m.id for m in await store.pending(BOB)] == [message.id]
    [retaken] = await store.claim(BOB, "laptop", 30)
    assert (retaken.id, retaken.claimed_by, retaken.attempts) == (message.id, "laptop", 2)
    assert await store.release([message.id], device="phone") == 0
    assert await store.ack([message.id]) == 1


async def test_concurrent_claimers_never_share_a_message(store_url: str) -> None:
    count = 150
    async with open_store(store_url) as first, open_store(store_url) as second:
        for i in range(count):
            await first.enqueue(BOB, ALICE, "text/plain", b"%d" % i, f"m{i}")

        async def drain(store: Store, device: str) -> list[int]:
            taken: list[int] = []
            for _ in range(count):
                batch = await store.claim(BOB, device, 60, limit=4)
                if not batch:
                    break
                taken.extend(m.id for m in batch)
                await asyncio.sleep(0)
                assert await store.ack([m.id for m in batch]) == len(batch)
            return taken

        results = await asyncio.wait_for(
            asyncio.gather(
                drain(first, "a1"), drain(second, "b1"), drain(first, "a2"), drain(second, "b2")
            ),
            timeout=60,
        )
        everything = [i for taken in results for i in taken]
        assert len(everything) == len(set(everything)) == count
        assert sum(1 for taken in results if taken) >= 2, "they really ran side by side"
        assert await first.depth(BOB) == 0


async def test_concurrent_writes_on_one_store(store: Store) -> None:
    messages = await asyncio.gather(
        *(store.enqueue(BOB, ALICE, "text/plain", b"%d" % i, f"m{i}") for i in range(50))
    )
    assert len({m.id for m in messages}) == 50
    assert await store.depth(BOB) == 50


async def test_enqueue_many_is_one_transaction_with_refusals_in_place(store_url: str) -> None:
    limits = StoreLimits(max_body=10, max_queue_depth=3, max_batch=8)
    async with open_store(store_url, limits=limits) as store:
        await store.enqueue(BOB, ALICE, "text/plain", b"old", "m0")
        batch = [
            NewMessage(BOB, ALICE, "text/plain", b"1", "m1", imdn=True, history=True),
            NewMessage(BOB, ALICE, "text/plain", b"x" * 11, "big"),  # TooLarge
            NewMessage(CAROL, ALICE, "text/plain", b"c", "c1"),
            NewMessage(BOB, "sip:a\x00b", "text/plain", b"n", "nul"),  # bad sender
            NewMessage(BOB, ALICE, "text/plain", b"2", "m2", history=True),
            NewMessage(BOB, ALICE, "text/plain", b"3", "m3"),  # 4th for bob: QueueFull
        ]
        results = await store.enqueue_many(batch)
        assert [type(r).__name__ for r in results] == [
            "StoredMessage", "TooLarge", "StoredMessage", "StoreError", "StoredMessage",
            "QueueFull",
        ]  # fmt: skip
        stored = [r for r in results if not isinstance(r, StoreError)]
        assert [m.message_id for m in stored] == ["m1", "c1", "m2"]
        assert stored[0].imdn and not stored[2].imdn
        assert stored[0].id < stored[1].id < stored[2].id  # in the order given
        assert [m.message_id for m in await store.pending(BOB)] == ["m0", "m1", "m2"]
        assert [h.message_id for h in await store.history(ALICE, BOB)] == ["m2", "m1"]
        assert await store.enqueue_many([]) == []
        with pytest.raises(TooLarge):  # more than max_batch at once
            await store.enqueue_many([batch[0]] * 9)


async def test_ack_many_each_with_its_notification(store: Store) -> None:
    a = await store.enqueue(BOB, ALICE, "text/plain", b"a", "a", imdn=True)
    b = await store.enqueue(BOB, CAROL, "text/plain", b"b", "b", imdn=True)
    c = await store.enqueue(BOB, CAROL, "text/plain", b"c", "c", imdn=True)
    assert await store.ack_many([(a.id, "delivered"), (b.id, None), (c.id, "failed")]) == 3
    assert [(n.about_message_id, n.status) for n in await store.pending_notifications(ALICE)] == [
        ("a", "delivered")
    ]
    assert [(n.about_message_id, n.status) for n in await store.pending_notifications(CAROL)] == [
        ("c", "failed")
    ]
    assert await store.depth(BOB) == 0
    assert await store.ack_many([(a.id, "delivered"), (c.id, None)]) == 0  # gone: no-op
    assert await store.ack_many([]) == 0
    with pytest.raises(StoreError):
        await store.ack_many([(1, "bogus")])


async def test_ack_with_notification_and_the_imdn_outbox(store: Store) -> None:
    wants = await store.enqueue(BOB, ALICE, "text/plain", b"a", "imdn-1", imdn=True)
    quiet = await store.enqueue(BOB, CAROL, "text/plain", b"b", "plain-1")
    assert await store.ack([wants.id, quiet.id], notify="delivered") == 2
    [note] = await store.pending_notifications(ALICE)
    assert (note.to, note.about_message_id, note.status, note.recipient) == (
        ALICE,
        "imdn-1",
        "delivered",
        BOB,
    )
    assert await store.pending_notifications(CAROL) == []
    assert await store.ack([wants.id], notify="delivered") == 0  # no second notification
    other = await store.add_notification(ALICE, "imdn-2", "displayed", recipient=BOB)
    assert [n.id for n in await store.pending_notifications(ALICE)] == [note.id, other.id]
    assert [n.id for n in await store.pending_notifications(ALICE, limit=1)] == [note.id]
    assert await store.ack_notifications([note.id]) == 1
    assert await store.ack_notifications([note.id]) == 0
    assert await store.pending_notifications(ALICE) == [other]
    with pytest.raises(StoreError):
        await store.add_notification(ALICE, "x", "bogus-status")
    with pytest.raises(StoreError):
        await store.ack([1], notify="nope")


# --------------------------------------------------------------------------------------
# history


async def test_history_both_directions_and_paging(store: Store, clock: FakeClock) -> None:
    entries = []
    for i in range(7):
        clock.advance(1)
        sender, recipient = (ALICE, BOB) if i % 2 == 0 else (BOB, ALICE)
        entries.append(await store.add_history(sender, recipient, "text/plain", b"%d" % i, f"h{i}"))
    await store.add_history(ALICE, CAROL, "text/plain", b"elsewhere", "c")
    newest_first = list(reversed(entries))
    assert await store.history(ALICE, BOB) == newest_first
    assert await store.history(BOB, ALICE) == newest_first
    page1 = await store.history(ALICE, BOB, limit=3)
    page2 = await store.history(ALICE, BOB, limit=3, before_id=page1[-1].id)
    page3 = await store.history(ALICE, BOB, limit=3, before_id=page2[-1].id)
    assert page1 + page2 + page3 == newest_first
    assert len(page3) == 1
    assert await store.history(ALICE, BOB, before_id=entries[0].id) == []
    assert [e.body for e in await store.history(CAROL, ALICE)] == [b"elsewhere"]
    assert entries[0].at == 1_700_000_001.0
    stamped = await store.add_history(ALICE, BOB, "text/plain", b"x", "t", at=5.0)
    assert (await store.history(BOB, ALICE, limit=1))[0] == stamped


# --------------------------------------------------------------------------------------
# limits, schema, URLs


async def test_bounded_inputs(store_url: str) -> None:
    limits = StoreLimits(max_body=100, max_queue_depth=3, max_batch=10)
    async with open_store(store_url, limits=limits) as store:
        with pytest.raises(TooLarge):
            await store.enqueue(BOB, ALICE, "text/plain", b"x" * 101, "big")
        with pytest.raises(StoreError):  # TooLarge is a StoreError
            await store.add_history(ALICE, BOB, "text/plain", b"x" * 101, "big")
        for i in range(3):
            await store.enqueue(BOB, ALICE, "text/plain", b"x" * 100, f"m{i}")
        with pytest.raises(QueueFull):
            await store.enqueue(BOB, ALICE, "text/plain", b"x", "m3")
        assert await store.depth(BOB) == 3  # the refused one left nothing behind
        await store.enqueue(CAROL, ALICE, "text/plain", b"x", "c")  # other queues go on
        with pytest.raises(TooLarge):
            await store.enqueue(BOB, "sip:" + "a" * 2000, "text/plain", b"x", "m")
        with pytest.raises(StoreError):
            await store.enqueue(BOB, "sip:a\x00b", "text/plain", b"x", "m")
        with pytest.raises(StoreError):
            await store.enqueue(BOB, "sip:\udcff", "text/plain", b"x", "m")
        with pytest.raises(StoreError):
            await store.enqueue(BOB, ALICE, "text/plain", "text", "m")  # type: ignore[arg-type]
        with pytest.raises(TooLarge):
            await store.ack(range(1, 12))
        with pytest.raises(StoreError):
            await store.pending(BOB, limit=0)
        assert len(await store.pending(BOB, limit=10**9)) == 3  # capped at max_batch


async def test_migrate_is_idempotent_and_concurrent(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        assert await asyncio.gather(*(store.migrate() for store in stores)) == [1, 1, 1]
        assert await stores[0].migrate() == 1
        assert [row[0] for row in raw_rows(store_url)["schema_version"]] == [1]
        await stores[1].enqueue(BOB, ALICE, "text/plain", b"x", "m")
        assert await stores[2].depth(BOB) == 1
    finally:
        for store in stores:
            await store.close()


async def test_sqlite_transaction_body_awaits_only_its_statements(tmp_path: Path) -> None:
    """A body runs whole on the database thread: awaiting anything else is a bug,
    refused (and rolled back), and the store goes on."""
    async with open_store(f"sqlite://{tmp_path / 'a.db'}") as store:

        async def body(tx: Any) -> None:
            await tx.run("DELETE FROM queue", ())
            await asyncio.sleep(0)

        await store.enqueue(BOB, ALICE, "text/plain", b"x", "m")
        with pytest.raises(RuntimeError, match="awaited something other"):
            await store._run(body, write=True)  # type: ignore[attr-defined]
        assert await store.depth(BOB) == 1


async def test_sqlite_is_wal_with_full_sync(tmp_path: Path) -> None:
    async with open_store(f"sqlite://{tmp_path / 'a.db'}") as store:
        # on the store's own connection (synchronous is a setting of the connection)
        assert (await store._rows("PRAGMA journal_mode", (), write=False))[0][0] == "wal"
        # FULL: the WAL is fsync'ed at every commit
        assert (await store._rows("PRAGMA synchronous", (), write=False))[0][0] == 2


async def test_sqlite_locked_too_long_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    async with open_store(f"sqlite://{path}", timeout=0.2) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.enqueue(BOB, ALICE, "text/plain", b"x", "m")
            assert time.monotonic() - started < 5.0
            other.execute("COMMIT")
        finally:
            other.close()
        await store.enqueue(BOB, ALICE, "text/plain", b"x", "m")
        assert await store.depth(BOB) == 1


async def test_urls_and_lifecycle(tmp_path: Path) -> None:
    async with open_store("sqlite://:memory:") as memory:
        await memory.enqueue(BOB, ALICE, "text/plain", b"x", "m")
        assert await memory.depth(BOB) == 1
    for bad in ("sqlite:", "sqlite://", "sqlite:/x.db", "mysql://x", "/tmp/x.db"):
        with pytest.raises(StoreError):
            open_store(bad)
    assert open_store("host=127.0.0.1 dbname=x").backend == "postgresql"
    assert open_store("postgres://u@h/db").backend == "postgresql"
    store = open_store(f"sqlite://{tmp_path / 'b.db'}")
    with pytest.raises(StoreError):
        await store.depth(BOB)  # not open
    await store.open()
    await store.open()  # idempotent
    with pytest.raises(StoreError):
        await store.depth(BOB)  # not migrated: no such table
    await store.migrate()
    assert await store.depth(BOB) == 0
    await store.close()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await open_store(f"sqlite://{tmp_path / 'missing' / 'c.db'}").open()


# --------------------------------------------------------------------------------------
# durability: kill -9 the writer at a random point

WRITER = r"""
import asyncio, sys
from pyim.store import open_store

async def main(url, start):
    async with open_store(url) as store:
        print("ready", flush=True)
        i = start
        while True:
            i += 1
            message = await store.enqueue("sip:bob@x", "sip:alice@x", "text/plain",
                                          b"m%d" % i, "id%d" % i)
            print("E", message.id, flush=True)
            if i % 3 == 0:
                batch = await store.claim("sip:bob@x", "dev", 600, limit=1)
                print("a", batch[0].id, flush=True)
                await store.ack([batch[0].id])
                print("A", batch[0].id, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def run_writer_and_kill(url: str, start: int, kill_after: int) -> list[tuple[str, int]]:
    """Start the writer, SIGKILL it once it has printed ``kill_after`` lines; the complete
    lines it printed."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(lines) < kill_after + 1 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=10)
    assert lines and lines[0] == b"ready\n", err.decode(errors="replace")
    assert len(lines) > kill_after, f"writer stopped early: {err.decode(errors='replace')}"
    complete = (b"".join(lines[1:]) + rest).split(b"\n")[:-1]  # the last one may be cut
    return [(kind, int(number)) for kind, number in (line.decode().split() for line in complete)]


@pytest.mark.timeout(120)
async def test_kill_9_loses_no_acknowledged_message(store_url: str) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    enqueued: set[int] = set()
    acking: set[int] = set()
    acked: set[int] = set()
    async with open_store(store_url):  # migrated once up front
        pass
    for round_ in range(3):
        printed = await asyncio.to_thread(
            run_writer_and_kill, store_url, 1000 * round_, rng.randrange(5, 120)
        )
        for kind, number in printed:
            {"E": enqueued, "a": acking, "A": acked}[kind].add(number)
        present = {int(row[0]) for row in raw_rows(store_url)["queue"]}  # id comes first
        context = f"seed {seed}, round {round_}"
        assert enqueued - acking <= present, context  # enqueue returned: it is there
        assert not acked & present, context  # ack returned: it is gone for good
        assert len(enqueued) > 0


# --------------------------------------------------------------------------------------
# PostgreSQL down and back


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Postgres]:
    with Postgres(tmp_path / "pg") as server:
        yield server


async def test_postgres_down_is_unavailable_and_recovers(own_postgres: Postgres) -> None:
    url = own_postgres.create_database("store")
    async with open_store(url, timeout=5.0, pool_size=2) as store:
        kept = await store.enqueue(BOB, ALICE, "text/plain", b"kept", "k")
        await asyncio.to_thread(own_postgres.stop)
        for _ in range(2):  # the pooled connection is dead, then connecting is refused
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.depth(BOB)
            assert time.monotonic() - started < 5.0
        with pytest.raises(StoreUnavailable):
            await store.enqueue(BOB, ALICE, "text/plain", b"lost", "l")
        await asyncio.to_thread(own_postgres.start)
        assert [m.id for m in await store.pending(BOB)] == [kept.id]

        # kill -9 of the database server: same answer, and the committed data survives
        after = await store.enqueue(BOB, ALICE, "text/plain", b"after", "a")
        await asyncio.to_thread(own_postgres.kill)
        with pytest.raises(StoreUnavailable):
            await store.ack([kept.id])
        await asyncio.to_thread(own_postgres.start)
        assert [m.id for m in await store.pending(BOB)] == [kept.id, after.id]


async def test_postgres_refused_on_open() -> None:
    store = open_store(f"postgresql://postgres@127.0.0.1:{free_port('tcp')}/none", timeout=3)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.open()
    assert time.monotonic() - started < 3.0
    with pytest.raises(StoreError):
        await store.depth(BOB)  # not open
