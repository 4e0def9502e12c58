"""Typed codecs for MSRP header field values (RFC 4975 §9, RFC 4976 §5, RFC 8760).

Each codec parses the value of one header (the text after ``Name: ``) and formats it
back; bad input raises :class:`HeaderError`, a :class:`ValueError`. Values may carry
leading or trailing spaces and tabs, which are ignored.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Self

__all__ = [
    "HEADER_NAMES",
    "MAX_BYTE_COUNT",
    "MAX_EXPIRES",
    "AuthenticationInfo",
    "Authorization",
    "ByteRange",
    "ContentType",
    "FailureReport",
    "HeaderError",
    "HeaderName",
    "ReportRequest",
    "Status",
    "SuccessReport",
    "WwwAuthenticate",
    "canonical_name",
    "failure_report",
    "is_ident",
    "is_token",
    "parse_expires",
    "parse_message_id",
    "quote",
    "success_report",
]


class HeaderError(ValueError):
    """A header value that does not follow its grammar."""


class HeaderName(enum.StrEnum):
    """Canonical spellings of the header names used by MSRP and its relays."""

    TO_PATH = "To-Path"
    FROM_PATH = "From-Path"
    USE_PATH = "Use-Path"
    MESSAGE_ID = "Message-ID"
    SUCCESS_REPORT = "Success-Report"
    FAILURE_REPORT = "Failure-Report"
    BYTE_RANGE = "Byte-Range"
    STATUS = "Status"
    CONTENT_TYPE = "Content-Type"
    CONTENT_ID = "Content-ID"
    CONTENT_DESCRIPTION = "Content-Description"
    CONTENT_DISPOSITION = "Content-Disposition"
    EXPIRES = "Expires"
    MIN_EXPIRES = "Min-Expires"
    MAX_EXPIRES = "Max-Expires"
    WWW_AUTHENTICATE = "WWW-Authenticate"
    AUTHORIZATION = "Authorization"
    AUTHENTICATION_INFO = "Authentication-Info"


#: The canonical names as plain strings, for membership tests.
HEADER_NAMES: frozenset[str] = frozenset(str(name) for name in HeaderName)
_CANONICAL = {name.lower(): name for name in HEADER_NAMES}


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name; unknown names come back unchanged."""
    return _CANONICAL.get(name.lower(), name)


# ---------------------------------------------------------------------------
# Lexical helpers

# RFC 4975 token: %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_WS = re.compile(r"[ \t]*")
# utf8text = *(HTAB / %x20-7E / UTF8-NONASCII)
_TEXT = re.compile(r"[\t\x20-\x7e\x80-\U0010ffff]*")


def is_token(value: str) -> bool:
    """True if ``value`` is an RFC 4975 token."""
    return _TOKEN.fullmatch(value) is not None


def _check_text(value: str, what: str) -> None:
    if not _TEXT.fullmatch(value):
        raise HeaderError(f"control character in {what}")


