"""SDP session descriptions (RFC 8866) and offer/answer for ``m=message`` (RFC 4975 §8).

The model keeps every line it understands, so that a well-formed description
(CRLF, fields separated by single spaces, lines in RFC 8866 §5 order, numbers
without leading zeros) encodes back to the same bytes. :func:`parse` is liberal
where it costs nothing (bare LF, blank lines, session-level lines out of order)
and strict about everything else: an unknown line type, a malformed field or a
description over the :class:`SdpLimits` raises :class:`SdpParseError`.

The MSRP helpers follow RFC 3264 (the answer has one m-line per offered one, in
the same order; refused streams get port 0) and the connection roles of
``pyim.msrp.sdp``. They also speak the "pjsua dialect" (see DESIGN.md): an
inactive audio line next to ``m=message``, which pjsua2 needs to accept a call.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from pyim.msrp.sdp import (
    MsrpMediaAttributes,
    SdpError,
    Setup,
    active_side,
    default_setup,
    negotiate_setup,
)
from pyim.msrp.uri import MsrpUri

__all__ = [
    "DEFAULT_ACCEPT_TYPES",
    "DISCARD_PORT",
    "AnswerRejected",
    "Attribute",
    "Bandwidth",
    "ConnectionData",
    "Direction",
    "MediaDescription",
    "MsrpAnswer",
    "MsrpNegotiated",
    "OfferRejected",
    "Origin",
    "SdpLimits",
    "SdpParseError",
    "SessionDescription",
    "Timing",
    "answer_msrp_offer",
    "build_msrp_offer",
    "parse",
    "parse_msrp_answer",
]

#: ``(name, value)`` of an ``a=`` line; ``value`` is None for a flag (``a=inactive``).
Attribute = tuple[str, str | None]

#: What pyim receives in a chat session unless told otherwise.
DEFAULT_ACCEPT_TYPES = ("message/cpim", "text/plain")
#: RFC 863 discard port: the port of the placeholder (inactive) audio line.
DISCARD_PORT = 9

MSRP_PROTO = "TCP/MSRP"
MSRPS_PROTO = "TCP/TLS/MSRP"
_AUDIO_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})

_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_PROTO = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+(?:/[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+)*")
_NON_WS = re.compile(r"[^\x00-\x20\x7f]+")
_NUMBER = re.compile(r"[0-9]{1,20}")
_PORT = re.compile(r"[0-9]{1,5}")
_FIELD_SEP = re.compile(r"[ \t]+")
_BAD_TEXT = re.compile(r"[\x00\r\n]")
_KINDS = frozenset("vosiuepcbtrzkam")
_MEDIA_KINDS = frozenset("icbkam")
_ONCE_IN_SESSION = frozenset("vosiuczk")
_ONCE_IN_MEDIA = frozenset("ick")
_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})


class SdpParseError(SdpError):
    """Bytes that are not a session description pyim accepts."""


@dataclass(frozen=True)
class SdpLimits:
    """Bounds on an incoming session description."""

    max_size: int = 64 * 1024
    max_lines: int = 1024
    max_media: int = 64


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def _number(text: str, what: str) -> int:
    return int(_check(_NUMBER, text, what))


def _fields(value: str, count: int, what: str) -> list[str]:
    fields = _FIELD_SEP.split(value.strip(" \t"))
    if len(fields) != count:
        raise ValueError(f"{what} needs {count} fields: {value!r}")
    return fields


@dataclass(frozen=True)
class Origin:
    """``o=`` (RFC 8866 §5.2)."""

    username: str
    sess_id: int
    sess_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __post_init__(self) -> None:
        _check(_NON_WS, self.username, "o= username")
        _check(_NON_WS, self.address, "o= address")
        _check(_TOKEN, self.nettype, "o= nettype")
        _check(_TOKEN, self.addrtype, "o= addrtype")
        if self.sess_id < 0 or self.sess_version < 0:
            raise ValueError("o= numbers are not negative")

    @classmethod
    def parse(cls, value: str) -> Origin:
        user, sess_id, version, nettype, addrtype, address = _fields(value, 6, "o=")
        return cls(
            user,
            _number(sess_id, "sess-id"),
            _number(version, "sess-version"),
            nettype,
            addrtype,
            address,
        )

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True)
class ConnectionData:
    """``c=`` (RFC 8866 §5.7); ``address`` keeps any ``/ttl/count`` suffix."""

    nettype: str
    addrtype: str
    address: str

    def __post_init__(self) -> None:
        _check(_TOKEN, self.nettype, "c= nettype")
        _check(_TOKEN, self.addrtype, "c= addrtype")
        _check(_NON_WS, self.address, "c= address")

    @classmethod
    def for_address(cls, address: str) -> ConnectionData:
        """``IN IP6`` for an address with a colon, else ``IN IP4``."""
        return cls("IN", "IP6" if ":" in address else "IP4", address)

    @classmethod
    def parse(cls, value: str) -> ConnectionData:
        return cls(*_fields(value, 3, "c="))

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True)
class Bandwidth:
    """``b=<type>:<kilobits per second>`` (RFC 8866 §5.8)."""

    type: str
    value: int

    def __post_init__(self) -> None:
        _check(_TOKEN, self.type, "b= type")
        if self.value < 0:
            raise ValueError("b= value is not negative")

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        kind, colon, amount = value.partition(":")
        if not colon:
            raise ValueError(f"invalid b=: {value!r}")
        return cls(kind, _number(amount, "bandwidth"))

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(frozen=True)
class Timing:
    """``t=<start> <stop>`` with its ``r=`` lines (kept as text)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start < 0 or self.stop < 0:
            raise ValueError("t= times are not negative")

    @classmethod
    def parse(cls, value: str) -> Timing:
        start, stop = _fields(value, 2, "t=")
        return cls(_number(start, "start time"), _number(stop, "stop time"))


