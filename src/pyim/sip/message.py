"""The SIP message model: :class:`SipRequest`, :class:`SipResponse`, :class:`SipHeaders`.

Headers are kept as ordered ``(name, value)`` lines of text; the typed views
(``msg.vias``, ``msg.cseq``, ``msg.from_``...) are parsed on first access and cached
on the :class:`SipHeaders` object, whose every mutation drops the cache.  A bad or
missing header raises :class:`~pyim.sip.headers.HeaderError` on access (the core
answers 400).

:meth:`SipMessage.encode` serialises; for a message that came from
:func:`pyim.sip.parser.parse_message` and was not modified since, it returns the
received bytes as they were (no re-serialisation).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .headers import (
    CSeq,
    HeaderError,
    Via,
    _split,
    header_key,
    is_star,
    parse_name_addr_list,
    parse_token_list,
    parse_via_list,
    split_header_list,
)
from .uri import NameAddr, SipUri, SipUriError

__all__ = [
    "PARSED",
    "REASON_PHRASES",
    "Method",
    "PackedMessage",
    "SipHeaders",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "reason_phrase",
    "unpack_message",
]


class Method(enum.StrEnum):
    """Well-known methods; on the wire a method is any token (compare with ``==``)."""

    INVITE = "INVITE"
    ACK = "ACK"
    BYE = "BYE"
    CANCEL = "CANCEL"
    OPTIONS = "OPTIONS"
    REGISTER = "REGISTER"
    MESSAGE = "MESSAGE"
    UPDATE = "UPDATE"
    INFO = "INFO"
    PRACK = "PRACK"
    SUBSCRIBE = "SUBSCRIBE"
    NOTIFY = "NOTIFY"
    PUBLISH = "PUBLISH"
    REFER = "REFER"


#: Standard reason phrases (RFC 3261 §21 and later RFCs).
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}
_CLASS_PHRASES = {
    1: "Provisional",
    2: "Success",
    3: "Redirection",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (a generic one for unknown codes)."""
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")


#: The ``_version`` of headers as the parser made them (never changed since): such a
#: message is packed as its received bytes alone, and parsed again to unpack.
PARSED = -1

_BAD_VALUE_CHARS = re.compile(r"[\r\n\x00]")
_TAG_PARAM = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)


def _check_line(name: str, value: str) -> tuple[str, str, str]:
    key = header_key(name)  # validates the name
    if _BAD_VALUE_CHARS.search(value):
        raise HeaderError(f"CR, LF or NUL in the value of {name}: {value!r}")
    return name, value.strip(" \t"), key


class SipHeaders:
    """Ordered header lines; lookups are case-insensitive and compact-form aware.

    ``get("Via")`` finds a line written ``v:``.  Values are unfolded and stripped.
    Adding a value that holds CR, LF or NUL raises :class:`HeaderError` (no header
    injection through the API).
    """

    __slots__ = ("_cache", "_items", "_keys", "_version")

    def __init__(self, items: Iterable[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._keys: list[str] = []
        self._cache: dict[str, Any] = {}
        self._version = 0
        for name, value in items or ():
            self.add(name, value)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]], keys: list[str]) -> SipHeaders:
        """Build from lines the parser already checked (no copy, no checks)."""
        headers = cls.__new__(cls)
        headers._items = items
        headers._keys = keys
        headers._cache = {}
        headers._version = 0
        return headers

    def _changed(self) -> None:
        self._version += 1
        if self._cache:
            self._cache.clear()

    # -- reading ----------------------------------------------------------------------

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first line named ``name``, or ``default``."""
        key = header_key(name)
        keys = self._keys
        if key in keys:
            return self._items[keys.index(key)][1]
        return default

    def get_all(self, name: str) -> list[str]:
        """Values of every line named ``name`` (lines are not split at commas)."""
        key = header_key(name)
        return [item[1] for item, k in zip(self._items, self._keys, strict=True) if k == key]

    def values(self, name: str) -> list[str]:
        """Every value of a list header: lines split at top-level commas."""
        out: list[str] = []
        for value in self.get_all(name):
            out += split_header_list(value)
        return out

    def count(self, name: str) -> int:
        """How many lines are named ``name``."""
        return self._keys.count(header_key(name))

    def items(self) -> list[tuple[str, str]]:
        """All ``(name, value)`` lines in order (names as written)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._keys

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipHeaders):
            return NotImplemented
        return self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SipHeaders({self._items!r})"

    def copy(self) -> SipHeaders:
        """An independent copy (the typed-value cache is shared until either changes)."""
        headers = SipHeaders._trusted(list(self._items), list(self._keys))
        headers._cache = dict(self._cache)
        return headers

    # -- writing ------------------------------------------------------------------------

    def add(self, name: str, value: str) -> None:
        """Append a line."""
        name, value, key = _check_line(name, value)
        self._items.append((name, value))
        self._keys.append(key)
        self._changed()

    def insert(self, index: int, name: str, value: str) -> None:
        """Insert a line at ``index`` (``insert(0, "Via", ...)`` prepends)."""
        name, value, key = _check_line(name, value)
        self._items.insert(index, (name, value))
        self._keys.insert(index, key)
        self._changed()

    def set(self, name: str, value: str) -> None:
        """Replace the first line named ``name`` (keeping its place) and drop the
        others; append when there is none."""
        name, value, key = _check_line(name, value)
        keys = self._keys
        if key not in keys:
            self._items.append((name, value))
            keys.append(key)
        else:
            first = keys.index(key)
            self._items[first] = (name, value)
            for i in range(len(keys) - 1, first, -1):
                if keys[i] == key:
                    del keys[i]
                    del self._items[i]
        self._changed()

    def remove(self, name: str) -> int:
        """Remove every line named ``name``; returns how many went."""
        key = header_key(name)
        kept = [(item, k) for item, k in zip(self._items, self._keys, strict=True) if k != key]
        removed = len(self._keys) - len(kept)
        if removed:
            self._items = [item for item, _ in kept]
            self._keys = [k for _, k in kept]
            self._changed()
        return removed

    def remove_first(self, name: str) -> str | None:
        """Remove the first line named ``name``; returns its value (``None`` if none)."""
        key = header_key(name)
        if key not in self._keys:
            return None
        index = self._keys.index(key)
        del self._keys[index]
        _, value = self._items.pop(index)
        self._changed()
        return value