def quote(value: str) -> str:
    """Format ``value`` as a quoted-string, escaping ``\\`` and ``"``."""
    _check_text(value, "quoted-string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _read_token(text: str, pos: int, what: str) -> tuple[str, int]:
    match = _TOKEN.match(text, pos)
    if match is None:
        raise HeaderError(f"expected a token for {what} at offset {pos}")
    return match.group(), match.end()


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """Read the quoted-string opening at ``text[pos]``; return (value, end)."""
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            value = "".join(out)
            _check_text(value, "quoted-string")
            return value, i + 1
        if char == "\\":
            i += 1
            if i == len(text):
                break
            char = text[i]
        out.append(char)
        i += 1
    raise HeaderError("unterminated quoted-string")


def _read_value(text: str, pos: int, what: str) -> tuple[str, int]:
    """Read a token or a quoted-string."""
    if pos < len(text) and text[pos] == '"':
        return _read_quoted(text, pos)
    return _read_token(text, pos, what)


def _format_value(value: str) -> str:
    return value if is_token(value) else quote(value)


# ---------------------------------------------------------------------------
# Byte-Range, Status

#: Largest byte position or total accepted in a Byte-Range.
MAX_BYTE_COUNT = 2**64 - 1
_BYTE_RANGE = re.compile(r"([0-9]{1,20})-([0-9]{1,20}|\*)/([0-9]{1,20}|\*)")


@dataclass(frozen=True)
class ByteRange:
    """``Byte-Range: start-end/total``; ``None`` stands for ``*`` (unknown)."""

    start: int
    end: int | None
    total: int | None

    def __post_init__(self) -> None:
        for number in (self.start, self.end, self.total):
            if number is not None and not 0 <= number <= MAX_BYTE_COUNT:
                raise HeaderError(f"byte count out of range: {number}")
        if self.start < 1:
            raise HeaderError("range-start must be at least 1")
        if self.end is not None and self.end < self.start - 1:
            raise HeaderError("range-end lies before range-start")
        last = self.start - 1 if self.end is None else self.end
        if self.total is not None and last > self.total:
            raise HeaderError("range lies beyond the total")

    @classmethod
    def parse(cls, value: str) -> ByteRange:
        match = _BYTE_RANGE.fullmatch(value.strip(" \t"))
        if match is None:
            raise HeaderError(f"invalid Byte-Range: {value!r}")
        start, end, total = match.groups()
        return cls(
            int(start),
            None if end == "*" else int(end),
            None if total == "*" else int(total),
        )

    def __str__(self) -> str:
        end = "*" if self.end is None else str(self.end)
        total = "*" if self.total is None else str(self.total)
        return f"{self.start}-{end}/{total}"


_STATUS = re.compile(r"([0-9]{3}) ([0-9]{3})(?: (.*))?", re.DOTALL)


@dataclass(frozen=True)
class Status:
    """``Status: namespace code [comment]``, as in ``000 200 OK``."""

    namespace: int
    code: int
    comment: str | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.namespace <= 999 and 0 <= self.code <= 999):
            raise HeaderError("namespace and status code have three digits")
        if self.comment is not None:
            _check_text(self.comment, "status comment")

    @classmethod
    def parse(cls, value: str) -> Status:
        match = _STATUS.fullmatch(value.strip(" \t"))
        if match is None:
            raise HeaderError(f"invalid Status: {value!r}")
        namespace, code, comment = match.groups()
        return cls(int(namespace), int(code), comment or None)

    def __str__(self) -> str:
        text = f"{self.namespace:03d} {self.code:03d}"
        return text if self.comment is None else f"{text} {self.comment}"


# ---------------------------------------------------------------------------
# Success-Report, Failure-Report


class SuccessReport(enum.StrEnum):
    YES = "yes"
    NO = "no"


class FailureReport(enum.StrEnum):
    YES = "yes"
    NO = "no"
    PARTIAL = "partial"


def success_report(value: str | None) -> bool:
    """Whether a Success-Report value asks for success reports (absent means no)."""
    if value is None:
        return False
    try:
        return SuccessReport(value.strip(" \t").lower()) is SuccessReport.YES
    except ValueError:
        raise HeaderError(f"invalid Success-Report: {value!r}") from None


def failure_report(value: str | None) -> FailureReport:
    """The Failure-Report value (absent means ``yes``)."""
    if value is None:
        return FailureReport.YES
    try:
        return FailureReport(value.strip(" \t").lower())
    except ValueError:
        raise HeaderError(f"invalid Failure-Report: {value!r}") from None


@dataclass(frozen=True)
class ReportRequest:
    """The reports a SEND asks for, with the RFC 4975 defaults."""

    success: bool = False
    failure: FailureReport = FailureReport.YES

    @classmethod
    def parse(cls, success: str | None = None, failure: str | None = None) -> ReportRequest:
        """Build from the Success-Report and Failure-Report values (``None`` if absent)."""
        return cls(success_report(success), failure_report(failure))

    def headers(self) -> list[tuple[str, str]]:
        """The header fields to send; defaults are left out."""
        fields = []
        if self.success:
            fields.append((HeaderName.SUCCESS_REPORT.value, SuccessReport.YES.value))
        if self.failure is not FailureReport.YES:
            fields.append((HeaderName.FAILURE_REPORT.value, self.failure.value))
        return fields