class Direction(enum.StrEnum):
    """Media direction attributes (RFC 8866 §6.7, RFC 3264 §6.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    def reverse(self) -> Direction:
        """The direction an answerer uses for this offered one."""
        return _REVERSE.get(self, self)


_REVERSE = {Direction.SENDONLY: Direction.RECVONLY, Direction.RECVONLY: Direction.SENDONLY}


class _Attributes:
    """Accessors for an ordered ``attributes`` list; names compare case-insensitively."""

    attributes: list[Attribute]

    def has_attribute(self, name: str) -> bool:
        return any(key.lower() == name.lower() for key, _ in self.attributes)

    def get_attributes(self, name: str) -> list[str | None]:
        """The values of every ``a=name`` line, in order."""
        return [value for key, value in self.attributes if key.lower() == name.lower()]

    def get_attribute(self, name: str) -> str | None:
        """The value of the first ``a=name`` line; None if absent or a flag."""
        values = self.get_attributes(name)
        return values[0] if values else None

    def set_attribute(self, name: str, value: str | None = None) -> None:
        """Replace the first ``a=name`` line in place (drop the others), or append one."""
        self.replace_attributes((name,), name, value)

    def add_attribute(self, name: str, value: str | None = None) -> None:
        self.attributes.append((name, value))

    def remove_attribute(self, name: str) -> int:
        """Remove every ``a=name`` line; return how many there were."""
        count = len(self.attributes)
        self.attributes = [a for a in self.attributes if a[0].lower() != name.lower()]
        return count - len(self.attributes)

    def replace_attributes(self, names: Sequence[str], name: str, value: str | None) -> None:
        """Put ``a=name:value`` where the first of ``names`` was, removing all of them."""
        wanted = {n.lower() for n in names}
        kept: list[Attribute] = []
        position = None
        for attr in self.attributes:
            if attr[0].lower() not in wanted:
                kept.append(attr)
            elif position is None:
                position = len(kept)
        kept.insert(len(kept) if position is None else position, (name, value))
        self.attributes = kept

    @property
    def direction(self) -> Direction | None:
        """The explicit direction attribute, if any."""
        for key, value in self.attributes:
            if value is None and key.lower() in _DIRECTIONS:
                return Direction(key.lower())
        return None

    @direction.setter
    def direction(self, direction: Direction | None) -> None:
        if direction is None:
            for member in Direction:
                self.remove_attribute(member)
        else:
            self.replace_attributes(tuple(Direction), direction.value, None)


def _attribute_line(name: str, value: str | None) -> str:
    _check(_TOKEN, name, "attribute name")
    return f"a={name}" if value is None else f"a={name}:{value}"


def _parse_attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    return _check(_TOKEN, name, "attribute name"), rest if colon else None


@dataclass
class MediaDescription(_Attributes):
    """One media section: ``m=`` and its ``i=``, ``c=``, ``b=``, ``k=`` and ``a=`` lines."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    info: str | None = None
    connection: ConnectionData | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    @classmethod
    def parse_m_line(cls, value: str) -> MediaDescription:
        """A media description from the value of its ``m=`` line."""
        fields = _FIELD_SEP.split(value.strip(" \t"))
        if len(fields) < 4:
            raise ValueError(f"m= needs at least 4 fields: {value!r}")
        media, port_text, proto, *formats = fields
        port, slash, count = port_text.partition("/")
        return cls(
            _check(_TOKEN, media, "media type"),
            _port(port),
            _check(_PROTO, proto, "proto"),
            [_check(_NON_WS, fmt, "format") for fmt in formats],
            _port(count, low=1) if slash else None,
        )

    @property
    def rejected(self) -> bool:
        """Port 0: a stream refused or disabled (RFC 3264 §6)."""
        return self.port == 0

    def lines(self) -> Iterator[str]:
        _check(_TOKEN, self.media, "media type")
        _check(_PROTO, self.proto, "proto")
        if not self.formats:
            raise ValueError("m= needs at least one format")
        for fmt in self.formats:
            _check(_NON_WS, fmt, "format")
        port = _port(str(self.port))
        if self.port_count is not None:
            port_text = f"{port}/{_port(str(self.port_count), low=1)}"
        else:
            port_text = str(port)
        yield f"m={self.media} {port_text} {self.proto} {' '.join(self.formats)}"
        if self.info is not None:
            yield f"i={self.info}"
        if self.connection is not None:
            yield f"c={self.connection}"
        yield from (f"b={bandwidth}" for bandwidth in self.bandwidths)
        if self.key is not None:
            yield f"k={self.key}"
        yield from (_attribute_line(name, value) for name, value in self.attributes)


