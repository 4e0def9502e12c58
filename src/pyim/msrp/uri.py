"""MSRP URIs (RFC 4975 §6, §9) and the path header values built from them.

``msrp://user@host:port/session-id;transport;name=value``

Instances are normalised when built (scheme, host and transport lower-case, IPv6
addresses compressed), so that dataclass equality is the RFC 4975 §6.1 comparison:
scheme, host, port, session-id and transport take part; userinfo and the other URI
parameters do not.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "MAX_URI_LENGTH",
    "MsrpUri",
    "MsrpUriError",
    "format_path",
    "parse_path",
]

#: Longest URI text accepted or produced (a pyim limit, not an RFC one).
MAX_URI_LENGTH = 1024

_SCHEMES = frozenset({"msrp", "msrps"})
# RFC 4975 token: %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
# session-id = 1*( unreserved / "+" / "=" / "/" ), unreserved per RFC 3986
_SESSION_ID = re.compile(r"[A-Za-z0-9\-._~+=/]+")
# RFC 3986 userinfo = *( unreserved / pct-encoded / sub-delims / ":" ), here non-empty
_USERINFO = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})+")
_TRANSPORT = re.compile(r"[A-Za-z0-9]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\.?")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
_PORT = re.compile(r"[0-9]{1,5}")
_AUTHORITY_END = re.compile(r"[/;]")
_PATH_SEPARATOR = re.compile(r"[ \t]+")


class MsrpUriError(ValueError):
    """Text or components that do not form a valid MSRP URI."""


# Schemes, hosts and transports repeat across the URIs of thousands of sessions: one
# string object each (a bounded memo, not sys.intern: hosts come from the network).
_SHARED: dict[str, str] = {}
_SHARED_LIMIT = 1024


def _shared(text: str) -> str:
    known = _SHARED.get(text)
    if known is not None:
        return known
    if len(_SHARED) >= _SHARED_LIMIT:
        _SHARED.clear()
    _SHARED[text] = text
    return text


def _normalise_host(host: str) -> str:
    """Lower-case a hostname, validate an IPv4 address, compress an IPv6 address."""
    if ":" in host:
        if "%" in host:
            raise MsrpUriError(f"IPv6 zone identifiers are not allowed: {host!r}")
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise MsrpUriError(f"invalid IPv6 address: {host!r}") from None
    if _DOTTED_NUMBERS.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise MsrpUriError(f"invalid IPv4 address: {host!r}") from None
    if not _HOSTNAME.fullmatch(host):
        raise MsrpUriError(f"invalid host: {host!r}")
    return host.lower()


@dataclass(frozen=True, kw_only=True, slots=True)
class MsrpUri:
    """An MSRP or MSRPS URI; ``==`` and ``hash`` follow RFC 4975 §6.1."""

    scheme: str = "msrp"
    user: str | None = field(default=None, compare=False)
    host: str
    port: int | None = None
    session_id: str | None = None
    transport: str = "tcp"
    params: tuple[tuple[str, str | None], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        scheme = self.scheme.lower()
        if scheme not in _SCHEMES:
            raise MsrpUriError(f"scheme must be msrp or msrps, not {self.scheme!r}")
        if self.user is not None and not _USERINFO.fullmatch(self.user):
            raise MsrpUriError(f"invalid userinfo: {self.user!r}")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise MsrpUriError(f"port out of range: {self.port}")
        if self.session_id is not None and not _SESSION_ID.fullmatch(self.session_id):
            raise MsrpUriError(f"invalid session-id: {self.session_id!r}")
        if not _TRANSPORT.fullmatch(self.transport):
            raise MsrpUriError(f"invalid transport: {self.transport!r}")
        params = tuple(self.params)
        for name, value in params:
            if not _TOKEN.fullmatch(name) or (value is not None and not _TOKEN.fullmatch(value)):
                raise MsrpUriError(f"invalid URI parameter: {name!r}={value!r}")
        object.__setattr__(self, "scheme", _shared(scheme))
        object.__setattr__(self, "host", _shared(_normalise_host(self.host)))
        object.__setattr__(self, "transport", _shared(self.transport.lower()))
        object.__setattr__(self, "params", params)
        if len(str(self)) > MAX_URI_LENGTH:
            raise MsrpUriError(f"URI longer than {MAX_URI_LENGTH} characters")

    @classmethod
    def parse(cls, text: str) -> MsrpUri:
        """Parse ``text``; raise :class:`MsrpUriError` if it is not an MSRP URI."""
        if len(text) > MAX_URI_LENGTH:
            raise MsrpUriError(f"URI longer than {MAX_URI_LENGTH} characters")
        if not text.isascii():
            raise MsrpUriError("URI contains non-ASCII characters")
        scheme, sep, rest = text.partition("://")
        if not sep:
            raise MsrpUriError(f"not an MSRP URI: {text!r}")
        user: str | None = None
        if "@" in rest:  # '@' is legal nowhere after the userinfo
            user, _, rest = rest.partition("@")

        match = _AUTHORITY_END.search(rest)
        split = match.start() if match else len(rest)
        hostport, tail = rest[:split], rest[split:]
        if hostport.startswith("["):
            host, bracket, after = hostport[1:].partition("]")
            if not bracket or ":" not in host:
                raise MsrpUriError(f"invalid IPv6 reference: {hostport!r}")
        else:
            colon = hostport.find(":")
            host, after = (hostport, "") if colon < 0 else (hostport[:colon], hostport[colon:])
        if not host:
            raise MsrpUriError("missing host")
        port: int | None = None
        if after:
            if not after.startswith(":") or not _PORT.fullmatch(after[1:]):
                raise MsrpUriError(f"invalid port: {after!r}")
            port = int(after[1:])

        session_id: str | None = None
        if tail.startswith("/"):
            semicolon = tail.find(";")
            if semicolon < 0:
                raise MsrpUriError("missing ;transport")
            session_id, tail = tail[1:semicolon], tail[semicolon:]
        if not tail.startswith(";"):
            raise MsrpUriError("missing ;transport")
        transport, *items = tail[1:].split(";")
        if not transport or "=" in transport:
            raise MsrpUriError("missing ;transport")
        params = []
        for item in items:
            name, eq, value = item.partition("=")
            params.append((name, value if eq else None))
        return cls(
            scheme=scheme,
            user=user,
            host=host,
            port=port,
            session_id=session_id,
            transport=transport,
            params=tuple(params),
        )

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        parts = [self.scheme, "://"]
        if self.user is not None:
            parts += [self.user, "@"]
        parts.append(host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.session_id is not None:
            parts += ["/", self.session_id]
        parts += [";", self.transport]
        for name, value in self.params:
            parts += [";", name] if value is None else [";", name, "=", value]
        return "".join(parts)

    @property
    def is_secure(self) -> bool:
        """True for ``msrps`` (TLS) URIs."""
        return self.scheme == "msrps"

    def matches(self, other: MsrpUri) -> bool:
        """RFC 4975 §6.1 comparison (the same as ``==``)."""
        return self == other

    def with_session(self, session_id: str | None) -> MsrpUri:
        """A copy of this URI with another session-id (``None`` removes it)."""
        return replace(self, session_id=session_id)


def parse_path(value: str) -> list[MsrpUri]:
    """Parse a To-Path, From-Path or Use-Path value: one or more space-separated URIs."""
    text = value.strip(" \t")
    if not text:
        raise MsrpUriError("empty path")
    return [MsrpUri.parse(item) for item in _PATH_SEPARATOR.split(text)]


def format_path(uris: Sequence[MsrpUri]) -> str:
    """Format URIs as a path header value; a path holds at least one URI."""
    if not uris:
        raise MsrpUriError("empty path")
    return " ".join(str(uri) for uri in uris)
