"""SIP, SIPS and TEL URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (§20.10).

``sip:user:password@host:port;uri-parameters?headers``

:class:`SipUri` is a frozen dataclass.  Parsing normalises the scheme and the host to
lower case (an IPv6 host is kept without its brackets) and keeps everything else as
written, escapes included; ``str()`` of a parsed URI gives back the text it was parsed
from.  Dataclass ``==`` is structural; :meth:`SipUri.equivalent` is the RFC 3261
§19.1.4 comparison.

URIs of other schemes (``isbn:...``, ``http://...``; RFC 4475 ``unksm2``) parse into a
``SipUri`` whose ``opaque`` holds everything after the colon: they may appear in From,
To or Contact, and the application decides what to do with them.  A TEL URI keeps the
telephone-subscriber in ``user`` and has an empty ``host``.

:class:`NameAddr` is the value of From, To, Contact, Route, Record-Route...:
an optional display name, a URI and header parameters (``;tag=...``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, overload
from urllib.parse import unquote

__all__ = [
    "DEFAULT_PORTS",
    "NameAddr",
    "Params",
    "SipUri",
    "SipUriError",
    "check_name_addr",
    "find_param",
    "format_params",
    "parse_header_params",
    "quote_string",
    "unquote_string",
]

_T = TypeVar("_T")

#: Parameters as written: ``(name, value)``, ``value`` ``None`` for a flag (``;lr``).
Params = tuple[tuple[str, str | None], ...]

#: Default port per scheme (RFC 3261 §19.1.2).
DEFAULT_PORTS = {"sip": 5060, "sips": 5061}

#: Longest URI text accepted (a pyim limit, not an RFC one).
MAX_URI_LENGTH = 4096


class SipUriError(ValueError):
    """Text or components that do not form a valid URI or name-addr."""


# -- grammar pieces (RFC 3261 §25.1) ------------------------------------------------

_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN = re.compile(rf"[{_TOKEN_CHARS}]+")
_ESC = r"%[0-9A-Fa-f]{2}"
# user = 1*( unreserved / escaped / user-unreserved )
_USER = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|{_ESC})+")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|{_ESC})*")
# uri-parameters = *( ";" pname [ "=" pvalue ] )
# paramchar = param-unreserved / unreserved / escaped
_PCHAR = rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|{_ESC})"
_URI_PARAMS = re.compile(rf"(?:;{_PCHAR}+(?:={_PCHAR}*)?)*")
# headers = "?" header *( "&" header ), hname/hvalue = hnv-unreserved / unreserved / escaped
_HCHAR = rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|{_ESC})"
_URI_HEADERS = re.compile(rf"{_HCHAR}+={_HCHAR}*(?:&{_HCHAR}+={_HCHAR}*)*")
_HOSTPORT = re.compile(
    r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\.?))(?::([0-9]{1,5}))?"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_OPAQUE = re.compile(r"[^\x00-\x20\x7f<>\"]+")
_TEL_NUMBER = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")
_HOSTNAME_CHARS = re.compile(r"[a-z0-9_\-.]+")
_PCHAR_PLAIN = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]"
_SIP_FAST = re.compile(
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/]+)(?::([A-Za-z0-9\-_.!~*'()&=+$,]*))?@)?"
    r"([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\.?)(?::([0-9]{1,5}))?"
    rf"((?:;{_PCHAR_PLAIN}+(?:={_PCHAR_PLAIN}*)?)*)"
)
_CACHE_LIMIT = 2048
_URI_CACHE: dict[str, SipUri] = {}
_NAME_ADDR_CACHE: dict[str, NameAddr] = {}
# header parameters: SEMI token [ EQUAL ( token / host / quoted-string ) ], LWS around
_QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
_HEADER_PARAM = re.compile(
    rf"[ \t]*;[ \t]*([{_TOKEN_CHARS}]+)"
    rf"(?:[ \t]*=[ \t]*([{_TOKEN_CHARS}:]+|\[[0-9A-Fa-f:.]+\]|{_QUOTED}))?[ \t]*"
)
_QUOTED_AT = re.compile(_QUOTED)
_HEADER_PARAMS_PLAIN = re.compile(
    rf"(?:;[{_TOKEN_CHARS}]+(?:=(?:[{_TOKEN_CHARS}:]+|\[[0-9A-Fa-f:.]+\]))?)+"
)
_NAME_ADDR_FAST = re.compile(
    rf'[ \t]*(?:"([^"\\\r\n]*)"[ \t]*|([{_TOKEN_CHARS}]+(?:[ \t]+[{_TOKEN_CHARS}]+)*)[ \t]*)?'
    r"<([^<>\x00-\x20\"]+)>"
)
_DISPLAY_TOKENS = re.compile(rf"[{_TOKEN_CHARS}]+(?:[ \t]+[{_TOKEN_CHARS}]+)*")
_QUOTE_ESCAPES = re.compile(r"\\(.)", re.DOTALL)
_NEEDS_ESCAPE = re.compile(r'(["\\])')


# -- helpers shared with pyim.sip.headers ---------------------------------------------


def _pname(name: str) -> str:
    """A parameter name in comparable form (escapes decoded, lower case)."""
    return (unquote(name) if "%" in name else name).lower()


def slot_setter(cls: type, name: str) -> Callable[[object, object], None]:
    """The setter of slot ``name`` of ``cls``: builds frozen slotted dataclasses
    without their ``__init__`` (a third cheaper than ``object.__setattr__``)."""
    setter: Callable[[object, object], None] = getattr(cls, name).__set__
    return setter


def find_param(params: Params, name: str, default: _T) -> str | _T | None:
    """The value of parameter ``name`` (case-insensitive) in ``params``.

    ``None`` for a parameter present without a value, ``default`` when absent.
    """
    wanted = name.lower()
    for pname, value in params:
        if pname == wanted or _pname(pname) == wanted:
            return value
    return default


def _set_param(params: Params, name: str, value: str | None) -> Params:
    wanted = name.lower()
    out = list(params)
    for i, (pname, _) in enumerate(out):
        if _pname(pname) == wanted:
            out[i] = (pname, value)
            return tuple(out)
    out.append((name, value))
    return tuple(out)


def _drop_param(params: Params, name: str) -> Params:
    wanted = name.lower()
    return tuple(p for p in params if _pname(p[0]) != wanted)


def format_params(params: Params) -> str:
    """``;name=value;flag`` text of ``params``."""
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def parse_header_params(text: str, start: int = 0) -> Params:
    """Parse ``*( SEMI generic-param )`` from ``text[start:]`` (LWS allowed around
    ``;`` and ``=``).  Quoted values keep their quotes."""
    end = len(text)
    if start >= end:
        return ()
    m = _HEADER_PARAMS_PLAIN.fullmatch(text, start)
    if m is not None:  # no LWS, no quoted string: the common case
        return _split_params(text[start:])
    params: list[tuple[str, str | None]] = []
    match = _HEADER_PARAM.match
    pos = start
    while pos < end:
        m = match(text, pos)
        if m is None:
            rest = text[pos:].strip(" \t")
            if not rest:
                break
            raise SipUriError(f"invalid parameters: {text[start:]!r}")
        params.append((m.group(1), m.group(2)))
        pos = m.end()
    return tuple(params)


def unquote_string(value: str) -> str:
    """The content of a quoted-string (quotes removed, quoted-pairs decoded); other
    values are returned unchanged."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return _QUOTE_ESCAPES.sub(r"\1", value[1:-1])
    return value


