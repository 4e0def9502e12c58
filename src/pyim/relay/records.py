"""The records a relay connection keeps per request: streams on their way out,
transactions waiting for a response, the request being received, remembered routes."""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..msrp.events import BodyData, Event, FrameEnd, FrameHead
from ..msrp.headers import ByteRange, HeaderError
from ..msrp.uri import MsrpUri
from .auth import Grant

if TYPE_CHECKING:
    from .connection import RelayConnection


@dataclass(slots=True, eq=False)
class Stream:
    """A request on its way out of one connection: head, body pieces, end-line."""

    tid: str
    method: str
    head: bytes
    has_body: bool
    upstream: RelayConnection | None
    first: str  # the URI of this relay the request was sent to
    from_path: str  # as received: the way back for a REPORT
    message_id: str | None
    raw_range: str | None  # Byte-Range as received, parsed only when needed
    failure_report: str
    pieces: deque[bytes] = field(default_factory=deque)
    ended: bool = False
    flag: str = "$"
    head_sent: bool = False
    body_sent: int = 0  # of the chunk on the wire now
    offset: int = 0  # of the whole request, over the chunks it was split into
    part_start: int = 0  # offset at which the chunk on the wire began
    split: bool = False  # interrupted at least once: chunks carry their own ranges
    answered: bool = False  # the upstream has its 200
    failed: int = 0  # status when it cannot go on
    _range: ByteRange | None = None

    @property
    def byte_range(self) -> ByteRange | None:
        if self._range is None and self.raw_range is not None:
            with contextlib.suppress(HeaderError):
                self._range = ByteRange.parse(self.raw_range)
        return self._range

    @property
    def splittable(self) -> bool:
        return self.method == "SEND" and self.has_body and self.byte_range is not None


@dataclass(slots=True, eq=False)
class Txn:
    """A request forwarded on a connection, waiting for that hop's response."""

    tid: str
    method: str
    upstream: RelayConnection | None
    first: str
    from_path: str
    message_id: str | None
    byte_range: str
    failure_report: str
    deadline: float


@dataclass(slots=True, eq=False)
class Inbound:
    """The request being received: where it goes or why it is refused."""

    head: FrameHead
    stream: Stream | None = None
    downstream: RelayConnection | None = None
    code: int = 0
    reason: str = ""
    auth_me: MsrpUri | None = None


@dataclass(slots=True, eq=False)
class Route:
    """Where requests with one (first, next hop, hops, From-Path) go, while it holds:
    the grants it relied on are live and the next hop's connection is open."""

    grants: tuple[Grant, ...]
    down: RelayConnection
    local: bool  # the next hop is another path of this relay: pop it too


MAX_ROUTES = 256  # routes remembered per connection

# A read of many small requests is written out in parts: the 200s of the first ones
# reach their senders (which may send more) while the rest are handled.
FLUSH_EVERY = 32

Whole = tuple[bytes, str, int]  # body, end-line flag, index of the event after them


def whole_request(events: list[Event], i: int, has_body: bool) -> Whole | None:
    """The rest of the request whose head is ``events[i - 1]``, if ``events`` has it
    all: its body (at most one piece), its end-line flag and where the next event is."""
    body = b""
    n = len(events)
    if has_body:
        if i >= n or type(events[i]) is not BodyData:
            return None
        body = events[i].data  # type: ignore[union-attr]
        i += 1
    if i >= n or type(events[i]) is not FrameEnd:
        return None
    return body, events[i].flag, i + 1  # type: ignore[union-attr]


def end_line(tid: str, flag: str, has_body: bool) -> bytes:
    return (b"\r\n-------" if has_body else b"-------") + tid.encode() + flag.encode() + b"\r\n"
