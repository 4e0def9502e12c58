"""asyncio adapter of the MSRP stack: listeners, connections and sessions over TCP/TLS.

The protocol work is done by the sans-IO :class:`~pyim.msrp.connection.MsrpConnection`
and :class:`~pyim.msrp.session.MsrpSession`; this module only moves bytes, runs
timers and turns session events into awaitables::

    endpoint = await MsrpEndpoint.create("127.0.0.1")
    session = endpoint.new_session()          # session.path goes into a=path
    await session.start(remote_path, active=True)
    result = await session.send("text/plain", b"hi", success_report=True)
    async for message in session: ...
    await session.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..digest import DigestClient
from ..tlswatch import HandshakeWatch
from .auth import AuthClient, RelayAuthError, RelayGrant
from .connection import MsrpConnection, WrongConnection
from .frame import Frame, new_tid
from .parser import ParserLimits
from .sdp import MsrpMediaAttributes, Setup, active_side, default_setup
from .session import MsrpSession, SessionConfig
from .session_events import (
    MessageAborted,
    MessageDelivered,
    MessageFailed,
    MessageReceived,
    MessageSent,
    SessionEvent,
    StreamData,
    StreamEnded,
    StreamStarted,
)
from .uri import MsrpUri

StreamEvent = StreamStarted | StreamData | StreamEnded | MessageAborted

log = logging.getLogger(__name__)

#: Small frames ready at once are written together, up to this many bytes.
WRITE_BATCH = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How an outgoing message ended.

    ``status`` is ``"delivered"`` (Success-Report received), ``"sent"`` (accepted
    hop by hop, no report asked for) or ``"failed"`` (``code``/``reason`` say why).
    """

    message_id: str
    status: str
    code: int = 200
    reason: str = "OK"

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(slots=True)
class EndpointConfig:
    """Limits of an endpoint's connections (all configurable, safe defaults)."""

    parser_limits: ParserLimits = field(default_factory=ParserLimits)
    session: SessionConfig = field(default_factory=SessionConfig)
    bind_timeout: float = 30.0  # an accepted connection must address a session by then
    frame_timeout: float = 60.0  # a frame begun but silent this long closes the connection
    write_high_water: int = 256 * 1024
    max_connections: int = 1024
    incoming_queue: int = 256  # messages held for a slow reader before reading pauses
    # a TLS handshake (either side) not done by then: closed (asyncio's default is 60 s)
    tls_handshake_timeout: float = 10.0


