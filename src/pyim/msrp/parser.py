"""Incremental MSRP frame parser: the pure-Python reference.

``native/_speedups.pyx`` holds the same parser compiled with Cython; both must
produce the same events and the same errors for the same input, however it is
split (tests/test_msrp_parser_parity.py).  Change both together.

Rules that make the output deterministic:

* a body is handed out as it arrives, except a tail that may be the start of the
  end-line: from the first CR in the last ``len(end-line) - 1`` bytes on;
* an over-long line is reported as soon as more than ``max_line_length + 1``
  bytes are buffered without a LF, or when a complete line is longer than
  ``max_line_length``, so the error does not depend on how the input is split.
* after a 413 "chunk too large", the skip to the end-line counts the bytes past
  ``max_chunk_size`` (whatever part of the body was already handed out), and the
  frame is "too large" once that count exceeds ``max_chunk_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ParseError
from .events import BodyData, Event, FrameEnd, FrameHead

_START, _HEADERS, _BODY, _SKIP, _DEAD = range(5)
_MAGIC = b"MSRP "
_TID_FIRST = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_TID_CHARS = _TID_FIRST | frozenset(b".-+%=")
_UPALPHA = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset(b"0123456789")
# RFC 4975 header-name = hname = ALPHA *(alphanum / other-mark), other-mark = "-" / "_" ...
_TOKEN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!%*+`'~")
_FLAGS = b"$+#"


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Bounds on what one frame may make the parser hold (all in bytes but the count)."""

    max_line_length: int = 4096
    max_header_bytes: int = 16 * 1024
    max_headers: int = 64
    max_chunk_size: int = 16 * 1024 * 1024


