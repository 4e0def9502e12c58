"""A real pyim SIP stack on 127.0.0.1 against hand-made hostile bytes.

Bob is a :class:`SipStack` with a :class:`ChatStack` on top (so INVITEs get real
chat answers) and a fallback handler that records the out-of-dialog requests it
is given.  Each test writes bytes made by hand from a raw UDP socket or a raw TCP
connection and checks the exact answer on the wire (parsed with
:func:`pyim.sip.parser.parse_message`) or a clean close, the counter that records
it, and that the stack still serves: a fresh UDP peer and a fresh TCP connection
get their ``200`` to a well-formed OPTIONS afterwards.

The stack's timers are small (T1 = 20 ms: every transaction ends 1.28 s after its
final response) and so are its limits (4 KiB messages, 0.5 s idle timeout), so
that every case, floods included, ends in seconds.  Every wait is bounded.

A chat whose 2xx is never ACKed is hung up (RFC 3261 §13.3.1.4): the stack reports
the missing ACK (``SipStack.on_ack_timeout``) and the ChatStack sends the BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from pyim.msrp.sdp import Setup
from pyim.msrp.transport import MsrpEndpoint
from pyim.sip.chat import ChatStack
from pyim.sip.message import SipRequest, SipResponse
from pyim.sip.parser import KeepAlive, SipLimits, StreamFramer, parse_message
from pyim.sip.sdp import SessionDescription, build_msrp_offer, parse_msrp_answer
from pyim.sip.stack import SUPPORTED_METHODS, IncomingRequest, SipStack, StackConfig
from pyim.sip.transaction import TimerConfig
from pyim.sip.transport import TransportConfig

HOST = "127.0.0.1"
WAIT = 5.0  # bound of every single wait on the network
QUIET = 0.3  # how long "no answer" is watched for
TIMERS = TimerConfig(T1=0.02, T2=0.1, T4=0.1)
MAX_MESSAGE = 4096
IDLE = 0.5
SETUP_TIMEOUT = 1.0  # how long an answered chat waits for its MSRP connection
TRANSACTION_LIFETIME = 64 * TIMERS.T1  # timers H, J (UDP), L: 1.28 s

_ids = itertools.count(1)


# -- the stack under test -------------------------------------------------------------


@dataclass
class Bob:
    """The stack under test and what its fallback handler saw."""

    sip: SipStack
    chat: ChatStack
    msrp: MsrpEndpoint
    seen: list[SipRequest] = field(default_factory=list)

    @property
    def udp(self) -> tuple[str, int]:
        return self.sip.local_address("udp")

    @property
    def tcp(self) -> tuple[str, int]:
        return self.sip.local_address("tcp")

    def counters(self) -> Counter[str]:
        """Every counter of the stack, prefixed by its layer (a snapshot)."""
        out: Counter[str] = Counter()
        for prefix, stats in (
            ("transport", self.sip.transport.stats),
            ("stack", self.sip.stats),
            ("transactions", self.sip.transactions.stats),
        ):
            for key, value in stats.items():
                out[f"{prefix}.{key}"] = value
        return out


def config(*, max_connections_per_ip: int = 256) -> StackConfig:
    transport = TransportConfig(
        limits=SipLimits(max_message_size=MAX_MESSAGE),
        idle_timeout=IDLE,
        max_connections_per_ip=max_connections_per_ip,
    )
    return StackConfig(timers=TIMERS, transport=transport)


async def start_bob(stack_config: StackConfig | None = None) -> Bob:
    sip = SipStack(stack_config or config())
    await sip.start(udp=0, tcp=0)
    msrp = await MsrpEndpoint.create(HOST)
    seen: list[SipRequest] = []

    def fallback(incoming: IncomingRequest) -> None:
        seen.append(incoming.request)
        if incoming.request.method in ("OPTIONS", "MESSAGE"):
            incoming.respond(200)
        elif incoming.transaction is not None and incoming.request.method != "CANCEL":
            incoming.respond(405)

    chat = ChatStack(sip, msrp, user="bob", fallback=fallback, setup_timeout=SETUP_TIMEOUT)
    return Bob(sip, chat, msrp, seen)


async def stop_bob(bob: Bob) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(bob.chat.close(), 20)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(bob.msrp.close(), 10)
    await asyncio.wait_for(bob.sip.close(), 10)


@pytest.fixture
async def bob() -> AsyncIterator[Bob]:
    bob = await start_bob()
    yield bob
    await stop_bob(bob)


# -- hand-made requests ---------------------------------------------------------------


def request(
    method: str = "OPTIONS",
    *,
    transport: str = "UDP",
    sent_by: tuple[str, int] = (HOST, 9),
    branch: str | None = None,
    call_id: str | None = None,
    cseq: str | None = None,
    uri: str = f"sip:bob@{HOST}",
    version: str = "SIP/2.0",
    to: str = f"<sip:bob@{HOST}>",
    omit: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    content_length: str | None = "auto",
    contact: bool = False,
) -> bytes:
    """A request as bytes; ``omit`` drops headers by name, ``content_length=None``
    drops Content-Length, any other string is written as it is."""
    n = next(_ids)
    via = f"SIP/2.0/{transport} {sent_by[0]}:{sent_by[1]};branch={branch or f'z9hG4bKh{n}'}"
    headers = [
        ("Via", f"{via};rport"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:alice@{HOST}>;tag=a{n}"),
        ("To", to),
        ("Call-ID", call_id or f"hostile-{n}@{HOST}"),
        ("CSeq", cseq or f"1 {method}"),
    ]
    if contact:
        headers.append(("Contact", f"<sip:alice@{sent_by[0]}:{sent_by[1]}>"))
    headers.extend(extra)
    if content_length == "auto":
        headers.append(("Content-Length", str(len(body))))
    elif content_length is not None:
        headers.append(("Content-Length", content_length))
    dropped = {name.lower() for name in omit}
    lines = [f"{method} {uri} {version}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in dropped]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ack_for(invite: bytes, response: SipResponse) -> bytes:
    """The ACK of a non-2xx final response (§17.1.1.3): same branch, the answer's To."""
    parsed = parse_message(invite)
    assert isinstance(parsed, SipRequest)
    headers = [
        ("Via", parsed.headers.get("Via") or ""),
        ("Max-Forwards", "70"),
        ("From", parsed.headers.get("From") or ""),
        ("To", response.headers.get("To") or ""),
        ("Call-ID", parsed.call_id),
        ("CSeq", f"{parsed.cseq.seq} ACK"),
        ("Content-Length", "0"),
    ]
    lines = [f"ACK {parsed.uri} SIP/2.0", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


MSRP_OFFER = (
    b"v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=message 9 TCP/MSRP *\r\na=accept-types:text/plain\r\n"
    b"a=path:msrp://127.0.0.1:9/%s;tcp\r\na=setup:active\r\n"
)
AUDIO_OFFER = (
    b"v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def lenient(data: bytes) -> tuple[int, dict[str, list[str]]]:
    """Status and headers of an answer that parse_message would refuse (a 400 to a
    request missing From cannot copy From)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    start, *lines = head.split("\r\n")
    version, status, _ = start.split(" ", 2)
    assert version == "SIP/2.0"
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status), headers


# -- raw peers --------------------------------------------------------------------------


class UdpPeer(asyncio.DatagramProtocol):
    """A raw UDP socket on 127.0.0.1 that keeps every datagram it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls) -> UdpPeer:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((HOST, 0))
        _, peer = await loop.create_datagram_endpoint(cls, sock=sock)
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    async def raw(self, timeout: float = WAIT) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def response(self, timeout: float = WAIT) -> SipResponse:
        """The next final response (provisional ones are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                message = parse_message(await self.queue.get())
                assert isinstance(message, SipResponse), message
                if message.status >= 200:
                    return message

    async def silence(self, duration: float = QUIET) -> None:
        await asyncio.sleep(duration)
        assert self.queue.empty(), f"unexpected answer: {self.queue.get_nowait()[:200]!r}"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@contextlib.asynccontextmanager
async def udp_peer() -> AsyncIterator[UdpPeer]:
    peer = await UdpPeer.open()
    try:
        yield peer
    finally:
        peer.close()


class TcpPeer:
    """A raw TCP connection that cuts what it reads into SIP messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = StreamFramer(SipLimits(max_message_size=1 << 20))
        self.items: list[bytes | KeepAlive] = []

    @classmethod
    async def open(cls, address: tuple[str, int]) -> TcpPeer:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), WAIT)
        return cls(reader, writer)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.writer.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def item(self, timeout: float = WAIT) -> bytes | KeepAlive:
        async with asyncio.timeout(timeout):
            while not self.items:
                data = await self.reader.read(65536)
                assert data, "connection closed"
                self.items.extend(self.framer.feed(data))
            return self.items.pop(0)

    async def response(self, timeout: float = WAIT) -> SipResponse:
        """The next final response (provisional ones and keep-alives are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                item = await self.item()
                if isinstance(item, KeepAlive):
                    continue
                message = parse_message(item)
                assert isinstance(message, SipResponse), message
                if message.status >= 200:
                    return message

    async def closed(self, timeout: float = WAIT) -> bytes:
        """Everything the stack writes until it closes the connection."""
        chunks = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    data = await self.reader.read(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks)

    async def silence(self, duration: float = QUIET) -> None:
        with contextlib.suppress(TimeoutError):
            data = await asyncio.wait_for(self.reader.read(65536), duration)
            raise AssertionError(f"unexpected data: {data[:200]!r}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)


@contextlib.asynccontextmanager
async def tcp_peer(address: tuple[str, int]) -> AsyncIterator[TcpPeer]:
    peer = await TcpPeer.open(address)
    try:
        yield peer
    finally:
        await peer.close()


async def exchange(bob: Bob, transport: str, data_for: Callable[[tuple[str, int]], bytes]) -> bytes:
    """Send one request from a fresh peer and return the first bytes answered."""
    if transport == "udp":
        async with udp_peer() as peer:
            peer.send(data_for(peer.address), bob.udp)
            return await peer.raw()
    async with tcp_peer(bob.tcp) as conn:
        conn.send(data_for(conn.address))
        item = await conn.item()
        assert isinstance(item, bytes)
        return item


async def ask(
    bob: Bob, transport: str, data_for: Callable[[tuple[str, int]], bytes]
) -> SipResponse:
    answer = parse_message(await exchange(bob, transport, data_for))
    assert isinstance(answer, SipResponse)
    return answer


async def still_serves(bob: Bob) -> None:
    """A fresh UDP peer and a fresh TCP connection get their 200 to an OPTIONS."""
    for transport in ("udp", "tcp"):
        call_id = f"alive-{next(_ids)}"
        answer = await ask(
            bob,
            transport,
            lambda me, t=transport, c=call_id: request(
                "OPTIONS", transport=t.upper(), sent_by=me, call_id=c
            ),
        )
        assert answer.status == 200, (transport, answer.status, answer.reason)
        assert answer.call_id == call_id


def grew(before: Counter[str], after: Counter[str]) -> Counter[str]:
    """The counters that changed, by how much."""
    return Counter({k: after[k] - before[k] for k in after if after[k] != before[k]})


TRANSPORTS = ["udp", "tcp"]


# -- missing mandatory headers -------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_request_without_via_is_dropped_and_counted(bob: Bob, transport: str) -> None:
    before = bob.counters()
    data = request("OPTIONS", omit=("Via",))
    if transport == "udp":
        async with udp_peer() as peer:
            peer.send(data, bob.udp)
            await peer.silence()
    else:
        async with tcp_peer(bob.tcp) as conn:
            conn.send(data)
            await conn.silence()  # nothing to route an answer with; the stream is intact
            conn.send(request("OPTIONS", transport="TCP", call_id="after-no-via"))
            answer = await conn.response()
            assert (answer.status, answer.call_id) == (200, "after-no-via")
    assert grew(before, bob.counters())["transport.parse_errors"] == 1
    assert not [r for r in bob.seen if r.call_id != "after-no-via"]
    await still_serves(bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("missing", ["From", "To", "Call-ID", "CSeq", "Max-Forwards"])
async def test_missing_mandatory_header_gets_400(bob: Bob, transport: str, missing: str) -> None:
    before = bob.counters()
    data = await exchange(
        bob,
        transport,
        lambda me: request(
            "OPTIONS", transport=transport.upper(), sent_by=me, omit=(missing,), call_id="mh-1"
        ),
    )
    status, headers = lenient(data)
    assert status == 400
    assert missing.lower() not in headers  # nothing invented
    assert len(headers["via"]) == 1
    if missing != "Call-ID":
        assert headers["call-id"] == ["mh-1"]
    if missing == "Max-Forwards":  # every header a response copies is there: well-formed
        answer = parse_message(data)
        assert isinstance(answer, SipResponse)
        assert (answer.status, answer.cseq.method) == (400, "OPTIONS")
    assert grew(before, bob.counters())["transport.parse_errors"] == 1
    assert not bob.seen  # the application never saw it
    await still_serves(bob)


# -- Content-Length -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "body"),
    [("abc", b"hello"), ("-5", b"hello"), ("+5", b"hello"), ("600", b"hello"), ("", b"")],
    ids=["non-numeric", "negative", "signed", "larger-than-datagram", "empty"],
)
async def test_bad_content_length_over_udp_gets_400(bob: Bob, value: str, body: bytes) -> None:
    before = bob.counters()
    async with udp_peer() as peer:
        peer.send(
            request(
                "MESSAGE",
                sent_by=peer.address,
                body=body,
                content_length=value,
                extra=(("Content-Type", "text/plain"),),
                call_id="cl-udp",
            ),
            bob.udp,
        )
        answer = await peer.response()
        await peer.silence()  # a stateless answer: no retransmission
    assert (answer.status, answer.call_id, answer.cseq.method) == (400, "cl-udp", "MESSAGE")
    assert "Content-Length" in answer.reason
    assert grew(before, bob.counters())["transport.parse_errors"] == 1
    assert not bob.seen
    await still_serves(bob)


async def test_content_length_smaller_than_datagram_drops_the_excess(bob: Bob) -> None:
    async with udp_peer() as peer:
        data = request(
            "MESSAGE",
            sent_by=peer.address,
            body=b"hello world",
            content_length="5",
            extra=(("Content-Type", "text/plain"),),
        )
        peer.send(data, bob.udp)
        answer = await peer.response()
    assert answer.status == 200
    assert [r.body for r in bob.seen] == [b"hello"]  # RFC 3261 §18.3: the rest is dropped
    await still_serves(bob)


@pytest.mark.parametrize("value", ["abc", "-5", "1e3"])
async def test_bad_content_length_over_tcp_gets_400_and_close(bob: Bob, value: str) -> None:
    before = bob.counters()
    async with tcp_peer(bob.tcp) as conn:
        conn.send(
            request("MESSAGE", transport="TCP", body=b"hello", content_length=value, call_id="cl")
        )
        rest = await conn.closed()
    answer = parse_message(rest)
    assert isinstance(answer, SipResponse)
    assert (answer.status, answer.call_id) == (400, "cl")
    assert grew(before, bob.counters())["transport.stream_errors"] == 1
    assert not bob.seen
    await still_serves(bob)


async def test_tcp_without_content_length_is_closed(bob: Bob) -> None:
    before = bob.counters()
    async with tcp_peer(bob.tcp) as conn:
        conn.send(request("OPTIONS", transport="TCP", content_length=None, call_id="nocl"))
        rest = await conn.closed()
    answer = parse_message(rest)
    assert isinstance(answer, SipResponse)
    assert (answer.status, answer.call_id) == (400, "nocl")
    assert grew(before, bob.counters())["transport.stream_errors"] == 1
    await still_serves(bob)


async def test_tcp_content_length_larger_than_sent_waits_then_idles_out(bob: Bob) -> None:
    before = bob.counters()
    async with tcp_peer(bob.tcp) as conn:
        conn.send(request("MESSAGE", transport="TCP", body=b"hello", content_length="500"))
        await conn.silence()  # waiting for the rest of the body
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await conn.closed(timeout=IDLE * 4) == b""
        assert loop.time() - started < IDLE * 3
    assert grew(before, bob.counters())["transport.closed_idle"] == 1
    assert not bob.seen
    await still_serves(bob)


async def test_tcp_content_length_smaller_than_body(bob: Bob) -> None:
    """The message ends where Content-Length says; the excess starts the next one."""
    async with tcp_peer(bob.tcp) as conn:
        conn.send(
            request(
                "MESSAGE",
                transport="TCP",
                body=b"hello world",
                content_length="5",
                extra=(("Content-Type", "text/plain"),),
                call_id="short-cl",
            )
        )
        answer = await conn.response()
        assert (answer.status, answer.call_id) == (200, "short-cl")
        assert [r.body for r in bob.seen] == [b"hello"]
        # " world" is now the head of the next message: it is refused, never parsed
        conn.send(request("OPTIONS", transport="TCP", call_id="polluted"))
        answer = await conn.response()
        assert (answer.status, answer.call_id) == (400, "polluted")
    assert [r.call_id for r in bob.seen] == ["short-cl"]
    await still_serves(bob)


# -- oversized messages ---------------------------------------------------------------------


async def test_oversized_datagram_gets_413(bob: Bob) -> None:
    before = bob.counters()
    async with udp_peer() as peer:
        data = request(
            "MESSAGE",
            sent_by=peer.address,
            body=b"x" * MAX_MESSAGE,
            extra=(("Content-Type", "text/plain"),),
            call_id="big-udp",
        )
        assert len(data) > MAX_MESSAGE
        peer.send(data, bob.udp)
        answer = await peer.response()
    assert (answer.status, answer.call_id) == (413, "big-udp")
    assert grew(before, bob.counters())["transport.parse_errors"] == 1
    assert not bob.seen
    await still_serves(bob)


async def test_oversized_body_over_tcp_gets_413_and_close(bob: Bob) -> None:
    before = bob.counters()
    async with tcp_peer(bob.tcp) as conn:
        conn.send(
            request(
                "MESSAGE",
                transport="TCP",
                body=b"x" * MAX_MESSAGE,
                extra=(("Content-Type", "text/plain"),),
                call_id="big-tcp",
            )
        )
        rest = await conn.closed()
    answer = parse_message(rest)
    assert isinstance(answer, SipResponse)
    assert (answer.status, answer.call_id) == (413, "big-tcp")
    assert grew(before, bob.counters())["transport.stream_errors"] == 1
    assert not bob.seen
    await still_serves(bob)


async def test_oversized_head_over_tcp_gets_413_and_close(bob: Bob) -> None:
    """A head that never ends: 413 as soon as the limit is passed, then close."""
    before = bob.counters()
    head = request("OPTIONS", transport="TCP", call_id="big-head").split(b"\r\n\r\n")[0]
    async with tcp_peer(bob.tcp) as conn:
        conn.send(head + b"\r\n")
        for i in range(MAX_MESSAGE // 64 + 2):
            conn.send(f"X-Filler-{i}: {'y' * 48}\r\n".encode())
        rest = await conn.closed()
    answer = parse_message(rest)
    assert isinstance(answer, SipResponse)
    assert (answer.status, answer.call_id) == (413, "big-head")
    assert grew(before, bob.counters())["transport.stream_errors"] == 1
    await still_serves(bob)


# -- header injection ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bare_lf_header_injection_is_refused(bob: Bob, transport: str) -> None:
    before = bob.counters()
    data = await exchange(
        bob,
        transport,
        lambda me: request(
            "MESSAGE",
            transport=transport.upper(),
            sent_by=me,
            extra=(("Subject", "hi\nX-Injected: evil"), ("Content-Type", "text/plain")),
            body=b"hi",
            call_id="inject",
        ),
    )
    answer = parse_message(data)
    assert isinstance(answer, SipResponse)
    assert (answer.status, answer.call_id) == (400, "inject")
    assert "X-Injected" not in answer.headers
    assert b"evil" not in data
    assert grew(before, bob.counters())["transport.parse_errors"] == 1
    assert not bob.seen
    await still_serves(bob)


async def test_injected_via_never_routes_an_answer(bob: Bob) -> None:
    """A bare LF smuggling a Via that names a victim: the victim gets nothing."""
    async with udp_peer() as peer, udp_peer() as victim:
        vhost, vport = victim.address
        data = request("OPTIONS", sent_by=peer.address, call_id="smuggle").replace(
            b"\r\nMax-Forwards",
            f"\nVia: SIP/2.0/UDP {vhost}:{vport};branch=z9hG4bKvictim\r\nMax-Forwards".encode(),
            1,
        )
        peer.send(data, bob.udp)
        with contextlib.suppress(TimeoutError):  # refused with 400, or dropped: both fine
            status, headers = lenient(await peer.raw(QUIET))
            assert status == 400
            assert not any(str(vport) in via for via in headers["via"])
        await victim.silence()
    assert not bob.seen
    await still_serves(bob)


# -- requests the core refuses ---------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unknown_method_gets_501_with_allow(bob: Bob, transport: str) -> None:
    answer = await ask(
        bob, transport, lambda me: request("FOO", transport=transport.upper(), sent_by=me)
    )
    assert (answer.status, answer.cseq.method) == (501, "FOO")
    assert answer.to.tag  # §8.2.6.2
    allow = {m.strip() for m in (answer.headers.get("Allow") or "").split(",")}
    assert allow == set(SUPPORTED_METHODS)
    assert bob.sip.stats["in_FOO"] == 1
    assert not bob.seen
    await still_serves(bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unsupported_require_gets_420(bob: Bob, transport: str) -> None:
    answer = await ask(
        bob,
        transport,
        lambda me: request(
            "OPTIONS", transport=transport.upper(), sent_by=me, extra=(("Require", "foo"),)
        ),
    )
    assert answer.status == 420
    assert answer.to.tag
    assert answer.headers.get("Unsupported") == "foo"
    assert not bob.seen
    await still_serves(bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cseq_method_mismatch_gets_400(bob: Bob, transport: str) -> None:
    before = bob.counters()
    answer = await ask(
        bob,
        transport,
        lambda me: request("OPTIONS", transport=transport.upper(), sent_by=me, cseq="1 INVITE"),
    )
    assert answer.status == 400
    assert "CSeq" in answer.reason
    assert grew(before, bob.counters())["transport.parse_errors"] == 1
    assert not bob.seen
    await still_serves(bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sip_3_0_gets_505(bob: Bob, transport: str) -> None:
    answer = await ask(
        bob,
        transport,
        lambda me: request("OPTIONS", transport=transport.upper(), sent_by=me, version="SIP/3.0"),
    )
    assert (answer.status, answer.cseq.method) == (505, "OPTIONS")
    assert answer.to.tag  # even a stateless answer to a refused request (§8.2.6.2)
    assert not bob.seen
    await still_serves(bob)


@pytest.mark.parametrize("body", [b"", AUDIO_OFFER], ids=["without-sdp", "sdp-without-m-message"])
async def test_invite_without_a_chat_offer_gets_488(bob: Bob, body: bytes) -> None:
    async with udp_peer() as peer:
        extra = (("Content-Type", "application/sdp"),) if body else ()
        invite = request(
            "INVITE", sent_by=peer.address, body=body, extra=extra, contact=True, call_id="no-chat"
        )
        peer.send(invite, bob.udp)
        answer = await peer.response()
        assert (answer.status, answer.call_id) == (488, "no-chat")
        assert answer.to.tag  # a final answer to an INVITE carries a To tag
        peer.send(ack_for(invite, answer), bob.udp)  # the ACK ends the 488's retransmissions
    assert not bob.chat._sessions and not bob.msrp._sessions
    assert bob.sip.stats["in_INVITE"] == 1
    await still_serves(bob)


# -- garbage ---------------------------------------------------------------------------------


NOISE = [
    random.Random(7).randbytes(600),
    random.Random(8).randbytes(64) + b"\r\n\r\n",
    b"\x00" * 200 + b"\r\n\r\n",
    b"hello there\r\n\r\n",
    b"SIP/2.0 200 OK\r\n\r\n",  # a "response" to nothing, without headers
    b"INVITE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
]


async def test_udp_garbage_is_dropped_and_counted(bob: Bob) -> None:
    before = bob.counters()
    async with udp_peer() as peer:
        for noise in NOISE:
            peer.send(noise, bob.udp)
        peer.send(b"\r\n\r\n", bob.udp)  # a keep-alive: counted, not answered
        await peer.silence()
    grown = grew(before, bob.counters())
    assert grown["transport.parse_errors"] == len(NOISE)
    assert grown["transport.keepalives_in"] == 1
    assert not bob.seen
    await still_serves(bob)


@pytest.mark.parametrize("noise", NOISE[1:], ids=lambda n: repr(n[:12]))
async def test_tcp_garbage_closes_the_connection(bob: Bob, noise: bytes) -> None:
    """Noise with an end of head: refused at once (no Content-Length, bad line...)."""
    before = bob.counters()
    async with tcp_peer(bob.tcp) as conn:
        conn.send(noise)
        rest = await conn.closed()
    grown = grew(before, bob.counters())
    if rest:  # a request line and a Via would be answered; none of these has both
        raise AssertionError(f"answered {rest[:200]!r}")
    assert grown["transport.stream_errors"] + grown["transport.parse_errors"] == 1
    assert not bob.seen
    await still_serves(bob)


async def test_tcp_binary_noise_without_end_is_bounded(bob: Bob) -> None:
    """Noise that never ends a head: closed by the idle timeout or the size limit."""
    before = bob.counters()
    async with tcp_peer(bob.tcp) as conn:
        conn.send(NOISE[0].replace(b"\n\n", b"\n-"))
        assert await conn.closed(timeout=IDLE * 4) == b""
        conn2 = await TcpPeer.open(bob.tcp)
        conn2.send(random.Random(9).randbytes(MAX_MESSAGE + 100).replace(b"\n\n", b"\n-"))
        assert await conn2.closed() == b""
        await conn2.close()
    grown = grew(before, bob.counters())
    assert grown["transport.closed_idle"] == 1
    assert grown["transport.stream_errors"] == 1
    await still_serves(bob)


# -- keep-alive --------------------------------------------------------------------------------


async def test_tcp_crlf_ping_gets_a_pong(bob: Bob) -> None:
    before = bob.counters()
    async with tcp_peer(bob.tcp) as conn:
        conn.send(b"\r\n\r\n")
        data = await asyncio.wait_for(conn.reader.read(65536), WAIT)
        assert data == b"\r\n"
        conn.send(request("OPTIONS", transport="TCP", call_id="after-ping"))
        answer = await conn.response()
        assert (answer.status, answer.call_id) == (200, "after-ping")
    assert grew(before, bob.counters())["transport.keepalives_in"] == 1


# -- stalls and connection limits -----------------------------------------------------------


async def test_tcp_half_message_then_stall_is_closed_after_idle_timeout(bob: Bob) -> None:
    before = bob.counters()
    half = request("OPTIONS", transport="TCP")[:40]
    async with tcp_peer(bob.tcp) as conn:
        conn.send(half)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await conn.closed(timeout=IDLE * 4) == b""
        elapsed = loop.time() - started
    assert IDLE * 0.8 <= elapsed < IDLE * 3
    assert grew(before, bob.counters())["transport.closed_idle"] == 1
    assert bob.sip.transport.connection_count == 0
    await still_serves(bob)


async def test_too_many_tcp_connections_from_one_ip_are_refused() -> None:
    bob = await start_bob(config(max_connections_per_ip=3))
    try:
        conns = [await TcpPeer.open(bob.tcp) for _ in range(3)]
        for conn in conns:  # each is served
            conn.send(request("OPTIONS", transport="TCP"))
            assert (await conn.response()).status == 200
        extra = await TcpPeer.open(bob.tcp)  # the kernel accepts; the stack aborts it
        assert await extra.closed() == b""
        await extra.close()
        assert bob.sip.transport.stats["connections_refused"] == 1
        assert bob.sip.transport.connection_count == 3
        await conns.pop().close()
        async with asyncio.timeout(WAIT):
            while bob.sip.transport.connection_count != 2:
                await asyncio.sleep(0.01)
        await still_serves(bob)  # the freed slot serves a fresh connection
        for conn in conns:
            await conn.close()
    finally:
        await stop_bob(bob)


# -- floods of INVITEs that are never ACKed --------------------------------------------------


FLOOD = 2000
BATCH = 100


async def flood(bob: Bob, expect: int) -> dict[str, SipResponse]:
    """FLOOD INVITEs with distinct branches and Call-IDs, none ever ACKed; returns the
    final answer each got.  Sent in batches so that no socket buffer overflows;
    an INVITE whose answer is lost is retransmitted (same branch), as a UAC would."""
    answers: dict[str, SipResponse] = {}
    async with udp_peer() as peer:
        invites = {
            f"flood-{i}": request(
                "INVITE",
                sent_by=peer.address,
                call_id=f"flood-{i}",
                branch=f"z9hG4bKflood{i}",
                contact=True,
                body=MSRP_OFFER % f"s{i}".encode(),
                extra=(("Content-Type", "application/sdp"),),
            )
            for i in range(FLOOD)
        }
        names = list(invites)
        loop = asyncio.get_running_loop()
        for start in range(0, FLOOD, BATCH):
            batch = names[start : start + BATCH]
            for _attempt in range(5):
                for name in batch:
                    if name not in answers:
                        peer.send(invites[name], bob.udp)
                deadline = loop.time() + 1.0
                while any(n not in answers for n in batch) and loop.time() < deadline:
                    with contextlib.suppress(TimeoutError):
                        message = parse_message(await peer.raw(deadline - loop.time()))
                        # (chats of early batches already hang up: their BYEs are ignored)
                        if isinstance(message, SipResponse) and message.status >= 200:
                            answers.setdefault(message.call_id, message)
                if all(n in answers for n in batch):
                    break
            assert all(n in answers for n in batch), f"batch at {start} not answered"
        assert {a.status for a in answers.values()} == {expect}
        return answers


async def drained(bob: Bob, condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_flood_of_unacked_invites_answered_486_leaves_nothing(bob: Bob) -> None:
    def busy(incoming: IncomingRequest) -> None:
        incoming.respond(486)

    bob.sip.on_request = busy
    await flood(bob, 486)
    sip = bob.sip
    assert sip.stats["in_INVITE"] == FLOOD
    assert sip.transactions.stats["overload"] == 0
    # timer G retransmits each 486 until timer H (64*T1) gives up on the ACK
    await drained(bob, lambda: sip.transactions.server_count == 0, TRANSACTION_LIFETIME + 5)
    assert sip.transactions.stats["timeouts"] >= FLOOD
    assert not sip._invites and not sip._retransmits
    assert sip.transactions.next_timeout() is None  # no timer left ...
    assert sip.transactions.timer_count == 0  # ... and no stale heap entry either
    bob.sip.on_request = bob.chat.handle
    await still_serves(bob)


async def test_flood_of_unacked_chat_invites_leaves_nothing(bob: Bob) -> None:
    answers = await flood(bob, 200)
    sip = bob.sip
    assert all(b"m=message" in a.body for a in answers.values())
    assert sip.stats["in_INVITE"] == FLOOD
    # the 2xx are retransmitted until 64*T1, then given up (§13.3.1.4); timer L ends
    # the transactions; each chat waits SETUP_TIMEOUT for its MSRP connection, then
    # hangs up (a BYE to the silent peer: 408 after 64*T1) and frees its session
    await drained(
        bob,
        lambda: (
            sip.transactions.server_count == 0
            and sip.transactions.client_count == 0
            and not sip._retransmits
            and not bob.chat._sessions
            and not bob.msrp._sessions
            and not bob.chat._tasks
        ),
        SETUP_TIMEOUT + 2 * TRANSACTION_LIFETIME + 15,
    )
    assert sip.stats["2xx_without_ack"] == FLOOD
    assert not sip._invites and not sip._pending
    assert bob.chat.incoming.empty()  # none of them ever became a session
    await still_serves(bob)


async def test_chat_connected_but_never_acked_is_hung_up(bob: Bob) -> None:
    alice = await MsrpEndpoint.create(HOST)
    try:
        async with udp_peer() as peer:
            session = alice.new_session()
            offer = build_msrp_offer(local_path=session.path, address=HOST, setup=Setup.ACTIVE)
            invite = request(
                "INVITE",
                sent_by=peer.address,
                contact=True,
                body=offer.encode(),
                extra=(("Content-Type", "application/sdp"),),
                call_id="no-ack",
            )
            peer.send(invite, bob.udp)
            answer = await peer.response()
            assert answer.status == 200
            negotiated = parse_msrp_answer(offer, SessionDescription.parse(answer.body))
            await asyncio.wait_for(
                session.start(list(negotiated.remote.path), active=negotiated.active), WAIT
            )
            accepted = await asyncio.wait_for(bob.chat.accept(), WAIT)  # the chat is up
            # ... but the ACK never comes: after 64*T1 the UAS must hang up with a BYE
            bye = None
            async with asyncio.timeout(TRANSACTION_LIFETIME + 3):
                while bye is None:
                    message = parse_message(await peer.raw())
                    if isinstance(message, SipRequest) and message.method == "BYE":
                        bye = message
            assert bob.sip.stats["2xx_without_ack"] == 1
            assert bye.call_id == "no-ack"
            await drained(bob, lambda: not bob.chat._sessions, WAIT)
            assert accepted.closed.is_set()
    finally:
        await alice.close()
    await still_serves(bob)


async def test_unacked_2xx_over_tcp_is_not_resent_but_given_up(bob: Bob) -> None:
    """On TCP the 2xx is sent once (the transport is reliable), and the missing ACK is
    still noticed after 64*T1 (§13.3.1.4), so that the TU can hang up."""
    async with tcp_peer(bob.tcp) as conn:
        conn.send(
            request(
                "INVITE",
                transport="TCP",
                contact=True,
                body=MSRP_OFFER % b"tcp1",
                extra=(("Content-Type", "application/sdp"),),
                call_id="tcp-no-ack",
            )
        )
        answer = await conn.response()
        assert (answer.status, answer.call_id) == (200, "tcp-no-ack")
        assert await conn.closed(IDLE * 4) == b""  # no second 200 before the idle close
    await drained(bob, lambda: bob.sip.stats["2xx_without_ack"] == 1, WAIT)
    assert not bob.sip._retransmits
    assert bob.sip.transactions.server_count == 0
    # the MSRP connection never came: the chat gives up after SETUP_TIMEOUT
    await drained(bob, lambda: not bob.chat._sessions and not bob.msrp._sessions, WAIT * 2)
    await still_serves(bob)


async def test_cancel_gets_200_and_the_invite_487_with_one_to_tag(bob: Bob) -> None:
    bob.sip.on_request = lambda incoming: None  # an INVITE left ringing, unanswered
    async with udp_peer() as peer:
        invite = request("INVITE", sent_by=peer.address, contact=True, call_id="cancel-me")
        parsed = parse_message(invite)
        assert isinstance(parsed, SipRequest)
        cancel = invite.replace(b"INVITE sip:", b"CANCEL sip:", 1).replace(
            b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL"
        )
        cancel = cancel.replace(b"Contact: ", b"X-Was-Contact: ")
        peer.send(invite, bob.udp)
        await drained(bob, lambda: bob.sip.transactions.server_count == 1, WAIT)
        peer.send(cancel, bob.udp)
        answers = {}
        async with asyncio.timeout(WAIT):
            while len(answers) < 2:
                message = parse_message(await peer.raw())
                assert isinstance(message, SipResponse)
                if message.status >= 200:
                    answers[message.cseq.method] = message
        assert answers["CANCEL"].status == 200
        assert answers["INVITE"].status == 487
        assert answers["INVITE"].to.tag
        assert answers["CANCEL"].to.tag == answers["INVITE"].to.tag  # §9.2
        peer.send(ack_for(invite, answers["INVITE"]), bob.udp)
    assert not bob.sip._invites
    bob.sip.on_request = bob.chat.handle
    await still_serves(bob)