def quote_string(value: str) -> str:
    """``value`` as a quoted-string."""
    return '"' + _NEEDS_ESCAPE.sub(r"\\\1", value) + '"'


def _unescape(text: str | None) -> str | None:
    if text is None or "%" not in text:
        return text
    return unquote(text, errors="surrogateescape")


# -- SipUri ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SipUri:
    """A SIP, SIPS or TEL URI (or an opaque URI of another scheme)."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    #: Everything after ``scheme:`` for a URI that is neither SIP, SIPS nor TEL.
    opaque: str | None = None
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        scheme = self.scheme.lower()
        object.__setattr__(self, "scheme", scheme)
        if not _SCHEME.fullmatch(scheme):
            raise SipUriError(f"invalid scheme: {self.scheme!r}")
        if scheme in DEFAULT_PORTS:
            if self.opaque is not None:
                raise SipUriError("a sip/sips URI has no opaque part")
            object.__setattr__(self, "host", _check_host(self.host))
            if self.user is not None and not _USER.fullmatch(self.user):
                raise SipUriError(f"invalid user: {self.user!r}")
            if self.password is not None and not _PASSWORD.fullmatch(self.password):
                raise SipUriError(f"invalid password: {self.password!r}")
        elif scheme == "tel":
            if not self.user or not _TEL_NUMBER.fullmatch(self.user):
                raise SipUriError(f"invalid telephone number: {self.user!r}")
        elif self.opaque is None or not _OPAQUE.fullmatch(self.opaque):
            raise SipUriError(f"invalid {scheme} URI: {self.opaque!r}")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise SipUriError(f"port out of range: {self.port}")
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "headers", tuple(self.headers))
        if not _URI_PARAMS.fullmatch(format_params(self.params)):
            raise SipUriError(f"invalid URI parameters: {self.params!r}")

    # -- parsing and formatting ---------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raise :class:`SipUriError` if it is not valid.

        Parsed URIs are immutable, so recently parsed texts are served from a small
        bounded cache.
        """
        if cls is SipUri:
            uri = _URI_CACHE.get(text)
            if uri is None:
                uri = cls._parse_uncached(text)
                if len(_URI_CACHE) >= _CACHE_LIMIT:
                    _URI_CACHE.clear()
                _URI_CACHE[text] = uri
            return uri
        return cls._parse_uncached(text)

    @classmethod
    def _parse_uncached(cls, text: str) -> SipUri:
        if len(text) > MAX_URI_LENGTH:
            raise SipUriError(f"URI longer than {MAX_URI_LENGTH} characters")
        colon = text.find(":")
        if colon <= 0:
            raise SipUriError(f"not a URI: {text!r}")
        scheme = text[:colon].lower()
        rest = text[colon + 1 :]
        if scheme == "sip" or scheme == "sips":
            m = _SIP_FAST.fullmatch(rest)
            # the common case: no escapes, no IPv6, no URI headers
            if m is not None and (m.group(4) is None or int(m.group(4)) <= 65535):
                user, password, host, port_text, params_text = m.groups()
                return _build(
                    cls,
                    scheme,
                    user,
                    password,
                    host.lower(),
                    None if port_text is None else int(port_text),
                    _split_params(params_text) if params_text else (),
                    (),
                    None,
                    text,
                )
            return _parse_sip(cls, scheme, rest, text)
        if not _SCHEME.fullmatch(scheme):
            raise SipUriError(f"invalid scheme in {text!r}")
        if scheme == "tel":
            number, _, params_text = rest.partition(";")
            if not _TEL_NUMBER.fullmatch(number):
                raise SipUriError(f"invalid telephone number: {number!r}")
            params = _split_uri_params(";" + params_text) if params_text else ()
            return _build(cls, "tel", number, None, "", None, params, (), None, text)
        if not _OPAQUE.fullmatch(rest):
            raise SipUriError(f"invalid URI: {text!r}")
        return _build(cls, scheme, None, None, "", None, (), (), rest, text)

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        scheme = self.scheme
        if self.opaque is not None:
            text = f"{scheme}:{self.opaque}"
        elif scheme == "tel":
            text = f"tel:{self.user}{format_params(self.params)}"
        else:
            parts = [scheme, ":"]
            if self.user is not None:
                parts.append(self.user)
                if self.password is not None:
                    parts += [":", self.password]
                parts.append("@")
            parts.append(f"[{self.host}]" if ":" in self.host else self.host)
            if self.port is not None:
                parts.append(f":{self.port}")
            parts.append(format_params(self.params))
            if self.headers:
                parts.append("?" + "&".join(f"{n}={v}" for n, v in self.headers))
            text = "".join(parts)
        object.__setattr__(self, "_text", text)
        return text

    # -- accessors -----------------------------------------------------------------------

    @property
    def is_sip(self) -> bool:
        """True for ``sip:`` and ``sips:`` URIs."""
        return self.scheme in DEFAULT_PORTS

    @overload
    def param(self, name: str) -> str | None: ...
    @overload
    def param(self, name: str, default: _T) -> str | _T | None: ...
    def param(self, name: str, default: object = None) -> object:
        """Value of URI parameter ``name``: ``None`` if present without a value,
        ``default`` (``None`` unless given) if absent.  Names are case-insensitive."""
        return find_param(self.params, name, default)

    def has_param(self, name: str) -> bool:
        """Whether parameter ``name`` is present (with or without a value)."""
        sentinel = object()
        return find_param(self.params, name, sentinel) is not sentinel

    @property
    def transport(self) -> str:
        """``transport`` parameter, lower case; "tls" for sips and "udp" otherwise
        when absent."""
        value = self.param("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def lr(self) -> bool:
        """Loose-routing flag (RFC 3261 §19.1.1)."""
        return self.has_param("lr")

    @property
    def maddr(self) -> str | None:
        """``maddr`` parameter, if any."""
        return self.param("maddr")

    @property
    def host_port(self) -> tuple[str, int]:
        """``(host, port)`` with the default port of the scheme (5061 for sips or
        transport=tls, 5060 otherwise) when none is written."""
        if self.port is not None:
            return self.host, self.port
        secure = self.scheme == "sips" or self.transport == "tls"
        return self.host, 5061 if secure else 5060

    def with_(self, **changes: Any) -> SipUri:
        """A copy with some fields replaced (``uri.with_(port=5070)``)."""
        return replace(self, **changes)

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        """A copy with parameter ``name`` set (replaced or appended)."""
        return replace(self, params=_set_param(self.params, name, value))

    def without_param(self, name: str) -> SipUri:
        """A copy without parameter ``name``."""
        return replace(self, params=_drop_param(self.params, name))

    # -- comparison ----------------------------------------------------------------------

    def equivalent(self, other: SipUri) -> bool:
        """RFC 3261 §19.1.4 URI comparison.

        Schemes must match; user and password compare case-sensitively after
        unescaping; hosts case-insensitively (IPv6 addresses as addresses); a port, a
        ``user``, ``ttl``, ``method``, ``maddr`` or ``transport`` parameter present in
        one URI must be present and equal in the other; other parameters compare only
        when both have them; URI headers must all match.
        """
        if self.scheme != other.scheme:
            return False
        if self.opaque is not None or other.opaque is not None:
            return self.opaque == other.opaque
        if self.scheme == "tel":
            return _tel_digits(self.user) == _tel_digits(other.user) and _norm(
                self.params
            ) == _norm(other.params)
        if _unescape(self.user) != _unescape(other.user):
            return False
        if _unescape(self.password) != _unescape(other.password):
            return False
        if _host_key(self.host) != _host_key(other.host) or self.port != other.port:
            return False
        if not _params_equivalent(self.params, other.params, strict=_STRICT_PARAMS):
            return False
        return _headers_key(self.headers) == _headers_key(other.headers)


_STRICT_PARAMS = frozenset({"user", "ttl", "method", "maddr", "transport"})


def _norm(params: Params) -> dict[str, str | None]:
    return {_pname(n): (None if v is None else (_unescape(v) or "").lower()) for n, v in params}


def _params_equivalent(a: Params, b: Params, *, strict: frozenset[str]) -> bool:
    na, nb = _norm(a), _norm(b)
    for name in na.keys() | nb.keys():
        if name in na and name in nb:
            if na[name] != nb[name]:
                return False
        elif name in strict:
            return False
    return True


def _headers_key(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str | None]]:
    return sorted(((_unescape(n) or "").lower(), _unescape(v)) for n, v in headers)


