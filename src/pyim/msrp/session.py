"""The MSRP session engine (RFC 4975 §7), sans-IO.

An :class:`MsrpSession` is one endpoint of one MSRP session: it cuts outgoing
messages into chunks, reassembles incoming ones, answers requests, produces and
consumes REPORTs and times transactions out.  It never touches a socket: the
connection (:mod:`pyim.msrp.connection`) hands it parser events with the current
time, and pulls the frames it has to send.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .events import FrameHead
from .frame import Frame, Headers, new_tid
from .headers import ByteRange, ContentType, HeaderError, Status
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
from .uri import MsrpUri, MsrpUriError, format_path, parse_path

log = logging.getLogger(__name__)

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request Timeout",
    413: "Message Too Large",
    415: "Unsupported Media Type",
    423: "Interval Out-of-Bounds",
    481: "Session Does Not Exist",
    501: "Not Implemented",
    506: "Wrong Connection",
}
KNOWN_METHODS = frozenset({"SEND", "REPORT"})

# Every frame of a session carries the same To-Path and From-Path, so their parsed
# form is memoised (by exact text; MsrpUri is immutable).  Bounded: at most
# _MEMO_SIZE entries of at most _MEMO_MAX_KEY characters each, oldest evicted first;
# text that fails to parse is never stored.
_MEMO_SIZE = 256
_MAX_REPORTABLE = 4096  # held messages whose Success-Report the application still owes
_MEMO_MAX_KEY = 4096
_T = TypeVar("_T")
_uri_memo: dict[str, MsrpUri] = {}
# The empty table of every session that has nothing in it (a server's idle sessions are
# many; a dict costs 64 bytes empty, more once used).  Never written: a session makes
# its own dict on its first write and goes back to this one when it empties.
_EMPTY: dict[Any, Any] = {}
_path_memo: dict[str, tuple[MsrpUri, ...]] = {}


def _remember(memo: dict[str, _T], key: str, value: _T) -> None:
    if len(key) <= _MEMO_MAX_KEY:
        if len(memo) >= _MEMO_SIZE:
            del memo[next(iter(memo))]
        memo[key] = value


def parse_uri_cached(text: str) -> MsrpUri:
    """:meth:`MsrpUri.parse` through a small bounded memo."""
    uri = _uri_memo.get(text)
    if uri is None:
        uri = MsrpUri.parse(text)
        _remember(_uri_memo, text, uri)
    return uri


def parse_path_cached(value: str) -> list[MsrpUri]:
    """:func:`~pyim.msrp.uri.parse_path` through a small bounded memo."""
    path = _path_memo.get(value)
    if path is None:
        path = tuple(parse_path(value))
        _remember(_path_memo, value, path)
    return list(path)


@dataclass(slots=True)
class SessionConfig:
    """Tunables of a session; every bound has a safe default."""

    chunk_size: int = 16 * 1024
    transaction_timeout: float = 30.0
    max_message_size: int | None = 256 * 1024 * 1024
    accept_types: tuple[str, ...] = ("*",)
    max_pending_chunks: int = 64
    max_incoming_messages: int = 32
    max_incoming_bytes: int = 512 * 1024 * 1024  # buffered by all unfinished messages
    # The application confirms each complete incoming message (``confirm``) before the
    # 200 to its last chunk goes out, and sends its Success-Report itself (``report``):
    # a store-and-forward server answers once the message is durable and reports
    # once it reached the recipient.
    hold_completion: bool = False
    # Incoming messages larger than this (or of unknown size) are not reassembled: their
    # body comes out piece by piece as StreamStarted/StreamData/StreamEnded events
    # (a server relays them chunk by chunk).  None: every message is reassembled.
    stream_above: int | None = None


@dataclass(slots=True)
class _Outgoing:
    message_id: str
    content_type: str
    body: memoryview | bytearray
    success_report: bool
    failure_report: str
    headers: list[tuple[str, str]]
    offset: int = 0
    acked: int = 0
    pending: int = 0
    reported: list[tuple[int, int]] = field(default_factory=list)
    chunks: int = 0
    abort: bool = False
    done: bool = False
    # a stream (open_stream): the body is written as it comes, sent data is dropped
    streaming: bool = False
    complete: bool = True
    declared: int | None = None  # the total announced in Byte-Range (None: "*")
    base: int = 0  # message offset of body[0]

    @property
    def available(self) -> int:
        return self.base + len(self.body)

    @property
    def size(self) -> int:
        """The whole size; for a stream still being written, more than is sent."""
        if self.complete:
            return self.available
        return self.declared if self.declared is not None else 2**62

    def sendable_end(self, chunk_size: int) -> int:
        """Where the next chunk may end.  A stream still being written keeps its
        last byte back, so its final chunk (``$``) always carries data."""
        limit = self.available if self.complete else self.available - 1
        return min(limit, self.offset + chunk_size)


@dataclass(slots=True)
class _Incoming:
    message_id: str
    content_type: str | None
    headers: Headers
    total: int | None
    buf: bytearray = field(default_factory=bytearray)
    ranges: list[tuple[int, int]] = field(default_factory=list)
    final_end: int | None = None
    streamed: bool = False  # handed out piece by piece (SessionConfig.stream_above)

    def covered(self) -> int:
        return sum(end - start for start, end in self.ranges)


@dataclass(slots=True)
class _Transaction:
    tid: str
    message: _Outgoing
    start: int
    end: int
    deadline: float | None


@dataclass(slots=True)
class _RequestInProgress:
    """An incoming request between its head and its end-line."""

    head: FrameHead
    headers: Headers
    from_path: list[MsrpUri] | None = None
    status: int | None = None
    reason: str = ""
    message: _Incoming | None = None
    byte_range: ByteRange | None = None
    position: int = 0
    received: int = 0


def _add_range(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Merge the half-open range [start, end) into sorted, disjoint ``ranges``."""
    if end <= start:
        return ranges
    out: list[tuple[int, int]] = []
    for s, e in ranges:
        if e < start or s > end:
            out.append((s, e))
        else:
            start, end = min(s, start), max(e, end)
    out.append((start, end))
    out.sort()
    return out


