"""Two pyim.ua clients, each in a process of its own, with Kamailio in front.

Kamailio 5.6 (deploy/kamailio/proxy-presence.cfg, fixture ``kamailio_presence``) is
the registrar (digest, 401), the outbound proxy of both clients (``proxy`` ->
pjsua's ``sipConfig.proxies``) and the presence server (PUBLISH/SUBSCRIBE, digest
with 407; one ``AuthCredInfo`` with realm ``*`` answers both). The clients address
each other by AOR only (``sip:bob@127.0.0.1``, no port), so every request goes
through Kamailio:

1. REGISTER through Kamailio (UDP and TCP), page-mode MESSAGE both ways, text/plain
   and message/cpim;
2. presence: each client PUBLISHes (``set_presence``) and SUBSCRIBEs to the other
   (Kamailio's presence modules answer and NOTIFY); each sees the other online with
   its note, then the change to away;
3. chat over MSRP in both call directions (alice calls bob, then bob calls alice),
   messages both ways; the INVITE goes through Kamailio, MSRP goes client to client.

Every client process must exit 0 (``Client.stop()`` after its script); a pjsua2
abort (like the former ``std::bad_alloc`` on a NOTIFY) fails the test with the
process's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kamailio_presence import KamailioPresence
from ua_peers import UaProcess

pytest_plugins = ["kamailio_presence"]
pytestmark = pytest.mark.timeout(150)

STEP = 15.0  # every driver step, seconds


def client(kamailio: KamailioPresence, user: str, transport: str = "udp") -> dict[str, Any]:
    suffix = f";transport={transport}" if transport != "udp" else ""
    return {
        "account": kamailio.aor(user),
        "password": kamailio.users[user],
        "registrar": f"sip:{kamailio.address}{suffix}",
        "proxy": f"sip:{kamailio.address}{suffix}",
        "transport": transport,
        "publish": True,
        "register_wait": 10,
        "log_level": 3,
    }


async def start(config: dict[str, Any], script: list[dict[str, Any]]) -> UaProcess:
    return await UaProcess(config, script, step_timeout=STEP).start()


async def finish(*procs: UaProcess) -> None:
    """Both drivers end with exit status 0 (killed after a bounded wait otherwise)."""
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


@contextlib.asynccontextmanager
async def running(*procs: UaProcess) -> AsyncIterator[None]:
    """Kill the drivers if the test's part fails (its error is the one reported),
    else wait for their clean exit."""
    try:
        yield
    except BaseException:
        for proc in procs:
            await proc.kill()
        raise
    await finish(*procs)


async def go(*procs: UaProcess) -> None:
    for proc in procs:
        proc.send_line()
        assert proc.proc is not None and proc.proc.stdin is not None
        await proc.proc.stdin.drain()


async def both_registered(kamailio: KamailioPresence, *procs: UaProcess) -> None:
    for proc in procs:
        record = await proc.record("start", 30)
        assert record["ok"] and record["registered"], record
    for user in ("alice", "bob"):
        contacts = await asyncio.to_thread(kamailio.wait_contacts, user, 1, 5.0)
        assert contacts, f"{user} has no binding at Kamailio"


def ok(proc: UaProcess, op: str) -> list[dict[str, Any]]:
    records = proc.by_op(op)
    assert records and all(r["ok"] for r in records), (op, proc.records)
    return records


# -- registration and page mode ----------------------------------------------------------------


def page_script(peer: str) -> list[dict[str, Any]]:
    me = "alice" if "bob" in peer else "bob"
    return [
        {"op": "start"},
        {"op": "readline"},  # both are registered
        {"op": "page", "to": peer, "text": f"plain from {me}"},
        {"op": "page", "to": peer, "text": f"cpim from {me}", "cpim": True},
        {"op": "wait_page"},
        {"op": "wait_page"},
    ]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_register_through_kamailio_and_pages_both_ways(
    kamailio_presence: KamailioPresence, transport: str
) -> None:
    k = kamailio_presence
    alice = await start(client(k, "alice", transport), page_script(k.aor("bob")))
    bob = await start(client(k, "bob", transport), page_script(k.aor("alice")))
    async with running(alice, bob):
        await both_registered(k, alice, bob)
        await go(alice, bob)

    for me, proc, peer in (("alice", alice, "bob"), ("bob", bob, "alice")):
        sent = ok(proc, "page")
        assert [r["code"] for r in sent] == [200, 200], sent
        received = sorted(ok(proc, "wait_page"), key=lambda r: r["text"])
        assert [r["text"] for r in received] == [f"cpim from {peer}", f"plain from {peer}"]
        cpim, plain = received
        assert plain["sender"] == k.aor(peer) and plain["content_type"] == "text/plain"
        assert plain["cpim_headers"] == {}
        # message/cpim: the inner text/plain, and the CPIM envelope names both ends
        assert cpim["sender"] == k.aor(peer)
        assert cpim["content_type"].startswith("text/plain"), cpim
        assert k.aor(peer) in cpim["cpim_headers"]["From"]
        assert k.aor(me) in cpim["cpim_headers"]["To"]


async def test_wrong_password_at_kamailio_is_a_registration_error(
    kamailio_presence: KamailioPresence,
) -> None:
    config = client(kamailio_presence, "alice") | {"password": "not-the-password"}
    proc = await start(config, [{"op": "start", "expect_error": "RegistrationError"}])
    try:
        code = await proc.finish(60)
    finally:
        await proc.kill()
    assert code == 0, (proc.records, await proc.tail())
    [record] = proc.by_op("start")
    assert "401" in record["error"] or "403" in record["error"], record
    assert kamailio_presence.contacts("alice") == []


# -- presence through Kamailio's presence server -----------------------------------------------


def presence_script(me: str, peer: str) -> list[dict[str, Any]]:
    return [
        {"op": "start"},
        {"op": "readline"},  # both are registered
        {"op": "presence", "online": True, "note": f"{me} is here"},  # PUBLISH
        {"op": "subscribe", "uri": peer},  # SUBSCRIBE to the AOR, answered by Kamailio
        {"op": "wait_buddy", "uri": peer, "online": True, "note": f"{peer} is here"},
        {"op": "readline"},  # both saw the other online
        {"op": "presence", "online": False, "note": "away"},
        {"op": "wait_buddy", "uri": peer, "online": False, "note": "away"},
        {"op": "readline"},  # both saw the change
    ]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_presence_through_kamailio(
    kamailio_presence: KamailioPresence, transport: str
) -> None:
    k = kamailio_presence
    a, b = k.aor("alice"), k.aor("bob")
    # the notes name the AOR so that each side's expectation is the other's PUBLISH
    alice = await start(client(k, "alice", transport), presence_script(a, b))
    bob = await start(client(k, "bob", transport), presence_script(b, a))
    async with running(alice, bob):
        await both_registered(k, alice, bob)
        await go(alice, bob)
        for proc in (alice, bob):
            record = await proc.record("wait_buddy", 30)
            assert record["online"] is True, record
        # Kamailio holds both published documents: the status went through it
        # Kamailio's presence server holds both PUBLISHed documents and answered both
        # SUBSCRIBEs (to the bare AORs): the status went through it, not peer to peer
        published = {(p.get("user"), p.get("domain")) for p in k.presentities()}
        assert {("alice", k.domain), ("bob", k.domain)} <= published, k.presentities()
        log = k.log_text()
        for aor in (a, b):
            for method in ("PUBLISH", "SUBSCRIBE"):  # (TCP: ;transport=tcp follows)
                assert re.search(rf"request {method} {re.escape(aor)}[; ]", log), (method, aor)
        await go(alice, bob)
        for proc in (alice, bob):
            record = await proc.record("wait_buddy", 30)
            assert record["online"] is False and record["note"] == "away", record
        await go(alice, bob)

    for proc, peer in ((alice, b), (bob, a)):
        online, away = ok(proc, "wait_buddy")
        assert online["uri"] == peer and online["note"] == f"{peer} is here", online
        assert away["uri"] == peer and away["note"] == "away" and away["online"] is False


# -- chat over MSRP, both call directions -------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_chat_both_call_directions_through_kamailio(
    kamailio_presence: KamailioPresence, transport: str
) -> None:
    k = kamailio_presence
    a, b = k.aor("alice"), k.aor("bob")
    alice = await start(
        client(k, "alice", transport),
        [
            {"op": "start"},
            {"op": "readline"},
            # alice calls bob
            {"op": "chat", "to": b},
            {"op": "send", "index": 0, "text": "hello bob"},
            {"op": "receive", "index": 0},
            {"op": "send", "index": 0, "text": "bye bob"},
            {"op": "receive", "index": 0},
            {"op": "close_chat", "index": 0},
            # bob calls alice
            {"op": "accept"},
            {"op": "receive", "index": 1},
            {"op": "send", "index": 1, "text": "hello again bob"},
            {"op": "wait_closed", "index": 1},
        ],
    )
    bob = await start(
        client(k, "bob", transport),
        [
            {"op": "start"},
            {"op": "readline"},
            {"op": "accept"},
            {"op": "receive", "index": 0},
            {"op": "send", "index": 0, "text": "hello alice"},
            {"op": "receive", "index": 0},
            {"op": "send", "index": 0, "text": "bye alice"},
            {"op": "wait_closed", "index": 0},
            {"op": "chat", "to": a},
            {"op": "send", "index": 1, "text": "bob calling alice"},
            {"op": "receive", "index": 1},
            {"op": "close_chat", "index": 1},
        ],
    )
    async with running(alice, bob):
        await both_registered(k, alice, bob)
        await go(alice, bob)

    assert [r["text"] for r in ok(alice, "receive")] == [
        "hello alice",
        "bye alice",
        "bob calling alice",
    ]
    assert [r["text"] for r in ok(bob, "receive")] == ["hello bob", "bye bob", "hello again bob"]
    for proc in (alice, bob):
        assert all(r["status"] in ("sent", "delivered") for r in ok(proc, "send")), proc.records
    assert [r["peer"] for r in alice.by_op("chat") + alice.by_op("accept")] == [b, b]
    assert [r["peer"] for r in bob.by_op("accept") + bob.by_op("chat")] == [a, a]
    for proc in (alice, bob):
        assert ok(proc, "close_chat") or ok(proc, "wait_closed")
        assert all(r.get("ok", True) for r in proc.records), proc.records