class MsrpConnectionProtocol(asyncio.Protocol):
    """Moves bytes between an asyncio transport and an :class:`MsrpConnection`."""

    def __init__(self, endpoint: MsrpEndpoint, *, accepted: bool) -> None:
        self.endpoint = endpoint
        self.loop = asyncio.get_running_loop()
        self.conn = MsrpConnection(
            limits=endpoint.config.parser_limits,
            lookup=endpoint._lookup if accepted else None,
        )
        self.transport: asyncio.Transport | None = None
        self.accepted = accepted
        self.closed = asyncio.Event()
        self._write_paused = False
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._guard: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._last_input = 0.0
        self._pump_scheduled = False
        self.peer: str = "?"
        self.keep_open = False  # a connection to one's relay outlives its sessions
        self.handshake: asyncio.TimerHandle | None = None  # accepted TLS: its deadline

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.handshake is not None:  # (TLS: the handshake is over)
            self.endpoint._handshakes.done(self)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        high = self.endpoint.config.write_high_water
        transport.set_write_buffer_limits(high=high, low=high // 4)
        self.endpoint._connections.add(self)
        if len(self.endpoint._connections) > self.endpoint.config.max_connections:
            self.endpoint.stats["connections_refused"] += 1
            log.warning("MSRP: too many connections, closing %s", self.peer)
            transport.close()
            return
        if self.accepted:
            self._arm_guard(self.endpoint.config.bind_timeout, "no session bound in time")

    def data_received(self, data: bytes) -> None:
        self._last_input = now = self.loop.time()
        self.conn.receive_data(data, now)
        if self._stall is None and self.conn.in_frame:
            self._stall = self.loop.call_later(self.endpoint.config.frame_timeout, self._stalled)
        self._after_input()
        if self.conn.error is not None:
            self.endpoint.stats["closed_bad_input"] += 1
            self._close()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._connections.discard(self)
        for handle in (self._timer, self._guard, self._stall):
            if handle is not None:
                handle.cancel()
        self.conn.connection_lost("connection lost" if exc is None else str(exc))
        for session in list(self.conn.sessions.values()):
            facade = self.endpoint._sessions.get(session.session_id)
            if facade is not None and facade._protocol is self:
                facade._protocol = None
            self.endpoint._deliver(session, self)
        self.closed.set()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()  # backpressure: a peer that does not read is not read from

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume_reading()
        self.pump()

    # -- helpers ---------------------------------------------------------------------

    def _after_input(self) -> None:
        if self.conn.sessions and self._guard is not None and self.accepted:
            self._guard.cancel()
            self._guard = None
        for session in list(self.conn.sessions.values()):
            self.endpoint._deliver(session, self)
        self.pump()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._read_paused or self.transport is None or self._write_paused:
            return
        limit = self.endpoint.config.incoming_queue
        if all(f._waiting() < limit for f in self.endpoint._facades(self.conn)):
            self._read_paused = False
            self.transport.resume_reading()

    def pump(self) -> None:
        """Write frames until the transport's buffer is full or nothing is left."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        now = self.loop.time()
        # small frames (200s, REPORTs, short SENDs) go out together: one send() for all
        # that is ready, up to WRITE_BATCH bytes; a large piece goes as it is (no copy)
        parts: list[bytes] = []
        size = 0
        while not self._write_paused:
            data = self.conn.data_to_send(now)
            if data is None:
                break
            if len(data) >= WRITE_BATCH // 4:
                if parts:
                    transport.write(b"".join(parts))
                    parts, size = [], 0
                transport.write(data)
                continue
            parts.append(data)
            size += len(data)
            if size >= WRITE_BATCH:
                transport.write(b"".join(parts))
                parts, size = [], 0
        if parts:
            transport.write(parts[0] if len(parts) == 1 else b"".join(parts))
        for session in list(self.conn.sessions.values()):
            self.endpoint._deliver(session, self)
        self._arm_timer()

    def schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self.pump()

    def _arm_timer(self) -> None:
        when = self.conn.next_timeout()
        if self._timer is not None:
            if when is not None and self._timer.when() == when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.conn.handle_timeout(self.loop.time())
        self._after_input()

    def _stalled(self) -> None:
        """Close a connection whose peer stopped in the middle of a frame (slowloris)."""
        self._stall = None
        if not self.conn.in_frame:
            return
        silent = self.loop.time() - self._last_input
        limit = self.endpoint.config.frame_timeout
        if silent < limit:
            self._stall = self.loop.call_later(limit - silent, self._stalled)
            return
        self.endpoint.stats["closed_timeout"] += 1
        log.info("MSRP connection %s closed: frame stalled for %.0f s", self.peer, silent)
        self._close()

    def _arm_guard(self, delay: float, reason: str) -> None:
        def expire() -> None:
            self.endpoint.stats["closed_timeout"] += 1
            log.info("MSRP connection %s closed: %s", self.peer, reason)
            self._close()

        self._guard = self.loop.call_later(delay, expire)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.pump()
            self.transport.close()


class MsrpEndpoint:
    """A local MSRP endpoint: one listener, its sessions and their connections."""

    def __init__(
        self,
        host: str,
        config: EndpointConfig,
        ssl_server: ssl.SSLContext | None,
        ssl_client: ssl.SSLContext | None,
    ) -> None:
        self.host = host
        self.port = 0
        self.config = config
        self.ssl_server = ssl_server
        self.ssl_client = ssl_client
        self.scheme = "msrps" if ssl_server is not None else "msrp"
        self._server: asyncio.Server | None = None
        self._sessions: dict[str, Session] = {}
        self._connections: set[MsrpConnectionProtocol] = set()
        self._outbound: dict[tuple[str, int, bool], MsrpConnectionProtocol] = {}
        self._relays: dict[tuple[MsrpUri, ...], MsrpConnectionProtocol] = {}
        self.stats: Counter[str] = Counter()
        self._handshakes = HandshakeWatch(config.tls_handshake_timeout, self.stats, "MSRP")

    @classmethod
    async def create(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        config: EndpointConfig | None = None,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
    ) -> MsrpEndpoint:
        """Start listening on ``host:port`` (TLS, scheme ``msrps``, when ``ssl_server``).

        A TLS handshake must be over within ``config.tls_handshake_timeout``; asyncio
        runs it before ``connection_made``, so a connection counts against
        ``max_connections`` only after it, and those that fail or time out are counted
        (``tls_handshake_failures``) when their time is up."""
        self = cls(host, config or EndpointConfig(), ssl_server, ssl_client)
        loop = asyncio.get_running_loop()
        if ssl_server is None:
            self._server = await loop.create_server(
                lambda: MsrpConnectionProtocol(self, accepted=True), host, port
            )
        else:
            self._server = await loop.create_server(
                self._accept_tls,
                host,
                port,
                ssl=ssl_server,
                ssl_handshake_timeout=self.config.tls_handshake_timeout,
            )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _accept_tls(self) -> MsrpConnectionProtocol:
        """The protocol of an accepted TLS connection, watched until its handshake is
        over (asyncio tells nothing of a handshake that fails or times out)."""
        return self._handshakes.watch(MsrpConnectionProtocol(self, accepted=True))

    @property
    def handshakes_pending(self) -> int:
        """Accepted TLS connections whose handshake is not over (nor known failed)."""
        return len(self._handshakes)

    def new_session(
        self,
        config: SessionConfig | None = None,
        session_id: str | None = None,
        *,
        relay: RelayGrant | None = None,
    ) -> Session:
        """A session bound to this endpoint; put ``session.path`` into the SDP.

        With ``relay`` (from :meth:`authenticate`) the session's frames go through
        that relay: ``path`` is its Use-Path then this endpoint's URI.
        """
        sid = session_id or new_tid(16)
        scheme = self.scheme if relay is None else relay.relay.scheme
        uri = MsrpUri(scheme=scheme, host=self.host, port=self.port, session_id=sid)
        engine = MsrpSession(uri, config=config or self.config.session)
        if relay is not None:
            engine.route = list(reversed(relay.use_path))
        session = Session(self, engine, relay)
        self._sessions[sid] = session
        return session

    async def authenticate(
        self,
        relay: MsrpUri,
        username: str,
        password: str | None = None,
        *,
        digest: DigestClient | None = None,
        expires: int | None = None,
        timeout: float = 10.0,
    ) -> RelayGrant:
        """AUTH to ``relay`` (RFC 4976 §6) and keep the connection for the sessions
        that use it: ``new_session(relay=grant)``.  Raises RelayAuthError.

        ``expires`` is sent only when given (Kamailio 5.6.3 breaks on it).  Calling
        again on the same relay refreshes the grant over the same connection.
        """
        protocol = await asyncio.wait_for(self._connect(relay), timeout)
        protocol.keep_open = True
        protocol.conn._lookup = self._relayed_lookup
        me = MsrpUri(scheme=relay.scheme, host=self.host, port=self.port, session_id=new_tid(16))
        client = AuthClient(relay, me, digest or DigestClient(username, password), expires=expires)
        frame: Frame | RelayGrant = client.first_request()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while isinstance(frame, Frame):
                answer: asyncio.Future[Frame] = loop.create_future()
                if protocol.closed.is_set():
                    raise RelayAuthError(0, "connection to the relay closed")
                protocol.conn.send_request(frame, answer.set_result)
                protocol.pump()
                closed: asyncio.Future[bool] = asyncio.ensure_future(protocol.closed.wait())
                try:
                    await asyncio.wait((answer, closed), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closed.cancel()
                if not answer.done():
                    protocol.conn.forget_request(client.tid)
                    raise RelayAuthError(0, "connection to the relay closed")
                frame = client.on_response(answer.result())
        self._relays[frame.use_path] = protocol
        return frame

    def _relayed_lookup(self, target: MsrpUri) -> MsrpSession | None:
        """Sessions reached through a relay learn their connection from the relay's."""
        facade = self._sessions.get(target.session_id or "")
        if facade is None or facade.closed or facade.relay is None:
            return None
        return facade.engine

    def _lookup(self, target: MsrpUri) -> MsrpSession | None:
        facade = self._sessions.get(target.session_id or "")
        if facade is None or facade.closed:
            return None
        if facade._is_bound or facade._active:
            raise WrongConnection(target.session_id)
        return facade.engine

    def _facades(self, conn: MsrpConnection) -> list[Session]:
        return [f for sid in conn.sessions if (f := self._sessions.get(sid)) is not None]

    def _deliver(self, session: MsrpSession, protocol: MsrpConnectionProtocol) -> None:
        """Hand a session's events to its facade; a passive session binds here."""
        facade = self._sessions.get(session.session_id)
        if facade is None:
            session.events()
            return
        if not facade._is_bound and not protocol.closed.is_set():
            facade._protocol = protocol
            facade._set_bound()
        facade._handle(session.events())

    async def _connect(self, uri: MsrpUri) -> MsrpConnectionProtocol:
        if uri.port is None:
            raise ValueError(f"{uri} has no port to connect to")
        key = (uri.host, uri.port, uri.scheme == "msrps")
        protocol = self._outbound.get(key)
        if protocol is not None and not protocol.closed.is_set():
            return protocol
        loop = asyncio.get_running_loop()

        def factory() -> MsrpConnectionProtocol:
            return MsrpConnectionProtocol(self, accepted=False)

        if uri.scheme == "msrps":
            _, proto = await loop.create_connection(
                factory,
                uri.host,
                uri.port,
                ssl=self.ssl_client or ssl.create_default_context(),
                server_hostname=uri.host,
                ssl_handshake_timeout=self.config.tls_handshake_timeout,
            )
        else:
            _, proto = await loop.create_connection(factory, uri.host, uri.port)
        self._outbound[key] = proto
        return proto

    async def close(self) -> None:
        """Close every session and connection, then the listener."""
        for session in list(self._sessions.values()):
            await session.close()
        self._handshakes.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for protocol in list(self._connections):
            if protocol.transport is not None:
                protocol.transport.close()
        for protocol in list(self._connections):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(protocol.closed.wait(), 5)


class Session:
    """The asyncio face of one MSRP session.

    ``path`` is the local ``a=path``; ``start`` connects it to the peer's path;
    ``send`` returns a :class:`DeliveryResult`; iterating yields incoming
    :class:`~pyim.msrp.session_events.MessageReceived` (or ``on_message`` gets them,
    for an application that holds many sessions without a task reading each).

    A server holds many idle sessions, so a session keeps no asyncio.Queue or Event
    (~1 KB each with their deques): received messages wait in a deque made when one
    arrives (dropped when empty), a reader waits on a bare future, and the other
    containers are made on first use.
    """

    __slots__ = (
        "_aborted",
        "_active",
        "_bound_waiter",
        "_ended",
        "_inbox",
        "_is_bound",
        "_protocol",
        "_reports_wanted",
        "_results",
        "_waiters",
        "closed",
        "endpoint",
        "engine",
        "on_end",
        "on_message",
        "on_stream",
        "relay",
    )

    def __init__(
        self, endpoint: MsrpEndpoint, engine: MsrpSession, relay: RelayGrant | None = None
    ) -> None:
        self.endpoint = endpoint
        self.engine = engine
        self.relay = relay
        self._protocol: MsrpConnectionProtocol | None = None
        self._active = False
        self._is_bound = False
        self._bound_waiter: asyncio.Future[None] | None = None  # a passive start() waits
        self._inbox: deque[MessageReceived] | None = None  # received, not taken yet
        # receive() calls waiting: one future, or a list of them (oldest first)
        self._waiters: asyncio.Future[None] | list[asyncio.Future[None]] | None = None
        self._results: dict[str, asyncio.Future[DeliveryResult]] | None = None
        self._reports_wanted: set[str] | None = None  # sends that await a Success-Report
        self._aborted: list[MessageAborted] | None = None
        # streamed incoming messages (SessionConfig.stream_above) go here, as they come
        self.on_stream: Callable[[StreamEvent], None] | None = None
        # Instead of receive()/iteration (a task per session): incoming messages go to
        # on_message as they come, and on_end is called once when the session ends.
        # Set both before start(); pause_input()/resume_input() hold the peer back.
        self.on_message: Callable[[MessageReceived], None] | None = None
        self.on_end: Callable[[], None] | None = None
        self.closed = False
        self._ended = False  # no message will come any more (receive raises once drained)

    @property
    def aborted(self) -> list[MessageAborted]:
        """Incoming messages their sender aborted (``#``), oldest first."""
        if self._aborted is None:
            self._aborted = []
        return self._aborted

    def _waiting(self) -> int:
        """Received messages not taken yet."""
        return 0 if self._inbox is None else len(self._inbox)

    def _set_bound(self) -> None:
        self._is_bound = True
        waiter = self._bound_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def local_uri(self) -> MsrpUri:
        return self.engine.local_uri

    @property
    def path(self) -> list[MsrpUri]:
        relays = list(self.relay.use_path) if self.relay is not None else []
        return [*relays, self.engine.local_uri]

    async def start(
        self, remote_path: list[MsrpUri], *, active: bool, timeout: float = 30.0
    ) -> None:
        """Connect to the peer: open (``active``) or await (passive) the connection.

        The active side sends an empty SEND at once so the passive side learns
        which session the connection carries (RFC 4975 §7.1.1 / RFC 6135).
        """
        self.engine.remote_path = list(remote_path)
        self._active = active
        if self.relay is not None:
            # through one's relay both sides connect out; the first SEND binds the path
            protocol = self.endpoint._relays.get(self.relay.use_path)
            if protocol is None or protocol.closed.is_set():
                raise ConnectionError(f"the connection to relay {self.relay.relay} is closed")
            protocol.conn.attach(self.engine)
            self._protocol = protocol
            self._set_bound()
            self.engine.send_keepalive()
            protocol.pump()
        elif active:
            protocol = await asyncio.wait_for(self.endpoint._connect(remote_path[0]), timeout)
            protocol.conn.attach(self.engine)
            self._protocol = protocol
            self._set_bound()
            self.engine.send_keepalive()
            protocol.pump()
        elif not self._is_bound:
            waiter = self._bound_waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(waiter, timeout)
            finally:
                self._bound_waiter = None

    def media_attributes(
        self, *, setup: Setup | None = None, accept_types: tuple[str, ...] = ("*",)
    ) -> MsrpMediaAttributes:
        """This session's ``m=message`` attributes for an SDP offer or answer."""
        max_size = self.engine.config.max_message_size
        return MsrpMediaAttributes(
            path=tuple(self.path), accept_types=accept_types, max_size=max_size, setup=setup
        )

    async def start_negotiated(
        self,
        local: MsrpMediaAttributes,
        remote: MsrpMediaAttributes,
        *,
        offerer: bool,
        timeout: float = 30.0,
    ) -> None:
        """``start`` with the direction that ``a=setup`` negotiated (RFC 6135).

        A missing ``a=setup`` takes the RFC 4975 default: the offerer connects.
        """
        mine = local.setup or default_setup(offer=offerer)
        theirs = remote.setup or default_setup(offer=not offerer)
        await self.start(list(remote.path), active=active_side(mine, theirs), timeout=timeout)

    def send_nowait(
        self,
        content_type: str,
        body: bytes,
        *,
        success_report: bool = False,
        failure_report: str = "yes",
        message_id: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> asyncio.Future[DeliveryResult]:
        """Queue a message; the future resolves with its :class:`DeliveryResult`."""
        if self.closed or self._protocol is None:
            raise ConnectionError("session is not connected")
        mid = self.engine.send_message(
            content_type,
            body,
            success_report=success_report,
            failure_report=failure_report,
            message_id=message_id,
            headers=headers,
        )
        future = self._expect(mid, success_report)
        self._protocol.schedule_pump()
        return future

    async def send(
        self,
        content_type: str,
        body: bytes,
        *,
        success_report: bool = False,
        failure_report: str = "yes",
        message_id: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> DeliveryResult:
        """Send a message and wait until it is delivered, sent or failed."""
        return await self.send_nowait(
            content_type,
            body,
            success_report=success_report,
            failure_report=failure_report,
            message_id=message_id,
            headers=headers,
        )

    def abort(self, message_id: str) -> None:
        """Abort an outgoing message (its next chunk ends with ``#``)."""
        self.engine.abort_message(message_id)
        if self._protocol is not None:
            self._protocol.schedule_pump()

    def open_stream(
        self,
        content_type: str,
        *,
        total: int | None = None,
        message_id: str | None = None,
        success_report: bool = False,
        headers: list[tuple[str, str]] | None = None,
    ) -> tuple[str, asyncio.Future[DeliveryResult]]:
        """Start a message whose body comes later (``stream_write``, ``stream_end``);
        returns its Message-ID and the future of its :class:`DeliveryResult`."""
        if self.closed or self._protocol is None:
            raise ConnectionError("session is not connected")
        mid = self.engine.open_stream(
            content_type,
            total=total,
            message_id=message_id,
            success_report=success_report,
            headers=headers,
        )
        return mid, self._expect(mid, success_report)

    def _expect(self, mid: str, success_report: bool) -> asyncio.Future[DeliveryResult]:
        """The future of an outgoing message's :class:`DeliveryResult`."""
        future: asyncio.Future[DeliveryResult] = asyncio.get_running_loop().create_future()
        if self._results is None:
            self._results = {}
        self._results[mid] = future
        if success_report:
            if self._reports_wanted is None:
                self._reports_wanted = set()
            self._reports_wanted.add(mid)
        return future

    def pause_input(self) -> None:
        """Stop reading from this session's connection (a relay whose next hop is slow)."""
        if self._protocol is not None:
            self._protocol._pause_reading()

    def resume_input(self) -> None:
        if self._protocol is not None:
            self._protocol._resume_reading()

    def stream_write(self, message_id: str, data: bytes) -> None:
        self.engine.stream_write(message_id, data)
        if self._protocol is not None:
            self._protocol.schedule_pump()

    def stream_end(self, message_id: str) -> None:
        self.engine.stream_end(message_id)
        if self._protocol is not None:
            self._protocol.schedule_pump()

    def confirm(self, message_id: str, code: int = 200, reason: str = "OK") -> bool:
        """Answer a complete message held by ``SessionConfig.hold_completion``."""
        done = self.engine.confirm(message_id, code, reason)
        if done and self._protocol is not None:
            self._protocol.schedule_pump()
        return done

    def report(self, message_id: str, code: int = 200, reason: str = "OK") -> bool:
        """Send the Success-Report (or failure REPORT) owed for a held message."""
        done = self.engine.report(message_id, code, reason)
        if done and self._protocol is not None:
            self._protocol.schedule_pump()
        return done

    def refuse(self, message_id: str) -> None:
        """Refuse an incoming message midway: the sender gets 413 on its next chunk."""
        self.engine.refuse_message(message_id)

    async def receive(self) -> MessageReceived:
        """The next incoming message; raises ConnectionError when the session ends."""
        return await self._next(ConnectionError)

    def __aiter__(self) -> Session:
        return self

    def __anext__(self) -> Coroutine[Any, Any, MessageReceived]:
        # the coroutine itself, not one awaiting it: one frame per waiting reader
        return self._next(StopAsyncIteration)

    async def _next(self, end: type[Exception]) -> MessageReceived:
        """The next incoming message, once there is one; ``end`` is raised when the
        session has ended and every message was taken."""
        while True:
            inbox = self._inbox
            if inbox:
                message = inbox.popleft()
                if not inbox:
                    self._inbox = None
                if self._protocol is not None:
                    self._protocol._resume_reading()
                return message
            if self._ended:
                raise end("session closed")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._waiters
            if waiters is None:
                self._waiters = waiter  # the usual case: one reader
            elif isinstance(waiters, list):
                waiters.append(waiter)
            else:
                self._waiters = [waiters, waiter]
            try:
                await waiter
            except BaseException:
                # cancelled: off the waiters, and a wake-up it may have had goes on
                waiters = self._waiters
                if waiters is waiter:
                    self._waiters = None
                elif isinstance(waiters, list) and waiter in waiters:
                    waiters.remove(waiter)
                if self._inbox or self._ended:
                    self._wake(everyone=self._ended)
                raise

    def _wake(self, *, everyone: bool = False) -> None:
        """Wake the first waiting reader (every one when the session ended)."""
        waiters = self._waiters
        if waiters is None:
            return
        if not isinstance(waiters, list):
            self._waiters = None
            if not waiters.done():
                waiters.set_result(None)
            return
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                if not everyone:
                    break
        if not waiters:
            self._waiters = None

    def _handle(self, events: list[SessionEvent]) -> None:
        for event in events:
            if isinstance(event, MessageReceived):
                if self.on_message is not None:
                    self._call(self.on_message, event)
                    continue
                inbox = self._inbox
                if inbox is None:
                    inbox = self._inbox = deque()
                inbox.append(event)
                if len(inbox) >= self.endpoint.config.incoming_queue and self._protocol is not None:
                    self._protocol._pause_reading()
                self._wake()
            elif isinstance(event, MessageAborted):
                self.aborted.append(event)
                if self.on_stream is not None:
                    self.on_stream(event)
            elif isinstance(event, StreamStarted | StreamData | StreamEnded):
                if self.on_stream is not None:
                    self.on_stream(event)
            elif isinstance(event, MessageDelivered):
                self._resolve(DeliveryResult(event.message_id, "delivered"))
            elif isinstance(event, MessageSent):
                wanted = self._reports_wanted
                if wanted is None or event.message_id not in wanted:
                    self._resolve(DeliveryResult(event.message_id, "sent"))
            elif isinstance(event, MessageFailed):
                self._resolve(DeliveryResult(event.message_id, "failed", event.code, event.reason))
        if self._protocol is None and self._is_bound and not self.closed:
            self._lost()

    def _resolve(self, result: DeliveryResult) -> None:
        mid = result.message_id
        wanted = self._reports_wanted
        if wanted is not None:
            wanted.discard(mid)
            if not wanted:
                self._reports_wanted = None
        results = self._results
        if results is None:
            return
        future = results.pop(mid, None)
        if not results:
            self._results = None
        if future is not None and not future.done():
            future.set_result(result)

    def _lost(self) -> None:
        if self._ended:
            return
        self._ended = True
        for mid in list(self._results or ()):
            self._resolve(DeliveryResult(mid, "failed", 0, "connection lost"))
        self._wake(everyone=True)
        if self.on_end is not None:
            self._call(self.on_end)

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        """A callback of the application: its failure is logged, not the connection's."""
        try:
            callback(*args)
        except Exception:
            log.exception("MSRP session %s: %r failed", self.engine.session_id, callback)

    async def close(self) -> None:
        """End the session: pending sends fail, the connection closes when unused."""
        if self.closed:
            return
        self.closed = True
        self.endpoint._sessions.pop(self.engine.session_id, None)
        protocol, self._protocol = self._protocol, None
        self.engine.connection_lost("session closed")
        self._handle(self.engine.events())
        self._lost()
        if protocol is not None:
            protocol.conn.detach(self.engine)
            if (
                not protocol.conn.sessions
                and protocol.transport is not None
                and not protocol.keep_open
            ):
                protocol._close()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(protocol.closed.wait(), 5)
