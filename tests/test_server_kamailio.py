"""The IM server behind Kamailio 5.6 (deploy/kamailio/im-frontend.cfg).

Kamailio is the registrar (digest) and the proxy: it replicates each accepted REGISTER
to the server, routes INVITEs with m=message and MESSAGEs for the domain to it, and
relays the server's own requests (by AOR) to the users' devices. pyim.sip users talk
only to Kamailio: they register there and address each other as sip:user@127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pyim.sip.uri import NameAddr, SipUri
from pyim.ua.cpim import parse_cpim
from server_harness import DOMAIN, USERS, User
from server_peers import Frontend, make_proxy_user, server_behind_kamailio
from ua_peers import UaProcess

pytest_plugins = ["peers"]
pytestmark = pytest.mark.timeout(150)


@pytest.fixture
async def frontend(tmp_path: Path) -> AsyncIterator[Frontend]:
    async with server_behind_kamailio(tmp_path) as running:
        yield running


@pytest.fixture
async def users(frontend: Frontend) -> AsyncIterator[dict[str, User]]:
    made = {
        name: await make_proxy_user(name, frontend.kamailio) for name in ("alice", "bob", "carol")
    }
    yield made
    for user in made.values():
        await user.close()


async def test_registrations_reach_the_server(frontend: Frontend, users: dict[str, User]) -> None:
    alice, bob = users["alice"], users["bob"]
    await alice.register()
    await bob.register()
    # Kamailio has them (it authenticated them) ...
    for name in ("alice", "bob"):
        assert await asyncio.to_thread(frontend.kamailio.wait_contacts, name)
    # ... and the server learned them from the replicated REGISTERs
    port = alice.sip.local_address("udp")[1]
    assert any(f":{port}" in c for c in await frontend.wait_bindings("alice"))
    assert await frontend.wait_bindings("bob")
    assert frontend.server.online("sip:bob@127.0.0.1")
    # an unregistration is replicated too
    assert alice.registration is not None
    await asyncio.wait_for(alice.registration.stop(), 5)
    alice.registration = None
    for _ in range(100):
        if not frontend.bindings("alice"):
            break
        await asyncio.sleep(0.05)
    assert frontend.bindings("alice") == []


async def test_chat_through_kamailio_both_ways(frontend: Frontend, users: dict[str, User]) -> None:
    alice, bob = users["alice"], users["bob"]
    await alice.register()
    await bob.register()
    assert await frontend.wait_bindings("alice") and await frontend.wait_bindings("bob")
    session = await alice.call("bob")  # alice -> Kamailio -> server (answers)
    assert session.dialog.remote.uri.user == "bob"
    sending = asyncio.ensure_future(session.send("hello bob", success_report=True))
    # the server calls bob for alice, through Kamailio (location lookup)
    bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
    assert bob_side.dialog.remote.uri.user == "alice"
    got = await asyncio.wait_for(bob_side.receive(), 10)
    assert got.body == b"hello bob"
    assert (await asyncio.wait_for(sending, 10)).status == "delivered"  # end to end
    reply = await asyncio.wait_for(bob_side.send("hi alice", success_report=True), 10)
    assert reply.status == "delivered"
    back = await asyncio.wait_for(session.receive(), 10)
    assert back.body == b"hi alice" and back.message_id
    history = await frontend.server.store.history("sip:alice@127.0.0.1", "sip:bob@127.0.0.1")
    assert [h.body for h in reversed(history)] == [b"hello bob", b"hi alice"]
    # Kamailio record-routed both INVITEs: the sessions' dialogs go through it
    for dialog in (session.dialog, bob_side.dialog):
        assert [r.uri.port for r in dialog.route_set] == [frontend.kamailio.port]
    await session.close()


async def test_offline_messages_wait_for_a_registration_through_kamailio(
    frontend: Frontend, users: dict[str, User]
) -> None:
    alice, bob = users["alice"], users["bob"]
    await alice.register()
    session = await alice.call("bob")  # bob is offline: the server answers anyway
    futures = [
        session.msrp.send_nowait("text/plain", f"msg {i}".encode(), success_report=True)
        for i in range(3)
    ]
    for _ in range(100):
        if await frontend.server.store.depth("sip:bob@127.0.0.1") == 3:
            break
        await asyncio.sleep(0.05)
    assert await frontend.server.store.depth("sip:bob@127.0.0.1") == 3
    assert not any(f.done() for f in futures)  # delivered = reported, not yet
    await bob.register()  # at Kamailio; the replicated REGISTER starts the delivery
    bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
    bodies = [(await asyncio.wait_for(bob_side.receive(), 10)).body for _ in range(3)]
    assert bodies == [b"msg 0", b"msg 1", b"msg 2"]
    results = await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert all(r.status == "delivered" for r in results)
    assert await frontend.server.store.depth("sip:bob@127.0.0.1") == 0
    await session.close()


async def test_page_mode_through_kamailio(frontend: Frontend, users: dict[str, User]) -> None:
    carol, bob = users["carol"], users["bob"]
    await bob.register()
    assert await frontend.wait_bindings("bob")
    request = carol.sip.new_request(
        "MESSAGE",
        bob.aor,
        from_=carol.from_addr(),
        to=bob.to_addr(),
        body=b"a page for bob",
        content_type="text/plain",
    )
    # carol -> Kamailio -> server (202: stored) -> Kamailio -> bob (CPIM)
    response = await carol.sip.send(request, carol.sip.destination_for_uri(carol.server_uri))
    assert response.status == 202
    page = await asyncio.wait_for(bob.pages.get(), 10)
    assert page.mime_type == "message/cpim"
    message = parse_cpim(page.body)
    assert message.body == "a page for bob" and "carol" in (message.sender or "")
    assert page.from_.uri.user == "carol"  # on carol's behalf


async def test_pages_for_unknown_and_offline_users(
    frontend: Frontend, users: dict[str, User]
) -> None:
    carol = users["carol"]
    for user, expected in (("nobody", 404), ("bob", 202)):
        request = carol.sip.new_request(
            "MESSAGE",
            SipUri(scheme="sip", user=user, host=DOMAIN),
            from_=carol.from_addr(),
            to=NameAddr(uri=SipUri(scheme="sip", user=user, host=DOMAIN)),
            body=b"x",
            content_type="text/plain",
        )
        response = await carol.sip.send(request, carol.sip.destination_for_uri(carol.server_uri))
        # Kamailio hands MESSAGEs for the domain to the server whether or not the user
        # is registered: 404 for a user the server does not know, 202 (queued) for bob
        assert response.status == expected, user
    assert await frontend.server.store.depth("sip:bob@127.0.0.1") == 1


# -- pyim.ua (pjsua2) clients, each in a process of its own ---------------------------------


def ua_client(frontend: Frontend, user: str) -> dict[str, Any]:
    proxy = f"sip:{frontend.kamailio.address}"
    return {
        "account": frontend.kamailio.aor(user),
        "password": USERS[user],
        "registrar": proxy,
        "proxy": proxy,
        "transport": "udp",
        "register_wait": 10,
        "log_level": 3,
    }


async def test_pjsua2_clients_chat_through_kamailio_and_the_server(frontend: Frontend) -> None:
    """alice's pjsua INVITE (pjsua dialect: m=audio inactive + m=message) goes through
    Kamailio to the server; the server calls bob's pjsua client through Kamailio (its
    standard offer gets 488, the pjsua dialect is taken); messages both ways."""
    bob_aor, alice_aor = frontend.kamailio.aor("bob"), frontend.kamailio.aor("alice")
    alice = await UaProcess(
        ua_client(frontend, "alice"),
        [
            {"op": "start"},
            {"op": "readline"},  # both registered
            {"op": "chat", "to": bob_aor},
            {"op": "send", "index": 0, "text": "hello bob (pjsua)"},
            {"op": "receive", "index": 0},
            {"op": "close_chat", "index": 0},
        ],
        step_timeout=20,
    ).start()
    bob = await UaProcess(
        ua_client(frontend, "bob"),
        [
            {"op": "start"},
            {"op": "readline"},
            {"op": "accept"},
            {"op": "receive", "index": 0},
            {"op": "send", "index": 0, "text": "hi alice (pjsua)"},
            {"op": "readline"},  # alice has the answer
            {"op": "close_chat", "index": 0},
        ],
        step_timeout=20,
    ).start()
    procs = (alice, bob)
    try:
        for proc in procs:
            record = await proc.record("start", 30)
            assert record["ok"] and record["registered"], record
        assert await frontend.wait_bindings("alice") and await frontend.wait_bindings("bob")
        for proc in procs:
            proc.send_line()
        got = await bob.record("receive", 40)
        assert got["ok"] and got["text"] == "hello bob (pjsua)", got
        back = await alice.record("receive", 40)
        assert back["ok"] and back["text"] == "hi alice (pjsua)", back
        bob.send_line()
        codes = await asyncio.gather(*(p.finish(60) for p in procs))
        for proc, code in zip(procs, codes, strict=True):
            assert code == 0, (proc.records, await proc.tail())
    finally:
        for proc in procs:
            await proc.kill()
    [accepted] = bob.by_op("accept")
    assert accepted["peer"] == alice_aor, accepted  # the server called on alice's behalf
    for proc in procs:
        assert all(r["status"] in ("sent", "delivered") for r in proc.by_op("send")), proc.records
    history = await frontend.server.store.history(alice_aor, bob_aor)
    assert sorted(h.body for h in history) == [b"hello bob (pjsua)", b"hi alice (pjsua)"]
    # bob's pjsua refused the standard MSRP-only offer; the server retried in its dialect
    server_port = frontend.server.sip.local_address("udp")[1]
    replies = re.findall(
        r"reply (\d{3}) [^\n]* to INVITE from udp:127\.0\.0\.1:(\d+)", frontend.kamailio.log_text()
    )
    from_bob = [int(code) for code, port in replies if int(port) != server_port and code != "100"]
    assert 488 in from_bob and from_bob[-1] == 200, replies