def _port(text: str, *, low: int = 0) -> int:
    if not _PORT.fullmatch(text) or not low <= int(text) <= 65535:
        raise ValueError(f"invalid port: {text!r}")
    return int(text)


@dataclass
class SessionDescription(_Attributes):
    """A whole session description (RFC 8866 §5)."""

    origin: Origin
    name: str = "-"
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: ConnectionData | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timing: list[Timing] = field(default_factory=lambda: [Timing()])
    time_zones: str | None = None
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str, limits: SdpLimits | None = None) -> SessionDescription:
        """Parse a session description; raise :class:`SdpParseError` on bad input."""
        return parse(data, limits)

    def direction_of(self, media: MediaDescription) -> Direction:
        """The direction in force for ``media``: its own, the session's, or sendrecv."""
        return media.direction or self.direction or Direction.SENDRECV

    def lines(self) -> Iterator[str]:
        """The lines in RFC 8866 §5 order, without line ends."""
        if self.version != 0:
            raise ValueError("only SDP version 0 exists")
        if not self.timing:
            raise ValueError("at least one t= line is required")
        yield "v=0"
        yield f"o={self.origin}"
        yield f"s={self.name}"
        if self.info is not None:
            yield f"i={self.info}"
        if self.uri is not None:
            yield f"u={self.uri}"
        yield from (f"e={email}" for email in self.emails)
        yield from (f"p={phone}" for phone in self.phones)
        if self.connection is not None:
            yield f"c={self.connection}"
        yield from (f"b={bandwidth}" for bandwidth in self.bandwidths)
        for timing in self.timing:
            yield f"t={timing.start} {timing.stop}"
            yield from (f"r={repeat}" for repeat in timing.repeats)
        if self.time_zones is not None:
            yield f"z={self.time_zones}"
        if self.key is not None:
            yield f"k={self.key}"
        yield from (_attribute_line(name, value) for name, value in self.attributes)
        for media in self.media:
            yield from media.lines()

    def encode(self) -> bytes:
        """The description as UTF-8 with CRLF line ends; ValueError if a field is invalid."""
        lines = list(self.lines())
        for line in lines:
            if _BAD_TEXT.search(line):
                raise ValueError(f"NUL, CR or LF in SDP line {line[:40]!r}")
        return "".join(f"{line}\r\n" for line in lines).encode()

    def __bytes__(self) -> bytes:
        return self.encode()


