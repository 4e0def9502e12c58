"""One MSRP transport connection carrying one or more sessions, sans-IO.

:class:`MsrpConnection` owns the frame parser, routes each frame to the session
named by the first To-Path URI (RFC 4975 §7.3: sessions are demultiplexed by
session-id), answers frames that no session can take (481, 400), and merges the
sessions' outgoing frames fairly.  The asyncio adapter feeds it bytes and writes
what it returns.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable

from . import FrameParser
from .errors import ParseError
from .events import BodyData, Event, FrameEnd, FrameHead
from .frame import Frame, Headers
from .parser import ParserLimits
from .session import REASONS, MsrpSession, parse_uri_cached
from .uri import MsrpUri, MsrpUriError

log = logging.getLogger(__name__)

SessionLookup = Callable[[MsrpUri], MsrpSession | None]
ResponseWaiter = Callable[[Frame], None]


class WrongConnection(Exception):
    """Raised by a lookup: the session exists but is bound to another connection (506)."""


def first_uri(value: str | None) -> MsrpUri | None:
    """The first URI of a path header, or None when it is missing or malformed."""
    if not value:
        return None
    try:
        return parse_uri_cached(value.split(None, 1)[0])
    except (MsrpUriError, ValueError):
        return None


class MsrpConnection:
    """Frames in and out of one connection, routed to sessions by session-id.

    ``lookup`` is asked for sessions this connection does not carry yet: the
    passive side of a session learns its connection from the first frame (§7.1.1).
    ``error`` is set when the connection must be closed (the parser found input it
    cannot recover from).
    """

    def __init__(
        self,
        *,
        limits: ParserLimits | None = None,
        lookup: SessionLookup | None = None,
    ) -> None:
        self._parser = FrameParser(limits)
        self._lookup = lookup
        self.sessions: dict[str, MsrpSession] = {}
        self._order: deque[str] = deque()
        self._control: deque[bytes] = deque()
        self._current: MsrpSession | None = None
        self._current_head: FrameHead | None = None
        self._reject: tuple[int, str] | None = None
        self.error: ParseError | None = None
        self.stats: Counter[str] = Counter()
        # responses to requests sent with send_request (AUTH), by transaction id
        self._waiters: dict[str, ResponseWaiter] = {}
        self._waiting: tuple[ResponseWaiter, Frame, list[bytes]] | None = None

    # -- sessions ----------------------------------------------------------------

    def attach(self, session: MsrpSession) -> None:
        if session.session_id not in self.sessions:
            self.sessions[session.session_id] = session
            self._order.append(session.session_id)

    def detach(self, session: MsrpSession) -> None:
        if self.sessions.pop(session.session_id, None) is not None:
            self._order.remove(session.session_id)
        if self._current is session:
            self._current = None

    def send_request(self, frame: Frame, on_response: ResponseWaiter) -> None:
        """Send a request of the connection itself (AUTH to a relay, RFC 4976 §6);
        its response, whatever its To-Path, goes to ``on_response`` as a Frame."""
        data = frame.encode()
        assert frame.tid is not None
        self._waiters[frame.tid] = on_response
        self._control.append(data)

    def forget_request(self, tid: str) -> None:
        self._waiters.pop(tid, None)

    # -- input ---------------------------------------------------------------------

    @property
    def in_frame(self) -> bool:
        """Whether a frame has begun and not ended (its bytes are still coming)."""
        return self._current_head is not None or self._parser.buffered > 0

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the transport.  Check ``error`` afterwards."""
        if self.error is not None:
            return
        while True:
            try:
                events = self._parser.feed(data)
            except ParseError as exc:
                self._dispatch(exc.events, now)
                self._parse_error(exc)
                if exc.close:
                    return
                data = b""
                continue
            self._dispatch(events, now)
            return

    def _dispatch(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, BodyData):
                if self._current is not None:
                    self._current.on_body(event.data)
                elif self._waiting is not None and len(self._waiting[2]) < 64:
                    self._waiting[2].append(event.data)
            elif isinstance(event, FrameHead):
                self._on_head(event, now)
            elif isinstance(event, FrameEnd):
                self._on_end(event, now)

    def _on_head(self, head: FrameHead, now: float) -> None:
        self.stats["frames_in"] += 1
        self._current_head = head
        self._current = None
        self._reject = None
        self._waiting = None
        headers = Headers(head.headers)
        if head.method is None and head.tid in self._waiters:
            frame = Frame(head.tid, None, head.code, head.comment, headers)
            self._waiting = (self._waiters.pop(head.tid), frame, [])
            return
        target = first_uri(headers.get("To-Path"))
        if target is None or first_uri(headers.get("From-Path")) is None:
            self._reject = (400, "missing or malformed To-Path/From-Path")
            return
        session = self.sessions.get(target.session_id or "")
        if session is None and self._lookup is not None:
            try:
                session = self._lookup(target)
            except WrongConnection:
                self._reject = (506, "session is bound to another connection")
                return
            if session is not None:
                self.attach(session)
        if session is None:
            self._reject = (481, "no such session")
            return
        self._current = session
        session.on_frame_head(head, now)

    def _on_end(self, end: FrameEnd, now: float) -> None:
        head, session, reject = self._current_head, self._current, self._reject
        self._current_head = self._current = self._reject = None
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            on_response, frame, body = waiting
            frame.body = b"".join(body) if head is not None and head.has_body else None
            frame.flag = end.flag
            on_response(frame)
        elif session is not None:
            session.on_frame_end(end.flag, now)
        elif head is not None and reject is not None:
            self._answer(head, *reject)

    def _parse_error(self, exc: ParseError) -> None:
        self.stats["parse_errors"] += 1
        self._waiting = None
        head, session = self._current_head, self._current
        self._current_head = self._current = self._reject = None
        if exc.close:
            self.error = exc
            log.warning("MSRP connection closed on bad input: %s", exc.reason)
            return
        log.info("MSRP frame %s refused: %s (%s)", exc.tid, exc.reason, exc.status)
        if head is None or head.tid != exc.tid:
            self.stats["unanswerable"] += 1  # no To-Path/From-Path to answer with
        elif session is not None:
            session.on_frame_error(exc.status, exc.reason)
        elif exc.status is not None:
            self._answer(head, exc.status, exc.reason)

    def _answer(self, head: FrameHead, code: int, reason: str) -> None:
        """Answer a request that no session takes (REPORTs and responses get nothing)."""
        self.stats[f"rejected_{code}"] += 1
        if head.method is None or head.method == "REPORT":
            return
        headers = Headers(head.headers)
        if (headers.get("Failure-Report") or "yes").lower() == "no":
            return
        frame = Frame(head.tid, code=code, comment=REASONS.get(code, reason))
        if first_uri(headers.get("From-Path")) is not None:
            frame.headers.add("To-Path", " ".join((headers.get("From-Path") or "").split()))
        me = first_uri(headers.get("To-Path"))
        if me is not None:
            frame.headers.add("From-Path", str(me))
        self._control.append(frame.encode())

    # -- output --------------------------------------------------------------------

    def data_to_send(self, now: float) -> bytes | None:
        """The next frame to write: connection answers first, then sessions in turn."""
        if self._control:
            return self._control.popleft()
        for _ in range(len(self._order)):
            sid = self._order[0]
            self._order.rotate(-1)
            data = self.sessions[sid].data_to_send(now)
            if data is not None:
                return data
        return None

    def has_data(self) -> bool:
        return bool(self._control) or any(s.has_data() for s in self.sessions.values())

    # -- time ----------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        times = [t for s in self.sessions.values() if (t := s.next_timeout()) is not None]
        return min(times) if times else None

    def handle_timeout(self, now: float) -> None:
        for session in list(self.sessions.values()):
            session.handle_timeout(now)

    def connection_lost(self, reason: str = "connection lost") -> None:
        if self.error is None and self.in_frame:
            # the peer went away inside a frame: what it sent is dropped, but counted
            self.stats["truncated_frames"] += 1
            log.info("MSRP connection lost inside a frame (%s)", reason)
        for session in list(self.sessions.values()):
            session.connection_lost(reason)
