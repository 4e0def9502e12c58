"""asyncio transports of the SIP engine: UDP, TCP and TLS (RFC 3261 §18).

Thin on purpose: bytes go in and out, whole messages come up.  A datagram is one
message; a stream is cut into messages by Content-Length
(:class:`~pyim.sip.parser.StreamFramer`), answers RFC 5626 CRLF keep-alive pings
with a pong, and is closed on input it cannot frame (after a 400/413 when the head
it refused is an answerable request).  Everything above (which
message is a retransmission, where a response goes) is the sans-IO core's work.

Connections are found again by the peer's address, so responses and further
requests to a peer that connected to us reuse its connection (RFC 3261 §18.2.2,
RFC 5923 in spirit); a request to a peer without one opens a new connection.
Nothing is sent over a transport we do not listen on (our Via could not name it):
that is a send failure ("no TLS transport").

A TLS handshake must finish within ``tls_handshake_timeout`` (asyncio's own default
is 60 s).  asyncio runs it before ``connection_made``, so a connection counts against
the connection limits only once its handshake is over; those that fail or time out
are counted (``tls_handshake_failures``) when their time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from ..tlswatch import HandshakeWatch
from .message import SipRequest, SipResponse
from .parser import KeepAlive, SipLimits, SipParseError, StreamFramer, parse_message
from .transaction_client import Destination as Peer

log = logging.getLogger(__name__)

SipMessage = SipRequest | SipResponse


@dataclass(slots=True)
class TransportConfig:
    """Limits of the transport layer (safe defaults, all configurable)."""

    limits: SipLimits = field(default_factory=SipLimits)
    max_connections: int = 4096
    max_connections_per_ip: int = 256
    idle_timeout: float = 600.0  # a stream connection with no traffic this long closes
    connect_timeout: float = 10.0
    tls_handshake_timeout: float = 10.0  # a TLS handshake (either side) not done by then: closed
    write_high_water: int = 1024 * 1024  # a peer that does not read is dropped past this
    # SO_RCVBUF of the UDP socket (the kernel caps it at net.core.rmem_max): datagrams
    # that arrive while the event loop is busy (a GC pass, a burst) wait there instead
    # of being dropped, which the peer would only notice 500 ms later (T1).  The Linux
    # default (208 KiB) held about 1/50 s of a 2,000 calls/s load.  None: the default.
    udp_receive_buffer: int | None = 4 * 1024 * 1024


MessageHandler = Callable[[SipMessage, Peer], None]
ErrorHandler = Callable[[SipParseError, Peer], None]
FailureHandler = Callable[[Peer, str], None]


class _Datagram(asyncio.DatagramProtocol):
    _MAX_PEERS = 4096  # the Peer of each recent source address is made once

    def __init__(self, layer: SipTransportLayer) -> None:
        self.layer = layer
        self.transport: asyncio.DatagramTransport | None = None
        self._peers: dict[tuple[str, int], Peer] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        size = self.layer.config.udp_receive_buffer
        sock = transport.get_extra_info("socket")
        if size is not None and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            except OSError as exc:
                log.info("SIP UDP: SO_RCVBUF %d refused: %s", size, exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # one Peer per source address, shared by its messages and their transactions
        peer = self._peers.get(addr)
        if peer is None:
            if len(self._peers) >= self._MAX_PEERS:
                self._peers.clear()
            peer = self._peers[addr] = Peer("udp", addr[0], addr[1])
        if not data.strip(b"\r\n"):
            self.layer.stats["keepalives_in"] += 1  # RFC 5626 CRLF keep-alive over UDP
            return
        self.layer._incoming(data, peer)

    def error_received(self, exc: Exception) -> None:
        self.layer.stats["udp_errors"] += 1
        log.debug("SIP UDP error: %s", exc)


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection."""

    _ids = itertools.count(1)

    def __init__(self, layer: SipTransportLayer, transport_name: str) -> None:
        self.layer = layer
        self.name = transport_name
        self.conn_id = next(self._ids)
        self.framer = StreamFramer(layer.config.limits)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        self.closed = asyncio.Event()
        self.handshake: asyncio.TimerHandle | None = None  # accepted TLS: its deadline

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: uvloop's TCPTransport is no asyncio.Transport
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if self.handshake is not None:  # (TLS: the handshake is over)
            self.layer._handshakes.done(self)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(self.name, host, port, self.conn_id)
        transport.set_write_buffer_limits(high=self.layer.config.write_high_water)
        if not self.layer._register(self):
            transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        assert self.peer is not None
        try:
            items = self.framer.feed(data)
        except SipParseError as exc:
            self.layer.stats["stream_errors"] += 1
            log.info("SIP %s connection from %s closed: %s", self.name, self.peer, exc.reason)
            if self.layer.on_parse_error is not None:
                # an answerable head (request line + Via) gets its 400/413 before the close
                self.layer.on_parse_error(exc, self.peer)
            self.close()
            return
        for item in items:
            if isinstance(item, KeepAlive):
                self.layer.stats["keepalives_in"] += 1
                if item.kind == "ping":
                    self.write(b"\r\n")
                continue
            self.layer._incoming(item, self.peer)

    def eof_received(self) -> bool | None:
        return False  # a half-closed peer gets a full close

    def pause_writing(self) -> None:
        # the peer does not read what we send: drop it rather than buffer without bound
        self.layer.stats["closed_slow_reader"] += 1
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.layer._unregister(self)
        self.closed.set()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.last_activity = self.loop.time()
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SipTransportLayer:
    """Listeners and connections for UDP, TCP and TLS.

    ``on_message(message, peer)`` gets every well-framed message;
    ``on_parse_error(error, peer)`` gets datagrams and stream messages that do not
    parse, and stream heads that cannot be framed just before their connection closes
    (the core decides whether ``error.partial`` can be answered with 400/413);
    ``on_failure(peer, reason)`` tells that a message could not be sent.
    """

    def __init__(
        self,
        on_message: MessageHandler,
        on_parse_error: ErrorHandler | None = None,
        on_failure: FailureHandler | None = None,
        config: TransportConfig | None = None,
        *,
        ssl_client: ssl.SSLContext | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_parse_error = on_parse_error
        self.on_failure = on_failure
        self.config = config or TransportConfig()
        self.ssl_client = ssl_client
        self.stats: Counter[str] = Counter()
        self.local: dict[str, tuple[str, int]] = {}
        self._udp: _Datagram | None = None
        self._servers: list[asyncio.Server] = []
        self._streams: dict[int, _Stream] = {}
        self._by_address: dict[tuple[str, str, int], _Stream] = {}
        self._pending: dict[tuple[str, str, int], asyncio.Task[_Stream | None]] = {}
        self._per_ip: Counter[str] = Counter()
        self._handshakes = HandshakeWatch(self.config.tls_handshake_timeout, self.stats, "SIP tls")
        self._idle_task: asyncio.Task[None] | None = None

    # -- listeners -------------------------------------------------------------------

    async def listen_udp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Datagram(self), local_addr=(host, port)
        )
        self._udp = protocol
        self.local["udp"] = transport.get_extra_info("sockname")[:2]
        return self.local["udp"]

    async def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        return await self._listen("tcp", host, port, None)

    async def listen_tls(
        self, ssl_server: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0
    ) -> tuple[str, int]:
        return await self._listen("tls", host, port, ssl_server)

    async def _listen(
        self, name: str, host: str, port: int, ctx: ssl.SSLContext | None
    ) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        if ctx is None:
            server = await loop.create_server(lambda: _Stream(self, name), host, port)
        else:
            server = await loop.create_server(
                lambda: self._accept_tls(name),
                host,
                port,
                ssl=ctx,
                ssl_handshake_timeout=self.config.tls_handshake_timeout,
            )
        self._servers.append(server)
        self.local[name] = server.sockets[0].getsockname()[:2]
        if self._idle_task is None:
            self._idle_task = asyncio.create_task(self._reap_idle())
        return self.local[name]

    def _accept_tls(self, name: str) -> _Stream:
        """The protocol of an accepted TLS connection, watched until its handshake is
        over (asyncio tells nothing of a handshake that fails or times out)."""
        return self._handshakes.watch(_Stream(self, name))

    @property
    def handshakes_pending(self) -> int:
        """Accepted TLS connections whose handshake is not over (nor known failed)."""
        return len(self._handshakes)

    # -- input -----------------------------------------------------------------------

    def _incoming(self, data: bytes, peer: Peer) -> None:
        self.stats["messages_in"] += 1
        try:
            message = parse_message(data, self.config.limits)
        except SipParseError as exc:
            self.stats["parse_errors"] += 1
            log.info("bad SIP message from %s: %s", peer, exc.reason)
            if self.on_parse_error is not None:
                self.on_parse_error(exc, peer)
            return
        self.on_message(message, peer)

    # -- output ----------------------------------------------------------------------

    def send(self, data: bytes, peer: Peer) -> None:
        """Send one message; failures come back through ``on_failure``."""
        self.stats["messages_out"] += 1
        if peer.transport not in self.local:
            self._fail(peer, f"no {peer.transport.upper()} transport")
            return
        if peer.transport == "udp":
            if self._udp is None or self._udp.transport is None:
                self._fail(peer, "no UDP listener")
                return
            self._udp.transport.sendto(data, (peer.host, peer.port))
            return
        stream = self._streams.get(peer.conn_id or 0) or self._by_address.get(peer.address)
        if stream is not None and not stream.closed.is_set():
            stream.write(data)
            return
        # no connection (or the one a response was pinned to is gone, §18.2.2): open one
        task = self._pending.get(peer.address)
        if task is None:
            task = asyncio.create_task(self._connect(peer))
            self._pending[peer.address] = task
        task.add_done_callback(lambda t: self._after_connect(t, data, peer))

    async def _connect(self, peer: Peer) -> _Stream | None:
        loop = asyncio.get_running_loop()

        def factory() -> _Stream:
            return _Stream(self, peer.transport)

        if peer.transport == "tls":
            connect = loop.create_connection(
                factory,
                peer.host,
                peer.port,
                ssl=self.ssl_client or ssl.create_default_context(),
                server_hostname=peer.host,
                ssl_handshake_timeout=self.config.tls_handshake_timeout,
            )
        else:
            connect = loop.create_connection(factory, peer.host, peer.port)
        try:
            _, stream = await asyncio.wait_for(connect, self.config.connect_timeout)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.info("SIP %s connection to %s failed: %s", peer.transport, peer.address, exc)
            return None
        finally:
            self._pending.pop(peer.address, None)
        return stream

    def _after_connect(self, task: asyncio.Task[_Stream | None], data: bytes, peer: Peer) -> None:
        stream = None if task.cancelled() else task.result()
        if stream is None or stream.closed.is_set():
            self._fail(peer, "connection failed")
            return
        stream.write(data)

    def _fail(self, peer: Peer, reason: str) -> None:
        self.stats["send_failures"] += 1
        if self.on_failure is not None:
            self.on_failure(peer, reason)

    # -- connection table --------------------------------------------------------------

    def _register(self, stream: _Stream) -> bool:
        assert stream.peer is not None
        ip = stream.peer.host
        if (
            len(self._streams) >= self.config.max_connections
            or self._per_ip[ip] >= self.config.max_connections_per_ip
        ):
            self.stats["connections_refused"] += 1
            log.warning("SIP: connection limit reached, refusing %s", stream.peer)
            return False
        self._streams[stream.conn_id] = stream
        self._by_address[stream.peer.address] = stream
        self._per_ip[ip] += 1
        return True

    def _unregister(self, stream: _Stream) -> None:
        if self._streams.pop(stream.conn_id, None) is None or stream.peer is None:
            return
        if self._by_address.get(stream.peer.address) is stream:
            del self._by_address[stream.peer.address]
        self._per_ip[stream.peer.host] -= 1
        if self._per_ip[stream.peer.host] <= 0:
            del self._per_ip[stream.peer.host]

    async def _reap_idle(self) -> None:
        interval = max(0.05, min(30.0, self.config.idle_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            limit = loop.time() - self.config.idle_timeout
            for stream in list(self._streams.values()):
                if stream.last_activity < limit:
                    self.stats["closed_idle"] += 1
                    stream.close()

    @property
    def connection_count(self) -> int:
        return len(self._streams)

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        for task in list(self._pending.values()):
            task.cancel()
        self._handshakes.close()
        for server in self._servers:
            server.close()
        for stream in list(self._streams.values()):
            stream.close()
        for stream in list(self._streams.values()):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stream.closed.wait(), 5)
        for server in self._servers:
            await server.wait_closed()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