# ---------------------------------------------------------------------------
# Parser


def _decode(data: bytes | str, limits: SdpLimits) -> str:
    # For text, len() <= UTF-8 size: checking it first bounds the work of encode().
    if len(data) > limits.max_size:
        raise SdpParseError(f"SDP larger than {limits.max_size} bytes")
    try:
        if isinstance(data, bytes):
            text = data.decode()
        elif len((text := data).encode()) > limits.max_size:
            raise SdpParseError(f"SDP larger than {limits.max_size} bytes")
    except UnicodeError:
        raise SdpParseError("SDP is not UTF-8 text") from None
    if "\x00" in text:
        raise SdpParseError("NUL in SDP")
    return text


class _Parser:
    def __init__(self, limits: SdpLimits) -> None:
        self.limits = limits
        self.sd = SessionDescription(Origin("-", 0, 0), timing=[])
        self.seen: set[str] = set()
        self.media_seen: set[str] = set()

    def add(self, kind: str, value: str) -> None:
        sd = self.sd
        if not self.seen and kind != "v":
            raise ValueError("SDP must begin with v=")
        if kind == "m":
            if len(sd.media) >= self.limits.max_media:
                raise ValueError(f"more than {self.limits.max_media} media descriptions")
            sd.media.append(MediaDescription.parse_m_line(value))
            self.media_seen = set()
        elif sd.media:
            self.add_media(sd.media[-1], kind, value)
        else:
            self.add_session(kind, value)

    def add_media(self, media: MediaDescription, kind: str, value: str) -> None:
        if kind not in _MEDIA_KINDS:
            raise ValueError(f"{kind}= after the first m= line")
        if kind in _ONCE_IN_MEDIA:
            _once(self.media_seen, kind)
        match kind:
            case "i":
                media.info = value
            case "c":
                media.connection = ConnectionData.parse(value)
            case "b":
                media.bandwidths.append(Bandwidth.parse(value))
            case "k":
                media.key = value
            case _:
                media.attributes.append(_parse_attribute(value))

    def add_session(self, kind: str, value: str) -> None:
        sd = self.sd
        if kind in _ONCE_IN_SESSION:
            _once(self.seen, kind)
        match kind:
            case "v":
                if value.strip(" \t") != "0":
                    raise ValueError(f"unsupported SDP version {value!r}")
            case "o":
                sd.origin = Origin.parse(value)
            case "s":
                sd.name = value
            case "i":
                sd.info = value
            case "u":
                sd.uri = value
            case "e":
                sd.emails.append(value)
            case "p":
                sd.phones.append(value)
            case "c":
                sd.connection = ConnectionData.parse(value)
            case "b":
                sd.bandwidths.append(Bandwidth.parse(value))
            case "t":
                sd.timing.append(Timing.parse(value))
            case "r":
                if not sd.timing:
                    raise ValueError("r= before any t=")
                last = sd.timing[-1]
                sd.timing[-1] = replace(last, repeats=(*last.repeats, value))
            case "z":
                sd.time_zones = value
            case "k":
                sd.key = value
            case _:
                sd.attributes.append(_parse_attribute(value))

    def finish(self) -> SessionDescription:
        for kind in "os":
            if kind not in self.seen:
                raise SdpParseError(f"missing {kind}= line")
        if not self.sd.timing:
            raise SdpParseError("missing t= line")
        return self.sd