# ---------------------------------------------------------------------------
# Message-ID, Expires

# ident = ALPHANUM 3*31ident-char; ident-char = ALPHANUM / "." / "-" / "+" / "%" / "="
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}")


def is_ident(value: str) -> bool:
    """True if ``value`` matches ``ident`` (Message-ID values, transaction ids)."""
    return _IDENT.fullmatch(value) is not None


def parse_message_id(value: str) -> str:
    """Validate a Message-ID value and return it without surrounding blanks."""
    ident = value.strip(" \t")
    if not is_ident(ident):
        raise HeaderError(f"invalid Message-ID: {value!r}")
    return ident


#: Largest Expires, Min-Expires or Max-Expires value accepted (delta-seconds).
MAX_EXPIRES = 2**32 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")


def parse_expires(value: str) -> int:
    """Parse an Expires, Min-Expires or Max-Expires value (non-negative seconds)."""
    text = value.strip(" \t")
    if not _DIGITS.fullmatch(text) or int(text) > MAX_EXPIRES:
        raise HeaderError(f"invalid expiry: {value!r}")
    return int(text)


# ---------------------------------------------------------------------------
# Content-Type


@dataclass(frozen=True)
class ContentType:
    """A media type with parameters; type, subtype and parameter names are lower-case."""

    type: str
    subtype: str
    params: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        if not (is_token(self.type) and is_token(self.subtype)):
            raise HeaderError(f"invalid media type: {self.type!r}/{self.subtype!r}")
        params = tuple((name.lower(), value) for name, value in self.params)
        for name, value in params:
            if not is_token(name):
                raise HeaderError(f"invalid parameter name: {name!r}")
            if value is not None:
                _check_text(value, "parameter value")
        object.__setattr__(self, "type", self.type.lower())
        object.__setattr__(self, "subtype", self.subtype.lower())
        object.__setattr__(self, "params", params)

    @classmethod
    def parse(cls, value: str) -> ContentType:
        text = value.strip(" \t")
        type_, pos = _read_token(text, 0, "type")
        if text[pos : pos + 1] != "/":
            raise HeaderError(f"invalid media type: {value!r}")
        subtype, pos = _read_token(text, pos + 1, "subtype")
        params: list[tuple[str, str | None]] = []
        while (pos := _skip_ws(text, pos)) < len(text):
            if text[pos] != ";":
                raise HeaderError(f"expected ';' at offset {pos} in {value!r}")
            name, pos = _read_token(text, _skip_ws(text, pos + 1), "parameter name")
            param: str | None = None
            pos = _skip_ws(text, pos)
            if text[pos : pos + 1] == "=":
                param, pos = _read_value(text, _skip_ws(text, pos + 1), "parameter value")
            params.append((name, param))
        return cls(type_, subtype, tuple(params))

    def __str__(self) -> str:
        parts = [self.mime_type]
        for name, value in self.params:
            parts.append(name if value is None else f"{name}={_format_value(value)}")
        return ";".join(parts)

    @property
    def mime_type(self) -> str:
        """``type/subtype`` without parameters."""
        return f"{self.type}/{self.subtype}"

    def param(self, name: str) -> str | None:
        """The value of parameter ``name`` (case-insensitive), or ``None``."""
        name = name.lower()
        return next((value for key, value in self.params if key == name), None)

    def matches(self, accept_types: Iterable[str]) -> bool:
        """Whether an accept-types list (``*``, ``type/*``, ``type/subtype``) admits this type.

        Parameters on the list entries are ignored.
        """
        for entry in accept_types:
            mime = entry.split(";", 1)[0].strip(" \t").lower()
            if mime in ("*", "*/*", self.mime_type, f"{self.type}/*"):
                return True
        return False


# ---------------------------------------------------------------------------
# Digest authentication (RFC 4976 §5, algorithms per RFC 8760)


