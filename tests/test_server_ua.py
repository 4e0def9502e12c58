"""The application server, standalone, with pyim.ua (pjsua2) clients and pyim.sip users.

The server runs in-process (``server_harness``: SQLite in a temporary folder, users
alice/bob/carol); every pyim.ua client is a ``ua_driver.py`` subprocess (pjsua2 allows
one Endpoint per process) whose registrar and outbound proxy is the server, so that
requests to bare AORs (``sip:bob@127.0.0.1``) reach it. In every pairing:

1. ua alice <-> ua bob: the server answers alice's INVITE (pjsua dialect, answered in
   kind) and INVITEs bob's device on alice's behalf (bob's pjsua refuses a plain
   ``m=message`` offer with 488: the server retries in the pjsua dialect);
2. ua <-> pyim.sip: ua alice calls carol (pyim.sip), carol calls ua bob;
3. page mode: a MESSAGE from ua alice reaches ua bob (no session) as CPIM naming alice;
   a page from a page-mode-only client reaches ua bob inside his session with it;
4. offline: alice's messages to bob wait in the store until bob's client starts, then
   arrive in order, and alice gets her Success-Reports.

Every driver process must exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pyim.digest import DigestClient
from pyim.server.app import ImServer
from pyim.sip.stack import SipStack, StackConfig
from pyim.sip.uri import NameAddr, SipUri
from server_harness import DOMAIN, FAST, USERS, make_user, running_server, server_config
from ua_peers import UaProcess

pytestmark = pytest.mark.timeout(180)

STEP = 20.0  # every driver step, seconds


def aor(name: str) -> str:
    return f"sip:{name}@{DOMAIN}"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ImServer]:
    async with running_server(server_config(tmp_path)) as server:
        yield server


def client(server: ImServer, name: str) -> dict[str, Any]:
    """A pyim.ua client of ``name`` whose registrar and outbound proxy is the server."""
    host, port = server.sip.local_address("udp")
    address = f"sip:{host}:{port}"
    return {
        "account": aor(name),
        "password": USERS[name],
        "registrar": address,
        "proxy": address,
        "transport": "udp",
        "register_wait": 10,
        "log_level": 3,
    }


async def start(server: ImServer, name: str, script: list[dict[str, Any]]) -> UaProcess:
    return await UaProcess(client(server, name), script, step_timeout=STEP).start()


@contextlib.asynccontextmanager
async def running(*procs: UaProcess) -> AsyncIterator[None]:
    """Kill the drivers if the test's part fails (its error is the one reported), else
    wait (bounded) for every driver to exit, and require exit status 0 of each."""
    try:
        yield
    except BaseException:
        for proc in procs:
            await proc.kill()
        raise
    try:
        codes = await asyncio.gather(*(p.finish(60) for p in procs))
        for proc, code in zip(procs, codes, strict=True):
            assert code == 0, (
                f"{proc.config['account']}: exit {code}, records {proc.records}\n"
                f"{await proc.tail()}"
            )
    finally:
        for proc in procs:
            await proc.kill()


async def go(*procs: UaProcess) -> None:
    for proc in procs:
        proc.send_line()
        assert proc.proc is not None and proc.proc.stdin is not None
        await proc.proc.stdin.drain()


async def registered(server: ImServer, *procs: UaProcess) -> None:
    """Each client says it registered, and the server holds its binding."""
    for proc in procs:
        record = await proc.record("start", 30)
        assert record["ok"] and record["registered"], record
        uri = SipUri.parse(proc.config["account"])
        assert server.registrar.lookup(uri, server.sip.loop.time()), f"no binding of {uri}"


def ok(proc: UaProcess, op: str) -> list[dict[str, Any]]:
    records = proc.by_op(op)
    assert records and all(r["ok"] for r in records), (op, proc.records)
    return records


def texts(proc: UaProcess, op: str = "receive") -> list[str]:
    return [r["text"] for r in ok(proc, op)]


async def history(server: ImServer, a: str, b: str) -> list[bytes]:
    return [h.body for h in reversed(await server.store.history(aor(a), aor(b)))]


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- 1. two pyim.ua clients chat through the server ---------------------------------------------


async def test_two_ua_clients_chat_through_the_server(server: ImServer) -> None:
    alice = await start(
        server,
        "alice",
        [
            {"op": "start"},
            {"op": "readline"},  # both are registered
            {"op": "chat", "to": aor("bob")},  # answered by the server
            {"op": "send", "index": 0, "text": "hello bob"},
            {"op": "receive", "index": 0},
            {"op": "send", "index": 0, "text": "bye bob"},
            {"op": "receive", "index": 0},
            {"op": "close_chat", "index": 0},
        ],
    )
    bob = await start(
        server,
        "bob",
        [
            {"op": "start"},
            {"op": "readline"},
            {"op": "accept"},  # the server's INVITE on alice's behalf
            {"op": "receive", "index": 0},
            {"op": "send", "index": 0, "text": "hello alice"},
            {"op": "receive", "index": 0},
            {"op": "send", "index": 0, "text": "bye alice"},
            {"op": "close_chat", "index": 0},
        ],
    )
    async with running(alice, bob):
        await registered(server, alice, bob)
        await go(alice, bob)

    assert texts(alice) == ["hello alice", "bye alice"]
    assert texts(bob) == ["hello bob", "bye bob"]
    for proc in (alice, bob):  # Success-Reports end to end, through the store
        assert [r["status"] for r in ok(proc, "send")] == ["delivered", "delivered"]
        ok(proc, "close_chat")
    assert [r["peer"] for r in ok(alice, "chat")] == [aor("bob")]
    assert [r["peer"] for r in ok(bob, "accept")] == [aor("alice")]  # on alice's behalf
    # bob's pjsua refused the plain offer: the server spoke the pjsua dialect to it
    assert list(server._dialect.values()) == [True], server._dialect
    assert await history(server, "alice", "bob") == [
        b"hello bob",
        b"hello alice",
        b"bye bob",
        b"bye alice",
    ]
    assert await server.store.depth(aor("bob")) == 0
    assert await server.store.depth(aor("alice")) == 0


# -- 2. pyim.ua <-> pyim.sip, both call directions --------------------------------------------


async def test_ua_and_sip_user_chat_both_call_directions(server: ImServer) -> None:
    carol = await make_user("carol", server)
    try:
        await carol.register()
        alice = await start(
            server,
            "alice",
            [
                {"op": "start"},
                {"op": "chat", "to": aor("carol")},
                {"op": "send", "index": 0, "text": "hello carol"},
                {"op": "receive", "index": 0},
                {"op": "close_chat", "index": 0},
            ],
        )
        bob = await start(
            server,
            "bob",
            [
                {"op": "start"},
                {"op": "accept"},
                {"op": "receive", "index": 0},
                {"op": "send", "index": 0, "text": "hi carol"},
                {"op": "close_chat", "index": 0},
            ],
        )
        async with running(alice, bob):
            await registered(server, alice, bob)
            # ua alice -> sip carol: the server INVITEs carol's pyim.sip device for alice
            carol_side = await asyncio.wait_for(carol.chat.accept(), 30)
            assert carol_side.dialog.remote.uri.user == "alice"
            got = await asyncio.wait_for(carol_side.receive(), 15)
            assert got.body == b"hello carol" and got.content_type == "text/plain"
            reply = await asyncio.wait_for(carol_side.send("hi alice", success_report=True), 15)
            assert reply.status == "delivered"
            # sip carol -> ua bob: the server answers carol, then INVITEs bob's pjsua
            session = await carol.call("bob")
            sent = await asyncio.wait_for(session.send("hello bob", success_report=True), 30)
            assert sent.status == "delivered"
            back = await asyncio.wait_for(session.receive(), 15)
            assert back.body == b"hi carol"
            await session.close()
            await carol_side.close()
    finally:
        await carol.close()

    assert [r["peer"] for r in ok(alice, "chat")] == [aor("carol")]
    assert texts(alice) == ["hi alice"]
    assert [r["status"] for r in ok(alice, "send")] == ["delivered"]
    assert [r["peer"] for r in ok(bob, "accept")] == [aor("carol")]
    assert texts(bob) == ["hello bob"]
    assert [r["status"] for r in ok(bob, "send")] == ["delivered"]
    assert await history(server, "alice", "carol") == [b"hello carol", b"hi alice"]
    assert await history(server, "carol", "bob") == [b"hello bob", b"hi carol"]


# -- 3. page mode ---------------------------------------------------------------------------------


async def page_from(sip: SipStack, server: ImServer, sender: str, to: str, text: str) -> int:
    """A page-mode MESSAGE from a client that never registers (pyim.sip)."""
    host, port = server.sip.local_address("udp")
    target = SipUri.parse(aor(to))
    request = sip.new_request(
        "MESSAGE",
        target,
        from_=NameAddr(uri=SipUri.parse(aor(sender))).with_tag("page-only"),
        to=NameAddr(uri=target),
        body=text.encode(),
        content_type="text/plain",
    )
    destination = sip.destination_for_uri(SipUri(scheme="sip", host=host, port=port))
    auth = DigestClient(sender, USERS[sender])  # the server knows the sender by its password
    response = await asyncio.wait_for(sip.send(request, destination, auth=auth), 10)
    return response.status


async def test_page_mode_with_ua_clients(server: ImServer) -> None:
    alice = await start(
        server,
        "alice",
        [
            {"op": "start"},
            {"op": "readline"},  # both are registered
            {"op": "page", "to": aor("bob"), "text": "a page for bob"},
        ],
    )
    bob = await start(
        server,
        "bob",
        [
            {"op": "start"},
            {"op": "readline"},
            {"op": "wait_page"},  # alice's, by the server, as CPIM
            {"op": "chat", "to": aor("carol")},  # carol is page-mode only (offline)
            {"op": "receive", "index": 0},  # carol's page, inside the session
            {"op": "close_chat", "index": 0},
        ],
    )
    carol = SipStack(StackConfig(timers=FAST))
    await carol.start()
    try:
        async with running(alice, bob):
            await registered(server, alice, bob)
            await go(alice, bob)
            record = await bob.record("chat", 30)
            assert record["ok"], record
            assert await page_from(carol, server, "carol", "bob", "carol pages bob") == 202
            record = await bob.record("receive", 30)
            assert record["ok"], record
    finally:
        await carol.close()

    [sent] = ok(alice, "page")
    assert sent["code"] == 202, sent  # stored by the server, delivered after
    [page] = ok(bob, "wait_page")
    assert page["text"] == "a page for bob"
    assert page["sender"] == aor("alice")  # From: the original sender, not the server
    assert page["content_type"].startswith("text/plain"), page
    assert aor("alice") in page["cpim_headers"]["From"]
    assert aor("bob") in page["cpim_headers"]["To"]
    [session] = ok(bob, "receive")
    assert session["text"] == "carol pages bob"
    assert session["content_type"].startswith("text/plain"), session
    assert [r["peer"] for r in ok(bob, "chat")] == [aor("carol")]
    assert await history(server, "alice", "bob") == [b"a page for bob"]
    assert await history(server, "carol", "bob") == [b"carol pages bob"]
    assert await server.store.depth(aor("bob")) == 0


# -- 4. offline: store and forward to a pyim.ua client ------------------------------------------


async def test_offline_messages_reach_a_ua_client_when_it_starts(server: ImServer) -> None:
    bodies = [f"offline {i}" for i in range(3)]
    alice = await start(
        server,
        "alice",
        [
            {"op": "start"},
            {"op": "chat", "to": aor("bob")},  # bob is not running: the server answers
            *({"op": "send_nowait", "index": 0, "text": body} for body in bodies),
            {"op": "wait_sent", "timeout": 60},  # the Success-Reports, once bob has them
            {"op": "close_chat", "index": 0},
        ],
    )
    procs = [alice]
    try:

        async def queued() -> bool:
            return await server.store.depth(aor("bob")) == 3

        await wait_for(queued, 30)
        assert not server.registrar.lookup(SipUri.parse(aor("bob")), server.sip.loop.time())
        bob = await start(
            server,
            "bob",
            [
                {"op": "start"},
                {"op": "accept"},  # the server calls bob on alice's behalf
                *({"op": "receive", "index": 0} for _ in bodies),
                {"op": "close_chat", "index": 0},
            ],
        )
        procs.append(bob)
    except BaseException:
        await alice.kill()
        raise
    async with running(*procs):
        await registered(server, bob)
        record = await alice.record("wait_sent", 60)
        assert record["ok"], record

    assert texts(bob) == bodies  # all, in order
    assert [r["peer"] for r in ok(bob, "accept")] == [aor("alice")]
    [sent] = ok(alice, "wait_sent")
    assert sent["statuses"] == ["delivered"] * 3, sent
    assert await server.store.depth(aor("bob")) == 0
    assert await history(server, "alice", "bob") == [b.encode() for b in bodies]