def _once(seen: set[str], kind: str) -> None:
    if kind in seen:
        raise ValueError(f"more than one {kind}= line")
    seen.add(kind)


def parse(data: bytes | str, limits: SdpLimits | None = None) -> SessionDescription:
    """Parse a session description; raise :class:`SdpParseError` on bad input."""
    limits = limits or SdpLimits()
    text = _decode(data, limits)
    if not text.strip():
        raise SdpParseError("empty SDP")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) > limits.max_lines:
        raise SdpParseError(f"more than {limits.max_lines} lines")
    parser = _Parser(limits)
    for number, raw in enumerate(lines, 1):
        line = raw.removesuffix("\r")
        if not line:
            continue
        try:
            if "\r" in line:
                raise ValueError("bare CR")
            if len(line) < 2 or line[1] != "=" or line[0] not in _KINDS:
                raise ValueError(f"not a <type>=<value> line: {line[:40]!r}")
            parser.add(line[0], line[2:])
        except ValueError as exc:
            raise SdpParseError(f"SDP line {number}: {exc}") from None
    return parser.finish()


# ---------------------------------------------------------------------------
# MSRP offer/answer


class OfferRejected(Exception):
    """An offer pyim cannot answer; ``status`` is the SIP response to send (488)."""

    def __init__(self, reason: str, *, status: int = 488) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class AnswerRejected(Exception):
    """An answer that refuses or breaks the MSRP stream we offered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MsrpNegotiated:
    """The outcome of an MSRP offer/answer, for either side.

    ``active``: whether this side opens the MSRP connection. ``message_index``:
    the position of the ``m=message`` line in both descriptions.
    """

    remote: MsrpMediaAttributes
    local: MsrpMediaAttributes
    active: bool
    message_index: int
    tls: bool


@dataclass(frozen=True)
class MsrpAnswer(MsrpNegotiated):
    """An answer to send (``sdp``) together with what it negotiated."""

    sdp: SessionDescription


def _is_msrp(media: MediaDescription) -> bool:
    return (
        media.media.lower() == "message"
        and media.proto.upper() in (MSRP_PROTO, MSRPS_PROTO)
        and not media.rejected
    )


def _msrp_attributes(media: MediaDescription) -> MsrpMediaAttributes:
    return MsrpMediaAttributes.from_lines(
        f"a={name}" if value is None else f"a={name}:{value}" for name, value in media.attributes
    )


def _msrp_media(proto: str, formats: list[str], attrs: MsrpMediaAttributes) -> MediaDescription:
    port = attrs.path[-1].port
    if port is None:
        raise ValueError("the local MSRP URI has no port")
    return MediaDescription(
        "message",
        port,
        proto,
        formats,
        attributes=[_parse_attribute(line[2:]) for line in attrs.to_lines()],
    )


def _inactive_audio(port: int, proto: str, fmt: str, rtpmap: str | None) -> MediaDescription:
    audio = MediaDescription("audio", port, proto, [fmt])
    if rtpmap is not None:
        audio.add_attribute("rtpmap", rtpmap)
    audio.direction = Direction.INACTIVE
    return audio


def _description(
    address: str, username: str, session_id: int | None, session_version: int | None
) -> SessionDescription:
    sess_id = secrets.randbelow(2**31) if session_id is None else session_id
    connection = ConnectionData.for_address(address)
    return SessionDescription(
        Origin(
            username,
            sess_id,
            sess_id if session_version is None else session_version,
            "IN",
            connection.addrtype,
            address,
        ),
        connection=connection,
    )


def _check_path(path: Sequence[MsrpUri], tls: bool) -> tuple[MsrpUri, ...]:
    if not path:
        raise ValueError("the local MSRP path is empty")
    if path[-1].is_secure != tls:
        raise ValueError(f"an {'msrps' if tls else 'msrp'} URI is needed, not {path[-1]}")
    return tuple(path)


def _bare_type(entry: str) -> str:
    return entry.partition(";")[0].strip().lower()


def _type_matches(pattern: str, mime: str) -> bool:
    pattern, mime = _bare_type(pattern), _bare_type(mime)
    return pattern in ("*", mime) or (pattern.endswith("/*") and mime.startswith(pattern[:-1]))


def _types_compatible(theirs: Sequence[str], ours: Sequence[str]) -> bool:
    return any(_type_matches(a, b) or _type_matches(b, a) for a in theirs for b in ours)


def build_msrp_offer(
    *,
    local_path: Sequence[MsrpUri],
    address: str,
    accept_types: Sequence[str] = DEFAULT_ACCEPT_TYPES,
    accept_wrapped_types: Sequence[str] = (),
    tls: bool = False,
    setup: Setup | None = Setup.ACTPASS,
    max_size: int | None = None,
    pjsua_dialect: bool = False,
    audio_port: int = DISCARD_PORT,
    session_id: int | None = None,
    session_version: int | None = None,
    username: str = "pyim",
) -> SessionDescription:
    """An offer of one MSRP chat stream (``m=message``, port of our own URI).

    ``pjsua_dialect`` puts an inactive PCMU audio line before it. ``session_id``
    defaults to a random 31-bit number, ``session_version`` to ``session_id``.
    """
    attrs = MsrpMediaAttributes(
        path=_check_path(local_path, tls),
        accept_types=tuple(accept_types),
        accept_wrapped_types=tuple(accept_wrapped_types),
        max_size=max_size,
        setup=setup,
    )
    sdp = _description(address, username, session_id, session_version)
    if pjsua_dialect:
        sdp.media.append(_inactive_audio(audio_port, "RTP/AVP", "0", "0 PCMU/8000"))
    sdp.media.append(_msrp_media(MSRPS_PROTO if tls else MSRP_PROTO, ["*"], attrs))
    return sdp


class _Unacceptable(Exception):
    pass


def answer_msrp_offer(
    offer: SessionDescription,
    *,
    local_path: Sequence[MsrpUri],
    address: str,
    accept_types: Sequence[str] = DEFAULT_ACCEPT_TYPES,
    accept_wrapped_types: Sequence[str] = (),
    tls_supported: bool = False,
    tls_path: Sequence[MsrpUri] | None = None,
    max_size: int | None = None,
    audio_port: int = DISCARD_PORT,
    session_id: int | None = None,
    session_version: int | None = None,
    username: str = "pyim",
) -> MsrpAnswer:
    """Answer ``offer``: accept its first usable MSRP stream, refuse the rest.

    A TLS stream is usable only when ``tls_supported`` and is answered with
    ``tls_path`` (default ``local_path``, which must then hold msrps URIs). The
    first RTP/AVP(F) audio line is answered inactive on ``audio_port`` (pjsua
    dialect); every other stream gets port 0. Raise :class:`OfferRejected` (488)
    when no MSRP stream is usable.
    """
    sdp = _description(address, username, session_id, session_version)
    sdp.timing = list(offer.timing)
    found: tuple[int, MsrpMediaAttributes, MsrpMediaAttributes, bool, bool] | None = None
    problems: list[str] = []
    audio_answered = False
    for index, media in enumerate(offer.media):
        if found is None and _is_msrp(media):
            tls = media.proto.upper() == MSRPS_PROTO
            path = tls_path if tls and tls_path is not None else local_path
            try:
                if not tls and path and path[-1].is_secure:
                    raise _Unacceptable("MSRP over TLS only (TCP/TLS/MSRP), not TCP/MSRP")
                remote, local, active = _accept_msrp(
                    media, tls, tls_supported, path, accept_types, accept_wrapped_types, max_size
                )
            except _Unacceptable as exc:
                problems.append(str(exc))
            else:
                answer = _msrp_media(media.proto, list(media.formats), local)
                direction = offer.direction_of(media).reverse()
                if direction is not Direction.SENDRECV:
                    answer.direction = direction
                sdp.media.append(answer)
                found = (index, remote, local, active, tls)
                continue
        elif (
            not audio_answered
            and media.media.lower() == "audio"
            and media.proto.upper() in _AUDIO_PROTOS
            and media.formats
            and not media.rejected
        ):
            fmt = media.formats[0]
            rtpmap = next(
                (v for v in media.get_attributes("rtpmap") if v and v.split(" ")[0] == fmt),
                None,
            )
            sdp.media.append(_inactive_audio(audio_port, media.proto, fmt, rtpmap))
            audio_answered = True
            continue
        sdp.media.append(MediaDescription(media.media, 0, media.proto, list(media.formats)))
    if found is None:
        raise OfferRejected(problems[0] if problems else "no MSRP stream offered")
    index, remote, local, active, tls = found
    return MsrpAnswer(remote, local, active, index, tls, sdp)


def _accept_msrp(
    media: MediaDescription,
    tls: bool,
    tls_supported: bool,
    local_path: Sequence[MsrpUri],
    accept_types: Sequence[str],
    accept_wrapped_types: Sequence[str],
    max_size: int | None,
) -> tuple[MsrpMediaAttributes, MsrpMediaAttributes, bool]:
    """Remote and local attributes and our role, or :class:`_Unacceptable`."""
    if tls and not tls_supported:
        raise _Unacceptable("MSRP over TLS is not supported")
    try:
        remote = _msrp_attributes(media)
    except ValueError as exc:
        raise _Unacceptable(f"bad MSRP attribute: {exc}") from None
    if not remote.path:
        raise _Unacceptable("no a=path in the MSRP stream")
    if not remote.accept_types:
        raise _Unacceptable("no a=accept-types in the MSRP stream")
    if not _types_compatible(remote.accept_types, accept_types):
        raise _Unacceptable("no acceptable MSRP content type")
    setup = negotiate_setup(remote.setup)
    local = MsrpMediaAttributes(
        path=_check_path(local_path, tls),
        accept_types=tuple(accept_types),
        accept_wrapped_types=tuple(accept_wrapped_types),
        max_size=max_size,
        setup=setup,
    )
    active = active_side(setup, remote.setup or default_setup(offer=True))
    return remote, local, active


def parse_msrp_answer(offer: SessionDescription, answer: SessionDescription) -> MsrpNegotiated:
    """Check the answer to our MSRP ``offer``; raise :class:`AnswerRejected` if unusable.

    The negotiated stream is the first offered MSRP stream the answer accepted.
    """
    offered_indexes = [i for i, media in enumerate(offer.media) if _is_msrp(media)]
    if not offered_indexes:
        raise ValueError("the offer has no MSRP stream")
    if len(answer.media) != len(offer.media):
        raise AnswerRejected(f"{len(answer.media)} m-lines answer {len(offer.media)} offered")
    index = next((i for i in offered_indexes if not answer.media[i].rejected), None)
    if index is None:
        raise AnswerRejected("the MSRP stream was refused")
    offered, media = offer.media[index], answer.media[index]
    local = _msrp_attributes(offered)
    if media.media.lower() != "message":
        raise AnswerRejected(f"m={media.media} answers m=message")
    if media.proto.upper() != offered.proto.upper():
        raise AnswerRejected(f"answered with {media.proto}, offered {offered.proto}")
    try:
        remote = _msrp_attributes(media)
    except ValueError as exc:
        raise AnswerRejected(f"bad MSRP attribute: {exc}") from None
    if not remote.path:
        raise AnswerRejected("no a=path in the answer")
    if not _types_compatible(remote.accept_types, local.accept_types):
        raise AnswerRejected("no acceptable MSRP content type in the answer")
    if remote.setup is Setup.ACTPASS:
        raise AnswerRejected("a=setup:actpass in an answer (RFC 4145 §4.1)")
    try:
        active = active_side(
            local.setup or default_setup(offer=True), remote.setup or default_setup(offer=False)
        )
    except SdpError as exc:
        raise AnswerRejected(str(exc)) from None
    return MsrpNegotiated(remote, local, active, index, offered.proto.upper() == MSRPS_PROTO)