class SessionStats(Mapping[str, int]):
    """A session's counters: read like a ``dict`` (``stats["frames_in"]``), kept in
    slots (a server holds thousands of sessions; a dict of six costs 3x more)."""

    __slots__ = (
        "errors_sent",
        "frames_in",
        "frames_out",
        "messages_in",
        "messages_out",
        "responses_ignored",
    )
    _NAMES = (
        "frames_in",
        "frames_out",
        "messages_in",
        "messages_out",
        "errors_sent",
        "responses_ignored",
    )

    def __init__(self) -> None:
        self.frames_in = self.frames_out = self.messages_in = self.messages_out = 0
        self.errors_sent = self.responses_ignored = 0

    def __getitem__(self, name: str) -> int:
        if name not in self._NAMES:
            raise KeyError(name)
        value: int = getattr(self, name)
        return value

    def __setitem__(self, name: str, value: int) -> None:
        if name not in self._NAMES:
            raise KeyError(name)
        setattr(self, name, value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)

    def __repr__(self) -> str:
        return repr(dict(self))


class MsrpSession:
    """One endpoint of an MSRP session.

    ``local_uri`` is this endpoint's URI (the last one of its ``a=path``);
    ``remote_path`` is the peer's ``a=path`` (relays first, the peer last).

    A server holds many idle sessions: the queues of frames to send exist only while
    they hold something, the bounded memories (refused, reportable) once used.
    """

    __slots__ = (
        "_buffered",
        "_completed",
        "_control",
        "_events",
        "_held",
        "_incoming",
        "_new_id",
        "_outgoing",
        "_queue",
        "_refused",
        "_reportable",
        "_request",
        "_transactions",
        "closed",
        "config",
        "local_uri",
        "remote_path",
        "route",
        "stats",
    )

    def __init__(
        self,
        local_uri: MsrpUri,
        remote_path: list[MsrpUri] | None = None,
        config: SessionConfig | None = None,
        *,
        id_factory: Callable[[], str] = new_tid,
    ) -> None:
        self.local_uri = local_uri
        self.remote_path: list[MsrpUri] = list(remote_path or [])
        # one's own relays (RFC 4976), crossed before the peer's path: To-Path = route + remote_path
        self.route: list[MsrpUri] = []
        self.config = config or SessionConfig()
        self._new_id = id_factory
        self._control: deque[bytes] | None = None  # responses and REPORTs to send
        self._queue: deque[_Outgoing] | None = None  # messages with chunks to send
        # tables made on first write (see _EMPTY), idle again when emptied
        self._outgoing: dict[str, _Outgoing] = _EMPTY
        self._transactions: dict[str, _Transaction] = _EMPTY
        self._incoming: dict[str, _Incoming] = _EMPTY
        # bounded memories, oldest first (dicts keep insertion order)
        self._refused: dict[str, None] | None = None
        self._buffered = 0
        self._completed: dict[str, None] = _EMPTY
        self._events: list[SessionEvent] = []
        self._request: _RequestInProgress | None = None
        self._held: dict[str, _RequestInProgress] = _EMPTY  # hold_completion: to confirm
        self._reportable: dict[str, tuple[list[MsrpUri], int]] | None = None
        self.closed = False
        self.stats = SessionStats()

    @property
    def session_id(self) -> str:
        return self.local_uri.session_id or ""

    # -- sending ---------------------------------------------------------------

    def send_message(
        self,
        content_type: str,
        body: bytes,
        *,
        message_id: str | None = None,
        success_report: bool = False,
        failure_report: str = "yes",
        headers: list[tuple[str, str]] | None = None,
    ) -> str:
        """Queue a message; returns its Message-ID.  Frames come out of ``data_to_send``."""
        if self.closed:
            raise RuntimeError("session is closed")
        if failure_report not in ("yes", "no", "partial"):
            raise ValueError(f"bad Failure-Report value {failure_report!r}")
        mid = message_id or self._new_id()
        if mid in self._outgoing:
            raise ValueError(f"Message-ID {mid} is already in use")
        msg = _Outgoing(
            mid,
            content_type,
            memoryview(bytes(body)),
            success_report,
            failure_report,
            list(headers or []),
        )
        if self._outgoing is _EMPTY:
            self._outgoing = {}
        self._outgoing[mid] = msg
        if self._queue is None:
            self._queue = deque()
        self._queue.append(msg)  # (new: not in the round yet)
        self.stats.messages_out += 1
        return mid

    def _enqueue(self, msg: _Outgoing) -> None:
        """Put ``msg`` in the round of messages to send (once)."""
        queue = self._queue
        if queue is None:
            self._queue = deque((msg,))
        elif msg not in queue:
            queue.append(msg)

    def _send_control(self, data: bytes) -> None:
        control = self._control
        if control is None:
            self._control = deque((data,))
        else:
            control.append(data)

    def open_stream(
        self,
        content_type: str,
        *,
        total: int | None = None,
        message_id: str | None = None,
        success_report: bool = False,
        failure_report: str = "yes",
        headers: list[tuple[str, str]] | None = None,
    ) -> str:
        """Start a message whose body is written later (``stream_write``, then
        ``stream_end``): chunks go out as the body comes, sent bytes are not kept."""
        mid = self.send_message(
            content_type,
            b"",
            message_id=message_id,
            success_report=success_report,
            failure_report=failure_report,
            headers=headers,
        )
        msg = self._outgoing[mid]
        msg.body = bytearray()
        msg.streaming, msg.complete, msg.declared = True, False, total
        return mid

    def stream_write(self, message_id: str, data: bytes) -> None:
        msg = self._outgoing.get(message_id)
        if msg is None or not msg.streaming or msg.complete:
            raise ValueError(f"no open stream {message_id}")
        assert isinstance(msg.body, bytearray)
        msg.body += data
        self._enqueue(msg)

    def stream_end(self, message_id: str) -> None:
        msg = self._outgoing.get(message_id)
        if msg is None or not msg.streaming:
            return
        msg.complete = True
        self._enqueue(msg)

    def stream_backlog(self, message_id: str) -> int:
        """Bytes written to a stream and not sent yet (for the writer's backpressure)."""
        msg = self._outgoing.get(message_id)
        return 0 if msg is None else len(msg.body)

    def send_keepalive(self) -> None:
        """Queue an empty SEND (RFC 4975 §7.1.1): binds a connection, keeps NATs open."""
        frame = self._request_frame("SEND")
        frame.headers.add("Message-ID", self._new_id())
        frame.headers.add("Byte-Range", "1-0/0")
        self._send_control(self._encode(frame))

    def abort_message(self, message_id: str) -> None:
        """Stop sending ``message_id``: its next chunk carries the ``#`` flag."""
        msg = self._outgoing.get(message_id)
        if msg is not None and not msg.done and msg.offset < msg.size:
            msg.abort = True
            self._enqueue(msg)

    def incoming_progress(self, message_id: str) -> int | None:
        """Bytes received so far of an incoming message in progress, or None."""
        msg = self._incoming.get(message_id)
        return None if msg is None else msg.covered()

    def refuse_message(self, message_id: str) -> None:
        """Refuse an incoming message midway: its further chunks get 413 (§7.3)."""
        self._refuse(message_id)

    def _refuse(self, message_id: str) -> None:
        refused = self._refused
        if refused is None:
            refused = self._refused = {}
        refused[message_id] = None
        if len(refused) > 1024:
            del refused[next(iter(refused))]
        self._drop_incoming(message_id)

    def _drop_incoming(self, message_id: str) -> _Incoming | None:
        incoming = self._incoming
        msg = incoming.pop(message_id, None)
        if msg is not None:
            self._buffered -= len(msg.buf)
            if not incoming:
                self._incoming = _EMPTY
        return msg

    def has_data(self) -> bool:
        queue = self._queue
        return bool(self._control) or (queue is not None and any(self._sendable(m) for m in queue))

    def data_to_send(self, now: float) -> bytes | None:
        """The next frame to write, or None.  Control frames (responses, REPORTs) go first."""
        control = self._control
        if control:
            data = control.popleft()
            if not control:
                self._control = None
            return data
        queue = self._queue
        if queue is None:
            return None
        try:
            for _ in range(len(queue)):
                msg = queue.popleft()
                if not self._sendable(msg):
                    if not msg.done:
                        queue.append(msg)
                    continue
                data = self._next_chunk(msg, now)
                more = msg.offset < msg.size or msg.abort
                # (a stream waiting for data is queued again by its next write)
                ready = not msg.streaming or msg.sendable_end(self.config.chunk_size) > msg.offset
                if not msg.done and more and ready:
                    queue.append(msg)
                return data
            return None
        finally:
            if not queue and self._queue is queue:
                self._queue = None

    def _sendable(self, msg: _Outgoing) -> bool:
        if msg.done:
            return False
        if msg.abort:
            return True
        if msg.pending >= self.config.max_pending_chunks:
            return False
        if msg.streaming:
            return msg.sendable_end(self.config.chunk_size) > msg.offset or (
                msg.complete and msg.chunks == 0
            )
        return msg.offset < msg.size or msg.chunks == 0

    def _next_chunk(self, msg: _Outgoing, now: float) -> bytes:
        start = msg.offset
        if msg.abort:
            end, flag = start, "#"
        else:
            end = msg.sendable_end(self.config.chunk_size)
            flag = "$" if msg.complete and end >= msg.size else "+"
        frame = self._request_frame("SEND")
        h = frame.headers
        h.add("Message-ID", msg.message_id)
        if msg.success_report:
            h.add("Success-Report", "yes")
        if msg.failure_report != "yes":
            h.add("Failure-Report", msg.failure_report)
        total = msg.size if msg.complete else msg.declared
        h.add("Byte-Range", str(ByteRange(start + 1, end, total)))
        for name, value in msg.headers:
            h.add(name, value)
        h.add("Content-Type", msg.content_type)
        frame.body = bytes(msg.body[start - msg.base : end - msg.base])
        if msg.streaming:  # what is sent is not kept
            assert isinstance(msg.body, bytearray)
            del msg.body[: end - msg.base]
            msg.base = end
        frame.flag = flag
        data = self._encode(frame)
        msg.offset = end
        msg.chunks += 1
        if flag == "#":
            msg.done = True
            self._finish(msg)
            self._events.append(MessageFailed(msg.message_id, 0, "aborted by sender"))
            return data
        if msg.failure_report == "yes":
            assert frame.tid is not None
            msg.pending += 1
            timeout = self.config.transaction_timeout
            if self._transactions is _EMPTY:
                self._transactions = {}
            self._transactions[frame.tid] = _Transaction(
                frame.tid, msg, start, end, now + timeout if timeout else None
            )
        else:
            msg.acked = end
            if end >= msg.size:
                self._sent(msg)
        return data

    def _request_frame(self, method: str) -> Frame:
        frame = Frame(self._new_id(), method)
        frame.headers.add("To-Path", format_path(self.route + self.remote_path))
        frame.headers.add("From-Path", str(self.local_uri))
        return frame

    def _encode(self, frame: Frame) -> bytes:
        self.stats.frames_out += 1
        return frame.encode()

    def _sent(self, msg: _Outgoing) -> None:
        """All of ``msg`` went out and was accepted hop by hop."""
        self._events.append(MessageSent(msg.message_id))
        if not msg.success_report:
            msg.done = True
            self._finish(msg)

    def _finish(self, msg: _Outgoing) -> None:
        outgoing, transactions = self._outgoing, self._transactions
        outgoing.pop(msg.message_id, None)
        for tid in [t.tid for t in transactions.values() if t.message is msg]:
            del transactions[tid]
        if not outgoing:
            self._outgoing = _EMPTY
        if not transactions:
            self._transactions = _EMPTY

    def _fail(self, msg: _Outgoing, code: int, reason: str) -> None:
        if msg.done:
            return
        msg.done = True
        self._finish(msg)
        self._events.append(MessageFailed(msg.message_id, code, reason))

    # -- receiving ---------------------------------------------------------------

    def events(self) -> list[SessionEvent]:
        """Take the events produced since the last call."""
        out, self._events = self._events, []
        return out

    def on_frame_head(self, head: FrameHead, now: float) -> None:
        """A frame addressed to this session starts (the connection routed it here)."""
        self.stats.frames_in += 1
        headers = Headers(head.headers)
        if head.method is None:
            self._on_response(head, headers)
            return
        req = _RequestInProgress(head, headers)
        self._request = req
        try:
            to_path = parse_path_cached(headers.get("To-Path") or "")
            req.from_path = parse_path_cached(headers.get("From-Path") or "")
        except (MsrpUriError, ValueError):
            req.status, req.reason = 400, "bad To-Path or From-Path"
            return
        if to_path[0] != self.local_uri:
            req.status, req.reason = 481, "To-Path is not this session"
            return
        if self.remote_path and req.from_path[-1] != self.remote_path[-1]:
            # a relay on the way may report a failure itself (RFC 4976 §7.3)
            relays = self.route + self.remote_path[:-1]
            if head.method != "REPORT" or req.from_path[-1] not in relays:
                req.status, req.reason = 403, "From-Path is not this session's peer"
                return
        if head.method == "SEND":
            self._start_send(req)
        elif head.method != "REPORT":
            req.status, req.reason = 501, f"method {head.method} not implemented"

    def _start_send(self, req: _RequestInProgress) -> None:
        headers = req.headers
        mid = headers.get("Message-ID")
        try:
            br = ByteRange.parse(headers.get("Byte-Range") or "1-*/*")
        except HeaderError:
            req.status, req.reason = 400, "bad Byte-Range"
            return
        req.byte_range = br
        if not mid:
            req.status, req.reason = 400, "SEND without Message-ID"
            return
        if self._refused is not None and mid in self._refused:
            req.status, req.reason = 413, "message refused"
            return
        if not req.head.has_body or mid in self._completed:
            return  # a keep-alive, a bind of the connection, or a late duplicate
        ctype = headers.get("Content-Type")
        if ctype is None or not self._acceptable(ctype):
            req.status, req.reason = 415, f"{ctype} is not accepted"
            return
        limit = self.config.max_message_size
        if limit is not None and br.total is not None and br.total > limit:
            req.status, req.reason = 413, "message larger than max-size"
            self._refuse(mid)
            return
        msg = self._incoming.get(mid)
        if msg is None:
            if len(self._incoming) >= self.config.max_incoming_messages:
                req.status, req.reason = 413, "too many messages in progress"
                return
            msg = _Incoming(mid, ctype, headers, br.total)
            if self._incoming is _EMPTY:
                self._incoming = {}
            self._incoming[mid] = msg
            above = self.config.stream_above
            if above is not None and (br.total is None or br.total > above):
                msg.streamed = True
                self._events.append(StreamStarted(mid, ctype, headers, br.total))
        elif br.total is not None and msg.total is None:
            msg.total = br.total
        req.message = msg
        req.position = br.start - 1

    def _acceptable(self, ctype: str) -> bool:
        try:
            return ContentType.parse(ctype).matches(self.config.accept_types)
        except HeaderError:
            return False

    def on_body(self, data: bytes) -> None:
        req = self._request
        if req is None or req.status is not None:
            return
        req.received += len(data)
        msg = req.message
        if msg is None:
            return
        pos = req.position
        end = pos + len(data)
        limit = self.config.max_message_size
        if (msg.total is not None and end > msg.total) or (limit is not None and end > limit):
            req.status, req.reason = 413, "message larger than announced or allowed"
            self._refuse(msg.message_id)
            return
        if msg.streamed:  # handed on as it comes, never held whole
            self._events.append(StreamData(msg.message_id, pos, data))
            msg.ranges = _add_range(msg.ranges, pos, end)
            req.position = end
            return
        grow = end - len(msg.buf)
        if grow > 0:
            if self._buffered + grow > self.config.max_incoming_bytes:
                req.status, req.reason = 413, "too much unfinished incoming data"
                self._refuse(msg.message_id)
                return
            self._buffered += grow
            if pos > len(msg.buf):
                msg.buf.extend(bytes(pos - len(msg.buf)))
        msg.buf[pos:end] = data
        msg.ranges = _add_range(msg.ranges, pos, end)
        req.position = end

    def on_frame_end(self, flag: str, now: float) -> None:
        req, self._request = self._request, None
        if req is None:
            return
        method = req.head.method
        if req.status is not None:
            self._respond(req, req.status, req.reason)
            if req.message is not None and req.status == 413:
                self._refuse(req.message.message_id)
            return
        if method == "REPORT":
            self._on_report(req.headers)
            return
        msg = req.message
        if msg is None:
            self._respond(req, 200, "OK")
            return
        if flag == "#":
            self._respond(req, 200, "OK")
            self._drop_incoming(msg.message_id)
            self._events.append(MessageAborted(msg.message_id, msg.covered()))
            return
        if flag == "$":
            msg.final_end = req.position
            if msg.total is None:
                msg.total = req.position
        total = msg.total
        complete = msg.final_end is not None and (total == 0 or msg.ranges == [(0, total)])
        if complete and self.config.hold_completion:
            self._complete(msg, req, held=True)
            return
        self._respond(req, 200, "OK")
        if complete:
            self._complete(msg, req)

    def _complete(self, msg: _Incoming, req: _RequestInProgress, *, held: bool = False) -> None:
        self._drop_incoming(msg.message_id)
        completed = self._completed
        if completed is _EMPTY:
            completed = self._completed = {}
        completed[msg.message_id] = None
        if len(completed) > 1024:
            del completed[next(iter(completed))]
        assert msg.total is not None
        self.stats.messages_in += 1
        if msg.streamed:
            self._events.append(StreamEnded(msg.message_id, msg.total))
        else:
            with memoryview(msg.buf) as view:  # one copy (a bytearray slice would add one)
                body = bytes(view[: msg.total])
            self._events.append(
                MessageReceived(msg.message_id, msg.content_type, body, msg.headers)
            )
        wants_report = (msg.headers.get("Success-Report") or "no").lower() == "yes"
        if held:
            if self._held is _EMPTY:
                self._held = {}
            self._held[msg.message_id] = req
            if wants_report:
                reportable = self._reportable
                if reportable is None:
                    reportable = self._reportable = {}
                reportable[msg.message_id] = (list(req.from_path or []), msg.total)
                while len(reportable) > _MAX_REPORTABLE:
                    del reportable[next(iter(reportable))]
        elif wants_report:
            self._report(req, msg.message_id, msg.total, 200, "OK")

    def confirm(self, message_id: str, code: int = 200, reason: str = "OK") -> bool:
        """Answer the last chunk of a held message (``hold_completion``): 200 once it is
        safe, or an error the sender will see (e.g. 503 when it cannot be stored)."""
        held = self._held
        req = held.pop(message_id, None)
        if req is None:
            return False
        if not held:
            self._held = _EMPTY
        self._respond(req, code, REASONS.get(code, reason) if code != 200 else reason)
        if code != 200:
            self._forget_reportable(message_id)
        return True

    def _forget_reportable(self, message_id: str) -> tuple[list[MsrpUri], int] | None:
        reportable = self._reportable
        if reportable is None:
            return None
        entry = reportable.pop(message_id, None)
        if not reportable:
            self._reportable = None
        return entry

    def report(self, message_id: str, code: int = 200, reason: str = "OK") -> bool:
        """Send the Success-Report (or a failure REPORT) of a held message, when it
        asked for one (``hold_completion``); False when there is nothing to report."""
        entry = self._forget_reportable(message_id)
        if entry is None:
            return False
        from_path, total = entry
        frame = Frame(self._new_id(), "REPORT")
        frame.headers.add("To-Path", format_path(from_path or self.remote_path))
        frame.headers.add("From-Path", str(self.local_uri))
        frame.headers.add("Message-ID", message_id)
        frame.headers.add("Byte-Range", str(ByteRange(1, total, total)))
        frame.headers.add("Status", str(Status(0, code, reason)))
        self._send_control(self._encode(frame))
        return True

    def _respond(self, req: _RequestInProgress, code: int, reason: str) -> None:
        """Answer a request per its Failure-Report (§7.2); REPORTs are never answered."""
        if req.head.method == "REPORT":
            return
        fr = (req.headers.get("Failure-Report") or "yes").lower()
        if fr == "no" or (fr == "partial" and code == 200):
            return
        if code != 200:
            self.stats.errors_sent += 1
            log.info("MSRP %s %s answered %d: %s", req.head.method, req.head.tid, code, reason)
        frame = Frame(req.head.tid, code=code, comment=REASONS.get(code, reason))
        if req.from_path:
            # the whole From-Path, not only the previous hop: relays that route
            # responses back (Kamailio's msrp module) need it, hop-by-hop ones ignore it
            frame.headers.add("To-Path", format_path(req.from_path))
        frame.headers.add("From-Path", str(self.local_uri))
        self._send_control(self._encode(frame))

    def _report(
        self, req: _RequestInProgress, message_id: str, total: int, code: int, reason: str
    ) -> None:
        frame = Frame(self._new_id(), "REPORT")
        frame.headers.add("To-Path", format_path(req.from_path or self.remote_path))
        frame.headers.add("From-Path", str(self.local_uri))
        frame.headers.add("Message-ID", message_id)
        frame.headers.add("Byte-Range", str(ByteRange(1, total, total)))
        frame.headers.add("Status", str(Status(0, code, reason)))
        self._send_control(self._encode(frame))

    def _on_report(self, headers: Headers) -> None:
        msg = self._outgoing.get(headers.get("Message-ID") or "")
        if msg is None:
            self.stats.responses_ignored += 1
            return
        try:
            status = Status.parse(headers.get("Status") or "")
            br = ByteRange.parse(headers.get("Byte-Range") or f"1-{msg.size}/{msg.size}")
        except HeaderError:
            self.stats.responses_ignored += 1
            return
        if status.code != 200:
            self._fail(msg, status.code, status.comment or "failure report")
            return
        end = br.end if br.end is not None else msg.size
        msg.reported = _add_range(msg.reported, br.start - 1, end)
        if msg.reported == [(0, msg.size)] or msg.size == 0:
            msg.done = True
            self._finish(msg)
            self._events.append(MessageDelivered(msg.message_id))

    def _on_response(self, head: FrameHead, headers: Headers) -> None:
        transactions = self._transactions
        tr = transactions.pop(head.tid, None)
        if tr is None:
            self.stats.responses_ignored += 1
            return
        if not transactions:
            self._transactions = _EMPTY
        msg = tr.message
        msg.pending -= 1
        code = head.code or 0
        if code != 200:
            self._fail(msg, code, head.comment or REASONS.get(code, "error"))
            return
        msg.acked = max(msg.acked, tr.end)
        if msg.pending == 0 and msg.offset >= msg.size and not msg.abort:
            self._sent(msg)

    def on_frame_error(self, status: int | None, reason: str) -> None:
        """The frame in progress broke (parser error); answer it if it can be answered."""
        req, self._request = self._request, None
        if req is None:
            return
        if req.message is not None and status == 413:
            self._refuse(req.message.message_id)
        if status is not None:
            self._respond(req, status, reason)

    # -- time ------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        deadlines = [t.deadline for t in self._transactions.values() if t.deadline is not None]
        return min(deadlines) if deadlines else None

    def handle_timeout(self, now: float) -> None:
        """Fail messages whose transactions went unanswered (408, §7.1.1)."""
        for tr in list(self._transactions.values()):
            if tr.deadline is not None and tr.deadline <= now:
                self._fail(tr.message, 408, "transaction timed out")

    def connection_lost(self, reason: str = "connection lost") -> None:
        """The connection under the session is gone: everything in flight fails."""
        for msg in list(self._outgoing.values()):
            self._fail(msg, 0, reason)
        self._queue = None
        self._incoming = _EMPTY
        self._held = _EMPTY
        self._buffered = 0
        self._request = None
