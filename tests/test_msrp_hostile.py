"""A real MSRP endpoint on 127.0.0.1 against hand-made hostile bytes.

Bob is a passive session on a real :class:`MsrpEndpoint`; his peer path is a fake
Alice URI.  Each test opens a raw TCP connection to Bob's endpoint, writes bytes
made by hand and checks the wire answer (or a clean close), the counter that
records it, and that nothing else was disturbed: the same raw connection goes on
where the error is recoverable, and a real Alice endpoint can still open a session
to the endpoint and get a message delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from pyim.msrp import Frame, FrameParser, ParserLimits, PureFrameParser, frames_from_events
from pyim.msrp.events import Event, FrameEnd
from pyim.msrp.session import SessionConfig
from pyim.msrp.transport import EndpointConfig, MsrpConnectionProtocol, MsrpEndpoint, Session
from pyim.msrp.uri import MsrpUri

HOST = "127.0.0.1"
FAKE_ALICE = MsrpUri(host=HOST, port=9, session_id="fakeAlice0001")
WAIT = 5.0  # bound of every single wait on the network


# -- helpers ------------------------------------------------------------------------


@dataclass
class Bob:
    """A passive session on a real endpoint, waiting for the fake Alice."""

    endpoint: MsrpEndpoint
    session: Session
    started: asyncio.Task[None]

    @property
    def uri(self) -> str:
        return str(self.session.local_uri)


@dataclass
class Raw:
    """A raw TCP client speaking hand-made bytes."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: PureFrameParser = field(default_factory=FrameParser)
    events: list[Event] = field(default_factory=list)
    ends: int = 0
    taken: int = 0

    async def frames(self, n: int, timeout: float = WAIT) -> list[Frame]:
        """The next ``n`` frames the server writes (fails if they do not come in time)."""

        async def collect() -> None:
            while self.ends < self.taken + n:
                data = await self.reader.read(65536)
                assert data, f"connection closed after {self.ends - self.taken} of {n} frames"
                for event in self.parser.feed(data):
                    self.events.append(event)
                    self.ends += isinstance(event, FrameEnd)

        await asyncio.wait_for(collect(), timeout)
        frames = frames_from_events(self.events)[self.taken : self.taken + n]
        self.taken += n
        return frames

    async def closed(self, timeout: float = WAIT) -> bytes:
        """Everything the server writes until it closes (b"" for a silent close)."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)


def send(
    tid: str,
    to: str,
    *,
    mid: str | None = None,
    body: bytes | None = None,
    flag: str = "$",
    byte_range: str | None = None,
    method: str = "SEND",
    sender: str = str(FAKE_ALICE),
    extra: str = "",
) -> bytes:
    """A request written by hand (no Frame.encode: the point is to write anything)."""
    head = f"MSRP {tid} {method}\r\nTo-Path: {to}\r\nFrom-Path: {sender}\r\n"
    head += f"Message-ID: {mid or 'm-' + tid}\r\n"
    if byte_range is None:
        size = len(body or b"")
        byte_range = f"1-{size}/{size}"
    head += f"Byte-Range: {byte_range}\r\n{extra}"
    if body is None:
        return head.encode() + f"-------{tid}{flag}\r\n".encode()
    head += "Content-Type: text/plain\r\n\r\n"
    return head.encode() + body + f"\r\n-------{tid}{flag}\r\n".encode()


def check_response(frame: Frame, tid: str, code: int, comment: str, to: str, frm: str) -> None:
    """An MSRP response exactly as RFC 4975 §7.2 wants it (no body, flag $)."""
    assert (frame.tid, frame.method, frame.code, frame.comment) == (tid, None, code, comment)
    assert frame.headers.items() == [("To-Path", to), ("From-Path", frm)]
    assert (frame.body, frame.flag) == (None, "$")


def ok(frame: Frame, tid: str, bob: Bob) -> None:
    check_response(frame, tid, 200, "OK", str(FAKE_ALICE), bob.uri)


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def server_side(bob: Bob, raw: Raw) -> MsrpConnectionProtocol:
    """The endpoint's protocol object for ``raw``'s connection."""
    host, port = raw.writer.get_extra_info("sockname")[:2]

    def found() -> list[MsrpConnectionProtocol]:
        conns = bob.endpoint._connections
        return [p for p in conns if p.accepted and p.peer == f"{host}:{port}"]

    await until(lambda: len(found()) == 1)
    return found()[0]


@pytest.fixture
async def make_bob() -> AsyncIterator[Callable[..., Awaitable[Bob]]]:
    """Factory of passive Bobs; every endpoint and task is cleaned up afterwards."""
    endpoints: list[MsrpEndpoint] = []
    tasks: list[asyncio.Task[None]] = []

    async def factory(
        config: EndpointConfig | None = None, session: SessionConfig | None = None
    ) -> Bob:
        endpoint = await MsrpEndpoint.create(HOST, config=config)
        endpoints.append(endpoint)
        bob = endpoint.new_session(session)
        started = asyncio.create_task(bob.start([FAKE_ALICE], active=False, timeout=60))
        tasks.append(started)
        await asyncio.sleep(0)  # bob.start has set the peer path
        return Bob(endpoint, bob, started)

    yield factory
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await task
    for endpoint in endpoints:
        await asyncio.wait_for(endpoint.close(), 15)


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[Raw]]]:
    raws: list[Raw] = []

    async def factory(bob: Bob, *, rcvbuf: int | None = None) -> Raw:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, (HOST, bob.endpoint.port)), WAIT
        )
        reader, writer = await asyncio.open_connection(sock=sock)
        raw = Raw(reader, writer)
        raws.append(raw)
        return raw

    yield factory
    for raw in raws:
        raw.writer.close()


async def bind(raw: Raw, bob: Bob) -> None:
    """A valid empty SEND that binds Bob's session to ``raw``'s connection."""
    raw.write(send("bind0001", bob.uri))
    ok((await raw.frames(1))[0], "bind0001", bob)
    await asyncio.wait_for(bob.started, WAIT)


async def assert_endpoint_healthy(bob: Bob) -> None:
    """A real Alice endpoint opens a new session to Bob's endpoint and gets a message through."""
    alice_ep = await MsrpEndpoint.create(HOST)
    try:
        alice, bob2 = alice_ep.new_session(), bob.endpoint.new_session()
        await asyncio.wait_for(
            asyncio.gather(
                alice.start(bob2.path, active=True, timeout=WAIT),
                bob2.start(alice.path, active=False, timeout=WAIT),
            ),
            WAIT,
        )
        result = await asyncio.wait_for(
            alice.send("text/plain", b"still fine", success_report=True), WAIT
        )
        assert result.status == "delivered"
        assert (await asyncio.wait_for(bob2.receive(), WAIT)).body == b"still fine"
        await bob2.close()
    finally:
        await asyncio.wait_for(alice_ep.close(), 15)


