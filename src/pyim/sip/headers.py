"""Typed SIP header values (RFC 3261 §20) and header-name handling.

- :class:`Via` (with RFC 3581 ``rport``) and :func:`parse_via_list`;
- :class:`CSeq`;
- :func:`parse_name_addr_list` for Contact, Route, Record-Route (and ``is_star`` for
  ``Contact: *``); :func:`split_header_list` for any comma-separated list;
- compact forms (:data:`COMPACT_FORMS`), :func:`canonical` spellings and
  :func:`header_key`, the case- and compact-form-insensitive lookup key used by
  :class:`pyim.sip.message.SipHeaders`.

Every parser takes the header value (the text after ``Name:``, unfolded) and raises
:class:`HeaderError` on bad input.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from .uri import (
    NameAddr,
    Params,
    SipUriError,
    _drop_param,
    _set_param,
    _split_params,
    find_param,
    format_params,
    parse_header_params,
    slot_setter,
)

__all__ = [
    "COMPACT_FORMS",
    "MAX_CSEQ",
    "CSeq",
    "HeaderError",
    "Via",
    "canonical",
    "header_key",
    "is_star",
    "is_token",
    "parse_name_addr_list",
    "parse_token_list",
    "parse_via_list",
    "split_header_list",
]

#: CSeq numbers are below 2**31 (RFC 3261 §8.1.1.5).
MAX_CSEQ = 2**31 - 1


class HeaderError(ValueError):
    """A header value that does not follow its grammar, or a missing mandatory header."""


#: Compact form -> full name (RFC 3261 §7.3.3 and the IANA SIP header registry).
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = (
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}
_CANONICAL.update((short, full) for short, full in COMPACT_FORMS.items())
_COMPACT_KEYS: dict[str, str] = {short: full.lower() for short, full in COMPACT_FORMS.items()}

_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN = re.compile(rf"[{_TOKEN_CHARS}]+")
_KEY_CACHE: dict[str, str] = {}
_KEY_CACHE_LIMIT = 4096


def is_token(text: str) -> bool:
    """Whether ``text`` is an RFC 3261 token."""
    return _TOKEN.fullmatch(text) is not None


def canonical(name: str) -> str:
    """The usual spelling of a header name: ``"v"`` and ``"VIA"`` -> ``"Via"``,
    ``"call-id"`` -> ``"Call-ID"``; unknown names are returned unchanged."""
    return _CANONICAL.get(name.lower(), name)


def header_key(name: str) -> str:
    """Lookup key of a header name: lower case, compact forms expanded
    (``"v"``, ``"Via"`` and ``"VIA"`` all give ``"via"``).

    Raises :class:`HeaderError` if ``name`` is not a token.
    """
    key = _KEY_CACHE.get(name)
    if key is None:
        if not _TOKEN.fullmatch(name):
            raise HeaderError(f"invalid header name: {name!r}")
        low = name.lower()
        key = _COMPACT_KEYS.get(low, low)
        if len(_KEY_CACHE) < _KEY_CACHE_LIMIT:
            _KEY_CACHE[name] = key
    return key


# -- lists ------------------------------------------------------------------------------


def _split(value: str) -> list[str]:
    """Split at commas outside quoted strings and ``<...>``; items stripped, empty
    items kept."""
    if '"' not in value and "<" not in value:
        return [item.strip(" \t") for item in value.split(",")]
    items: list[str] = []
    start = 0
    quoted = False
    angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            items.append(value[start:i].strip(" \t"))
            start = i + 1
        i += 1
    if quoted:
        raise HeaderError(f"unterminated quoted string: {value!r}")
    items.append(value[start:].strip(" \t"))
    return items


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value at top-level commas (not inside quoted
    strings or ``<...>``); items are stripped and empty items dropped."""
    return [item for item in _split(value) if item]


def parse_token_list(value: str) -> list[str]:
    """A comma-separated list of tokens (Allow, Supported, Require...)."""
    items = split_header_list(value)
    for item in items:
        if not _TOKEN.fullmatch(item):
            raise HeaderError(f"invalid token in list: {item!r}")
    return items


