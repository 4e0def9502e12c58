"""Durability of the offline queue across a crash: bob is offline, alice sends 100
messages, the server is killed with SIGKILL and restarted on the same ports and store;
bob registers and receives every message alice got a 200 for, in order, exactly once,
and alice gets a delivery notification (IMDN by page mode) for each."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest

from pyim.msrp.transport import DeliveryResult
from pyim.sip.chat import ChatSession
from pyim.ua.cpim import CPIM_TYPE, encode_cpim, parse_cpim
from server_harness import User
from server_process import ServerProcess, make_user_at

pytest_plugins = ["peers"]

COUNT = 100
ALICE, BOB = "sip:alice@127.0.0.1", "sip:bob@127.0.0.1"
LIMITS = {"messages_per_second": 1000.0}  # alice pipelines her 100 at once


def cpim(i: int) -> bytes:
    """Message ``i`` as CPIM asking for a positive-delivery notification (RFC 5438)."""
    return encode_cpim(
        sender=ALICE,
        recipient=BOB,
        text=f"message {i:03d}",
        headers=[
            ("NS", "imdn <urn:ietf:params:imdn>"),
            ("imdn.Message-ID", f"imdn-{i:03d}"),
            ("imdn.Disposition-Notification", "positive-delivery"),
        ],
    ).encode()


def send_all(session: ChatSession) -> list[asyncio.Future[DeliveryResult]]:
    """Pipeline the 100: each future is "sent" at its 200, which the server holds
    until the message is durable."""
    return [
        session.msrp.send_nowait(CPIM_TYPE, cpim(i), success_report=False) for i in range(COUNT)
    ]


async def receive_until_quiet(bob: User, expected: int, timeout: float = 60.0) -> list[str]:
    """What bob's device gets (the server INVITEs it on alice's behalf): the texts,
    until ``expected`` arrived, then 1 s more of quiet to catch duplicates."""
    bob_side = await asyncio.wait_for(bob.chat.accept(), 15)
    assert bob_side.dialog.remote.uri.user == "alice"
    texts: list[str] = []
    async with asyncio.timeout(timeout):
        while len(texts) < expected:
            message = await bob_side.receive()
            texts.append(parse_cpim(message.body).body)
    with pytest.raises(TimeoutError):
        extra = await asyncio.wait_for(bob_side.receive(), 1.0)
        texts.append(parse_cpim(extra.body).body)
    return texts


async def notifications(alice: User, expected: int, timeout: float = 60.0) -> list[str]:
    """The Message-IDs that alice's delivery notifications are about (all "delivered")."""
    about: list[str] = []
    async with asyncio.timeout(timeout):
        while len(about) < expected:
            page = await alice.pages.get()
            document = parse_cpim(page.body)
            assert "imdn" in document.content_type
            assert "<delivered/>" in document.body
            found = re.search(r"<message-id>([^<]+)</message-id>", document.body)
            assert found is not None
            about.append(found.group(1))
    await asyncio.sleep(0.5)
    while not alice.pages.empty():
        page = alice.pages.get_nowait()
        found = re.search(r"<message-id>([^<]+)</message-id>", parse_cpim(page.body).body)
        about.append(found.group(1) if found else "?")
    return about


async def crash_and_restart(server: ServerProcess) -> None:
    await asyncio.to_thread(server.kill)
    await asyncio.to_thread(server.start)


async def test_offline_100_survive_sigkill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server", limits=LIMITS)
    await asyncio.to_thread(server.start)
    alice = await make_user_at("alice", server.sip_port)
    bob = await make_user_at("bob", server.sip_port)
    try:
        await alice.register()
        session = await alice.call("bob")  # bob is offline: the server answers
        results = await asyncio.wait_for(asyncio.gather(*send_all(session)), 60)
        assert [r.status for r in results] == ["sent"] * COUNT  # all 100 are durable
        ids = [r.message_id for r in results]

        await crash_and_restart(server)
        await alice.register()  # the registrar's bindings died with the process
        await bob.register()
        texts = await receive_until_quiet(bob, COUNT)
        assert texts == [f"message {i:03d}" for i in range(COUNT)]  # in order, once each
        about = await notifications(alice, COUNT)
        assert sorted(about) == sorted(ids)  # one notification per message, no more
        assert "Traceback" not in server.logs()
    finally:
        await alice.close()
        await bob.close()
        server.close()


async def test_sigkill_while_sending(tmp_path: Path) -> None:
    """SIGKILL at a random moment of the 100 sends: every message whose 200 alice got
    arrives; nothing arrives twice or out of order (a message stored whose 200 was lost
    with the process may arrive too: alice saw it fail, bob sees it once)."""
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    server = ServerProcess(tmp_path / "server", limits=LIMITS)
    await asyncio.to_thread(server.start)
    alice = await make_user_at("alice", server.sip_port)
    bob = await make_user_at("bob", server.sip_port)
    try:
        await alice.register()
        session = await alice.call("bob")
        futures = send_all(session)
        cut = rng.randrange(5, COUNT - 5)  # kill once this many 200s came back
        async with asyncio.timeout(60):
            while sum(f.done() for f in futures) < cut:
                await asyncio.sleep(0.001)
        await asyncio.to_thread(server.kill)
        results = await asyncio.wait_for(asyncio.gather(*futures), 30)
        confirmed = [i for i, r in enumerate(results) if r.status == "sent"]
        assert len(confirmed) >= cut, f"seed {seed}"
        assert all(r.status in ("sent", "failed") for r in results)

        await asyncio.to_thread(server.start)
        await alice.register()
        await bob.register()
        bob_side = await asyncio.wait_for(bob.chat.accept(), 15)
        texts: list[str] = []
        with pytest.raises(TimeoutError):  # take everything until 2 s of quiet
            while True:
                message = await asyncio.wait_for(bob_side.receive(), 2.0)
                texts.append(parse_cpim(message.body).body)
        got = [int(t.split()[1]) for t in texts]
        assert got == sorted(set(got)), f"seed {seed}: duplicates or disorder: {got}"
        assert set(confirmed) <= set(got), f"seed {seed}: lost {set(confirmed) - set(got)}"
        about = await notifications(alice, len(got))
        delivered_ids = {results[i].message_id for i in got}
        assert sorted(about) == sorted(delivered_ids), f"seed {seed}"
    finally:
        await alice.close()
        await bob.close()
        server.close()