def _parse_auth_params(text: str) -> tuple[tuple[str, str], ...]:
    """Parse ``name=value *("," name=value)`` with token or quoted-string values."""
    params: list[tuple[str, str]] = []
    pos = 0
    while True:
        name, pos = _read_token(text, _skip_ws(text, pos), "auth-param name")
        pos = _skip_ws(text, pos)
        if text[pos : pos + 1] != "=":
            raise HeaderError(f"expected '=' after {name!r}")
        value, pos = _read_value(text, _skip_ws(text, pos + 1), f"{name!r} value")
        params.append((name, value))
        pos = _skip_ws(text, pos)
        if pos == len(text):
            return tuple(params)
        if text[pos] != ",":
            raise HeaderError(f"expected ',' at offset {pos}")
        pos += 1


@dataclass(frozen=True)
class _AuthParams:
    """An ordered, case-insensitive set of auth-params (names are kept lower-case)."""

    params: tuple[tuple[str, str], ...]

    _SCHEME: ClassVar[str | None] = "Digest"
    # Output: these names always as quoted-string; the others as token when they can be.
    _QUOTED: ClassVar[frozenset[str]] = frozenset()
    _REQUIRED: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        params = tuple((name.lower(), value) for name, value in self.params)
        names = [name for name, _ in params]
        for name, value in params:
            if not is_token(name):
                raise HeaderError(f"invalid auth-param name: {name!r}")
            _check_text(value, f"auth-param {name!r}")
        if len(set(names)) != len(names):
            raise HeaderError("duplicate auth-param")
        missing = [name for name in self._REQUIRED if name not in names]
        if missing:
            raise HeaderError(f"missing auth-param(s): {', '.join(missing)}")
        object.__setattr__(self, "params", params)

    @classmethod
    def of(cls, **params: str) -> Self:
        """Build from keyword arguments, in their order."""
        return cls(tuple(params.items()))

    @classmethod
    def parse(cls, value: str) -> Self:
        text = value.strip(" \t")
        if cls._SCHEME is not None:
            scheme, pos = _read_token(text, 0, "auth-scheme")
            if scheme.lower() != cls._SCHEME.lower():
                raise HeaderError(f"unsupported auth-scheme: {scheme!r}")
            if _skip_ws(text, pos) == pos:
                raise HeaderError("expected auth-params after the scheme")
            text = text[pos:]
        return cls(_parse_auth_params(text))

    def __str__(self) -> str:
        items = []
        for name, value in self.params:
            quoted = name in self._QUOTED or not is_token(value)
            items.append(f"{name}={quote(value) if quoted else value}")
        text = ", ".join(items)
        return text if self._SCHEME is None else f"{self._SCHEME} {text}"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of auth-param ``name`` (case-insensitive)."""
        name = name.lower()
        return next((value for key, value in self.params if key == name), default)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def as_dict(self) -> dict[str, str]:
        return dict(self.params)

    @property
    def algorithm(self) -> str:
        """The digest algorithm (``MD5`` when absent; RFC 8760 adds SHA-256, SHA-512-256)."""
        return self.get("algorithm") or "MD5"


@dataclass(frozen=True)
class WwwAuthenticate(_AuthParams):
    """A ``WWW-Authenticate: Digest ...`` challenge from a relay."""

    _QUOTED = frozenset({"realm", "nonce", "opaque", "qop", "domain"})
    _REQUIRED = ("realm", "nonce")

    @property
    def qop_options(self) -> tuple[str, ...]:
        """The offered qop values (``qop="auth,auth-int"``)."""
        qop = self.get("qop") or ""
        return tuple(item.strip(" \t") for item in qop.split(",") if item.strip(" \t"))

    @property
    def stale(self) -> bool:
        return (self.get("stale") or "").lower() == "true"


@dataclass(frozen=True)
class Authorization(_AuthParams):
    """An ``Authorization: Digest ...`` answer to a challenge."""

    _QUOTED = frozenset({"username", "realm", "nonce", "uri", "response", "cnonce", "opaque"})
    _REQUIRED = ("username", "realm", "nonce", "response")


@dataclass(frozen=True)
class AuthenticationInfo(_AuthParams):
    """An ``Authentication-Info`` value (no scheme: just auth-params)."""

    _SCHEME = None
    _QUOTED = frozenset({"nextnonce", "rspauth", "cnonce"})
