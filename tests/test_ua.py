"""pyim.ua end to end: pjsua2 clients (each in its own process) against pyim.sip.

Every client runs ``tests/ua_driver.py`` in a subprocess: pjsua2 allows one Endpoint
per process and aborts the whole process on misuse, so each test also checks that
the client process exits 0 after ``Client.stop()`` in the state it was left in.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pyim.sip.chat import ChatError
from pyim.sip.uri import SipUri
from pyim.ua.cpim import parse_cpim
from ua_peers import SipPeer, UaProcess, run_ua, start_peer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def peer() -> AsyncIterator[SipPeer]:
    peer = await start_peer()
    yield peer
    await peer.close()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A UDP port on 127.0.0.1 that reads nothing and answers nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def alice(peer: SipPeer, transport: str = "udp", **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "account": "sip:alice@127.0.0.1",
        "password": "secret",
        "registrar": peer.registrar_uri(transport),
        "transport": transport,
        "register_wait": 5,
        "log_level": 3,
    }
    config.update(extra)
    return config


def unregistered(**extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"account": "sip:alice@127.0.0.1", "register": False, "log_level": 3}
    config.update(extra)
    return config


async def expect_exit(proc: UaProcess, status: int = 0) -> None:
    code = await proc.finish()
    assert code == status, f"exit {code}, records {proc.records}\n{await proc.tail()}"


# -- registration -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_register_and_unregister_on_stop(peer: SipPeer, transport: str) -> None:
    proc = await UaProcess(alice(peer, transport), [{"op": "start"}, {"op": "readline"}]).start()
    try:
        started = await proc.record("start")
        assert started["ok"] and started["registered"] is True, started
        aor = SipUri.parse("sip:alice@127.0.0.1")
        (binding,) = peer.registrar.lookup(aor, asyncio.get_running_loop().time())
        if transport == "udp":
            assert str(binding.contact.uri.port) == started["local"].rsplit(":", 1)[1]
        else:  # pjsua's contact over TCP is the connection's own (ephemeral) port
            assert binding.contact.uri.transport == "tcp"
        proc.send_line()
        await expect_exit(proc)
    finally:
        await proc.kill()
    assert peer.registrar.lookup(aor, asyncio.get_running_loop().time()) == []


async def test_wrong_password_is_a_clear_error_not_a_crash(peer: SipPeer) -> None:
    status, proc = await run_ua(alice(peer, password="wrong"), [{"op": "start"}])
    assert status == 1, await proc.tail()
    (start,) = proc.by_op("start")
    assert start["ok"] is False and start["error_type"] == "RegistrationError"
    assert start["error"].startswith("registration refused: 401"), start
    assert proc.by_op("exit")[0]["status"] == 1
    assert "Assertion" not in await proc.tail(400)


async def test_registrar_that_never_answers_times_out(black_hole: int) -> None:
    config = unregistered(register=True, registrar=f"sip:127.0.0.1:{black_hole}", register_wait=1)
    status, proc = await run_ua(config, [{"op": "start"}])
    assert status == 1
    (start,) = proc.by_op("start")
    assert start["error"].startswith("registration timed out"), start


# -- page mode ----------------------------------------------------------------------------------


async def test_pages_both_ways_text_and_cpim(peer: SipPeer) -> None:
    bob = peer.uri("bob")
    script = [
        {"op": "start"},
        {"op": "page", "to": bob, "text": "hello bob"},
        {"op": "page", "to": bob, "text": "in cpim", "cpim": True},
        {"op": "wait_page_status"},
        {"op": "wait_page"},
        {"op": "wait_page"},
    ]
    proc = await UaProcess(alice(peer), script).start()
    try:
        started = await proc.record("start")
        plain = await proc.record("page")
        assert (plain["code"], plain["ok"]) == (200, True), plain
        wrapped = await proc.record("page")
        assert wrapped["code"] == 200, wrapped
        status = await proc.record("wait_page_status")
        assert status["code"] == 200 and status["message_id"] == plain["message_id"]
        # what pyim.sip received
        first, second = peer.pages
        assert first.mime_type == "text/plain" and first.body == b"hello bob"
        assert second.mime_type == "message/cpim"
        cpim = parse_cpim(second.body)
        assert cpim.body == "in cpim" and cpim.sender == "<sip:alice@127.0.0.1>"
        assert cpim.recipient == f"<{bob}>"
        # and the other way
        target = f"sip:alice@{started['local']}"
        assert await peer.send_page(target, "hi alice") == 200
        body = "From: <sip:bob@127.0.0.1>\r\nTo: <sip:alice@127.0.0.1>\r\n\r\n"
        body += "Content-Type: text/plain\r\n\r\ncpim for alice"
        assert await peer.send_page(target, body, "message/cpim") == 200
        got_plain = await proc.record("wait_page")
        assert got_plain["text"] == "hi alice" and got_plain["content_type"] == "text/plain"
        assert got_plain["sender"] == "sip:bob@127.0.0.1"
        got_cpim = await proc.record("wait_page")
        assert got_cpim["text"] == "cpim for alice"
        assert got_cpim["content_type"] == "text/plain"
        assert got_cpim["cpim_headers"]["From"] == "<sip:bob@127.0.0.1>"
        await expect_exit(proc)
    finally:
        await proc.kill()


async def test_page_refused_reports_the_status(peer: SipPeer) -> None:
    peer.page_status = 488
    status, proc = await run_ua(
        alice(peer), [{"op": "start"}, {"op": "page", "to": peer.uri(), "text": "x"}]
    )
    assert status == 0, await proc.tail()
    (page,) = proc.by_op("page")
    assert page["code"] == 488


@pytest.mark.parametrize("size", [3900, 5000])
async def test_page_too_large_is_a_clear_error(peer: SipPeer, size: int) -> None:
    script = [
        {"op": "start"},
        {"op": "page", "to": peer.uri(), "size": size, "expect_error": "PageTooLarge"},
        {"op": "page", "to": peer.uri(), "text": "small still works"},
    ]
    status, proc = await run_ua(alice(peer), script)
    assert status == 0, f"{proc.records}\n{await proc.tail()}"
    big, small = proc.by_op("page")
    assert "chat session" in big["error"] and "4000" in big["error"], big
    assert small["code"] == 200
    assert [p.body for p in peer.pages] == [b"small still works"]


# -- chat sessions ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_chat_from_ua_to_pyim(peer: SipPeer, transport: str) -> None:
    script = [
        {"op": "start"},
        {"op": "chat", "to": peer.uri("bob", transport)},
        {"op": "send", "index": 0, "text": "hello bob"},
        {"op": "receive", "index": 0},
        {"op": "send", "index": 0, "text": "second"},
        {"op": "receive", "index": 0},
        {"op": "close_chat", "index": 0},
    ]
    status, proc = await run_ua(alice(peer, transport), script)
    assert status == 0, f"{proc.records}\n{await proc.tail()}"
    assert [r["status"] for r in proc.by_op("send")] == ["delivered", "delivered"]
    assert [r["text"] for r in proc.by_op("receive")] == ["hello bob", "second"]
    assert peer.received == [b"hello bob", b"second"]
    (session,) = peer.sessions
    await asyncio.wait_for(session.closed.wait(), 5)  # the BYE arrived
    offer_kinds = [m.media for m in session.local_sdp.media]
    assert offer_kinds == ["audio", "message"]


async def test_chat_from_pyim_to_ua(peer: SipPeer) -> None:
    script = [
        {"op": "start", "wait": False},
        {"op": "accept"},
        {"op": "echo", "index": 0, "count": 3},
        {"op": "send", "index": 0, "text": "from alice"},
        {"op": "wait_closed", "index": 0},
    ]
    proc = await UaProcess(unregistered(), script).start()
    try:
        started = await proc.record("start")
        target = SipUri.parse(f"sip:alice@{started['local']}")
        session = await asyncio.wait_for(peer.chat.invite(target, pjsua_dialect=True), 15)
        accepted = await proc.record("accept")
        assert accepted["peer"].startswith("sip:bob@")
        answer_kinds = [m.media for m in session.local_sdp.media]
        assert answer_kinds == ["audio", "message"]
        for text in ("one", "two", "three"):
            result = await session.send(text)
            assert result.status == "delivered", result
        echoes = [(await asyncio.wait_for(session.receive(), 10)).body for _ in range(3)]
        assert echoes == [b"one", b"two", b"three"]
        assert (await asyncio.wait_for(session.receive(), 10)).body == b"from alice"
        await session.close()  # BYE from pyim
        await proc.record("wait_closed")
        await expect_exit(proc)
    finally:
        await proc.kill()


async def test_ua_rejects_a_chat(peer: SipPeer) -> None:
    proc = await UaProcess(
        unregistered(), [{"op": "start", "wait": False}, {"op": "reject", "code": 486}]
    ).start()
    try:
        started = await proc.record("start")
        target = SipUri.parse(f"sip:alice@{started['local']}")
        with pytest.raises(ChatError) as info:
            await asyncio.wait_for(peer.chat.invite(target, pjsua_dialect=True), 15)
        assert info.value.status == 486
        await expect_exit(proc)
    finally:
        await proc.kill()


async def test_fifth_call_is_too_many_calls(peer: SipPeer) -> None:
    bob = peer.uri("bob")
    script = [{"op": "start"}]
    script += [{"op": "chat", "to": bob} for _ in range(4)]
    script += [{"op": "chat", "to": bob, "expect_error": "TooManyCalls"}]
    script += [{"op": "send", "index": 3, "text": "still fine"}, {"op": "receive", "index": 3}]
    status, proc = await run_ua(alice(peer), script)
    assert status == 0, f"{proc.records}\n{await proc.tail()}"
    fifth = proc.by_op("chat")[4]
    assert "4 per process" in fifth["error"], fifth
    assert len(peer.sessions) == 4
    for session in peer.sessions:  # stop() hung every call up
        await asyncio.wait_for(session.closed.wait(), 5)


# -- stop() in every state: the process must exit 0 -----------------------------------------------


async def test_close_when_idle() -> None:
    status, proc = await run_ua(unregistered(), [{"op": "start"}])
    assert status == 0, await proc.tail()
    assert proc.by_op("exit")[0]["status"] == 0


async def test_close_while_registering(black_hole: int) -> None:
    config = unregistered(register=True, registrar=f"sip:127.0.0.1:{black_hole}")
    script = [{"op": "start", "wait": False}, {"op": "sleep", "seconds": 0.3}]
    status, proc = await run_ua(config, script)
    assert status == 0, f"{proc.records}\n{await proc.tail()}"
    assert proc.by_op("start")[0]["registered"] is False


async def test_close_in_a_call(peer: SipPeer) -> None:
    script = [
        {"op": "start"},
        {"op": "chat", "to": peer.uri()},
        {"op": "send", "index": 0, "text": "x"},
    ]
    status, proc = await run_ua(alice(peer), script)
    assert status == 0, f"{proc.records}\n{await proc.tail()}"
    (session,) = peer.sessions
    await asyncio.wait_for(session.closed.wait(), 5)


async def test_close_while_ringing(peer: SipPeer) -> None:
    proc = await UaProcess(
        unregistered(), [{"op": "start", "wait": False}, {"op": "sleep", "seconds": 1.5}]
    ).start()
    try:
        started = await proc.record("start")
        target = SipUri.parse(f"sip:alice@{started['local']}")
        with pytest.raises(ChatError):
            await asyncio.wait_for(peer.chat.invite(target, pjsua_dialect=True), 15)
        await expect_exit(proc)
    finally:
        await proc.kill()


async def test_close_with_a_message_in_flight(peer: SipPeer) -> None:
    peer.page_status = 0  # never answers MESSAGE
    script = [
        {"op": "start"},
        {"op": "page_nowait", "to": peer.uri(), "text": "nobody answers"},
        {"op": "sleep", "seconds": 0.5},
    ]
    status, proc = await run_ua(alice(peer), script)
    assert status == 0, f"{proc.records}\n{await proc.tail()}"
    assert len(peer.pages) >= 1


# -- presence peer to peer ----------------------------------------------------------------------


async def test_presence_peer_to_peer_reaches_the_watcher() -> None:
    """bob (no registrar) sets his status; alice SUBSCRIBEs straight to bob's address,
    sees it in bob's NOTIFY, then the change to away. (This was a ``std::bad_alloc``
    abort: Buddy.report read ``getInfo().presStatus.note`` after the BuddyInfo
    temporary was freed.)"""
    bob = await UaProcess(
        unregistered(account="sip:bob@127.0.0.1"),
        [
            {"op": "start"},
            {"op": "presence", "online": True, "note": "bob is here"},
            {"op": "readline"},
            {"op": "presence", "online": False, "note": "away"},
            {"op": "readline"},
        ],
    ).start()
    alice: UaProcess | None = None
    try:
        target = f"sip:bob@{(await bob.record('start'))['local']}"
        await bob.record("presence")
        alice = await UaProcess(
            unregistered(),
            [
                {"op": "start"},
                {"op": "subscribe", "uri": target},
                {"op": "wait_buddy", "uri": target, "online": True, "note": "bob is here"},
                {"op": "readline"},
                {"op": "wait_buddy", "uri": target, "online": False, "note": "away"},
            ],
        ).start()
        await alice.record("wait_buddy")
        bob.send_line()  # bob goes away
        alice.send_line()
        await expect_exit(alice)
        bob.send_line()
        await expect_exit(bob)
        assert [r["note"] for r in alice.by_op("wait_buddy")] == ["bob is here", "away"]
    finally:
        for proc in (alice, bob):
            if proc is not None:
                await proc.kill()
