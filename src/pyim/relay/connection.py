"""One connection of the MSRP relay (RFC 4976): routing, cut-through output,
backpressure, transactions and failure REPORTs.  See :mod:`pyim.relay.server`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from ..msrp import FrameParser, ParserLimits
from ..msrp.errors import ParseError
from ..msrp.events import BodyData, Event, FrameEnd, FrameHead
from ..msrp.frame import Frame, Headers, new_tid
from ..msrp.headers import Status
from ..msrp.session import REASONS, parse_uri_cached
from ..msrp.uri import MsrpUri, MsrpUriError
from .auth import AuthState, Grant
from .config import Listener
from .fastpath import local_hop_head, ok_response, relay_fields, rewrite_head
from .forward import PathError
from .records import (
    FLUSH_EVERY,
    MAX_ROUTES,
    Inbound,
    Route,
    Stream,
    Txn,
    Whole,
    end_line,
    whole_request,
)

if TYPE_CHECKING:
    from .server import Relay

log = logging.getLogger("pyim.relay.server")


class RelayConnection(asyncio.Protocol):
    """One TCP/TLS connection of the relay, accepted or opened to a next hop."""

    def __init__(
        self, relay: Relay, *, listener: Listener | None, target: MsrpUri | None = None
    ) -> None:
        self.relay = relay
        self.listener = listener
        self.target = target
        limits = relay.config.limits
        self.parser = FrameParser(
            ParserLimits(
                max_line_length=limits.max_line_length,
                max_header_bytes=limits.max_header_bytes,
                max_headers=limits.max_headers,
                max_chunk_size=limits.max_chunk_size,
            )
        )
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.TimerHandle | None = None  # accepted msrps: its deadline
        self.peer_ip = "?"
        self.peer = "?"
        self.auth = AuthState("?")
        self.trusted = False  # authenticated, or relayed a routable frame
        self.closed = False
        self._in: Inbound | None = None
        self._routes: dict[tuple[str, str, int, str], Route] = {}
        self._queue: deque[bytes | Stream] = deque()
        self._writing: Stream | None = None
        self._out: list[bytes] = []
        self.queued = 0
        self._write_paused = False
        self._read_paused = False
        self._feeders: set[RelayConnection] = set()
        self.pending: dict[str, Txn] = {}
        self._txn_timeout = limits.transaction_timeout
        self._txn_order: deque[Txn] = deque()
        self.last_input = self.created = time.monotonic()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.handshake is not None:  # (msrps: the handshake is over)
            self.relay.handshakes.done(self)
        # a cast, not an isinstance check: uvloop's transports are no asyncio.Transport
        self.transport = tr = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if peer else "?"
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.auth.peer_ip = self.peer_ip
        high = self.relay.config.limits.write_high_water
        tr.set_write_buffer_limits(high=high, low=high // 4)
        if self.listener is not None and not self.relay._admit(self):
            self.closed = True
            tr.abort()
            return
        self.kick()

    def data_received(self, data: bytes) -> None:
        self.last_input = time.monotonic()
        relay = self.relay
        relay.batching = True  # writes caused by this input leave in one piece per peer
        try:
            self._receive(data)
        finally:
            relay.batching = False
            relay.flush()

    def _receive(self, data: bytes) -> None:
        while True:
            try:
                events = self.parser.feed(data)
            except ParseError as exc:
                self._dispatch(exc.events)
                self._parse_error(exc)
                if exc.close or self.closed:
                    break
                data = b""
                continue
            self._dispatch(events)
            break
        inbound = self._in
        if inbound is not None and inbound.downstream is not None:
            down = inbound.downstream
            if down.congested:
                down._feeders.add(self)
                self.pause_reading()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.relay._forget(self)
        inbound, self._in = self._in, None
        if inbound is not None and inbound.stream is not None and not inbound.stream.ended:
            # the sender went away inside a chunk: the next hop learns that it is aborted
            self.relay.stats["truncated_frames"] += 1
            stream = inbound.stream
            stream.upstream = None
            if inbound.downstream is not None:
                inbound.downstream._end_stream(stream, "#")
        reason = "connection lost" if exc is None else str(exc)
        writing, self._writing = self._writing, None
        streams = [s for s in self._queue if isinstance(s, Stream)]
        if writing is not None and writing not in streams:
            streams.insert(0, writing)
        self._queue.clear()
        for stream in streams:
            self._fail_stream(stream, 408, f"next hop lost: {reason}")
        for txn in list(self.pending.values()):
            self.relay.waiting.pop(txn.tid, None)
            self._fail_txn(txn, 408, f"next hop lost: {reason}")
        self.pending.clear()
        self._txn_order.clear()
        self._release_feeders()

    def pause_writing(self) -> None:
        self._write_paused = True
        # a peer that does not read what we send it (our 200s to its requests) is
        # not read from either: its answers would pile up here
        self.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.pump()
        self.flush()
        inbound = self._in
        if inbound is None or inbound.downstream is None or not inbound.downstream.congested:
            self.resume_reading()

    # -- reading control ----------------------------------------------------------

    @property
    def congested(self) -> bool:
        return self._write_paused or self.queued > self.relay.config.limits.max_queued_bytes

    def pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = True
            self.transport.pause_reading()
            self.relay.stats["read_pauses"] += 1

    def resume_reading(self) -> None:
        if self._write_paused:
            return
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    def _release_feeders(self) -> None:
        feeders, self._feeders = self._feeders, set()
        for feeder in feeders:
            feeder.resume_reading()

    # -- input ----------------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        i, n = 0, len(events)
        while i < n:
            event = events[i]
            i += 1
            kind = type(event)
            if kind is BodyData:
                inbound = self._in
                if inbound is not None and inbound.stream is not None:
                    stream = inbound.stream
                    if not stream.failed and inbound.downstream is not None:
                        data = event.data  # type: ignore[union-attr]
                        stream.pieces.append(data)
                        inbound.downstream.queued += len(data)
                        inbound.downstream.kick()
            elif kind is FrameHead:
                assert isinstance(event, FrameHead)
                if event.method is None:
                    self._in = None
                    self._on_response(event)
                    if i < n and type(events[i]) is FrameEnd:
                        i += 1  # its end-line: nothing to do
                    continue
                whole = whole_request(events, i, event.has_body)
                if whole is None:
                    self._in = self._on_request(event, None)
                else:  # head, body and end-line came in one read
                    i = whole[2]
                    self._in = None
                    self._on_request(event, whole)
            elif kind is FrameEnd and self._in is not None:
                self._on_end(event.flag)  # type: ignore[union-attr]

    def _on_request(self, head: FrameHead, whole: Whole | None) -> Inbound | None:
        """Route a request; ``whole`` is its body and end-line flag when it came whole.

        Returns the request in progress (None: a whole request already dealt with)."""
        relay = self.relay
        relay.stats["requests_in"] += 1
        relay.unflushed += 1
        if relay.unflushed > FLUSH_EVERY:
            relay.flush()  # a read of many requests: what the first ones caused leaves now
        method = head.method or ""
        try:
            first, next_hop, hops, new_head, from_path = rewrite_head(
                head.tid, method, head.headers
            )
        except PathError as exc:
            return self._end_whole(self._refuse(Inbound(head), 400, str(exc)), whole)
        key = (first, next_hop, hops, from_path)
        route = self._routes.get(key)
        if route is None or not self._is_live(route):
            inbound = Inbound(head)
            route = self._find_route(inbound, first, next_hop, hops, from_path)
            if route is None:  # refused, or AUTH for this relay
                return self._end_whole(inbound, whole)
            self._trust()
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            self._routes[key] = route
        if route.local:
            new_head = local_hop_head(new_head, next_hop)
        down = route.down
        if whole is not None and down.is_idle():
            self._relay_whole(head, whole, down, new_head, first, from_path)
            return None
        inbound = self._forward(Inbound(head), down, new_head, first, from_path)
        return self._end_whole(inbound, whole)

    def _end_whole(self, inbound: Inbound, whole: Whole | None) -> Inbound | None:
        """The usual way for a request that came whole: its body, then its end-line."""
        if whole is None:
            return inbound
        body, flag, _ = whole
        stream = inbound.stream
        if body and stream is not None and not stream.failed and inbound.downstream is not None:
            stream.pieces.append(body)
            inbound.downstream.queued += len(body)
            inbound.downstream.kick()
        self._in = inbound
        self._on_end(flag)
        return None

    def _is_live(self, route: Route) -> bool:
        """Whether a route found earlier still holds: its grants and next hop live."""
        if route.down.closed:
            return False
        auth = self.relay.auth
        now = auth.clock()
        grants = auth.grants
        for grant in route.grants:
            if grant.expires_at <= now or grants.get(grant.grant_id) is not grant:
                return False
        return True

    def _find_route(
        self, inbound: Inbound, first: str, next_hop: str, hops: int, from_path: str
    ) -> Route | None:
        """Where a request goes (§7.3), or None when refused (``inbound`` says why)."""
        relay = self.relay
        method = inbound.head.method or ""
        me = relay.our_uri(first)
        if me is None:
            self._refuse(inbound, 481, "To-Path does not start with this relay")
            return None
        if hops == 0:
            if method == "AUTH":
                inbound.auth_me = me
            else:
                self._refuse(inbound, 481, "no next hop after this relay")
            return None
        grant = relay.auth.lookup(me.session_id)
        if grant is None:
            self._refuse(inbound, 481, "no such path at this relay")
            return None
        from_uris = from_path.split()
        if first in from_uris or first == next_hop:
            self._refuse(inbound, 400, "loop: this relay's URI is already on the path")
            return None
        if grant.owner is self:
            target = self._next_hop_uri(next_hop)
            if target is None:
                self._refuse(inbound, 400, "bad next hop URI")
                return None
            if relay.our_uri(next_hop) is not None:
                # both ends use this relay: the next hop is another path granted here
                return self._local_hop(inbound, grant, next_hop, hops)
            return Route((grant,), relay.connection_to(target), False)
        if hops != 1:
            relay.stats["injection_refused"] += 1
            log.warning(
                "%s: refused %s through %s: path owned by another connection",
                self.peer,
                method,
                first,
            )
            self._refuse(inbound, 403, "this path belongs to another connection")
            return None
        if not self._is_client_of(grant, next_hop):
            relay.stats["injection_refused"] += 1
            self._refuse(inbound, 403, "the last hop is not this path's client")
            return None
        down = grant.owner
        assert isinstance(down, RelayConnection)
        return Route((grant,), down, False)

    def _local_hop(self, inbound: Inbound, grant: Grant, next_hop: str, hops: int) -> Route | None:
        """A path of this relay followed by another of its paths: pop both."""
        target = self.relay.our_uri(next_hop)
        other = None if target is None else self.relay.auth.lookup(target.session_id)
        if other is None or hops != 2:
            self._refuse(inbound, 481, "no such path at this relay")
            return None
        down = other.owner
        assert isinstance(down, RelayConnection)
        # a failure is reported straight back on this connection: to the sender's
        # From-Path, from the path it addressed
        return Route((grant, other), down, True)

    @staticmethod
    def _is_client_of(grant: Grant, last_hop: str) -> bool:
        """Whether ``last_hop`` is at the client that AUTHed for ``grant`` (its host and
        port: one client, many sessions)."""
        try:
            uri = parse_uri_cached(last_hop)
            client = parse_uri_cached(grant.client.split()[-1])
        except (MsrpUriError, ValueError, IndexError):
            return False
        return uri.host == client.host and uri.port == client.port

    def _next_hop_uri(self, text: str) -> MsrpUri | None:
        try:
            uri = parse_uri_cached(text)
        except (MsrpUriError, ValueError):
            return None
        return uri if uri.port is not None else None

    def _forward(
        self,
        inbound: Inbound,
        down: RelayConnection,
        new_head: bytes,
        first: str,
        from_path: str,
    ) -> Inbound:
        head = inbound.head
        message_id, raw_range, failure_report = relay_fields(head.headers)
        stream = Stream(
            head.tid,
            head.method or "",
            new_head,
            head.has_body,
            self,
            first,
            from_path,
            message_id,
            raw_range,
            failure_report,
        )
        inbound.stream = stream
        inbound.downstream = down
        if down.closed:
            stream.failed = 481
        else:
            down._queue.append(stream)
            down.kick()
        return inbound

    def _relay_whole(
        self,
        head: FrameHead,
        whole: Whole,
        down: RelayConnection,
        new_head: bytes,
        first: str,
        from_path: str,
    ) -> None:
        """A request that came whole, to a next hop with nothing in flight: straight to
        its output, as ``pump`` would write it, without a stream."""
        body, flag, _ = whole
        tid = head.tid
        method = head.method or ""
        message_id, raw_range, failure_report = relay_fields(head.headers)
        stats = self.relay.stats
        end = (tid + flag).encode()
        if head.has_body:  # as pump() writes it, with end_line
            down._out += (new_head, b"\r\n", body, b"\r\n-------", end, b"\r\n")
            stats["body_bytes"] += len(body)
        else:
            down._out += (new_head, b"-------", end, b"\r\n")
        self.relay.dirty.add(down)
        stats["frames_forwarded"] += 1
        if method != "REPORT" and failure_report != "no" and flag != "#":
            down._await(
                tid, method, self, first, from_path, message_id, raw_range or "", failure_report
            )
        if method != "REPORT":
            self._answer_forwarded(head, first, from_path, failure_report)

    def _refuse(self, inbound: Inbound, code: int, reason: str) -> Inbound:
        inbound.code, inbound.reason = code, reason
        self.relay.stats[f"refused_{code}"] += 1
        log.info(
            "%s: %s %s refused %d: %s",
            self.peer,
            inbound.head.method,
            inbound.head.tid,
            code,
            reason,
        )
        return inbound

    def _trust(self) -> None:
        if not self.trusted:
            self.trusted = True
            self.relay._trusted(self)

    def _on_end(self, flag: str) -> None:
        inbound, self._in = self._in, None
        if inbound is None:
            return
        head = inbound.head
        if inbound.auth_me is not None:
            response = self.relay.auth.handle(
                head.tid, Headers(head.headers), inbound.auth_me, self, self.auth
            )
            if response.code == 200:
                self._trust()
            self.send_control(response.encode())
            return
        stream = inbound.stream
        if stream is None:
            self._answer(head, inbound.code, inbound.reason)
            return
        if inbound.downstream is not None and not stream.failed:
            inbound.downstream._end_stream(stream, flag)
        if stream.failed:
            self._answer(head, stream.failed, "next hop unreachable")
        elif stream.method != "REPORT":
            stream.answered = True
            self._answer_forwarded(head, stream.first, stream.from_path, stream.failure_report)

    def _answer_forwarded(
        self, head: FrameHead, first: str, from_path: str, failure_report: str
    ) -> None:
        """The 200 for a request handed on (none for Failure-Report no or partial)."""
        if failure_report == "yes":
            if not self.closed:
                # the usual answer, straight from what routing already parsed
                self._send_own(ok_response(head.tid, from_path, first))
        else:
            self._answer(head, 200, "OK")

    def _answer(self, head: FrameHead, code: int, reason: str) -> None:
        """A hop-by-hop response (RFC 4975 §7.2), per the request's Failure-Report."""
        if head.method == "REPORT" or self.closed:
            return
        headers = Headers(head.headers)
        fr = (headers.get("Failure-Report") or "yes").lower()
        if fr == "no" or (fr == "partial" and code == 200):
            return
        frame = Frame(head.tid, code=code, comment=REASONS.get(code, reason))
        from_path = (headers.get("From-Path") or "").split()
        to_path = (headers.get("To-Path") or "").split()
        if from_path:  # the whole path back (see MsrpSession._respond)
            frame.headers.add("To-Path", " ".join(from_path))
        if to_path:
            frame.headers.add("From-Path", to_path[0])
        if code != 200:
            self.relay.stats[f"answered_{code}"] += 1
        self.send_control(frame.encode())

    def _on_response(self, head: FrameHead) -> None:
        # Responses come back on the connection the request went out on, except from
        # relays that route them by To-Path (Kamailio opens a connection of its own)
        owner = self.relay.waiting.pop(head.tid, None)
        txn = None if owner is None else owner.pending.pop(head.tid, None)
        if owner is None or txn is None:
            self.relay.stats["responses_unmatched"] += 1
            return
        owner._settle_front()
        if not self.trusted:  # e.g. Kamailio brings responses back on a connection of its own
            self._trust()
        code = head.code or 0
        if txn.method == "AUTH":
            self._return_auth_response(txn, head)
        elif code != 200:
            self._fail_txn(txn, code, head.comment or REASONS.get(code, "error"))

    def _return_auth_response(self, txn: Txn, head: FrameHead) -> None:
        """AUTH responses go end to end (§6): back to the connection it came from."""
        up = txn.upstream
        if up is None or up.closed:
            return
        frame = Frame(head.tid, code=head.code, comment=head.comment)
        for name, value in head.headers:
            if name.lower() == "to-path":
                value = " ".join(value.split()[1:]) or value
            frame.headers.add(name, value)
        up.send_control(frame.encode())

    def _parse_error(self, exc: ParseError) -> None:
        self.relay.stats["parse_errors"] += 1
        inbound, self._in = self._in, None
        if exc.close:
            log.warning("%s: closed on bad input: %s", self.peer, exc.reason)
            self.relay.stats["closed_bad_input"] += 1
            if inbound is not None:
                self._in = inbound  # connection_lost ends its stream with '#'
            self.close()
            return
        if inbound is None or inbound.head.tid != exc.tid:
            self.relay.stats["unanswerable"] += 1
            return
        stream = inbound.stream
        if stream is not None and inbound.downstream is not None and not stream.failed:
            inbound.downstream._end_stream(stream, "#")  # the rest will not come
        if exc.status is not None:
            self._answer(inbound.head, exc.status, exc.reason)

    # -- output -----------------------------------------------------------------------

    def send_control(self, data: bytes) -> None:
        """Queue a whole frame of the relay's own (a response or a REPORT)."""
        if self.closed:
            return
        self._send_own(data)

    def _send_own(self, data: bytes) -> None:
        """A frame of the relay's own, to the output now if nothing is before it."""
        if self.relay.batching and self.is_idle():
            self._out.append(data)
            self.relay.dirty.add(self)
        else:
            self._queue.append(data)
            self.kick()

    def is_idle(self) -> bool:
        """Nothing queued or on the wire, and writable: output may go straight out."""
        transport = self.transport
        return (
            self._writing is None
            and not self._queue
            and not self._write_paused
            and transport is not None
            and not self.closed
            and not transport.is_closing()
        )

    def _end_stream(self, stream: Stream, flag: str) -> None:
        stream.ended = True
        stream.flag = flag
        if not self.closed:
            self.kick()

    def pump(self) -> None:
        """Move what can be sent to the output: the frame on the wire, then the queue.

        Output is gathered and written once per batch of input (``Relay.flush``):
        one ``send`` for what a read produced instead of one per frame part."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return
        out = self._out
        limits = self.relay.config.limits
        while not self._write_paused:
            stream = self._writing
            if stream is None:
                if not self._queue:
                    break
                item = self._queue.popleft()
                if isinstance(item, bytes):
                    out.append(item)
                    continue
                stream = self._writing = item
            if not stream.head_sent:
                out.append(stream.head)
                if stream.has_body:
                    out.append(b"\r\n")
                stream.head_sent = True
            if stream.pieces:
                pieces = stream.pieces
                size = 0
                while pieces:
                    data = pieces.popleft()
                    size += len(data)
                    out.append(data)
                self.queued -= size
                stream.body_sent += size
                stream.offset += size
                self.relay.stats["body_bytes"] += size
            if stream.ended:
                self._finish_chunk(stream, stream.flag)
                self._writing = None
                continue
            if self._queue and stream.splittable and stream.body_sent >= limits.interrupt_after:
                self._interrupt(stream)
                continue
            break
        if self._feeders and not self.congested:
            self._release_feeders()

    def kick(self) -> None:
        """There is something to send: now, or once the current read is handled."""
        if self.relay.batching:
            self.relay.dirty.add(self)
        else:
            self.pump()
            self.flush()

    def flush(self) -> None:
        """Write the gathered output in one call."""
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _finish_chunk(self, stream: Stream, flag: str) -> None:
        self._out.append(end_line(stream.tid, flag, stream.has_body))
        self.relay.stats["frames_forwarded"] += 1
        if stream.method != "REPORT" and stream.failure_report != "no" and flag != "#":
            self._expect(stream)

    def _interrupt(self, stream: Stream) -> None:
        """End the chunk on the wire with '+' and queue its rest as a new chunk."""
        stream.split = True
        self._finish_chunk(stream, "+")
        self.relay.stats["chunks_split"] += 1
        br = stream.byte_range
        assert br is not None
        old_tid, stream.tid = stream.tid, new_tid(16)
        start = br.start + stream.offset
        end = "*" if br.end is None else str(br.end)
        total = "*" if br.total is None else str(br.total)
        lines = stream.head.decode("utf-8").split("\r\n")
        lines[0] = lines[0].replace(f"MSRP {old_tid} ", f"MSRP {stream.tid} ", 1)
        lines = [
            f"Byte-Range: {start}-{end}/{total}" if line.lower().startswith("byte-range:") else line
            for line in lines
        ]
        stream.head = "\r\n".join(lines).encode("utf-8")
        stream.head_sent = False
        stream.body_sent = 0
        stream.part_start = stream.offset
        self._writing = None
        self._queue.append(stream)

    def _expect(self, stream: Stream) -> None:
        br = stream.byte_range if stream.split else None  # None: sent as received
        if br is None:
            text = stream.raw_range or ""
        else:
            start = br.start + stream.part_start
            end = start + stream.offset - stream.part_start - 1
            total = "*" if br.total is None else str(br.total)
            text = f"{start}-{end}/{total}"
        self._await(
            stream.tid,
            stream.method,
            stream.upstream,
            stream.first,
            stream.from_path,
            stream.message_id,
            text,
            stream.failure_report,
        )

    def _await(
        self,
        tid: str,
        method: str,
        upstream: RelayConnection | None,
        first: str,
        from_path: str,
        message_id: str | None,
        byte_range: str,
        failure_report: str,
    ) -> None:
        """Wait for the next hop's response to a request sent on this connection."""
        deadline = time.monotonic() + self._txn_timeout
        txn = Txn(
            tid,
            method,
            upstream,
            first,
            from_path,
            message_id,
            byte_range,
            failure_report,
            deadline,
        )
        self.pending[tid] = txn
        self.relay.waiting[tid] = self
        self._txn_order.append(txn)

    # -- failures ---------------------------------------------------------------------

    def _fail_stream(self, stream: Stream, code: int, reason: str) -> None:
        """A request could not be (fully) written to this connection."""
        if stream.failed:
            return
        stream.failed = code
        self.queued -= sum(len(p) for p in stream.pieces)
        stream.pieces.clear()
        if stream.answered:
            self._report_failure(
                stream.upstream,
                stream.first,
                stream.from_path,
                stream.message_id,
                None,
                stream.failure_report,
                code,
                reason,
                stream.method,
            )

    def _fail_txn(self, txn: Txn, code: int, reason: str) -> None:
        self._report_failure(
            txn.upstream,
            txn.first,
            txn.from_path,
            txn.message_id,
            txn.byte_range,
            txn.failure_report,
            code,
            reason,
            txn.method,
        )

    def _report_failure(
        self,
        up: RelayConnection | None,
        first: str,
        from_path: str,
        message_id: str | None,
        byte_range: str | None,
        failure_report: str,
        code: int,
        reason: str,
        method: str,
    ) -> None:
        """A failure REPORT (RFC 4975 §7.1.2) back to the sender, if it wants one."""
        stats = self.relay.stats
        stats["downstream_failures"] += 1
        if method != "SEND" or failure_report == "no" or not message_id:
            stats["failures_unreported"] += 1
            return
        if up is None or up.closed:
            stats["failures_unreported"] += 1
            log.info("failure %d for %s not reported: the sender is gone", code, message_id)
            return
        frame = Frame(new_tid(16), "REPORT")
        frame.headers.add("To-Path", from_path)
        frame.headers.add("From-Path", first)
        frame.headers.add("Message-ID", message_id)
        if byte_range:
            frame.headers.add("Byte-Range", byte_range)
        frame.headers.add("Status", str(Status(0, code, reason[:60])))
        stats["reports_sent"] += 1
        log.info("failure REPORT %d for %s: %s", code, message_id, reason)
        up.send_control(frame.encode())

    # -- time -------------------------------------------------------------------------

    def _settle_front(self) -> None:
        """Drop answered transactions from the front of the deadline order: responses
        mostly come in order, so it stays short and few objects stay alive for the
        garbage collector to walk (check_timers compacts what this leaves)."""
        order, pending = self._txn_order, self.pending
        while order and pending.get(order[0].tid) is not order[0]:
            order.popleft()

    def check_timers(self, now: float) -> None:
        limits = self.relay.config.limits
        while self._txn_order and self._txn_order[0].deadline <= now:
            txn = self._txn_order.popleft()
            if self.pending.get(txn.tid) is txn:
                del self.pending[txn.tid]
                self.relay.waiting.pop(txn.tid, None)
                self.relay.stats["downstream_timeouts"] += 1
                self._fail_txn(txn, 408, "no response from the next hop")
        if self._txn_order and len(self._txn_order) > 2 * len(self.pending) + 64:
            self._txn_order = deque(t for t in self._txn_order if self.pending.get(t.tid) is t)
        in_frame = self._in is not None or self.parser.buffered > 0
        if in_frame and now - self.last_input > limits.frame_timeout:
            self.relay.stats["closed_stalled"] += 1
            log.info("%s: closed, frame stalled", self.peer)
            self.close()
        elif self.listener is not None and not self.trusted:
            if now - self.created > limits.auth_timeout:
                self.relay.stats["closed_auth_timeout"] += 1
                log.info("%s: closed, no AUTH in time", self.peer)
                self.close()
        elif (
            not self.auth.grants
            and not self.pending
            and not self._queue
            and now - self.last_input > limits.idle_timeout
        ):
            self.relay.stats["closed_idle"] += 1
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.flush()  # what was answered still leaves (transport.close sends it)
            self.transport.close()
        self.closed = True
