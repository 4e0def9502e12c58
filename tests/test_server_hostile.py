"""Bad input at the application server's edges: each gets its protocol's answer and
the server keeps serving. INVITE and MESSAGE without (or with wrong) credentials
(401), as another user (403), from anywhere but the proxy in behind-proxy mode (403);
INVITE to an unknown user (404), an offer without
m=message (488), MSRP frames for an unknown session (481), garbage on the SIP and MSRP
listeners, a flooding sender (rate limit: 503), a full offline queue (MSRP 413, SIP
486), an oversized page or message (413), MESSAGE to an unknown user (404), and a
PostgreSQL store that goes down (503) and comes back (recovery without help)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from peers import LOOPBACK, sip_options
from postgres import Postgres
from pyim.digest import DigestClient
from pyim.server.app import ImServer
from pyim.sip.chat import ChatError
from pyim.sip.message import SipResponse
from pyim.sip.uri import NameAddr, SipUri
from server_harness import DOMAIN, User, make_user, running_server, server_config
from server_process import metric_value

pytest_plugins = ["peers", "postgres"]

AUDIO_ONLY_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
BOB = "sip:bob@127.0.0.1"
CAROL = "sip:carol@127.0.0.1"
MSRP_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=message 2855 TCP/MSRP *\r\na=accept-types:text/plain\r\n"
    "a=path:msrp://127.0.0.1:2855/hostile;tcp\r\n"
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ImServer]:
    async with running_server(server_config(tmp_path)) as running:
        yield running


@pytest.fixture
async def alice(server: ImServer) -> AsyncIterator[User]:
    user = await make_user("alice", server)
    await user.register()
    yield user
    await user.close()


def metrics(server: ImServer) -> str:
    return generate_latest(server.metrics.registry).decode()


async def page(user: User, to: str, body: bytes, content_type: str = "text/plain") -> SipResponse:
    target = SipUri(scheme="sip", user=to, host=DOMAIN)
    request = user.sip.new_request(
        "MESSAGE",
        target,
        from_=user.from_addr(),
        to=NameAddr(uri=target),
        body=body,
        content_type=content_type,
    )
    return await asyncio.wait_for(
        user.sip.send(request, user.sip.destination_for_uri(user.server_uri), auth=user.auth()),
        10,
    )


async def invite_raw(user: User, to: str, sdp: str | None) -> SipResponse:
    target = SipUri(scheme="sip", user=to, host=DOMAIN)
    request = user.sip.new_request(
        "INVITE",
        target,
        from_=user.from_addr(),
        to=NameAddr(uri=target),
        body=sdp.encode() if sdp is not None else b"",
        content_type="application/sdp" if sdp is not None else None,
        headers=[("Contact", str(user.sip.contact("udp", user.name)))],
    )
    return await asyncio.wait_for(
        user.sip.send(request, user.sip.destination_for_uri(user.server_uri), auth=user.auth()),
        10,
    )


async def send_as(
    user: User, method: str, to: str, *, auth: DigestClient | None, from_: str | None = None
) -> SipResponse:
    """A MESSAGE or an INVITE (MSRP offer) from ``user``'s stack, with the From and
    the credentials given (None: no answer to a challenge)."""
    target = SipUri(scheme="sip", user=to, host=DOMAIN)
    sender = NameAddr(uri=SipUri.parse(from_)).with_tag("spoof") if from_ else user.from_addr()
    offer = method == "INVITE"
    request = user.sip.new_request(
        method,
        target,
        from_=sender,
        to=NameAddr(uri=target),
        body=MSRP_OFFER.encode() if offer else b"hello",
        content_type="application/sdp" if offer else "text/plain",
        headers=[("Contact", str(user.sip.contact("udp", user.name)))] if offer else None,
    )
    destination = user.sip.destination_for_uri(user.server_uri)
    return await asyncio.wait_for(user.sip.send(request, destination, auth=auth), 10)


async def test_invite_and_message_need_the_senders_credentials(
    server: ImServer, alice: User
) -> None:
    """Standalone, the server is its users' registrar: INVITE and MESSAGE are
    challenged (401), a wrong password gets no further, nobody sends as another user
    (403), and nothing of it reaches the store."""
    for method in ("MESSAGE", "INVITE"):
        response = await send_as(alice, method, "bob", auth=None)
        assert response.status == 401, method
        assert response.headers.get_all("WWW-Authenticate")
        wrong = await send_as(alice, method, "bob", auth=DigestClient("alice", "wrong"))
        assert wrong.status == 401, method
        spoofed = await send_as(alice, method, "bob", auth=alice.auth(), from_=CAROL)
        assert spoofed.status == 403 and "authenticated" in spoofed.reason, method
    assert await server.store.depth(BOB) == 0
    assert len(server.legs) == 0
    text = metrics(server)
    assert metric_value(text, "pyim_failures_total", 'reason="auth"') == 2
    assert metric_value(text, "pyim_failures_total", 'reason="from_not_authenticated_user"') == 2
    # as herself, with her password: accepted
    assert (await send_as(alice, "MESSAGE", "bob", auth=alice.auth())).status == 202
    assert await server.store.depth(BOB) == 1


async def test_a_challenged_invite_goes_on_from_its_retry(server: ImServer, alice: User) -> None:
    """After the 401 the INVITE goes again with CSeq + 1: the dialog, its ACK and the
    BYE go on from that one (an ACK or BYE with the first CSeq would not match: the
    server would keep the session, retransmit its 200 and hang up after 32 s)."""
    session = await alice.call("bob")
    assert session.dialog.local_seq == 2
    assert server.chat is not None and len(server.chat._sessions) == 1
    await session.close()  # BYE, CSeq 3
    for _ in range(100):
        if not server.chat._sessions and len(server.legs) == 0:
            break
        await asyncio.sleep(0.02)
    assert not server.chat._sessions and len(server.legs) == 0


async def test_behind_a_proxy_only_the_proxy_may_send(tmp_path: Path) -> None:
    """In behind-Kamailio mode requests come through the proxy (which authenticated
    them): an INVITE or MESSAGE from any other address is 403, even with a password."""
    config = dataclasses.replace(
        server_config(tmp_path), proxy="sip:127.0.0.2:5999", trusted_proxies=("127.0.0.2",)
    )
    async with running_server(config) as server:
        user = await make_user("alice", server)
        try:
            for method in ("MESSAGE", "INVITE"):
                response = await send_as(user, method, "bob", auth=user.auth())
                assert response.status == 403 and "proxy" in response.reason, method
            assert await server.store.depth(BOB) == 0
            text = metrics(server)
            assert metric_value(text, "pyim_failures_total", 'reason="untrusted_source"') == 2
        finally:
            await user.close()


async def test_invite_refusals(server: ImServer, alice: User) -> None:
    with pytest.raises(ChatError) as info:
        await alice.call("nobody")
    assert info.value.status == 404
    assert (await invite_raw(alice, "bob", AUDIO_ONLY_SDP)).status == 488
    assert (await invite_raw(alice, "bob", None)).status == 488
    assert (await invite_raw(alice, "bob", "v=0\r\ngarbage")).status in (400, 488)
    session = await alice.call("bob")  # still serving
    assert (await session.send("still here", success_report=False)).status == "sent"
    await session.close()
    text = metrics(server)
    assert metric_value(text, "pyim_failures_total", 'reason="unknown_user"') == 1


async def test_page_refusals(tmp_path: Path) -> None:
    config = server_config(tmp_path, max_message_size=2000)
    async with running_server(config) as server:
        carol = await make_user("carol", server, transport="tcp")
        try:
            assert (await page(carol, "nobody", b"hi")).status == 404
            response = await page(carol, "bob", b"x" * 3000)
            assert response.status == 413 and "2000" in response.reason
            assert (await page(carol, "bob", b"x" * 1500)).status == 202
            assert await server.store.depth(BOB) == 1
        finally:
            await carol.close()
        text = metrics(server)
        assert metric_value(text, "pyim_failures_total", 'reason="too_large"') == 1


async def test_oversized_message_in_a_session(tmp_path: Path) -> None:
    async with running_server(server_config(tmp_path, max_message_size=2000)) as server:
        alice = await make_user("alice", server)
        try:
            await alice.register()
            session = await alice.call("bob")
            result = await asyncio.wait_for(session.send(b"y" * 5000, success_report=False), 10)
            assert result.status == "failed" and result.code == 413
            ok = await asyncio.wait_for(session.send(b"small", success_report=False), 10)
            assert ok.status == "sent"
            assert await server.store.depth(BOB) == 1
            await session.close()
        finally:
            await alice.close()


async def _msrp_exchange(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(data)
        await writer.drain()
        got = b""
        try:
            async with asyncio.timeout(timeout):
                while b"\r\n-------" not in got or not got.endswith(b"\r\n"):
                    chunk = await reader.read(4096)
                    if not chunk:
                        break
                    got += chunk
        except TimeoutError:
            pass
        return got
    finally:
        writer.close()


async def test_msrp_unknown_session_and_garbage(server: ImServer, alice: User) -> None:
    assert server.msrp is not None
    port = server.msrp.port
    frame = (
        f"MSRP tx481 SEND\r\nTo-Path: msrp://127.0.0.1:{port}/nosuchsession;tcp\r\n"
        "From-Path: msrp://127.0.0.1:9/me;tcp\r\nMessage-ID: m1\r\nByte-Range: 1-5/5\r\n"
        "Content-Type: text/plain\r\n\r\nhello\r\n-------tx481$\r\n"
    ).encode()
    answer = await _msrp_exchange(port, frame)
    assert answer.startswith(b"MSRP tx481 481"), answer

    # garbage: the connection is closed, the listener counts it and keeps serving
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(b"\x00\xffGET / HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
    await writer.drain()
    async with asyncio.timeout(5):
        while await reader.read(4096):
            pass  # until the server closes it
    writer.close()
    text = metrics(server)
    assert (
        metric_value(text, "pyim_listener_errors_total", 'kind="closed_bad_input",listener="msrp"')
        >= 1
    )

    session = await alice.call("bob")
    assert (await session.send("after garbage", success_report=False)).status == "sent"
    await session.close()


async def test_sip_garbage_keeps_serving(server: ImServer, alice: User) -> None:
    host, port = server.sip.local_address("udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (
            b"\x00\x01\x02\xff" * 100,
            b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: nonsense\r\n\r\n",
            b"SIP/2.0 200 OK\r\n\r\n",
            b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999\r\n\r\nshort",
        ):
            sock.sendto(junk, (host, port))
    tcp_host, tcp_port = server.sip.local_address("tcp")
    reader, writer = await asyncio.open_connection(tcp_host, tcp_port)
    writer.write(b"garbage line\r\n" * 20 + b"\r\n" + b"\xff" * 70000)
    await writer.drain()
    with pytest.raises((TimeoutError, ConnectionError)):
        async with asyncio.timeout(5):
            while await reader.read(4096):
                pass  # the server closes a stream it cannot parse
            raise ConnectionError("closed")
    writer.close()
    udp = await asyncio.to_thread(sip_options, host, port, "udp", 2.0)
    tcp = await asyncio.to_thread(sip_options, tcp_host, tcp_port, "tcp", 2.0)
    assert udp is not None and udp.status == 200
    assert tcp is not None and tcp.status == 200
    assert (await page(alice, "bob", b"after garbage")).status == 202
    text = metrics(server)
    assert (
        metric_value(text, "pyim_listener_errors_total", 'kind="parse_errors",listener="sip"') >= 1
    )


async def test_flood_is_rate_limited(tmp_path: Path) -> None:
    async with running_server(server_config(tmp_path, messages_per_second=5)) as server:
        alice = await make_user("alice", server)
        try:
            await alice.register()
            session = await alice.call("bob")
            futures = [session.msrp.send_nowait("text/plain", f"m{i}".encode()) for i in range(20)]
            results = await asyncio.wait_for(asyncio.gather(*futures), 10)
            codes = [r.code if r.status == "failed" else 200 for r in results]
            assert codes.count(200) == 5 and codes.count(503) == 15, codes
            refused = await page(alice, "bob", b"one more")
            assert refused.status == 503 and refused.headers.get("Retry-After") == "1"
            assert "too many" in refused.reason
            await asyncio.sleep(1.1)  # the window passed: accepted again
            ok = await asyncio.wait_for(session.send("later", success_report=False), 10)
            assert ok.status == "sent"
            assert (await page(alice, "bob", b"later page")).status == 202
            assert await server.store.depth(BOB) == 7
            await session.close()
            assert metric_value(metrics(server), "pyim_failures_total", 'reason="rate"') >= 16
        finally:
            await alice.close()


async def test_offline_queue_is_bounded(tmp_path: Path) -> None:
    async with running_server(server_config(tmp_path, max_queue_per_user=3)) as server:
        alice = await make_user("alice", server)
        carol = await make_user("carol", server)
        try:
            await alice.register()
            session = await alice.call("bob")
            results = [
                await asyncio.wait_for(session.send(f"m{i}", success_report=False), 10)
                for i in range(5)
            ]
            assert [r.status for r in results] == ["sent"] * 3 + ["failed"] * 2
            assert results[3].code == 413
            full = await page(carol, "bob", b"page to a full queue")
            assert full.status == 486 and "full" in full.reason
            assert (await page(carol, "alice", b"other queues take more")).status == 202
            assert await server.store.depth(BOB) == 3
            await session.close()
        finally:
            await alice.close()
            await carol.close()


async def test_store_down_then_back(tmp_path: Path, postgres: Postgres, postgres_url: str) -> None:
    """PostgreSQL stops: messages get 503 (MSRP and page mode), REGISTER still works;
    it starts again: messages are accepted again and what was queued before reaches a
    recipient who registered while the store was down, without any other event."""
    config = dataclasses.replace(server_config(tmp_path), store=postgres_url)
    async with running_server(config) as server:
        alice = await make_user("alice", server)
        bob = await make_user("bob", server)
        try:
            await alice.register()
            session = await alice.call("bob")  # bob is offline
            before = session.msrp.send_nowait("text/plain", b"before", success_report=True)
            async with asyncio.timeout(10):
                while await server.store.depth(BOB) < 1:
                    await asyncio.sleep(0.05)

            await asyncio.to_thread(postgres.stop)
            down = await asyncio.wait_for(session.send("during", success_report=False), 30)
            assert down.status == "failed" and down.code == 503, down
            paged = await page(alice, "bob", b"during page")
            assert paged.status == 503 and paged.headers.get("Retry-After"), paged.reason
            await bob.register()  # needs no store; bob's deliverer fails and retries

            postgres.start()  # in this thread: its parent-death signal follows the thread
            bob_side = await asyncio.wait_for(bob.chat.accept(), 30)  # recovered by itself
            assert (await asyncio.wait_for(bob_side.receive(), 10)).body == b"before"
            assert (await asyncio.wait_for(before, 10)).status == "delivered"
            after = await asyncio.wait_for(session.send("after", success_report=True), 30)
            assert after.status == "delivered"
            assert (await asyncio.wait_for(bob_side.receive(), 10)).body == b"after"
            text = metrics(server)
            assert metric_value(text, "pyim_failures_total", 'reason="store"') >= 2
            await session.close()
        finally:
            if not postgres.is_running():
                postgres.start()
            await alice.close()
            await bob.close()
