"""Two pyim SIP stacks on 127.0.0.1: requests, dialogs, auth, CANCEL, over UDP and TCP;
a stack bound apart from the host it advertises, requests over a transport it does not
listen on, re-ACKs of retransmitted 2xx (RFC 6026 Accepted) and TLS handshake timeouts."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

from pyim.digest import DigestClient, DigestServer, Ok, password_lookup
from pyim.sip.dialog import Dialog, new_tag
from pyim.sip.message import SipRequest, SipResponse
from pyim.sip.parser import parse_message
from pyim.sip.stack import IncomingRequest, SipStack, StackConfig
from pyim.sip.transaction import TimerConfig
from pyim.sip.transport import TransportConfig
from pyim.sip.uri import NameAddr, SipUri

FAST = TimerConfig(T1=0.05, T2=0.4, T4=0.5, trying_delay=0.0)


@pytest.fixture(params=["udp", "tcp"])
async def stacks(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SipStack, SipStack, str]]:
    alice, bob = SipStack(StackConfig(timers=FAST)), SipStack(StackConfig(timers=FAST))
    await alice.start()
    await bob.start()
    yield alice, bob, request.param
    await alice.close()
    await bob.close()


def target(stack: SipStack, transport: str, user: str = "bob") -> SipUri:
    host, port = stack.local_address(transport)
    params = (("transport", transport),) if transport != "udp" else ()
    return SipUri(scheme="sip", user=user, host=host, port=port, params=params)


def me(user: str) -> NameAddr:
    return NameAddr(uri=SipUri(scheme="sip", user=user, host="127.0.0.1")).with_tag(new_tag())


async def test_options_and_message(stacks: tuple[SipStack, SipStack, str]) -> None:
    alice, bob, transport = stacks
    seen: list[str] = []

    def on_request(incoming: IncomingRequest) -> None:
        seen.append(incoming.request.method)
        if incoming.request.method == "MESSAGE":
            assert incoming.request.body == b"hello bob"
        incoming.respond(200)

    bob.on_request = on_request
    for method, body in (("OPTIONS", b""), ("MESSAGE", b"hello bob")):
        uri = target(bob, transport)
        request = alice.new_request(
            method,
            uri,
            from_=me("alice"),
            to=NameAddr(uri=uri),
            body=body,
            content_type="text/plain" if body else None,
        )
        response = await asyncio.wait_for(alice.send(request), 5)
        assert response.status == 200
    assert seen == ["OPTIONS", "MESSAGE"]


async def test_invite_ack_bye_dialog(stacks: tuple[SipStack, SipStack, str]) -> None:
    alice, bob, transport = stacks
    acked = asyncio.Event()
    dialogs: dict[str, Dialog] = {}

    def on_request(incoming: IncomingRequest) -> None:
        req = incoming.request
        if req.method == "INVITE":
            tag = new_tag()
            incoming.respond(180, to_tag=tag)
            response = incoming.respond(200, to_tag=tag, contact=True)
            dialogs["bob"] = Dialog.as_uas(req, response)
        elif req.method == "ACK":
            acked.set()
        elif req.method == "BYE":
            dialogs["bob"].receive_request(req)
            incoming.respond(200)

    bob.on_request = on_request
    uri = target(bob, transport)
    invite = alice.new_request("INVITE", uri, from_=me("alice"), to=NameAddr(uri=uri))
    provisional: list[int] = []
    response = await asyncio.wait_for(
        alice.send(invite, on_provisional=lambda r: provisional.append(r.status)), 5
    )
    assert response.status == 200 and 180 in provisional
    dialog = Dialog.as_uac(invite, response)
    alice.ack(dialog.ack(invite), invite, alice.destination_for(dialog.ack(invite)))
    await asyncio.wait_for(acked.wait(), 5)
    bye = dialog.request("BYE")
    assert (await asyncio.wait_for(alice.send(bye), 5)).status == 200
    assert dialogs["bob"].state.value == "terminated"


async def test_digest_challenge_is_answered(stacks: tuple[SipStack, SipStack, str]) -> None:
    alice, bob, transport = stacks
    server = DigestServer("pyim.test", password_lookup({"alice": "secret"}))

    def on_request(incoming: IncomingRequest) -> None:
        value = incoming.request.headers.get("Authorization")
        if value is not None:
            verdict = server.verify(value, method=incoming.request.method)
            if isinstance(verdict, Ok):
                incoming.respond(200)
                return
        incoming.respond(401, headers=[("WWW-Authenticate", c) for c in server.challenge()])

    bob.on_request = on_request
    uri = target(bob, transport, "registrar")
    for password, status in (("secret", 200), ("wrong", 401)):
        request = alice.new_request("REGISTER", uri, from_=me("alice"), to=NameAddr(uri=uri))
        response = await asyncio.wait_for(
            alice.send(request, auth=DigestClient("alice", password)), 5
        )
        assert response.status == status


async def test_cancel_gets_487_and_timeout_gets_408(
    stacks: tuple[SipStack, SipStack, str],
) -> None:
    alice, bob, transport = stacks
    cancelled = asyncio.Event()

    def on_request(incoming: IncomingRequest) -> None:
        if incoming.request.method == "INVITE":
            incoming.respond(180, to_tag=new_tag())  # ring forever
        elif incoming.request.method == "CANCEL":
            cancelled.set()

    bob.on_request = on_request
    uri = target(bob, transport)
    invite = alice.new_request("INVITE", uri, from_=me("alice"), to=NameAddr(uri=uri))
    ringing = asyncio.Event()
    txs = []
    pending = asyncio.ensure_future(
        alice.send(invite, on_provisional=lambda r: ringing.set(), on_transaction=txs.append)
    )
    await asyncio.wait_for(ringing.wait(), 5)
    alice.cancel(txs[0])
    response = await asyncio.wait_for(pending, 5)
    assert response.status == 487
    await asyncio.wait_for(cancelled.wait(), 5)

    bob.on_request = lambda incoming: None  # never answers a MESSAGE
    request = alice.new_request("MESSAGE", uri, from_=me("alice"), to=NameAddr(uri=uri))
    response = await asyncio.wait_for(alice.send(request), 10)
    assert response.status == 408


# -- bind address vs advertised host, no TLS listener, 2xx re-ACKs, TLS handshakes ------------


class _UdpPeer(asyncio.DatagramProtocol):
    """A raw UDP socket on 127.0.0.1 that queues what it receives."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[SipRequest | SipResponse, tuple[str, int]]] = (
            asyncio.Queue()
        )
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait((parse_message(data), addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(message.encode(), addr)

    async def next(self, method: str) -> tuple[SipRequest, tuple[str, int]]:
        """The next request with ``method`` (retransmissions of others are skipped)."""
        while True:
            message, addr = await asyncio.wait_for(self.inbox.get(), 5)
            if isinstance(message, SipRequest) and message.method == method:
                return message, addr


@pytest.fixture
async def udp_peer() -> AsyncIterator[_UdpPeer]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(_UdpPeer, local_addr=("127.0.0.1", 0))
    yield peer
    transport.close()


async def test_bind_host_apart_from_the_advertised_host(udp_peer: _UdpPeer) -> None:
    # bound to 127.0.0.1, known to others as a name that does not even resolve
    alice = SipStack(StackConfig(host="alice.example.test", bind_host="127.0.0.1", timers=FAST))
    await alice.start()
    try:
        for transport in ("udp", "tcp"):
            host, port = alice.local_address(transport)
            assert host == "127.0.0.1"
            assert alice.advertised_address(transport) == ("alice.example.test", port)
            assert alice.contact(transport, "alice").uri.host == "alice.example.test"
        uri = SipUri(scheme="sip", user="bob", host="127.0.0.1", port=udp_peer.port)
        invite = alice.new_request("INVITE", uri, from_=me("alice"), to=NameAddr(uri=uri))
        pending = asyncio.ensure_future(alice.send(invite))
        request, source = await udp_peer.next("INVITE")
        assert request.top_via.host == "alice.example.test"
        assert request.contacts[0].uri.host == "alice.example.test"
        assert request.call_id.endswith("@alice.example.test")
        assert source == alice.local_address("udp")
        # reachable at the bound address: the answer sent where the INVITE came from
        udp_peer.send(request.response(486, to_tag="busy"), source)
        assert (await asyncio.wait_for(pending, 5)).status == 486
    finally:
        await alice.close()


async def test_a_request_over_tls_without_a_tls_listener_fails_cleanly() -> None:
    alice = SipStack(StackConfig(timers=FAST))
    await alice.start()  # UDP and TCP, no TLS
    connections = 0

    def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    listener = await asyncio.start_server(count, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        contact = alice.contact("tls", "alice")  # no KeyError: one it has instead
        assert contact.uri.scheme == "sip" and contact.uri.port == alice.local_address("udp")[1]
        sips = SipUri(scheme="sips", user="bob", host="127.0.0.1", port=port)
        tls = SipUri(scheme="sip", user="bob", host="127.0.0.1", port=port,
                     params=(("transport", "tls"),))  # fmt: skip
        for uri in (sips, tls):
            for method in ("INVITE", "MESSAGE"):
                request = alice.new_request(method, uri, from_=me("alice"), to=NameAddr(uri=uri))
                response = await asyncio.wait_for(alice.send(request), 5)
                assert response.status == 503, response
                assert response.reason == "Service Unavailable (no TLS transport)"
        assert connections == 0 and alice.transport.stats["send_failures"] == 4
    finally:
        listener.close()
        await alice.close()


async def test_each_2xx_retransmission_while_accepted_gets_the_ack(udp_peer: _UdpPeer) -> None:
    alice = SipStack(StackConfig(timers=FAST))
    await alice.start()
    try:
        uri = SipUri(scheme="sip", user="bob", host="127.0.0.1", port=udp_peer.port)
        invite = alice.new_request("INVITE", uri, from_=me("alice"), to=NameAddr(uri=uri))
        pending = asyncio.ensure_future(alice.send(invite))
        request, source = await udp_peer.next("INVITE")
        ok = request.response(200, to_tag="bob-tag")
        ok.headers.add("Contact", f"<sip:bob@127.0.0.1:{udp_peer.port}>")
        udp_peer.send(ok, source)
        response = await asyncio.wait_for(pending, 5)
        assert response.status == 200
        dialog = Dialog.as_uac(invite, response)
        ack = dialog.ack(invite)
        alice.ack(ack, invite, alice.destination_for(ack))
        first, _ = await udp_peer.next("ACK")
        # the ACK is lost (as far as the UAS knows): it retransmits its 200, twice, well
        # within timer M (64*T1 = 3.2 s here), the transaction still Accepted
        for _ in range(2):
            udp_peer.send(ok, source)
            again, _ = await udp_peer.next("ACK")
            assert again.encode() == first.encode()  # the same ACK (§13.2.2.4)
        assert alice.stats["acks_resent"] == 2
        # a 2xx of another fork (another To tag) does not get this dialog's ACK
        udp_peer.send(request.response(200, to_tag="other-fork"), source)
        await asyncio.sleep(0.2)
        assert udp_peer.inbox.empty() and alice.stats["acks_resent"] == 2
    finally:
        await alice.close()


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_a_stalled_tls_handshake_is_closed_after_the_timeout(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls_contexts
    config = StackConfig(timers=FAST, transport=TransportConfig(tls_handshake_timeout=1.0))
    bob = SipStack(config, ssl_server=server_ctx)
    bob.on_request = lambda incoming: incoming.respond(200)
    alice = SipStack(StackConfig(timers=FAST), ssl_server=server_ctx, ssl_client=client_ctx)
    await bob.start(udp=None, tcp=None, tls=0)
    await alice.start(udp=None, tcp=None, tls=0)
    host, port = bob.local_address("tls")
    stalled = [await asyncio.open_connection(host, port) for _ in range(2)]
    stalled[1][1].write(bytes(range(256)))  # not a ClientHello: fails at once
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        # meanwhile a real client is served
        uri = SipUri(scheme="sips", user="bob", host=host, port=port)
        request = alice.new_request("OPTIONS", uri, from_=me("alice"), to=NameAddr(uri=uri))
        assert (await asyncio.wait_for(alice.send(request), 5)).status == 200
        assert bob.transport.connection_count == 1  # the two others never counted
        assert await asyncio.wait_for(stalled[0][0].read(), 5) == b""  # closed by bob...
        assert 0.8 < loop.time() - started < 3.0  # ... after about the timeout
        for _ in range(40):  # both counted once their time is up (timeout + grace)
            if bob.transport.stats["tls_handshake_failures"] == 2:
                break
            await asyncio.sleep(0.1)
        assert bob.transport.stats["tls_handshake_failures"] == 2
        assert bob.transport.handshakes_pending == 0
    finally:
        for _, writer in stalled:
            writer.close()
        await alice.close()
        await bob.close()
