"""SIP message parser (RFC 3261 §7, §18.3) and stream framer.

- :func:`parse_message` turns one whole message (a UDP datagram, or what
  :class:`StreamFramer` hands out) into a :class:`~pyim.sip.message.SipRequest` or
  :class:`~pyim.sip.message.SipResponse`, or raises :class:`SipParseError`.
- :class:`StreamFramer` splits a TCP/TLS byte stream into messages by Content-Length
  and reports RFC 5626 CRLF keep-alives.

What is parsed when
-------------------
Eagerly, for every message: the start line (Request-URI included), the split of the
header block into ``(name, value)`` lines (unfolded, names checked), Content-Length,
and what makes a message answerable and routable: presence and uniqueness of Via,
From, To, Call-ID, CSeq (and Max-Forwards in requests), the top Via and CSeq (number
below 2**31, method equal to the request method), both built and cached so that the
transaction layer's ``msg.branch`` and ``msg.cseq`` cost nothing more; From and To
are checked against the full name-addr grammar (tags included) but built only on
first access (``msg.from_``), which a retransmission absorbed by a transaction never
pays; Max-Forwards (0..255).  Every other header (the other Vias, Contact, Route,
Record-Route, Require...) is parsed on first access and raises
:class:`~pyim.sip.headers.HeaderError` then if it is bad: the core catches it and
answers 400 with ``request.response(400)``.

Decisions on hostile or broken input
------------------------------------
- Lines end with CRLF.  A bare LF or bare CR anywhere in the header block is refused
  with 400 (a bare LF inside a header line is header injection).  Messages whose
  lines all end with bare LF (some old UAs; RFC 3261 §7.5 does not require accepting
  them) are refused with 400 too: one line-ending rule, no guessing.
- NUL bytes in the header block: 400.  This refuses RFC 4475 ``intmeth``, whose To
  display name carries a quoted NUL; the project prefers refusing every NUL.
- Header folding (continuation lines starting with SP or HT, RFC 3261 §7.3.1) is
  supported; values are unfolded (the CRLF is dropped, the whitespace kept).
- The header block must be UTF-8 (400 otherwise).  Bodies are bytes, never decoded.
- Request line: exactly ``Method SP Request-URI SP SIP-Version``; extra, missing or
  trailing spaces give 400 (RFC 4475 ``lwsstart``, ``trws``, ``lwsruri``).  A
  Request-URI in ``<>`` or with URI headers gives 400 (``ltgtruri``, ``escruri``); a
  Request-URI whose scheme is not sip, sips or tel gives 416 (``unkscm``,
  ``novelsc``).  Another SIP version gives 505 (``badvers``).
- Missing Via, From, To, Call-ID or CSeq, or Max-Forwards in a request
  (RFC 3261 §8.1.1; :attr:`SipLimits.require_max_forwards` turns the latter off for
  RFC 2543 peers, RFC 4475 ``inv2543``): 400.  More than one Call-ID, CSeq, From, To,
  Max-Forwards or Content-Length line: 400 (``multi01``, ``mcl01``).
- Content-Length not a number, negative, or larger than the data of a datagram: 400
  (``ncl``, ``clerr``).  Bytes after the body in a datagram are discarded as RFC 3261
  §18.3 requires (``dblreq``); a datagram without Content-Length has the rest of the
  datagram as body.
- A message larger than :attr:`SipLimits.max_message_size`, or with more header
  lines than :attr:`SipLimits.max_header_count` or a line longer than
  :attr:`SipLimits.max_line_length`: 413 (requests; a response is dropped).
- A response that does not parse is never answered: its error has ``partial=None``.
  A request error has ``partial``, a :class:`~pyim.sip.message.SipRequest` built
  leniently from the lines that could be read (lines with bare CR/LF, NUL or no
  colon are left out), when its start line looks like a request and it has a Via,
  so the caller can send ``error.partial.response(error.status)``.  That Via may be
  the broken part (RFC 4475 ``badinv01``): the caller routes the answer over the
  connection or to the datagram's source (RFC 3581) when ``partial.top_via`` raises
  ``HeaderError``.  ``partial.uri`` is ``sip:invalid.invalid`` when the
  Request-URI itself was bad.

Why our own parser and not ``sipmessage``
-----------------------------------------
``sipmessage`` 0.7.1 (BSD, pure Python) was measured against this parser with
``bench/sip_parser.py`` (CPython 3.11.7, 2 vCPU AMD EPYC VM, 2026-11-24): realistic,
all-different messages between 200 users (0.9 KB INVITE with SDP, 200 OK with two Vias
and Record-Route, ACK, BYE, MESSAGE with 100 bytes of text).  "routing" = parse, then
read the top Via's branch, CSeq, Call-ID, From tag and To tag, which every message
needs in a transaction and dialog layer.  Microseconds per message (lower is better;
figures move by about 5 % from run to run):

===================================  ======  ==========  ===============
case                                 pyim    sipmessage  sipmessage/pyim
===================================  ======  ==========  ===============
INVITE, routing                      14.9    39.2        2.6
200 OK, routing                      17.6    43.7        2.5
ACK, routing                         15.9    39.0        2.5
BYE, routing                         16.2    40.2        2.5
MESSAGE, routing                     13.3    36.5        2.7
INVITE, parse call only              10.8    12.0        1.1
INVITE, routing, caches emptied      18.4    36.7        2.0
INVITE, proxy forward (Via, MF-1)    15.4    31.4        2.0
serialise an unmodified INVITE       0.20    2.71        13
===================================  ======  ==========  ===============

Decision: our own parser.  Speed is one reason (2-2.7 times faster where it counts;
parsing stays near 10 % of one core at 2,000 INVITE/ACK/BYE calls/s and under 7 % at
5,000 MESSAGE/s).  Robustness is the other: ``sipmessage.Message.parse`` only splits
lines.  It refuses folded headers (RFC 4475 ``wsinv`` raises a bare ValueError),
ignores Content-Length (the second request of ``dblreq`` becomes the body; ``clerr``
and ``ncl`` pass), accepts NUL, bare LF, duplicate Call-ID/CSeq (``multi01``),
CSeq/method mismatches and missing mandatory headers, cannot tell a 505 from a 400,
and re-parses typed headers on every access.  Wrapping it in the checks above would
cost more than this whole parser.  The aim of < 10 µs per parse of a typical INVITE
is nearly met: 10.8 µs for all-different messages (10.3 µs when the same one
repeats), with every check above done; ``sipmessage`` takes 11-12 µs to check nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NoReturn

from .headers import COMPACT_FORMS, CSeq, HeaderError, Via, _split, is_token
from .message import PARSED, SipHeaders, SipRequest, SipResponse
from .uri import SipUri, SipUriError, check_name_addr

__all__ = [
    "PING",
    "PONG",
    "KeepAlive",
    "SipLimits",
    "SipParseError",
    "StreamFramer",
    "parse_message",
]


@dataclass(frozen=True, slots=True)
class SipLimits:
    """Bounds on what the parser and the framer accept."""

    #: Largest whole message (start line, headers and body), in bytes.
    max_message_size: int = 65535
    #: Most header lines (after unfolding).
    max_header_count: int = 128
    #: Longest header line (after unfolding) or start line, in characters.
    max_line_length: int = 8192
    #: Refuse requests without Max-Forwards (RFC 3261 §8.1.1); False accepts
    #: RFC 2543 requests that lack it.
    require_max_forwards: bool = True


_DEFAULT_LIMITS = SipLimits()


class SipParseError(ValueError):
    """A message that cannot be accepted.

    ``status`` is the response it deserves (400, 413, 416, 505); ``partial`` is a
    request good enough to answer (``None`` for responses and when the top Via is
    unreadable); ``close`` is True when the stream it came from cannot be resynchronised
    and must be closed.
    """

    def __init__(
        self,
        reason: str,
        status: int = 400,
        *,
        partial: SipRequest | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial
        self.close = close

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status}, close={self.close})"


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """An RFC 5626 §4.4.1 keep-alive seen on a stream: ``"ping"`` (CRLF CRLF, to be
    answered with a CRLF) or ``"pong"`` (a single CRLF)."""

    kind: Literal["ping", "pong"]


PING = KeepAlive("ping")
PONG = KeepAlive("pong")


class _Bad(Exception):
    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# -- header names -----------------------------------------------------------------------

_COMPACT_KEYS = {short: full.lower() for short, full in COMPACT_FORMS.items()}
# raw name as written before the colon -> (name without trailing LWS, lookup key)
_NAMES: dict[str, tuple[str, str]] = {}
_NAMES_LIMIT = 4096


def _name(raw: str) -> tuple[str, str]:
    name = raw.rstrip(" \t")
    if not is_token(name):
        raise _Bad(f"invalid header name: {raw!r}")
    low = name.lower()
    entry = (name, _COMPACT_KEYS.get(low, low))
    if len(_NAMES) < _NAMES_LIMIT:
        _NAMES[raw] = entry
    return entry


_METHODS: set[str] = {
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "UPDATE",
    "INFO", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "REFER",
}  # fmt: skip
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_UNFOLD = re.compile(r"\r\n(?=[ \t])")
_REQUEST_KEYS = frozenset({"via", "from", "to", "call-id", "cseq", "max-forwards"})
_RESPONSE_KEYS = frozenset({"via", "from", "to", "call-id", "cseq"})
_SINGLE_KEYS = ("call-id", "cseq", "from", "to", "max-forwards", "content-length")


def _digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


# -- parse_message ----------------------------------------------------------------------


class _Folded(Exception):
    """A continuation line was met: unfold and split again."""


def _header_lines(lines: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """``(name, value)`` items and lookup keys of the header lines ``lines[1:]``."""
    items: list[tuple[str, str]] = []
    keys: list[str] = []
    names = _NAMES
    append_item = items.append
    append_key = keys.append
    for line in lines[1:]:
        raw_name, colon, value = line.partition(":")
        entry = names.get(raw_name)
        if entry is None:
            if line[:1] == " " or line[:1] == "\t":
                raise _Folded
            if not colon:
                raise _Bad(f"header line without a colon: {line[:80]!r}")
            entry = _name(raw_name)
        elif not colon:
            raise _Bad(f"header line without a colon: {line[:80]!r}")
        append_item((entry[0], value.strip(" \t")))
        append_key(entry[1])
    return items, keys


def reparse(data: bytes) -> SipRequest | SipResponse:
    """Parse again the bytes of a message parsed before (:func:`pyim.sip.message.
    unpack_message`): the same message, whatever limits accepted it then."""
    limits = SipLimits(
        max_message_size=len(data),
        max_header_count=len(data),
        max_line_length=len(data),
        require_max_forwards=False,
    )
    return _parse(data, limits)


def parse_message(data: bytes, limits: SipLimits | None = None) -> SipRequest | SipResponse:
    """Parse one whole SIP message; raise :class:`SipParseError` if it is not valid."""
    limits = limits or _DEFAULT_LIMITS
    try:
        return _parse(data, limits)
    except _Bad as bad:
        raise SipParseError(bad.reason, bad.status, partial=_partial(data, limits)) from None


def _parse(data: bytes, limits: SipLimits) -> SipRequest | SipResponse:
    size = len(data)
    if size > limits.max_message_size:
        raise _Bad(f"message of {size} bytes exceeds {limits.max_message_size}", 413)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if b"\n\n" in data:
            raise _Bad("bare LF line endings")
        raise _Bad("no empty line after the header block")
    head = data[:end]
    if b"\x00" in head:
        raise _Bad("NUL byte in the header block")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise _Bad("header block is not UTF-8") from None
    lines = text.split("\r\n")
    crlf = len(lines) - 1
    if text.count("\n") != crlf or text.count("\r") != crlf:
        raise _Bad("bare CR or LF in the header block")
    if len(lines) > limits.max_header_count + 1:
        raise _Bad(f"more than {limits.max_header_count} header lines", 413)
    if len(text) > limits.max_line_length and max(map(len, lines)) > limits.max_line_length:
        raise _Bad(f"line longer than {limits.max_line_length}", 413)

    # -- start line
    start = lines[0]
    request = start[:4].upper() != "SIP/"
    method = ""
    uri_text = ""
    status = 0
    reason = ""
    if request:
        parts = start.split(" ")
        if len(parts) != 3:
            raise _Bad(f"malformed request line: {start!r}")
        method, uri_text, version = parts
        if method not in _METHODS and not is_token(method):
            raise _Bad(f"invalid method: {method!r}")
    else:
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise _Bad(f"malformed status line: {start!r}")
        version, code = parts[0], parts[1]
        reason = parts[2] if len(parts) == 3 else ""
        if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] not in "123456":
            raise _Bad(f"invalid status code: {code!r}")
        status = int(code)
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if _VERSION.fullmatch(version):
            raise _Bad(f"SIP version not supported: {version}", 505)
        raise _Bad(f"malformed SIP version: {version!r}")

    # -- header lines
    try:
        items, keys = _header_lines(lines)
    except _Folded:  # continuation lines (RFC 3261 §7.3.1): unfold, then split again
        lines = _UNFOLD.sub("", text).split("\r\n")
        if lines[0] != start:
            raise _Bad("continuation line after the start line") from None
        if len(text) > limits.max_line_length and max(map(len, lines)) > limits.max_line_length:
            raise _Bad(f"line longer than {limits.max_line_length}", 413) from None
        items, keys = _header_lines(lines)
    headers = SipHeaders._trusted(items, keys)
    headers._version = PARSED  # as parsed: SipMessage.pack keeps the bytes alone

    # -- presence and uniqueness
    present = set(keys)
    if len(present) != len(keys):
        for key in _SINGLE_KEYS:
            if keys.count(key) > 1:
                raise _Bad(f"more than one {key} header")
    required = _REQUEST_KEYS if request and limits.require_max_forwards else _RESPONSE_KEYS
    if not required <= present:
        missing = ", ".join(sorted(required - present))
        raise _Bad(f"missing mandatory header: {missing}")

    # -- body
    body_start = end + 4
    if "content-length" in present:
        value = items[keys.index("content-length")][1]
        if not value.isdigit() or not value.isascii() or len(value) > 10:
            raise _Bad(f"invalid Content-Length: {value!r}")
        length = int(value)
        body_end = body_start + length
        if body_end > size:
            raise _Bad(f"Content-Length {length} exceeds the {size - body_start} bytes of body")
        body = data[body_start:body_end]
        raw: bytes | None = data if body_end == size else data[:body_end]
    else:
        body = data[body_start:]
        raw = None

    # -- the values every layer needs
    cache = headers._cache
    try:
        cseq = cache["cseq"] = CSeq.parse(items[keys.index("cseq")][1])
        via_value = items[keys.index("via")][1]
        cache["top_via"] = Via.parse(via_value if "," not in via_value else _split(via_value)[0])
    except HeaderError as exc:
        raise _Bad(str(exc)) from None
    call_id = items[keys.index("call-id")][1]
    if not call_id or " " in call_id or "\t" in call_id:
        raise _Bad(f"invalid Call-ID: {call_id!r}")
    try:
        check_name_addr(items[keys.index("from")][1])
        check_name_addr(items[keys.index("to")][1])
    except SipUriError as exc:
        raise _Bad(f"invalid From or To: {exc}") from None
    message: SipRequest | SipResponse
    if request:
        if cseq.method != method:
            raise _Bad(f"CSeq method {cseq.method!r} differs from the request method")
        if "max-forwards" in present:
            value = items[keys.index("max-forwards")][1]
            if not value.isdigit() or not value.isascii() or len(value) > 10 or int(value) > 255:
                raise _Bad(f"invalid Max-Forwards: {value!r}")
        try:
            uri = SipUri.parse(uri_text)
        except SipUriError as exc:
            raise _Bad(f"invalid Request-URI: {exc}") from None
        if uri.scheme != "sip" and uri.scheme != "sips" and uri.scheme != "tel":
            raise _Bad(f"unsupported URI scheme: {uri.scheme}", 416)
        if uri.headers:
            raise _Bad("headers in the Request-URI")
        message = SipRequest(method, uri, headers, body)
    else:
        message = SipResponse(status, reason, headers, body)
    if raw is not None:
        message._remember(raw, start)
    return message


# -- partial requests (for answering a bad one) ---------------------------------------

_PLACEHOLDER_URI = SipUri(host="invalid.invalid")


def _partial(data: bytes, limits: SipLimits) -> SipRequest | None:
    """A request built leniently from what can be read, if it is answerable."""
    end = data.find(b"\r\n\r\n")
    head = data[: end if end >= 0 else limits.max_message_size]
    text = head.decode("utf-8", "replace")
    lines = _UNFOLD.sub("", text).split("\r\n")
    parts = lines[0].split()
    if len(parts) < 3 or not is_token(parts[0]) or parts[0][:4].upper() == "SIP/":
        return None
    if parts[-1][:4].upper() != "SIP/":
        return None
    try:
        uri = SipUri.parse(parts[1]) if len(parts) == 3 else _PLACEHOLDER_URI
    except SipUriError:
        uri = _PLACEHOLDER_URI
    headers = SipHeaders()
    for line in lines[1 : limits.max_header_count + 1]:
        if "\r" in line or "\n" in line or "\x00" in line or len(line) > limits.max_line_length:
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if colon and is_token(name):
            headers.add(name, value)
    if "Via" not in headers:
        return None
    return SipRequest(parts[0], uri, headers)


# -- stream framing ---------------------------------------------------------------------

_STREAM_LENGTH = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


class StreamFramer:
    """Split a TCP/TLS byte stream into whole SIP messages (RFC 3261 §18.3).

    :meth:`feed` returns, in order, the messages completed by the new data (bytes,
    to give to :func:`parse_message`) and the keep-alives seen between messages
    (:data:`PING` for CRLF CRLF, to be answered with CRLF; :data:`PONG` for a single
    CRLF).  A lone CRLF at the very end of the data is reported as a pong at once; if
    the next data starts with CRLF, the pair was a ping split in two reads, and a
    ping is reported then.

    Content-Length is mandatory on streams: a message head without it, with a bad
    one, or that would exceed :attr:`SipLimits.max_message_size`, raises
    :class:`SipParseError` with ``close=True`` (the stream cannot be resynchronised);
    the framer then refuses any further data with the same error.
    """

    def __init__(self, limits: SipLimits | None = None) -> None:
        self.limits = limits or _DEFAULT_LIMITS
        self._buffer = bytearray()
        self._scanned = 0  # bytes already searched for the end of the head
        self._need: int | None = None  # size of the message being received, once known
        self._half_ping = False
        self._error: SipParseError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held (an incomplete message)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        buffer += data
        out: list[bytes | KeepAlive] = []
        half_ping = self._half_ping
        self._half_ping = False
        while buffer:
            need = self._need
            if need is None:
                if buffer[0] == 13:  # CR: keep-alives between messages
                    if buffer[:4] == b"\r\n\r\n":
                        out.append(PING)
                        del buffer[:4]
                        half_ping = False
                        continue
                    if buffer[:2] == b"\r\n":
                        if half_ping:
                            out.append(PING)
                            half_ping = False
                        elif len(buffer) == 2:
                            out.append(PONG)
                            self._half_ping = True
                        elif buffer[2] == 13 and len(buffer) == 3:
                            break  # CR LF CR: a ping or a pong, not known yet
                        else:
                            out.append(PONG)
                        del buffer[:2]
                        continue
                    if len(buffer) == 1:
                        break
                half_ping = False
                end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
                if end < 0:
                    self._scanned = len(buffer)
                    if buffer.find(b"\n\n") >= 0:
                        self._fail("bare LF line endings", 400)
                    if len(buffer) > self.limits.max_message_size:
                        self._fail("message head too large", 413)
                    break
                need = self._need = end + 4 + self._content_length(end)
                if need > self.limits.max_message_size:
                    self._fail(f"message of {need} bytes is too large", 413)
            if len(buffer) < need:
                break
            out.append(bytes(buffer[:need]))
            del buffer[:need]
            self._need = None
            self._scanned = 0
        return out

    def _content_length(self, end: int) -> int:
        values = {m.group(1).strip(b" \t") for m in _STREAM_LENGTH.finditer(self._buffer, 0, end)}
        if not values:
            self._fail("no Content-Length on a stream", 400)
        if len(values) > 1:
            self._fail("conflicting Content-Length values", 400)
        value = values.pop()
        if not value.isdigit() or len(value) > 10:
            self._fail(f"invalid Content-Length: {value!r}", 400)
        return int(value)

    def _fail(self, reason: str, status: int) -> NoReturn:
        head = bytes(self._buffer[: self.limits.max_message_size])
        error = SipParseError(reason, status, partial=_partial(head, self.limits), close=True)
        self._error = error
        self._buffer.clear()
        raise error