async def assert_raw_connection_goes_on(raw: Raw, bob: Bob, tid: str, body: bytes) -> None:
    """A valid SEND after the bad frame gets 200 and its message reaches Bob."""
    raw.write(send(tid, bob.uri, body=body))
    ok((await raw.frames(1))[0], tid, bob)
    assert (await asyncio.wait_for(bob.session.receive(), WAIT)).body == body


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Bad input is answered or counted, never a logged error or traceback."""
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


MakeBob = Callable[..., Awaitable[Bob]]
Connect = Callable[..., Awaitable[Raw]]


# -- framing --------------------------------------------------------------------------


async def test_missing_end_line_then_peer_closes(make_bob: MakeBob, connect: Connect) -> None:
    bob = await make_bob()
    raw = await connect(bob)
    await bind(raw, bob)
    await assert_raw_connection_goes_on(raw, bob, "full0001", b"first, complete")
    protocol = await server_side(bob, raw)
    truncated = send("trnc0001", bob.uri, body=b"second, never ends " * 20)
    raw.write(truncated[: truncated.index(b"\r\n-------trnc0001")])
    await until(lambda: bob.session.engine.incoming_progress("m-trnc0001") is not None)
    await raw.close()
    await asyncio.wait_for(protocol.closed.wait(), WAIT)
    with pytest.raises(ConnectionError):  # the session ended; the truncated message never came
        await asyncio.wait_for(bob.session.receive(), WAIT)
    assert bob.session.engine.stats["messages_in"] == 1
    assert protocol.conn.stats["truncated_frames"] == 1
    assert bob.endpoint.stats["closed_bad_input"] == 0
    await assert_endpoint_healthy(bob)


async def test_look_alike_end_lines_inside_the_body(make_bob: MakeBob, connect: Connect) -> None:
    bob = await make_bob()
    raw = await connect(bob)
    await bind(raw, bob)
    body = (
        b"before\r\n-------othertid$\r\n"  # another transaction's end-line
        b"\r\n-------look0001X\r\n"  # our tid, no valid flag
        b"\r\n-------look0001$ \r\n"  # our tid and flag, not followed by CRLF
        b"\r\n-------look00012$\r\n"  # our tid as the prefix of a longer one
        b"after"
    )
    raw.write(send("look0001", bob.uri, body=body))
    ok((await raw.frames(1))[0], "look0001", bob)
    message = await asyncio.wait_for(bob.session.receive(), WAIT)
    assert message.body == body
    assert (await server_side(bob, raw)).conn.stats["parse_errors"] == 0
    await assert_raw_connection_goes_on(raw, bob, "next0001", b"next")
    await assert_endpoint_healthy(bob)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"MSRP lf000001 SEND\nTo-Path: x\r\n", id="start-line"),
        pytest.param(b"MSRP lf000002 SEND\r\nTo-Path: {bob}\n", id="header-line"),
    ],
)
async def test_bare_lf_closes(make_bob: MakeBob, connect: Connect, data: bytes) -> None:
    bob = await make_bob()
    raw = await connect(bob)
    protocol = await server_side(bob, raw)
    raw.write(data.replace(b"{bob}", bob.uri.encode()))
    assert await raw.closed() == b""
    assert protocol.conn.error is not None and protocol.conn.error.reason == "bare LF"
    assert bob.endpoint.stats["closed_bad_input"] == 1
    assert not bob.started.done()  # the bad connection did not take Bob's session
    await assert_endpoint_healthy(bob)


async def test_oversized_header_block_closes(make_bob: MakeBob, connect: Connect) -> None:
    config = EndpointConfig(parser_limits=ParserLimits(max_header_bytes=1024))
    bob = await make_bob(config)
    raw = await connect(bob)
    protocol = await server_side(bob, raw)
    padding = "".join(f"X-Pad-{i:02d}: {'p' * 64}\r\n" for i in range(20))
    raw.write(send("hdrs0001", bob.uri, body=b"x", extra=padding))
    assert await raw.closed() == b""
    assert protocol.conn.error is not None
    assert protocol.conn.error.reason == "header block too large"
    assert bob.endpoint.stats["closed_bad_input"] == 1
    assert not bob.started.done()
    await assert_endpoint_healthy(bob)


async def test_oversized_chunk_in_one_read_gets_413_and_connection_goes_on(
    make_bob: MakeBob, connect: Connect
) -> None:
    bob = await make_bob(EndpointConfig(parser_limits=ParserLimits(max_chunk_size=1024)))
    raw = await connect(bob)
    await bind(raw, bob)
    protocol = await server_side(bob, raw)
    raw.write(send("big00001", bob.uri, body=b"b" * 1500))
    (answer,) = await raw.frames(1)
    check_response(answer, "big00001", 413, "Message Too Large", str(FAKE_ALICE), bob.uri)
    assert protocol.conn.error is None, protocol.conn.error
    assert protocol.conn.stats["parse_errors"] == 1
    await assert_raw_connection_goes_on(raw, bob, "ok000001", b"small")
    await assert_endpoint_healthy(bob)


async def test_oversized_chunk_gets_413_and_connection_goes_on(
    make_bob: MakeBob, connect: Connect
) -> None:
    """The chunk crosses the limit in a later read (its first 1000 bytes were taken)."""
    bob = await make_bob(EndpointConfig(parser_limits=ParserLimits(max_chunk_size=1024)))
    raw = await connect(bob)
    await bind(raw, bob)
    data = send("big00002", bob.uri, body=b"b" * 1100)
    cut = data.index(b"\r\n\r\n") + 4 + 1000
    raw.write(data[:cut])
    await until(lambda: bob.session.engine.incoming_progress("m-big00002") == 1000)
    raw.write(data[cut:])
    (answer,) = await raw.frames(1)
    check_response(answer, "big00002", 413, "Message Too Large", str(FAKE_ALICE), bob.uri)
    protocol = await server_side(bob, raw)
    assert protocol.conn.stats["parse_errors"] == 1
    assert bob.session.engine.stats["errors_sent"] == 1
    await assert_raw_connection_goes_on(raw, bob, "ok000002", b"small")
    assert not protocol.closed.is_set()
    await assert_endpoint_healthy(bob)


# -- requests the endpoint refuses --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "code", "comment"),
    [
        pytest.param(
            {"byte_range": "1-x/5", "body": b"hello"}, 400, "Bad Request", id="byte-range"
        ),
        pytest.param({"method": "NICKNAME"}, 501, "Not Implemented", id="unknown-method"),
    ],
)
async def test_refused_request_then_connection_goes_on(
    make_bob: MakeBob,
    connect: Connect,
    kwargs: dict[str, object],
    code: int,
    comment: str,
) -> None:
    bob = await make_bob()
    raw = await connect(bob)
    await bind(raw, bob)
    raw.write(send("bad00001", bob.uri, **kwargs))  # type: ignore[arg-type]
    check_response((await raw.frames(1))[0], "bad00001", code, comment, str(FAKE_ALICE), bob.uri)
    assert bob.session.engine.stats["errors_sent"] == 1
    await assert_raw_connection_goes_on(raw, bob, "good0001", b"after the bad one")
    assert bob.session.engine.stats["messages_in"] == 1
    await assert_endpoint_healthy(bob)


async def test_unknown_session_gets_481(make_bob: MakeBob, connect: Connect) -> None:
    bob = await make_bob()
    raw = await connect(bob)
    stranger = str(MsrpUri(host=HOST, port=bob.endpoint.port, session_id="noSuchSession1"))
    raw.write(send("who00001", stranger, body=b"anyone?"))
    (answer,) = await raw.frames(1)
    check_response(answer, "who00001", 481, "Session Does Not Exist", str(FAKE_ALICE), stranger)
    protocol = await server_side(bob, raw)
    assert protocol.conn.stats["rejected_481"] == 1
    assert not bob.started.done()
    # the same connection can still bind Bob's session and talk
    await bind(raw, bob)
    await assert_raw_connection_goes_on(raw, bob, "good0002", b"found you")
    await assert_endpoint_healthy(bob)


async def test_http_request_closes(make_bob: MakeBob, connect: Connect) -> None:
    bob = await make_bob()
    raw = await connect(bob)
    protocol = await server_side(bob, raw)
    raw.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert await raw.closed() == b""
    assert protocol.conn.error is not None and protocol.conn.error.reason == "bad start line"
    assert bob.endpoint.stats["closed_bad_input"] == 1
    assert not bob.started.done()
    await assert_endpoint_healthy(bob)


# -- slow and stuck peers ---------------------------------------------------------------


async def test_slowloris_closed_after_bind_timeout(make_bob: MakeBob, connect: Connect) -> None:
    bob = await make_bob(EndpointConfig(bind_timeout=1.0))
    raw = await connect(bob)
    loop = asyncio.get_running_loop()
    start = loop.time()
    data = send("slow0001", bob.uri, body=b"x" * 100)

    async def trickle() -> None:
        for byte in data:
            if raw.reader.at_eof() or raw.writer.is_closing():
                return
            raw.write(bytes([byte]))
            await asyncio.sleep(0.2)

    writer = asyncio.create_task(trickle())
    try:
        assert await raw.closed(timeout=5) == b""
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await writer
    elapsed = loop.time() - start
    assert 0.9 <= elapsed < 5, elapsed
    assert bob.endpoint.stats["closed_timeout"] == 1
    assert bob.endpoint.stats["closed_bad_input"] == 0
    assert not bob.started.done()
    await assert_endpoint_healthy(bob)


async def test_bound_connection_stalled_inside_a_frame_is_closed(
    make_bob: MakeBob, connect: Connect
) -> None:
    bob = await make_bob(EndpointConfig(frame_timeout=1.0))
    raw = await connect(bob)
    raw.write(send("bind0001", bob.uri, body=b"hello"))
    ok((await raw.frames(1))[0], "bind0001", bob)
    loop = asyncio.get_running_loop()
    start = loop.time()
    data = send("slow0002", bob.uri, body=b"x" * 100)
    raw.write(data[:40])  # half a frame, then one byte a second: never enough
    for byte in data[40:43]:
        await asyncio.sleep(0.3)
        raw.write(bytes([byte]))
    assert await raw.closed(timeout=5) == b""
    assert 1.0 <= loop.time() - start < 5
    assert bob.endpoint.stats["closed_timeout"] == 1
    await assert_endpoint_healthy(bob)


async def test_peer_that_never_reads(
    make_bob: MakeBob, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    high, chunk = 64 * 1024, 16 * 1024
    bob = await make_bob(
        EndpointConfig(write_high_water=high),
        # the transport's backpressure, not the session's window, is what must hold
        SessionConfig(chunk_size=chunk, max_pending_chunks=1_000_000),
    )
    raw = await connect(bob, rcvbuf=16 * 1024)
    await bind(raw, bob)
    protocol = await server_side(bob, raw)
    transport = protocol.transport
    assert transport is not None
    peak = 0
    write = transport.write

    def measured_write(data: bytes | bytearray | memoryview) -> None:
        nonlocal peak
        write(data)
        peak = max(peak, transport.get_write_buffer_size())

    monkeypatch.setattr(transport, "write", measured_write)
    result = bob.session.send_nowait("application/octet-stream", b"z" * (64 * 1024 * 1024))
    bound = high + chunk + 1024  # the high-water mark plus one frame (body and headers)
    await until(lambda: protocol._write_paused and protocol._read_paused)
    loop = asyncio.get_running_loop()
    window_end = loop.time() + 1.0
    while loop.time() < window_end:  # observe: it stays paused and bounded
        assert protocol._read_paused
        assert transport.get_write_buffer_size() <= bound
        await asyncio.sleep(0.01)
    assert 0 < peak <= bound, (peak, bound)
    assert not result.done()
    # the peer goes away: the pending send fails, it does not hang
    raw.writer.transport.abort()
    outcome = await asyncio.wait_for(result, WAIT)
    assert (outcome.status, outcome.code) == ("failed", 0)
    await asyncio.wait_for(protocol.closed.wait(), WAIT)
    await assert_endpoint_healthy(bob)


async def test_flood_of_small_sends(make_bob: MakeBob, connect: Connect) -> None:
    bob = await make_bob()
    raw = await connect(bob)
    await bind(raw, bob)
    count = 2000
    tids = [f"fl{i:06d}" for i in range(count)]
    raw.write(b"".join(send(tid, bob.uri, body=f"msg {i}".encode()) for i, tid in enumerate(tids)))

    async def drain() -> list[bytes]:
        return [(await bob.session.receive()).body for _ in range(count)]

    bodies = asyncio.create_task(asyncio.wait_for(drain(), 30))
    frames = await raw.frames(count, timeout=30)
    assert [f.tid for f in frames] == tids
    assert {(f.code, f.comment) for f in frames} == {(200, "OK")}
    for frame in frames[:3] + frames[-3:]:
        ok(frame, frame.tid or "", bob)
    assert await bodies == [f"msg {i}".encode() for i in range(count)]
    assert (await server_side(bob, raw)).conn.stats["frames_in"] == count + 1
    await assert_endpoint_healthy(bob)
