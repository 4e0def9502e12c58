"""Two MSRP endpoints on 127.0.0.1 over real TCP and TLS sockets."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

from pyim.msrp import Frame, FrameEnd, FrameHead, FrameParser
from pyim.msrp.frame import Headers
from pyim.msrp.sdp import Setup, negotiate_setup
from pyim.msrp.session import SessionConfig
from pyim.msrp.session_events import MessageReceived
from pyim.msrp.transport import EndpointConfig, MsrpEndpoint, Session


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.fixture(params=["tcp", "tls"])
async def pair(
    request: pytest.FixtureRequest, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> AsyncIterator[tuple[Session, Session]]:
    """Alice (active) and Bob (passive) connected by one session."""
    server_ctx, client_ctx = tls if request.param == "tls" else (None, None)
    config = EndpointConfig(session=SessionConfig(chunk_size=64 * 1024))
    alice_ep = await MsrpEndpoint.create(
        config=config, ssl_server=server_ctx, ssl_client=client_ctx
    )
    bob_ep = await MsrpEndpoint.create(config=config, ssl_server=server_ctx, ssl_client=client_ctx)
    alice, bob = alice_ep.new_session(), bob_ep.new_session()
    assert alice.local_uri.scheme == ("msrps" if server_ctx else "msrp")
    await asyncio.gather(
        alice.start(bob.path, active=True, timeout=5),
        bob.start(alice.path, active=False, timeout=5),
    )
    yield alice, bob
    await alice_ep.close()
    await bob_ep.close()


async def test_short_text_both_ways(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    result = await asyncio.wait_for(alice.send("text/plain", b"Hi Bob", success_report=True), 5)
    assert result.status == "delivered" and result.ok
    msg = await asyncio.wait_for(bob.receive(), 5)
    assert (msg.body, msg.content_type, msg.message_id) == (
        b"Hi Bob",
        "text/plain",
        result.message_id,
    )
    back = await asyncio.wait_for(bob.send("text/plain", "Hi Alice ✓".encode()), 5)
    assert back.status == "sent"
    assert (await asyncio.wait_for(alice.receive(), 5)).body == "Hi Alice ✓".encode()


async def test_idle_sessions_keep_no_queue_event_or_table(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    result = await asyncio.wait_for(alice.send("text/plain", b"hi", success_report=True), 5)
    assert result.status == "delivered"
    assert (await asyncio.wait_for(bob.receive(), 5)).body == b"hi"
    for side in (alice, bob):
        assert not hasattr(side, "__dict__")
        assert (side._inbox, side._waiters, side._bound_waiter) == (None, None, None)
        assert (side._results, side._reports_wanted, side._aborted) == (None, None, None)
        assert side.engine._control is None and side.engine._queue is None


async def test_a_cancelled_reader_hands_its_message_on(pair: tuple[Session, Session]) -> None:
    _, bob = pair
    first = asyncio.ensure_future(bob.receive())
    second = asyncio.ensure_future(bob.receive())
    await asyncio.sleep(0)  # both wait, first in line
    message = MessageReceived("m1", "text/plain", b"one", Headers())
    bob._handle([message])  # wakes the first reader...
    first.cancel()  # ...which is cancelled before it runs: the second gets the message
    assert await asyncio.wait_for(second, 5) is message
    with pytest.raises(asyncio.CancelledError):
        await first
    assert bob._inbox is None and bob._waiters is None


async def test_messages_received_before_the_end_are_still_read(
    pair: tuple[Session, Session],
) -> None:
    alice, bob = pair
    for text in (b"one", b"two"):
        assert (await asyncio.wait_for(alice.send("text/plain", text), 5)).ok
    waiting = asyncio.ensure_future(alice.receive())
    await asyncio.sleep(0)
    await bob.close()
    assert [m.body async for m in bob] == [b"one", b"two"]
    with pytest.raises(ConnectionError):
        await bob.receive()
    with pytest.raises(ConnectionError):  # alice's reader: her connection closed
        await asyncio.wait_for(waiting, 5)
    assert [m async for m in alice] == []


async def test_messages_to_a_callback_without_a_reader(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    got: list[bytes] = []
    ended: list[str] = []

    def take(message: MessageReceived) -> None:
        got.append(message.body)
        if message.body == b"boom":
            raise RuntimeError("a broken callback is logged, not fatal")

    bob.on_message = take
    bob.on_end = lambda: ended.append("end")
    for text in (b"one", b"boom", b"two"):
        assert (await asyncio.wait_for(alice.send("text/plain", text), 5)).ok
    assert got == [b"one", b"boom", b"two"] and bob._inbox is None and not ended
    await alice.close()
    for _ in range(100):
        if ended:
            break
        await asyncio.sleep(0.01)
    assert ended == ["end"]
    await bob.close()
    assert ended == ["end"]  # once


async def test_50_mib_message_with_success_report(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    body = hashlib.sha256(b"seed").digest() * (50 * 1024 * 1024 // 32)
    result = await asyncio.wait_for(
        alice.send("application/octet-stream", body, success_report=True), 60
    )
    assert result.status == "delivered"
    msg = await asyncio.wait_for(bob.receive(), 10)
    assert len(msg.body) == len(body)
    assert hashlib.sha256(msg.body).digest() == hashlib.sha256(body).digest()


async def test_two_interleaved_messages(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    one = alice.send_nowait("text/plain", b"1" * 1_000_000, success_report=True)
    two = alice.send_nowait("text/plain", b"2" * 1_000_000, success_report=True)
    results = await asyncio.wait_for(asyncio.gather(one, two), 20)
    assert [r.status for r in results] == ["delivered", "delivered"]
    got = {(await asyncio.wait_for(bob.receive(), 5)).body[:1] for _ in range(2)}
    assert got == {b"1", b"2"}


async def test_aborted_message(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    future = alice.send_nowait("text/plain", b"a" * 5_000_000, message_id="abortme")
    await asyncio.sleep(0)  # the first chunks are written
    alice.abort("abortme")
    result = await asyncio.wait_for(future, 10)
    assert result.status == "failed"
    after = await asyncio.wait_for(alice.send("text/plain", b"still here", success_report=True), 5)
    assert after.status == "delivered"
    msg = await asyncio.wait_for(bob.receive(), 5)
    assert msg.body == b"still here"  # the aborted message never surfaced
    assert [a.message_id for a in bob.aborted] == ["abortme"]


async def test_message_refused_midway_with_413(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    future = alice.send_nowait("text/plain", b"r" * 20_000_000, message_id="refuseme")
    for _ in range(500):
        if bob.engine.incoming_progress("refuseme"):
            break
        await asyncio.sleep(0.01)
    bob.refuse("refuseme")
    result = await asyncio.wait_for(future, 10)
    assert (result.status, result.code) == ("failed", 413)
    ok = await asyncio.wait_for(alice.send("text/plain", b"next", success_report=True), 5)
    assert ok.status == "delivered"
    assert (await asyncio.wait_for(bob.receive(), 5)).body == b"next"


@pytest.mark.parametrize(
    ("offer_setup", "answer_setup", "offerer_connects"),
    [
        (None, None, True),  # RFC 4975 default: the offerer opens the connection
        (Setup.ACTPASS, Setup.ACTIVE, False),
        (Setup.ACTIVE, Setup.PASSIVE, True),
        (Setup.PASSIVE, Setup.ACTIVE, False),
    ],
)
async def test_connection_direction_follows_setup(
    offer_setup: Setup | None, answer_setup: Setup | None, offerer_connects: bool
) -> None:
    alice_ep, bob_ep = await MsrpEndpoint.create(), await MsrpEndpoint.create()
    try:
        alice, bob = alice_ep.new_session(), bob_ep.new_session()
        offer = alice.media_attributes(setup=offer_setup)
        assert answer_setup == (negotiate_setup(offer_setup) if offer_setup else None)
        answer = bob.media_attributes(setup=answer_setup)
        await asyncio.gather(
            alice.start_negotiated(offer, answer, offerer=True, timeout=5),
            bob.start_negotiated(answer, offer, offerer=False, timeout=5),
        )
        assert alice._protocol is not None and bob._protocol is not None
        assert alice._protocol.accepted is not offerer_connects
        assert bob._protocol.accepted is offerer_connects
        result = await asyncio.wait_for(bob.send("text/plain", b"ok", success_report=True), 5)
        assert result.status == "delivered"
    finally:
        await alice_ep.close()
        await bob_ep.close()


async def test_second_connection_for_a_bound_session_gets_506(
    pair: tuple[Session, Session], tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    alice, bob = pair
    ctx = tls[1] if bob.local_uri.scheme == "msrps" else None
    reader, writer = await asyncio.open_connection(bob.local_uri.host, bob.local_uri.port, ssl=ctx)
    frame = Frame("intruder1", "SEND")
    frame.headers.add("To-Path", str(bob.local_uri))
    frame.headers.add("From-Path", str(alice.local_uri))
    frame.headers.add("Message-ID", "x1")
    frame.headers.add("Byte-Range", "1-0/0")
    writer.write(frame.encode())
    parser = FrameParser()
    events: list[object] = []
    while not any(isinstance(e, FrameEnd) for e in events):
        data = await asyncio.wait_for(reader.read(4096), 5)
        assert data, "connection closed without an answer"
        events += parser.feed(data)
    assert isinstance(events[0], FrameHead) and (events[0].tid, events[0].code) == (
        "intruder1",
        506,
    )
    writer.close()
    ok = await asyncio.wait_for(alice.send("text/plain", b"unharmed", success_report=True), 5)
    assert ok.status == "delivered"


async def test_several_sessions_share_one_connection() -> None:
    alice_ep, bob_ep = await MsrpEndpoint.create(), await MsrpEndpoint.create()
    try:
        pairs = [(alice_ep.new_session(), bob_ep.new_session()) for _ in range(3)]
        for alice, bob in pairs:
            await asyncio.gather(
                alice.start(bob.path, active=True, timeout=5),
                bob.start(alice.path, active=False, timeout=5),
            )
        assert len({id(alice._protocol) for alice, _ in pairs}) == 1
        assert len(bob_ep._connections) == 1
        results = await asyncio.wait_for(
            asyncio.gather(
                *(
                    alice.send("text/plain", f"to bob {i}".encode(), success_report=True)
                    for i, (alice, _) in enumerate(pairs)
                )
            ),
            5,
        )
        assert all(r.status == "delivered" for r in results)
        for i, (_, bob) in enumerate(pairs):
            assert (await asyncio.wait_for(bob.receive(), 5)).body == f"to bob {i}".encode()
        await pairs[0][0].close()  # closing one session leaves the others working
        again = await asyncio.wait_for(pairs[1][0].send("text/plain", b"still"), 5)
        assert again.status == "sent"
    finally:
        await alice_ep.close()
        await bob_ep.close()


async def test_a_stalled_tls_handshake_is_closed_after_the_timeout(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls
    config = EndpointConfig(tls_handshake_timeout=1.0)
    bob_ep = await MsrpEndpoint.create(config=config, ssl_server=server_ctx, ssl_client=client_ctx)
    alice_ep = await MsrpEndpoint.create(ssl_server=server_ctx, ssl_client=client_ctx)
    stalled = [await asyncio.open_connection("127.0.0.1", bob_ep.port) for _ in range(2)]
    stalled[1][1].write(bytes(range(256)))  # not a ClientHello: fails at once
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        # meanwhile a real client is served
        alice, bob = alice_ep.new_session(), bob_ep.new_session()
        await asyncio.gather(
            alice.start(bob.path, active=True, timeout=5),
            bob.start(alice.path, active=False, timeout=5),
        )
        assert (await asyncio.wait_for(alice.send("text/plain", b"hi"), 5)).status == "sent"
        assert (await asyncio.wait_for(bob.receive(), 5)).body == b"hi"
        assert len(bob_ep._connections) == 1  # the two others never counted
        assert await asyncio.wait_for(stalled[0][0].read(), 5) == b""  # closed by bob...
        assert 0.8 < loop.time() - started < 3.0  # ... after about the timeout
        for _ in range(40):  # both counted once their time is up (timeout + grace)
            if bob_ep.stats["tls_handshake_failures"] == 2:
                break
            await asyncio.sleep(0.1)
        assert bob_ep.stats["tls_handshake_failures"] == 2
        assert bob_ep.handshakes_pending == 0
    finally:
        for _, writer in stalled:
            writer.close()
        await alice_ep.close()
        await bob_ep.close()