def _tel_digits(number: str | None) -> str:
    return "".join(c for c in number or "" if c not in "-.()").lower()


def _host_key(host: str) -> str:
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return host
    return host.lower()


def _check_host(host: str) -> str:
    if not host:
        raise SipUriError("missing host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SipUriError(f"invalid IPv6 address: {host!r}") from None
        return host.lower()
    low = host.lower()
    if not _HOSTNAME_CHARS.fullmatch(low) or not _HOSTPORT.fullmatch(low):
        raise SipUriError(f"invalid host: {host!r}")
    return low


# Parameter names (and transport values) that every dialog repeats: one string object
# each instead of one per parsed header (a server keeps the From and To of each dialog).
_COMMON_WORDS = {
    word: word
    for word in (
        "tag", "transport", "lr", "user", "maddr", "ttl", "method", "expires", "q",
        "branch", "received", "rport", "ob", "reg-id", "+sip.instance", "gr",
        "tcp", "udp", "tls", "ws", "wss", "sctp", "phone",
    )
}  # fmt: skip


def _split_params(text: str) -> Params:
    """``;a=1;b`` -> ``(("a", "1"), ("b", None))`` (a loop: faster than a comprehension
    on CPython 3.11 for the few parameters of a header)."""
    out = []
    common = _COMMON_WORDS.get
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        out.append((common(name, name), common(value, value) if eq else None))
    return tuple(out)


def _split_uri_params(text: str) -> Params:
    if not _URI_PARAMS.fullmatch(text):
        raise SipUriError(f"invalid URI parameters: {text!r}")
    return _split_params(text)


def _parse_sip(cls: type[SipUri], scheme: str, rest: str, text: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        colon = userinfo.find(":")
        if colon >= 0:
            user, password = userinfo[:colon], userinfo[colon + 1 :]
            if not _PASSWORD.fullmatch(password):
                raise SipUriError(f"invalid password in {text!r}")
        else:
            user = userinfo
        if not _USER.fullmatch(user):
            raise SipUriError(f"invalid user part in {text!r}")
    m = _HOSTPORT.match(rest)
    if m is None:
        raise SipUriError(f"invalid host in {text!r}")
    v6, name, port_text = m.groups()
    if v6 is not None:
        try:
            ipaddress.IPv6Address(v6)
        except ValueError:
            raise SipUriError(f"invalid IPv6 address in {text!r}") from None
        host = v6.lower()
    else:
        host = name.lower()
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise SipUriError(f"port out of range in {text!r}")
    pos = m.end()
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    if pos < len(rest):
        tail = rest[pos:]
        qmark = tail.find("?")
        params_text = tail if qmark < 0 else tail[:qmark]
        if params_text:
            if params_text[0] != ";":
                raise SipUriError(f"invalid URI: {text!r}")
            params = _split_uri_params(params_text)
        if qmark >= 0:
            headers_text = tail[qmark + 1 :]
            if not _URI_HEADERS.fullmatch(headers_text):
                raise SipUriError(f"invalid URI headers in {text!r}")
            headers = tuple(
                (n, v) for n, _, v in (h.partition("=") for h in headers_text.split("&"))
            )
    return _build(cls, scheme, user, password, host, port, params, headers, None, text)


def _build(
    cls: type[SipUri],
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    params: Params,
    headers: tuple[tuple[str, str], ...],
    opaque: str | None,
    text: str,
) -> SipUri:
    """Make a SipUri from checked parts without running the constructor's checks."""
    uri = object.__new__(cls)
    _uri_scheme(uri, scheme)
    _uri_user(uri, user)
    _uri_password(uri, password)
    _uri_host(uri, host)
    _uri_port(uri, port)
    _uri_params(uri, params)
    _uri_headers(uri, headers)
    _uri_opaque(uri, opaque)
    _uri_text(uri, text)
    return uri


# -- NameAddr ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``"Display" <uri>;param=value`` (or the addr-spec form ``uri;param``).

    ``display`` is the display name decoded (no quotes, quoted-pairs resolved), or
    ``None``.  ``params`` are the header parameters (``tag``, ``expires``, ``q``...);
    quoted values keep their quotes.
    """

    uri: SipUri
    display: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse a name-addr or addr-spec with its header parameters.

        RFC 3261 §20.10: in the addr-spec form (no ``<>``) every ``;`` parameter
        belongs to the header, and the URI may hold neither ``?``, ``,`` nor ``;``.
        Parsed values are immutable and recent ones come from a bounded cache.
        """
        if cls is NameAddr:
            value = _NAME_ADDR_CACHE.get(text)
            if value is None:
                value = cls._parse_uncached(text)
                if len(_NAME_ADDR_CACHE) >= _CACHE_LIMIT:
                    _NAME_ADDR_CACHE.clear()
                _NAME_ADDR_CACHE[text] = value
            return value
        return cls._parse_uncached(text)

    @classmethod
    def _parse_uncached(cls, text: str) -> NameAddr:
        m = _NAME_ADDR_FAST.match(text)
        if m is not None:  # unescaped display name (or none) and <uri>
            quoted, words, uri_text = m.groups()
            try:
                uri = SipUri.parse(uri_text)
            except SipUriError as exc:
                raise SipUriError(f"invalid URI in {text!r}: {exc}") from None
            value = object.__new__(cls)
            _na_uri(value, uri)
            _na_display(value, quoted if quoted is not None else words)
            _na_params(value, parse_header_params(text, m.end()))
            return value
        text = text.strip(" \t")
        if not text:
            raise SipUriError("empty name-addr")
        display: str | None = None
        first = text[0]
        if first == '"':
            m = _QUOTED_AT.match(text)
            if m is None:
                raise SipUriError(f"unterminated quoted display name: {text!r}")
            display = _QUOTE_ESCAPES.sub(r"\1", text[1 : m.end() - 1])
            lt = m.end()
            while lt < len(text) and text[lt] in " \t":
                lt += 1
            if lt >= len(text) or text[lt] != "<":
                raise SipUriError(f"display name without <uri>: {text!r}")
        elif first == "<":
            lt = 0
        else:
            lt = text.find("<")
            if lt < 0:
                return _parse_addr_spec(cls, text)
            words = text[:lt].rstrip(" \t")
            if not _DISPLAY_TOKENS.fullmatch(words):
                raise SipUriError(f"invalid display name: {words!r}")
            display = words
        gt = text.find(">", lt)
        if gt < 0:
            raise SipUriError(f"missing '>': {text!r}")
        try:
            uri = SipUri.parse(text[lt + 1 : gt])
        except SipUriError as exc:
            raise SipUriError(f"invalid URI in {text!r}: {exc}") from None
        return cls(uri, display, parse_header_params(text, gt + 1))

    def __str__(self) -> str:
        head = "" if self.display is None else quote_string(self.display) + " "
        return f"{head}<{self.uri}>{format_params(self.params)}"

    @overload
    def param(self, name: str) -> str | None: ...
    @overload
    def param(self, name: str, default: _T) -> str | _T | None: ...
    def param(self, name: str, default: object = None) -> object:
        """Value of header parameter ``name``: ``None`` if present without a value,
        ``default`` (``None`` unless given) if absent."""
        return find_param(self.params, name, default)

    def has_param(self, name: str) -> bool:
        """Whether header parameter ``name`` is present."""
        sentinel = object()
        return find_param(self.params, name, sentinel) is not sentinel

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (From/To), if any."""
        for pname, value in self.params:
            if pname == "tag" or pname.lower() == "tag":
                return value
        return None

    @property
    def expires(self) -> int | None:
        """Contact ``expires`` parameter as an int; ``None`` when absent or not a
        number."""
        value = self.param("expires")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def q(self) -> float | None:
        """Contact ``q`` parameter; ``None`` when absent or not a number in 0..1."""
        value = self.param("q")
        try:
            q = float(value) if value is not None else None
        except ValueError:
            return None
        return q if q is not None and 0.0 <= q <= 1.0 else None

    @property
    def sip_instance(self) -> str | None:
        """``+sip.instance`` (RFC 5626) without its quotes and angle brackets."""
        value = self.param("+sip.instance")
        if value is None:
            return None
        value = unquote_string(value)
        if value.startswith("<") and value.endswith(">"):
            value = value[1:-1]
        return value

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with ``;tag=`` set."""
        return self.with_param("tag", tag)

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        """A copy with header parameter ``name`` set (replaced or appended)."""
        return NameAddr(self.uri, self.display, _set_param(self.params, name, value))

    def without_param(self, name: str) -> NameAddr:
        """A copy without header parameter ``name``."""
        return NameAddr(self.uri, self.display, _drop_param(self.params, name))


# Setters of the frozen slots, for building parsed values without the dataclass
# __init__ (about a third cheaper than object.__setattr__ by name).
_uri_scheme = slot_setter(SipUri, "scheme")
_uri_user = slot_setter(SipUri, "user")
_uri_password = slot_setter(SipUri, "password")
_uri_host = slot_setter(SipUri, "host")
_uri_port = slot_setter(SipUri, "port")
_uri_params = slot_setter(SipUri, "params")
_uri_headers = slot_setter(SipUri, "headers")
_uri_opaque = slot_setter(SipUri, "opaque")
_uri_text = slot_setter(SipUri, "_text")
_na_uri = slot_setter(NameAddr, "uri")
_na_display = slot_setter(NameAddr, "display")
_na_params = slot_setter(NameAddr, "params")


def check_name_addr(text: str) -> None:
    """Raise :class:`SipUriError` unless :meth:`NameAddr.parse` would accept ``text``.

    Cheaper than parsing for the common ``"Name" <sip:...>;tag=...`` form: the
    parser checks From and To with it and leaves building them to the first access.
    """
    if text in _NAME_ADDR_CACHE:
        return
    m = _NAME_ADDR_FAST.match(text)
    if m is not None and (
        m.end() == len(text) or _HEADER_PARAMS_PLAIN.fullmatch(text, m.end()) is not None
    ):
        try:
            SipUri.parse(m.group(3))
        except SipUriError as exc:
            raise SipUriError(f"invalid URI in {text!r}: {exc}") from None
        return
    NameAddr.parse(text)


def _parse_addr_spec(cls: type[NameAddr], text: str) -> NameAddr:
    semi = text.find(";")
    uri_text = text if semi < 0 else text[:semi].rstrip(" \t")
    if "?" in uri_text or "," in uri_text:
        raise SipUriError(f"a URI with '?' or ',' must be enclosed in <>: {text!r}")
    try:
        uri = SipUri.parse(uri_text)
    except SipUriError as exc:
        raise SipUriError(f"invalid URI in {text!r}: {exc}") from None
    params = parse_header_params(text, semi) if semi >= 0 else ()
    return cls(uri, None, params)