class SipMessage:
    """What requests and responses share: headers, body and the typed views."""

    __slots__ = ()
    headers: SipHeaders
    body: bytes
    _raw: bytes | None
    # what _raw was made from: the headers object, and (its _version, body, start
    # line) in a tuple of atoms, which the cyclic GC untracks
    _raw_headers: SipHeaders | None
    _raw_state: tuple[int, bytes, str] | None

    # -- typed views (cached on self.headers) -------------------------------------------

    def _cached(self, name: str) -> Any:
        return self.headers._cache.get(name)

    def _single(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise HeaderError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        """Call-ID (``HeaderError`` if missing or empty)."""
        value = self._single("Call-ID")
        if not value:
            raise HeaderError("empty Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        """The CSeq header."""
        cache = self.headers._cache
        cseq: CSeq | None = cache.get("cseq")
        if cseq is None:
            cseq = cache["cseq"] = CSeq.parse(self._single("CSeq"))
        return cseq

    def _name_addr(self, name: str, slot: str) -> NameAddr:
        cache = self.headers._cache
        value: NameAddr | None = cache.get(slot)
        if value is None:
            try:
                value = cache[slot] = NameAddr.parse(self._single(name))
            except SipUriError as exc:
                raise HeaderError(f"invalid {name}: {exc}") from None
        return value

    @property
    def from_(self) -> NameAddr:
        """The From header."""
        return self._name_addr("From", "from")

    @property
    def to(self) -> NameAddr:
        """The To header."""
        return self._name_addr("To", "to")

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        cache = self.headers._cache
        vias: tuple[Via, ...] | None = cache.get("vias")
        if vias is None:
            parsed: list[Via] = []
            for value in self.headers.get_all("Via"):
                parsed += parse_via_list(value)
            if not parsed:
                raise HeaderError("missing Via header")
            vias = cache["vias"] = tuple(parsed)
        return list(vias)

    @property
    def top_via(self) -> Via:
        """The topmost Via value."""
        cache = self.headers._cache
        via: Via | None = cache.get("top_via")
        if via is None:
            vias = cache.get("vias")
            if vias is not None:
                via = vias[0]
            else:
                value = self._single("Via")
                via = Via.parse(value if "," not in value else _split(value)[0])
            cache["top_via"] = via
        return via

    @property
    def branch(self) -> str | None:
        """The top Via's branch parameter."""
        return self.top_via.branch

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0..255), ``None`` when absent."""
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        if not value.isdigit() or len(value) > 10 or int(value) > 255:
            raise HeaderError(f"invalid Max-Forwards: {value!r}")
        return int(value)

    @property
    def content_length(self) -> int | None:
        """Content-Length as written (``encode()`` writes ``len(body)``)."""
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        if not value.isdigit() or len(value) > 10:
            raise HeaderError(f"invalid Content-Length: {value!r}")
        return int(value)

    @property
    def content_type(self) -> str | None:
        """Content-Type value as written (parameters included)."""
        return self.headers.get("Content-Type")

    @property
    def mime_type(self) -> str | None:
        """Content-Type's ``type/subtype``, lower case, without parameters."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.partition(";")[0].strip(" \t").lower()

    @property
    def expires(self) -> int | None:
        """The Expires header (seconds), ``None`` when absent."""
        value = self.headers.get("Expires")
        if value is None:
            return None
        if not value.isdigit() or len(value) > 10:
            raise HeaderError(f"invalid Expires: {value!r}")
        return int(value)

    def _name_addrs(self, name: str, slot: str) -> list[NameAddr]:
        cache = self.headers._cache
        values: tuple[NameAddr, ...] | None = cache.get(slot)
        if values is None:
            parsed: list[NameAddr] = []
            lines = self.headers.get_all(name)
            for value in lines:
                if is_star(value) and name == "Contact":
                    if len(lines) > 1:
                        raise HeaderError("Contact: * must be the only Contact")
                    continue
                parsed += parse_name_addr_list(value)
            values = cache[slot] = tuple(parsed)
        return list(values)

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values (``[]`` for ``Contact: *``; see :attr:`is_star_contact`)."""
        return self._name_addrs("Contact", "contacts")

    @property
    def is_star_contact(self) -> bool:
        """Whether the message carries ``Contact: *`` (RFC 3261 §10.2.2)."""
        lines = self.headers.get_all("Contact")
        return len(lines) == 1 and is_star(lines[0])

    @property
    def routes(self) -> list[NameAddr]:
        """Route values, in order."""
        return self._name_addrs("Route", "routes")

    @property
    def record_routes(self) -> list[NameAddr]:
        """Record-Route values, in order."""
        return self._name_addrs("Record-Route", "record_routes")

    def _tokens(self, name: str) -> list[str]:
        out: list[str] = []
        for value in self.headers.get_all(name):
            out += parse_token_list(value)
        return out

    @property
    def require(self) -> list[str]:
        """Require option tags."""
        return self._tokens("Require")

    @property
    def proxy_require(self) -> list[str]:
        """Proxy-Require option tags."""
        return self._tokens("Proxy-Require")

    @property
    def supported(self) -> list[str]:
        """Supported option tags."""
        return self._tokens("Supported")

    @property
    def allow(self) -> list[str]:
        """Allow methods."""
        return self._tokens("Allow")

    def remove_top_via(self) -> Via:
        """Remove and return the topmost Via value (a proxy forwarding a response)."""
        top = self.top_via
        headers = self.headers
        keys = headers._keys
        if "via" not in keys:
            raise HeaderError("missing Via header")
        index = keys.index("via")
        name, value = headers._items[index]
        rest = _split(value)[1:] if "," in value else []
        if rest:
            headers._items[index] = (name, ", ".join(rest))
            headers._changed()
        else:
            headers.remove_first("Via")
        return top

    # -- serialisation --------------------------------------------------------------------

    def start_line(self) -> str:
        """The request line or status line (without CRLF)."""
        raise NotImplementedError

    def encode(self) -> bytes:
        """The message as bytes, with ``Content-Length: len(body)`` (the header is
        written in place of the first Content-Length line, or appended).

        The headers object is not modified.  An unmodified parsed message gives back
        the bytes it was parsed from.
        """
        start = self.start_line()
        state = self._raw_state
        headers = self.headers
        body = self.body
        if (
            state is not None
            and self._raw_headers is headers
            and state[0] == headers._version
            and state[1] is body
            and state[2] == start
        ):
            assert self._raw is not None
            return self._raw
        parts = [start, "\r\n"]
        length_done = False
        for (name, value), key in zip(headers._items, headers._keys, strict=True):
            if key == "content-length":
                if length_done:
                    continue
                value = str(len(body))
                length_done = True
            parts += (name, ": ", value, "\r\n")
        if not length_done:
            parts.append(f"Content-Length: {len(body)}\r\n")
        parts.append("\r\n")
        data = "".join(parts).encode("utf-8") + body
        self._remember(data, start)
        return data

    def _remember(self, data: bytes, start: str) -> None:
        # the slots live in the dataclass subclasses
        object.__setattr__(self, "_raw", data)
        object.__setattr__(self, "_raw_headers", self.headers)
        object.__setattr__(self, "_raw_state", (self.headers._version, self.body, start))

    def pack(self) -> PackedMessage:
        """The message as a tuple of strings, bytes and numbers (and tuples of them),
        which the cyclic GC stops visiting once it has seen it, for a message kept
        long but seldom read; :func:`unpack_message` makes an equal message again (a
        request's URI is returned beside the tuple).  Parsed header values are not
        kept: they are parsed again on access.  A received message not changed since
        it was parsed is kept as its bytes alone (a third of the size), and parsed
        again by :func:`unpack_message`."""
        headers = self.headers
        state = self._raw_state
        # the kept bytes only while they are still what encode() gives (a received
        # request whose Via got received/rport no longer is: 0.5-1 KB for nothing)
        raw_ok = (
            self._raw is not None
            and self._raw_headers is headers
            and state is not None
            and state[0] == headers._version
            and state[1] is self.body
            and state[2] == self.start_line()
        )
        if raw_ok and headers._version == PARSED:
            assert self._raw is not None
            return (type(self) is SipRequest, self._raw)
        return (
            type(self) is SipRequest,
            tuple(headers._items),
            tuple(headers._keys),
            headers._version,
            self.body,
            self._raw if raw_ok else None,
            self._raw_state if raw_ok else None,
            self._fields(),
        )

    def _fields(self) -> tuple[str | int, str]:
        raise NotImplementedError


@dataclass(slots=True, eq=True)
class SipRequest(SipMessage):
    """A SIP request; ``uri`` is the Request-URI."""

    method: str
    uri: SipUri
    headers: SipHeaders = field(default_factory=SipHeaders)
    body: bytes = b""
    _raw: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _raw_headers: SipHeaders | None = field(default=None, init=False, repr=False, compare=False)
    _raw_state: tuple[int, bytes, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def _fields(self) -> tuple[str | int, str]:
        return (self.method, "")

    def response(
        self,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> SipResponse:
        """A response to this request (RFC 3261 §8.2.6.2).

        Copies every Via (in order), From, To, Call-ID and CSeq, and Timestamp in a
        100 (§8.2.6.1); adds ``;tag=to_tag`` to To when given and To has no tag;
        ``headers`` are appended.  Headers missing from the request (a partial
        request from the parser) are simply not copied.
        """
        items: list[tuple[str, str]] = []
        keys: list[str] = []
        for (_, value), key in zip(self.headers._items, self.headers._keys, strict=True):
            name = _COPIED.get(key)
            if name is None or (key == "timestamp" and status != 100):
                continue
            if key == "to" and to_tag is not None and not self._to_has_tag(value):
                value = f"{value};tag={to_tag}"
            items.append((name, value))
            keys.append(key)
        response_headers = SipHeaders._trusted(items, keys)
        for name, value in headers:
            response_headers.add(name, value)
        return SipResponse(
            status, reason if reason is not None else reason_phrase(status), response_headers
        )

    def _to_has_tag(self, value: str) -> bool:
        try:
            return NameAddr.parse(value).tag is not None
        except SipUriError:
            return _TAG_PARAM.search(value) is not None


_COPIED = {
    "via": "Via",
    "from": "From",
    "to": "To",
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "timestamp": "Timestamp",
}


@dataclass(slots=True, eq=True)
class SipResponse(SipMessage):
    """A SIP response."""

    status: int
    reason: str
    headers: SipHeaders = field(default_factory=SipHeaders)
    body: bytes = b""
    _raw: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _raw_headers: SipHeaders | None = field(default=None, init=False, repr=False, compare=False)
    _raw_state: tuple[int, bytes, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def _fields(self) -> tuple[str | int, str]:
        return (self.status, self.reason)


#: What :meth:`SipMessage.pack` returns (see :func:`unpack_message`): a message as
#: parsed, ``(is_request, its bytes)``, or any other message in pieces.
PackedMessage = (
    tuple[bool, bytes]
    | tuple[
        bool,
        tuple[tuple[str, str], ...],
        tuple[str, ...],
        int,
        bytes,
        bytes | None,
        tuple[int, bytes, str] | None,
        tuple[str | int, str],
    ]
)


def unpack_message(packed: PackedMessage, uri: SipUri | None = None) -> SipRequest | SipResponse:
    """The message :meth:`SipMessage.pack` packed (``uri``: a request's Request-URI),
    equal to it, its kept bytes (``encode()``) included."""
    if len(packed) == 2:
        from .parser import reparse  # (the parser imports this module)

        parsed = reparse(packed[1])
        if packed[0] != isinstance(parsed, SipRequest):
            raise ValueError("not the packed kind of message")
        if uri is not None and isinstance(parsed, SipRequest):
            parsed.uri = uri  # the same URI (its text is in the bytes): the same object
        return parsed
    is_request, items, keys, version, body, raw, raw_state, (first, reason) = packed
    headers = SipHeaders._trusted(list(items), list(keys))
    headers._version = version
    message: SipRequest | SipResponse
    if is_request:
        if uri is None or not isinstance(first, str):
            raise ValueError("a packed request needs its URI")
        message = SipRequest(first, uri, headers, body)
    else:
        if not isinstance(first, int):
            raise ValueError("not a packed response")
        message = SipResponse(first, reason, headers, body)
    if raw is not None and raw_state is not None:
        object.__setattr__(message, "_raw", raw)
        object.__setattr__(message, "_raw_headers", headers)
        object.__setattr__(message, "_raw_state", raw_state)
    return message
