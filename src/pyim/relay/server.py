"""The MSRP relay (RFC 4976) over asyncio: listeners, connections, cut-through forwarding.

How a request crosses the relay (§7.3):

1. The frame parser hands out the head; :func:`rewrite_head` (native when built)
   pops the first To-Path URI, which must be one of this relay's granted paths, and
   puts it in front of From-Path.
2. The connection that sent it decides who may use that path: the connection that
   authenticated it (the owner) may send onwards to any next hop; anyone else may
   only deliver to the owner (the last hop).  Everything else is refused (403/481)
   and counted.  A connection remembers the routes it found (per first URI, next hop
   and From-Path) for as long as the grants they rely on and the next hop live.
3. The frame goes to the next hop's connection as it arrives: head, then each piece
   of body, then the end-line (cut-through; a chunk is never held whole).  A long
   chunk yields to other frames waiting for the same connection: it is ended with
   ``+`` and its rest follows as a new chunk (RFC 4975 §7.1).  A slow next hop
   stops the reading of the connections that feed it (bounded memory).  A request
   that came whole in one read, for a next hop with nothing in flight, goes straight
   to that hop's output, as the streaming would write it (the fast lane: no stream).
   Output is written once per read, and every ``FLUSH_EVERY`` requests of a long one.
4. The relay answers 200 hop by hop once the frame is handed on; a failure further
   on (an error response, no response in time, a lost connection) becomes a failure
   REPORT to the sender when it asked for one.  Nothing answered 200 is dropped
   silently.

AUTH for this relay itself is answered by :class:`~pyim.relay.auth.AuthService`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections import Counter

from ..msrp.session import parse_uri_cached
from ..msrp.uri import MsrpUri, MsrpUriError
from ..tlswatch import HandshakeWatch
from .auth import AuthService
from .config import Listener, RelayConfig
from .connection import RelayConnection
from .credentials import credential_lookup, load_ha1_file
from .fastpath import forward_impl
from .records import Stream

__all__ = ["Relay", "RelayConnection", "forward_impl"]

log = logging.getLogger(__name__)


class Relay:
    """The relay: its listeners, connections and granted paths."""

    def __init__(self, config: RelayConfig, *, ssl_client: ssl.SSLContext | None = None) -> None:
        """``ssl_client`` verifies next hops reached over ``msrps`` (default: system CAs)."""
        self.config = config.validate()
        table = load_ha1_file(config.ha1_file) if config.ha1_file is not None else {}
        self.auth = AuthService(
            config.realm,
            credential_lookup(table, config.users),
            config.auth,
            max_grants=config.limits.max_grants,
        )
        self.stats: Counter[str] = Counter()
        # accepted msrps connections in their handshake (asyncio tells nothing of those
        # that fail or time out: counted as tls_handshake_failures)
        self.handshakes = HandshakeWatch(
            config.limits.tls_handshake_timeout, self.stats, "MSRP relay"
        )
        self.connections: set[RelayConnection] = set()
        self.waiting: dict[str, RelayConnection] = {}  # tid -> connection it went out on
        self.batching = False
        self.unflushed = 0  # requests handled since the output was last written
        self.dirty: set[RelayConnection] = set()
        self._ours: dict[str, MsrpUri | None] = {}
        self._per_ip: Counter[str] = Counter()
        self._untrusted_per_ip: Counter[str] = Counter()
        self._outbound: dict[tuple[str, int, bool], RelayConnection] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._addresses: dict[tuple[str, int], MsrpUri] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self.ssl_client = ssl_client or ssl.create_default_context()
        self.listeners: list[tuple[Listener, int]] = []

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.config.listen:
            ctx: ssl.SSLContext | None = None
            if listener.scheme == "msrps":
                assert listener.cert is not None and listener.key is not None
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(listener.cert, listener.key)
            server = await loop.create_server(
                functools.partial(self._accept, listener, ctx is not None),
                listener.host,
                listener.port,
                ssl=ctx,
                ssl_handshake_timeout=(
                    self.config.limits.tls_handshake_timeout if ctx is not None else None
                ),
            )
            port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
            self.listeners.append((listener, port))
            uri = MsrpUri(scheme=listener.scheme, host=listener.public_host, port=port)
            self._addresses[(uri.host, port)] = uri
            log.info("MSRP relay listening on %s (%s:%d)", uri, listener.host, port)
        self._ticker = asyncio.create_task(self._tick())

    def _accept(self, listener: Listener, tls: bool) -> RelayConnection:
        """The protocol of an accepted connection (msrps: watched until its handshake
        is over)."""
        conn = RelayConnection(self, listener=listener)
        return self.handshakes.watch(conn) if tls else conn

    def flush(self) -> None:
        """Write the output gathered while handling one read (see RelayConnection.pump),
        or the first ``FLUSH_EVERY`` requests of a read of many."""
        self.unflushed = 0
        while self.dirty:
            dirty, self.dirty = self.dirty, set()
            for conn in dirty:
                conn.pump()
                conn.flush()

    @property
    def uris(self) -> list[MsrpUri]:
        """This relay's URIs, one per listener (clients AUTH to these)."""
        return list(self._addresses.values())

    async def stop(self) -> None:
        """Stop listening and close every connection (graceful: queued data is sent)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for server in self._servers:
            server.close()
        self.handshakes.close()
        for task in list(self._connecting):
            task.cancel()
        for conn in list(self.connections):
            conn.close()
        for server in self._servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()

    async def _tick(self) -> None:
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check_timers(now)
            if now - last_sweep > 10:
                last_sweep = now
                self.auth.sweep()

    # -- connections ----------------------------------------------------------------

    def _admit(self, conn: RelayConnection) -> bool:
        limits = self.config.limits
        ip = conn.peer_ip
        if len(self.connections) >= limits.max_connections:
            self.stats["refused_max_connections"] += 1
        elif self._per_ip[ip] >= limits.max_connections_per_ip:
            self.stats["refused_per_ip"] += 1
        elif self._untrusted_per_ip[ip] >= limits.max_unauthenticated_per_ip:
            self.stats["refused_unauthenticated"] += 1
        else:
            self.connections.add(conn)
            self._per_ip[ip] += 1
            self._untrusted_per_ip[ip] += 1
            self.stats["connections_accepted"] += 1
            return True
        log.warning("refused a connection from %s (limits)", conn.peer)
        return False

    def _trusted(self, conn: RelayConnection) -> None:
        if conn.listener is not None:
            self._untrusted_per_ip[conn.peer_ip] -= 1

    def _forget(self, conn: RelayConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            if conn.listener is not None:
                self._per_ip[conn.peer_ip] -= 1
                if not conn.trusted:
                    self._untrusted_per_ip[conn.peer_ip] -= 1
                for counter in (self._per_ip, self._untrusted_per_ip):
                    if counter[conn.peer_ip] <= 0:
                        del counter[conn.peer_ip]
        self.auth.revoke_owner(conn.auth)
        if conn.target is not None:
            key = (conn.target.host, conn.target.port or 0, conn.target.is_secure)
            if self._outbound.get(key) is conn:
                del self._outbound[key]

    def our_uri(self, text: str) -> MsrpUri | None:
        """The URI if it names this relay (any session-id), else None."""
        cache = self._ours
        if text in cache:
            return cache[text]
        try:
            uri: MsrpUri | None = parse_uri_cached(text)
        except (MsrpUriError, ValueError):
            uri = None
        if uri is not None and (uri.host, uri.port or 0) not in self._addresses:
            uri = None
        if len(cache) >= 4096:
            cache.clear()
        cache[text] = uri
        return uri

    def connection_to(self, uri: MsrpUri) -> RelayConnection:
        """The connection to a next hop, opened now (frames queue meanwhile) or reused."""
        key = (uri.host, uri.port or 0, uri.is_secure)
        conn = self._outbound.get(key)
        if conn is not None and not conn.closed:
            return conn
        conn = RelayConnection(self, listener=None, target=uri)
        self._outbound[key] = conn
        self.connections.add(conn)
        task = asyncio.get_running_loop().create_task(self._open(conn, uri))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return conn

    async def _open(self, conn: RelayConnection, uri: MsrpUri) -> None:
        loop = asyncio.get_running_loop()
        ctx = self.ssl_client if uri.is_secure else None
        try:
            async with asyncio.timeout(self.config.limits.connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    uri.host,
                    uri.port or 2855,
                    ssl=ctx,
                    server_hostname=uri.host if ctx is not None else None,
                    ssl_handshake_timeout=(
                        self.config.limits.tls_handshake_timeout if ctx is not None else None
                    ),
                )
            self.stats["connections_opened"] += 1
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.stats["connect_failures"] += 1
            log.warning("cannot reach next hop %s: %s", uri, exc or type(exc).__name__)
            streams = [s for s in conn._queue if isinstance(s, Stream)]
            conn._queue.clear()
            conn.closed = True
            self._forget(conn)
            for stream in streams:
                conn._fail_stream(stream, 481, f"next hop {uri} unreachable")
            conn._release_feeders()
