"""The IM application server with pyim.sip users: sessions through the server, the
offline queue, page-mode interworking, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyim.server.app import ImServer
from pyim.sip.chat import ChatError
from pyim.sip.uri import SipUri
from pyim.ua.cpim import parse_cpim
from server_harness import DOMAIN, User, make_user, running_server, server_config


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ImServer]:
    async with running_server(server_config(tmp_path)) as server:
        yield server


@pytest.fixture
async def users(server: ImServer) -> AsyncIterator[dict[str, User]]:
    made = {name: await make_user(name, server) for name in ("alice", "bob", "carol")}
    yield made
    for user in made.values():
        await user.close()


async def test_chat_through_the_server_both_ways(server: ImServer, users: dict[str, User]) -> None:
    alice, bob = users["alice"], users["bob"]
    await alice.register()
    await bob.register()
    session = await alice.call("bob")
    sending = asyncio.ensure_future(session.send("hello bob", success_report=True))
    bob_side = await asyncio.wait_for(bob.chat.accept(), 10)  # the server calls bob for alice
    assert bob_side.dialog.remote.uri.user == "alice"
    got = await asyncio.wait_for(bob_side.receive(), 10)
    assert got.body == b"hello bob"
    assert (await asyncio.wait_for(sending, 10)).status == "delivered"  # end to end
    assert (await bob_side.send("hi alice", success_report=True)).status == "delivered"
    back = await asyncio.wait_for(session.receive(), 10)
    assert back.body == b"hi alice" and back.message_id  # Message-ID kept end to end
    history = await server.store.history("sip:alice@127.0.0.1", "sip:bob@127.0.0.1")
    assert [h.body for h in reversed(history)] == [b"hello bob", b"hi alice"]
    await session.close()


async def test_offline_messages_wait_for_the_recipient(
    server: ImServer, users: dict[str, User]
) -> None:
    alice, bob = users["alice"], users["bob"]
    await alice.register()
    session = await alice.call("bob")  # bob is offline: the server answers anyway
    futures = [
        session.msrp.send_nowait("text/plain", f"msg {i}".encode(), success_report=True)
        for i in range(5)
    ]
    await asyncio.sleep(0.3)
    assert await server.store.depth("sip:bob@127.0.0.1") == 5
    assert not any(f.done() for f in futures)  # delivered = reported, not yet
    await bob.register()
    bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
    bodies = [(await asyncio.wait_for(bob_side.receive(), 10)).body for _ in range(5)]
    assert bodies == [f"msg {i}".encode() for i in range(5)]
    results = await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert all(r.status == "delivered" for r in results)
    assert await server.store.depth("sip:bob@127.0.0.1") == 0


async def test_page_mode_to_a_user_without_a_session(
    server: ImServer, users: dict[str, User]
) -> None:
    carol, bob = users["carol"], users["bob"]
    await bob.register()
    request = carol.sip.new_request(
        "MESSAGE",
        SipUri(scheme="sip", user="bob", host=DOMAIN),
        from_=carol.from_addr(),
        to=bob.to_addr(),
        body=b"a page for bob",
        content_type="text/plain",
    )
    response = await carol.sip.send(
        request, carol.sip.destination_for_uri(carol.server_uri), auth=carol.auth()
    )
    assert response.status == 202
    page = await asyncio.wait_for(bob.pages.get(), 10)
    message = parse_cpim(page.body)
    assert message.body == "a page for bob" and "carol" in (message.sender or "")


async def test_refusals(server: ImServer, users: dict[str, User]) -> None:
    alice = users["alice"]
    await alice.register()
    with pytest.raises(ChatError) as info:
        await alice.call("nobody")
    assert info.value.status == 404


async def test_large_messages_stream_through_or_wait_in_the_store(
    server: ImServer, users: dict[str, User]
) -> None:
    """Above stream_above a message is relayed chunk by chunk to an open session; with
    nobody there it is gathered (up to max_message_size) and stored, else refused."""
    alice, bob = users["alice"], users["bob"]
    await alice.register()
    await bob.register()
    session = await alice.call("bob")
    assert (await session.send("open the way", success_report=True)).status == "delivered"
    bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
    assert (await asyncio.wait_for(bob_side.receive(), 10)).body == b"open the way"
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # 5 MiB: above what is ever stored
    result = await asyncio.wait_for(
        session.msrp.send("application/octet-stream", big, success_report=True), 30
    )
    got = await asyncio.wait_for(bob_side.receive(), 30)
    assert got.body == big and result.status == "delivered"
    assert server.streams.stats["relayed"] == 1
    await bob_side.close()
    assert bob.registration is not None
    await asyncio.wait_for(bob.registration.stop(), 5)  # bob is gone: nothing to stream to
    await asyncio.sleep(0.2)
    medium = b"m" * (512 * 1024)  # streamed in, gathered whole, stored for later
    assert (await session.msrp.send("application/octet-stream", medium)).ok
    refused = await session.msrp.send("application/octet-stream", big)
    assert refused.status == "failed" and refused.code == 413
    assert server.streams.stats == {"relayed": 1, "gathered": 1, "refused": 1}
    assert await server.store.depth("sip:bob@127.0.0.1") == 1


async def test_is_composing_passes_through_and_is_not_stored(
    server: ImServer, users: dict[str, User]
) -> None:
    alice, bob = users["alice"], users["bob"]
    await alice.register()
    await bob.register()
    session = await alice.call("bob")
    assert (await session.send("hi", success_report=True)).status == "delivered"
    bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
    assert (await asyncio.wait_for(bob_side.receive(), 10)).body == b"hi"
    composing = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">'
        b"<state>active</state><refresh>60</refresh></isComposing>"
    )
    ctype = "application/im-iscomposing+xml"
    assert (await session.msrp.send(ctype, composing)).ok
    got = await asyncio.wait_for(bob_side.receive(), 10)
    assert got.content_type == ctype and got.body == composing
    history = await server.store.history("sip:alice@127.0.0.1", "sip:bob@127.0.0.1")
    assert [h.body for h in history] == [b"hi"]


async def test_imdn_comes_back_in_the_open_session(
    server: ImServer, users: dict[str, User]
) -> None:
    """A CPIM message asking for a delivery notification (no Success-Report): when bob
    gets it later, alice's still-open session receives the IMDN (RFC 5438)."""
    from pyim.ua.cpim import encode_cpim

    alice, bob = users["alice"], users["bob"]
    await alice.register()
    session = await alice.call("bob")
    cpim = encode_cpim(
        sender="sip:alice@127.0.0.1",
        recipient="sip:bob@127.0.0.1",
        text="tell me when he has it",
        headers=[
            ("NS", "imdn <urn:ietf:params:imdn>"),
            ("imdn.Message-ID", "m1abc"),
            ("imdn.Disposition-Notification", "positive-delivery"),
        ],
    ).encode()
    sent = await session.msrp.send("message/cpim", cpim)
    assert sent.ok
    await bob.register()
    bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
    assert b"tell me when he has it" in (await asyncio.wait_for(bob_side.receive(), 10)).body
    notice = await asyncio.wait_for(session.receive(), 10)
    assert notice.content_type == "message/cpim"
    assert b"message/imdn+xml" in notice.body and b"<delivered/>" in notice.body
    assert sent.message_id.encode() in notice.body
