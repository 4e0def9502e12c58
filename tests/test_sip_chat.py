"""Chat sessions set up by INVITE between two pyim stacks (SIP + MSRP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

from pyim.msrp.transport import MsrpEndpoint
from pyim.sip.chat import ChatError, ChatStack
from pyim.sip.stack import SipStack, StackConfig
from pyim.sip.transaction import TimerConfig
from pyim.sip.uri import SipUri

FAST = TimerConfig(T1=0.05, T2=0.4, T4=0.5, trying_delay=0.0)


async def make_chat(user: str) -> ChatStack:
    sip = SipStack(StackConfig(timers=FAST))
    await sip.start()
    return ChatStack(sip, await MsrpEndpoint.create(), user=user)


async def close_chat(chat: ChatStack) -> None:
    await chat.close()
    await chat.msrp.close()
    await chat.sip.close()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[ChatStack, ChatStack]]:
    alice, bob = await make_chat("alice"), await make_chat("bob")
    yield alice, bob
    await close_chat(alice)
    await close_chat(bob)


def uri_of(chat: ChatStack, transport: str) -> SipUri:
    host, port = chat.sip.local_address(transport)
    params = (("transport", transport),) if transport != "udp" else ()
    return SipUri(scheme="sip", user=chat.user, host=host, port=port, params=params)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("pjsua_dialect", [False, True])
async def test_invite_chat_both_ways_and_bye(
    pair: tuple[ChatStack, ChatStack], transport: str, pjsua_dialect: bool
) -> None:
    alice, bob = pair
    outgoing = await asyncio.wait_for(
        alice.invite(uri_of(bob, transport), pjsua_dialect=pjsua_dialect), 10
    )
    incoming = await asyncio.wait_for(bob.accept(), 10)
    assert (b"m=audio" in outgoing.local_sdp.encode()) is pjsua_dialect
    assert (b"a=inactive" in incoming.local_sdp.encode()) is pjsua_dialect
    result = await asyncio.wait_for(outgoing.send("Hi Bob"), 5)
    assert result.status == "delivered"
    assert (await asyncio.wait_for(incoming.receive(), 5)).body == b"Hi Bob"
    back = await asyncio.wait_for(incoming.send("Hi Alice"), 5)
    assert back.status == "delivered"
    assert (await asyncio.wait_for(outgoing.receive(), 5)).body == b"Hi Alice"
    await asyncio.wait_for(outgoing.close(), 10)
    await asyncio.wait_for(incoming.closed.wait(), 5)
    assert not bob._sessions and not alice._sessions


async def test_the_ack_of_a_2xx_is_remembered_for_64_t1_plus_t4() -> None:
    timers = TimerConfig(T1=0.005, T2=0.04, T4=0.05, trying_delay=0.0)  # kept 0.37 s
    alice_sip, bob = SipStack(StackConfig(timers=timers)), await make_chat("bob")
    await alice_sip.start()
    alice = ChatStack(alice_sip, await MsrpEndpoint.create(), user="alice")
    try:
        outgoing = await asyncio.wait_for(alice.invite(uri_of(bob, "tcp")), 10)
        incoming = await asyncio.wait_for(bob.accept(), 10)
        assert len(alice.sip._acks) == 1 and not outgoing.dialog.route_set
        await asyncio.sleep(0.6)
        assert not alice.sip._acks and not alice.sip._ack_expiry
        assert (await asyncio.wait_for(outgoing.send("still here"), 5)).ok
        assert (await asyncio.wait_for(incoming.receive(), 5)).body == b"still here"
    finally:
        await close_chat(alice)
        await close_chat(bob)


async def test_invite_without_message_stream_is_refused_with_488(
    pair: tuple[ChatStack, ChatStack],
) -> None:
    alice, bob = pair
    target = uri_of(bob, "udp")
    sdp = (
        b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    invite = alice.sip.new_request(
        "INVITE",
        target,
        from_=alice.sip.contact("udp", "alice").with_tag("t1"),
        to=alice.sip.contact("udp", "bob"),
        body=sdp,
        content_type="application/sdp",
    )
    response = await asyncio.wait_for(alice.sip.send(invite), 5)
    assert response.status == 488


async def test_invite_to_nobody_fails_cleanly(pair: tuple[ChatStack, ChatStack]) -> None:
    alice, _ = pair
    dead = SipUri(
        scheme="sip", user="ghost", host="127.0.0.1", port=9, params=(("transport", "tcp"),)
    )
    with pytest.raises(ChatError) as info:
        await asyncio.wait_for(alice.invite(dead), 15)
    assert info.value.status in (408, 503)
    assert not alice.msrp._sessions  # the MSRP session prepared for the offer is gone


async def test_chat_over_sip_tls_and_msrps() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    chats = []
    for user in ("alice", "bob"):
        sip = SipStack(StackConfig(timers=FAST), ssl_server=server_ctx, ssl_client=client_ctx)
        await sip.start(udp=None, tcp=None, tls=0)
        msrp = await MsrpEndpoint.create(ssl_server=server_ctx, ssl_client=client_ctx)
        chats.append(ChatStack(sip, msrp, user=user))
    alice, bob = chats
    try:
        host, port = bob.sip.local_address("tls")
        target = SipUri(scheme="sips", user="bob", host=host, port=port)
        outgoing = await asyncio.wait_for(alice.invite(target), 10)
        incoming = await asyncio.wait_for(bob.accept(), 10)
        assert b"TCP/TLS/MSRP" in outgoing.local_sdp.encode()
        assert outgoing.msrp.local_uri.scheme == "msrps"
        assert (await asyncio.wait_for(outgoing.send("secret"), 5)).status == "delivered"
        assert (await asyncio.wait_for(incoming.receive(), 5)).body == b"secret"
        await asyncio.wait_for(outgoing.close(), 10)
        await asyncio.wait_for(incoming.closed.wait(), 5)
    finally:
        for chat in chats:
            await close_chat(chat)


async def test_reinvite_and_update_refresh_the_target_and_keep_the_session(
    pair: tuple[ChatStack, ChatStack],
) -> None:
    alice, bob = pair
    outgoing = await asyncio.wait_for(alice.invite(uri_of(bob, "udp")), 10)
    incoming = await asyncio.wait_for(bob.accept(), 10)
    dialog = outgoing.dialog
    new_contact = alice.sip.contact("tcp", "alice")  # alice moves her target to TCP
    for method in ("INVITE", "UPDATE"):
        body = outgoing.local_sdp.encode() if method == "INVITE" else b""
        request = dialog.request(
            method,
            body=body,
            content_type="application/sdp" if body else None,
            headers=[("Contact", str(new_contact)), ("Session-Expires", "1800")],
        )
        request.headers.remove("Contact")
        request.headers.add("Contact", str(new_contact))
        response = await asyncio.wait_for(
            alice.sip.send(request, alice.sip.destination_for(request)), 5
        )
        assert response.status == 200
        dialog.receive_response(request, response)
        if method == "INVITE":
            assert b"m=message" in response.body  # the same session, answered again
            alice.sip.ack(dialog.ack(request), request, alice.sip.destination_for(request))
    assert incoming.dialog.remote_target == new_contact.uri
    stale = dialog.request("UPDATE")
    stale.headers.set("CSeq", f"{dialog.local_seq - 2} UPDATE")  # out of order: 500
    assert (await asyncio.wait_for(alice.sip.send(stale), 5)).status == 500
    assert (await asyncio.wait_for(outgoing.send("still on"), 5)).status == "delivered"
    assert (await asyncio.wait_for(incoming.receive(), 5)).body == b"still on"


async def test_an_invite_to_a_sips_target_without_a_tls_listener_is_a_chat_error(
    pair: tuple[ChatStack, ChatStack],
) -> None:
    alice, bob = pair  # UDP and TCP only
    host, port = bob.sip.local_address("tcp")
    for target in (
        SipUri(scheme="sips", user="bob", host=host, port=port),
        SipUri(scheme="sip", user="bob", host=host, port=port, params=(("transport", "tls"),)),
    ):
        with pytest.raises(ChatError) as info:
            await asyncio.wait_for(alice.invite(target), 5)
        assert info.value.status == 503 and "no TLS transport" in str(info.value)
    assert bob.sip.stats["in_INVITE"] == 0 and bob.incoming.empty()