def is_star(value: str) -> bool:
    """Whether a Contact value is the ``*`` wildcard (RFC 3261 §10.2.2)."""
    return value.strip(" \t") == "*"


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Parse a Contact, Route or Record-Route value; ``*`` gives ``[]`` (see
    :func:`is_star`)."""
    if is_star(value):
        return []
    out: list[NameAddr] = []
    for item in _split(value):
        if not item:
            raise HeaderError(f"empty element in list: {value!r}")
        try:
            out.append(NameAddr.parse(item))
        except SipUriError as exc:
            raise HeaderError(str(exc)) from None
    return out


# -- Via --------------------------------------------------------------------------------

_VIA = re.compile(
    rf"[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)"
    r"[ \t]+(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_\-][A-Za-z0-9_.\-]*))"
    r"(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)


_VIA_FAST = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9_\-][A-Za-z0-9_.\-]*)(?::([0-9]{1,5}))?"
    rf"((?:;[{_TOKEN_CHARS}]+(?:=[{_TOKEN_CHARS}:]+)?)*)"
)


def _params_ok(params: Params) -> bool:
    """rport is empty or a port number; branch is not empty."""
    for pname, pvalue in params:
        low = pname.lower()
        if low == "rport":
            if pvalue is not None and not (
                pvalue.isascii() and pvalue.isdigit() and len(pvalue) <= 5 and int(pvalue) <= 65535
            ):
                return False
        elif low == "branch" and not pvalue:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=z9hG4bK...;rport``.

    ``transport`` is upper case, ``host`` lower case (IPv6 without brackets).
    """

    protocol: str = "SIP/2.0"
    transport: str = "UDP"
    host: str = ""
    port: int | None = None
    params: Params = ()

    def __post_init__(self) -> None:
        if not self.host:
            raise HeaderError("Via without a host")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise HeaderError(f"Via port out of range: {self.port}")
        if not self.transport.isupper():
            object.__setattr__(self, "transport", self.transport.upper())

    @classmethod
    def parse(cls, value: str) -> Via:
        """Parse ONE via-parm (use :func:`parse_via_list` for a whole header value)."""
        m = _VIA_FAST.fullmatch(value)
        if m is not None:  # SIP/2.0/UDP host:port;name=value... without LWS or quotes
            transport, host, port_text, params_text = m.groups()
            params = _split_params(params_text) if params_text else ()
            port = None if port_text is None else int(port_text)
            low = params_text.lower()
            if (port is None or port <= 65535) and (
                ("rport=" not in low and ";branch;" not in low + ";") or _params_ok(params)
            ):
                via = object.__new__(cls)
                _set_protocol(via, "SIP/2.0")
                _set_transport(via, transport if transport.isupper() else transport.upper())
                _set_host(via, host if host.islower() else host.lower())
                _set_port(via, port)
                _set_params(via, params)
                return via
        return cls._parse_slow(value)

    @classmethod
    def _parse_slow(cls, value: str) -> Via:
        m = _VIA.match(value)
        if m is None:
            raise HeaderError(f"invalid Via: {value!r}")
        name, version, transport, v6, host, port_text = m.groups()
        if v6 is not None:
            try:
                ipaddress.IPv6Address(v6)
            except ValueError:
                raise HeaderError(f"invalid IPv6 address in Via: {value!r}") from None
        port: int | None = None
        if port_text is not None:
            port = int(port_text)
            if port > 65535:
                raise HeaderError(f"Via port out of range: {value!r}")
        try:
            params = parse_header_params(value, m.end())
        except SipUriError:
            raise HeaderError(f"invalid Via parameters: {value!r}") from None
        if not _params_ok(params):
            raise HeaderError(f"invalid rport or branch: {value!r}")
        if name.upper() == "SIP" and version == "2.0":
            protocol = "SIP/2.0"
        else:
            protocol = f"{name.upper()}/{version}"
        via = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(via, "protocol", protocol)
        setattr_(via, "transport", transport.upper())
        setattr_(via, "host", (v6 or host).lower())
        setattr_(via, "port", port)
        setattr_(via, "params", params)
        return via

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {host}{port}{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        """Value of parameter ``name`` (``None`` if absent or valueless)."""
        return find_param(self.params, name, None)

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (``None`` for an RFC 2543 Via without one)."""
        for pname, value in self.params:
            if pname == "branch" or pname.lower() == "branch":
                return value
        return None

    @property
    def received(self) -> str | None:
        """The ``received`` parameter."""
        return find_param(self.params, "received", None)

    @property
    def rport(self) -> int | bool | None:
        """RFC 3581 ``rport``: ``None`` absent, ``True`` present without a value,
        the port number when filled in."""
        sentinel = object()
        value = find_param(self.params, "rport", sentinel)
        if value is sentinel:
            return None
        if value is None:
            return True
        assert isinstance(value, str)
        if not (value.isascii() and value.isdigit() and len(value) <= 5):
            raise HeaderError(f"invalid rport: {value!r}")
        return int(value)

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter."""
        return find_param(self.params, "maddr", None)

    @property
    def sent_by(self) -> tuple[str, int]:
        """``(host, port)``, the port defaulting to 5061 for TLS and 5060 otherwise."""
        if self.port is not None:
            return self.host, self.port
        return self.host, 5061 if self.transport == "TLS" else 5060

    def with_param(self, name: str, value: str | None = None) -> Via:
        """A copy with parameter ``name`` set (replaced or appended)."""
        return replace(self, params=_set_param(self.params, name, value))

    def without_param(self, name: str) -> Via:
        """A copy without parameter ``name``."""
        return replace(self, params=_drop_param(self.params, name))


# Setters of the frozen slots, for building parsed values without the dataclass
# __init__ (about a third cheaper than object.__setattr__ by name).
_set_protocol = slot_setter(Via, "protocol")
_set_transport = slot_setter(Via, "transport")
_set_host = slot_setter(Via, "host")
_set_port = slot_setter(Via, "port")
_set_params = slot_setter(Via, "params")


def parse_via_list(value: str) -> list[Via]:
    """Parse a Via header value holding one or more comma-separated via-parms."""
    if "," not in value:
        return [Via.parse(value)]
    out: list[Via] = []
    for item in _split(value):
        if not item:
            raise HeaderError(f"empty Via element: {value!r}")
        out.append(Via.parse(item))
    return out


# -- CSeq -------------------------------------------------------------------------------

_KNOWN_METHODS = frozenset(
    [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "MESSAGE",
        "UPDATE",
        "INFO",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "REFER",
    ]
)
_CSEQ = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+([{_TOKEN_CHARS}]+)[ \t]*")


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: 4711 INVITE``; the number is below 2**31 (RFC 3261 §8.1.1.5)."""

    seq: int
    method: str

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= MAX_CSEQ:
            raise HeaderError(f"CSeq number out of range: {self.seq}")
        if not _TOKEN.fullmatch(self.method):
            raise HeaderError(f"invalid CSeq method: {self.method!r}")

    @classmethod
    def parse(cls, value: str) -> CSeq:
        """Parse a CSeq value (LWS allowed between and around the two parts)."""
        seq_text, _, method = value.partition(" ")
        if (
            len(seq_text) > 10
            or not seq_text.isdigit()
            or not seq_text.isascii()
            or (method not in _KNOWN_METHODS and not _TOKEN.fullmatch(method))
        ):
            m = _CSEQ.fullmatch(value)
            if m is None:
                raise HeaderError(f"invalid CSeq: {value!r}")
            seq_text, method = m.groups()
        seq = int(seq_text)
        if seq > MAX_CSEQ:
            raise HeaderError(f"CSeq number out of range: {value!r}")
        cseq = object.__new__(cls)
        _set_seq(cseq, seq)
        _set_method(cseq, method)
        return cseq

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_set_seq = slot_setter(CSeq, "seq")
_set_method = slot_setter(CSeq, "method")