class FrameParser:
    """Turns a byte stream into :mod:`pyim.msrp.events`.

    ``feed(data)`` returns the events completed by ``data``; on bad input it raises
    :class:`~pyim.msrp.errors.ParseError` (see there for how to go on).
    """

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self.limits = limits or ParserLimits()
        self._buf = bytearray()
        self._state = _START
        self._tid = ""
        self._end = b""
        self._method: str | None = None
        self._code: int | None = None
        self._comment: str | None = None
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._body_len = 0
        self._skipped = 0
        self._fatal: ParseError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for more input."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self._fatal is not None:
            raise ParseError(self._fatal.reason, status=self._fatal.status, close=True)
        self._buf += data
        try:
            self._run(events)
        except ParseError as exc:
            if exc.close:
                self._state = _DEAD
                self._fatal = exc
                self._buf.clear()
            exc.events = events
            raise
        return events

    # -- states ---------------------------------------------------------------

    def _run(self, events: list[Event]) -> None:
        while True:
            state = self._state
            if state == _START:
                if not self._start_line():
                    return
            elif state == _HEADERS:
                if not self._header_line(events):
                    return
            elif state == _BODY:
                if not self._body(events):
                    return
            elif not self._skip():
                return

    def _line(self) -> bytes | None:
        """Take one CRLF-terminated line off the buffer, or None if incomplete."""
        buf = self._buf
        limit = self.limits.max_line_length
        lf = buf.find(b"\n", 0, limit + 2)
        if lf < 0:
            if len(buf) > limit + 1:
                raise self._error("line too long", close=True)
            return None
        if lf == 0 or buf[lf - 1] != 0x0D:
            raise self._error("bare LF", close=True)
        if lf - 1 > limit:
            raise self._error("line too long", close=True)
        line = bytes(buf[: lf - 1])
        del buf[: lf + 1]
        return line

    def _start_line(self) -> bool:
        buf = self._buf
        if not buf:
            return False
        n = min(len(buf), 5)
        if buf[:n] != _MAGIC[:n]:
            raise self._error("bad start line", close=True)
        line = self._line()
        if line is None:
            return False
        parts = line.split(b" ", 2)
        if len(parts) != 3:
            raise self._error("bad start line", close=True)
        tid = parts[1]
        if not 4 <= len(tid) <= 32 or tid[0] not in _TID_FIRST or not _TID_CHARS.issuperset(tid):
            raise self._error("bad transaction id", close=True)
        self._tid = tid.decode("ascii")
        self._end = b"\r\n-------" + tid
        self._headers = []
        self._header_bytes = len(line) + 2
        self._body_len = 0
        self._method = self._comment = self._code = None
        rest = parts[2]
        self._state = _HEADERS
        if len(rest) >= 3 and _DIGITS.issuperset(rest[:3]) and (len(rest) == 3 or rest[3] == 0x20):
            self._code = int(rest[:3])
            if len(rest) > 4:
                try:
                    self._comment = rest[4:].decode("utf-8")
                except UnicodeDecodeError:
                    raise self._recoverable("bad status comment") from None
        elif rest and _UPALPHA.issuperset(rest):
            self._method = rest.decode("ascii")
        else:
            raise self._recoverable("bad method")
        return True

    def _header_line(self, events: list[Event]) -> bool:
        line = self._line()
        if line is None:
            return False
        self._header_bytes += len(line) + 2
        if self._header_bytes > self.limits.max_header_bytes:
            raise self._error("header block too large", close=True)
        if not line:
            events.append(self._head(True))
            self._state = _BODY
            return True
        end = self._end
        if len(line) == len(end) - 1 and line.startswith(end[2:]) and line[-1] in _FLAGS:
            events.append(self._head(False))
            events.append(FrameEnd(self._tid, chr(line[-1])))
            self._state = _START
            return True
        colon = line.find(b":")
        name = line[:colon]
        if colon <= 0 or not _TOKEN.issuperset(name):
            raise self._recoverable("malformed header")
        if len(self._headers) >= self.limits.max_headers:
            raise self._error("too many headers", close=True)
        try:
            value = line[colon + 1 :].strip(b" \t").decode("utf-8")
        except UnicodeDecodeError:
            raise self._recoverable("header is not UTF-8") from None
        if "\r" in value:
            raise self._recoverable("malformed header")
        self._headers.append((name.decode("ascii"), value))
        return True

    def _head(self, has_body: bool) -> FrameHead:
        return FrameHead(
            self._tid, self._method, self._code, self._comment, self._headers, has_body
        )

    def _find_end(self) -> tuple[int, int]:
        """(position of the end-line's CRLF, flag byte) or (hold-back point, -1)."""
        buf = self._buf
        end = self._end
        n = len(buf)
        full = len(end) + 3
        pos = buf.find(end)
        while pos >= 0:
            if pos + full > n:
                break
            flag = buf[pos + len(end)]
            if flag in _FLAGS and buf[pos + full - 2 : pos + full] == b"\r\n":
                return pos, flag
            pos = buf.find(end, pos + 1)
        tail = max(0, n - (full - 1))
        cr = buf.find(b"\r", tail)
        return (n if cr < 0 else cr), -1

    def _body(self, events: list[Event]) -> bool:
        pos, flag = self._find_end()
        if pos:
            if self._body_len + pos > self.limits.max_chunk_size:
                # Count the skip from where the chunk crossed the limit (not from what
                # this read held), so "frame too large" does not depend on the split.
                skipped = self._body_len - self.limits.max_chunk_size
                self._body_len = 0
                err = self._recoverable("chunk too large", status=413, prefix=False)
                self._skipped = skipped
                raise err
            self._body_len += pos
            events.append(BodyData(self._tid, bytes(self._buf[:pos])))
        if flag < 0:
            del self._buf[:pos]
            return False
        del self._buf[: pos + len(self._end) + 3]
        events.append(FrameEnd(self._tid, chr(flag)))
        self._state = _START
        return True

    def _skip(self) -> bool:
        pos, flag = self._find_end()
        self._skipped += pos
        if self._skipped > self.limits.max_chunk_size:
            raise self._error("frame too large", close=True)
        if flag < 0:
            del self._buf[:pos]
            return False
        del self._buf[: pos + len(self._end) + 3]
        self._state = _START
        return True

    # -- errors ---------------------------------------------------------------

    def _error(self, reason: str, status: int | None = None, *, close: bool) -> ParseError:
        tid = self._tid if self._state != _START else None
        return ParseError(reason, status=status, tid=tid, close=close)

    def _recoverable(self, reason: str, status: int = 400, *, prefix: bool = True) -> ParseError:
        """Report a broken frame and skip to its end-line.

        ``prefix`` re-inserts the CRLF of the line just consumed, so an end-line that
        follows at once is found.
        """
        if prefix:
            self._buf[0:0] = b"\r\n"
        err = ParseError(reason, status=status, tid=self._tid, close=False)
        self._state = _SKIP
        self._skipped = 0
        return err
