"""SDP media-level attributes of an ``m=message`` line.

Covers RFC 4975 §8 (path, accept-types, accept-wrapped-types, max-size), the
connection model of RFC 6135 with RFC 4145 (setup, connection), the RFC 6714
``msrp-cema`` flag, and the RFC 5547 file-transfer attributes.

Connection roles. RFC 4975 §5.4 makes the endpoint that sent the offer responsible
for opening the connection; RFC 4145 §4.1 gives the same result as defaults (an offer
without ``a=setup`` means ``active``, an answer without it ``passive``). RFC 6135 lets
either side open it: an answerer facing ``actpass`` takes ``active`` here, so that the
endpoint which knows both addresses (and is more often the one behind a NAT) connects.
"""

from __future__ import annotations

import email.utils
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote

from .headers import ContentType, HeaderError, quote
from .uri import MsrpUri, MsrpUriError, format_path, parse_path

__all__ = [
    "Connection",
    "FileDate",
    "FileHash",
    "FileRange",
    "FileSelector",
    "MsrpMediaAttributes",
    "SdpError",
    "Setup",
    "active_side",
    "default_setup",
    "negotiate_setup",
]


class SdpError(ValueError):
    """An attribute value that does not follow its grammar."""


class Setup(enum.StrEnum):
    """``a=setup`` (RFC 4145 §4): who opens the connection."""

    ACTIVE = "active"
    PASSIVE = "passive"
    ACTPASS = "actpass"
    HOLDCONN = "holdconn"


class Connection(enum.StrEnum):
    """``a=connection`` (RFC 4145 §5): open a new connection or keep the existing one."""

    NEW = "new"
    EXISTING = "existing"


def default_setup(*, offer: bool) -> Setup:
    """The role implied by a missing ``a=setup`` in an offer or in an answer."""
    return Setup.ACTIVE if offer else Setup.PASSIVE


_ANSWER = {
    Setup.ACTIVE: Setup.PASSIVE,
    Setup.PASSIVE: Setup.ACTIVE,
    Setup.ACTPASS: Setup.ACTIVE,
    Setup.HOLDCONN: Setup.HOLDCONN,
}


def negotiate_setup(offer: Setup | None) -> Setup:
    """The answerer's role for the offered one (``None``: the offer had no ``a=setup``)."""
    return _ANSWER[default_setup(offer=True) if offer is None else offer]


def active_side(local: Setup, remote: Setup) -> bool:
    """Whether the local endpoint opens the connection, given both negotiated roles.

    Resolve missing attributes with :func:`default_setup` first. ``holdconn`` on
    either side means nobody connects (False); roles that cannot both hold (two
    active, two passive, or two actpass) raise :class:`SdpError`.
    """
    if Setup.HOLDCONN in (local, remote):
        return False
    if local is Setup.ACTIVE and remote is not Setup.ACTIVE:
        return True
    if local is Setup.PASSIVE and remote is not Setup.PASSIVE:
        return False
    if local is Setup.ACTPASS and remote is not Setup.ACTPASS:
        return remote is Setup.PASSIVE
    raise SdpError(f"incompatible setup roles: local {local}, remote {remote}")


# ---------------------------------------------------------------------------
# RFC 5547 file-transfer attributes

_DIGITS = re.compile(r"[0-9]{1,20}")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_HASH_VALUE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*")
_PERCENT_ENCODED = re.compile(r"(?:[^%]|%[0-9A-Fa-f]{2})+", re.DOTALL)
_FILE_RANGE = re.compile(r"([0-9]{1,20})-([0-9]{1,20}|\*)")
_CID_URL = re.compile(r"cid:[\x21-\x7e]+", re.IGNORECASE)
_SELECTOR_ITEM = re.compile(r'(?:[^ "]|"[^"]*")+')


def _split_selectors(value: str) -> list[tuple[str, str]]:
    """Split ``key:value key:"quoted value"`` into (lower-case key, value) pairs."""
    pairs = []
    pos = 0
    while pos < len(value):
        if value[pos] == " ":
            pos += 1
            continue
        match = _SELECTOR_ITEM.match(value, pos)
        if match is None:
            raise SdpError(f"unterminated quote in {value!r}")
        key, colon, rest = match.group().partition(":")
        if not colon:
            raise SdpError(f"expected key:value, got {match.group()!r}")
        pairs.append((key.lower(), rest))
        pos = match.end()
    return pairs


def _unquote(value: str, what: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        raise SdpError(f"{what} must be a quoted string")
    return value[1:-1]


def _integer(text: str, what: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise SdpError(f"invalid {what}: {text!r}")
    return int(text)


def _once(seen: set[str], key: str) -> None:
    if key in seen:
        raise SdpError(f"duplicate {key!r}")
    seen.add(key)


def _encode_filename(name: str) -> str:
    # filename-char excludes '"', '%', CR and LF; encode every control character too.
    return "".join(
        f"%{ord(char):02X}" if char in '"%' or char < " " or char == "\x7f" else char
        for char in name
    )


def _decode_filename(text: str) -> str:
    if not _PERCENT_ENCODED.fullmatch(text) or "\r" in text or "\n" in text:
        raise SdpError(f"invalid file name: {text!r}")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise SdpError(f"file name is not UTF-8: {text!r}") from None


@dataclass(frozen=True)
class FileHash:
    """A ``hash:`` selector: algorithm name (lower-case, e.g. ``sha-1``) and digest."""

    algorithm: str
    digest: bytes

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.algorithm) or ":" in self.algorithm or not self.digest:
            raise SdpError(f"invalid file hash: {self.algorithm!r}")
        object.__setattr__(self, "algorithm", self.algorithm.lower())

    @classmethod
    def parse(cls, value: str) -> FileHash:
        """Parse ``sha-1:72:24:5F...`` (the text after ``hash:``)."""
        algorithm, _, hex_value = value.partition(":")
        if not _HASH_VALUE.fullmatch(hex_value):
            raise SdpError(f"invalid hash value: {value!r}")
        return cls(algorithm, bytes.fromhex(hex_value.replace(":", "")))

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.digest.hex(':').upper()}"


@dataclass(frozen=True)
class FileSelector:
    """``a=file-selector`` (RFC 5547 §5): what identifies the file."""

    name: str | None = None
    type: ContentType | None = None
    size: int | None = None
    hashes: tuple[FileHash, ...] = ()

    @classmethod
    def parse(cls, value: str) -> FileSelector:
        name: str | None = None
        type_: ContentType | None = None
        size: int | None = None
        hashes: list[FileHash] = []
        seen: set[str] = set()
        for key, item in _split_selectors(value):
            if key == "name":
                _once(seen, key)
                name = _decode_filename(_unquote(item, "file name"))
            elif key == "type":
                _once(seen, key)
                try:
                    type_ = ContentType.parse(item)
                except HeaderError as exc:
                    raise SdpError(f"invalid file type: {item!r}") from exc
            elif key == "size":
                _once(seen, key)
                size = _integer(item, "file size")
            elif key == "hash":
                hashes.append(FileHash.parse(item))
            # other selectors are extensions: ignored
        return cls(name, type_, size, tuple(hashes))

    def __str__(self) -> str:
        items = []
        if self.name is not None:
            items.append(f'name:"{_encode_filename(self.name)}"')
        if self.type is not None:
            params = "".join(
                f";{key}" if val is None else f";{key}={quote(val)}"
                for key, val in self.type.params
            )
            items.append(f"type:{self.type.mime_type}{params}")
        if self.size is not None:
            items.append(f"size:{self.size}")
        items += [f"hash:{file_hash}" for file_hash in self.hashes]
        return " ".join(items)


_DATE_KEYS = ("creation", "modification", "read")


@dataclass(frozen=True)
class FileDate:
    """``a=file-date`` (RFC 5547 §5): creation, modification and read times."""

    creation: datetime | None = None
    modification: datetime | None = None
    read: datetime | None = None

    @classmethod
    def parse(cls, value: str) -> FileDate:
        dates: dict[str, datetime] = {}
        for key, item in _split_selectors(value):
            if key not in _DATE_KEYS:
                continue
            if key in dates:
                raise SdpError(f"duplicate {key!r}")
            text = _unquote(item, f"{key} date")
            try:
                dates[key] = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError, OverflowError):
                raise SdpError(f"invalid {key} date: {text!r}") from None
        return cls(**dates)

    def __str__(self) -> str:
        return " ".join(
            f'{key}:"{email.utils.format_datetime(date)}"'
            for key in _DATE_KEYS
            if (date := getattr(self, key)) is not None
        )


@dataclass(frozen=True)
class FileRange:
    """``a=file-range`` (RFC 5547 §5): 1-based octets ``start``..``stop`` (None is ``*``)."""

    start: int
    stop: int | None = None

    def __post_init__(self) -> None:
        if self.start < 1 or (self.stop is not None and self.stop < self.start):
            raise SdpError(f"invalid file range: {self.start}-{self.stop}")

    @classmethod
    def parse(cls, value: str) -> FileRange:
        match = _FILE_RANGE.fullmatch(value)
        if match is None:
            raise SdpError(f"invalid file-range: {value!r}")
        start, stop = match.groups()
        return cls(int(start), None if stop == "*" else int(stop))

    def __str__(self) -> str:
        return f"{self.start}-{'*' if self.stop is None else self.stop}"


# ---------------------------------------------------------------------------
# The attribute set

_FORMAT_ENTRY = re.compile(
    r"(?:\*|[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+/[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+)(?:;[\x21-\x7e]*)?"
)
_OTHER_SDP_LINE = re.compile(r"[b-z]=")
_E = TypeVar("_E", bound=enum.StrEnum)


def _format_list(value: str, what: str) -> tuple[str, ...]:
    entries = tuple(entry.lower() for entry in value.split(" ") if entry)
    if not entries or not all(_FORMAT_ENTRY.fullmatch(entry) for entry in entries):
        raise SdpError(f"invalid {what}: {value!r}")
    return entries


def _token(value: str, what: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise SdpError(f"invalid {what}: {value!r}")
    return value


def _enum(kind: type[_E], value: str, what: str) -> _E:
    try:
        return kind(value.lower())
    except ValueError:
        raise SdpError(f"invalid {what}: {value!r}") from None


@dataclass(frozen=True)
class MsrpMediaAttributes:
    """The MSRP attributes of one ``m=message`` media description."""

    path: tuple[MsrpUri, ...] = ()
    accept_types: tuple[str, ...] = ()
    accept_wrapped_types: tuple[str, ...] = ()
    max_size: int | None = None
    setup: Setup | None = None
    connection: Connection | None = None
    msrp_cema: bool = False
    file_selector: FileSelector | None = None
    file_transfer_id: str | None = None
    file_disposition: str | None = None
    file_date: FileDate | None = None
    file_icon: str | None = None
    file_range: FileRange | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", tuple(self.path))
        for attr in ("accept_types", "accept_wrapped_types"):
            entries = tuple(getattr(self, attr))
            if not all(_FORMAT_ENTRY.fullmatch(entry) for entry in entries):
                raise SdpError(f"invalid {attr}: {entries!r}")
            object.__setattr__(self, attr, entries)
        if self.max_size is not None and self.max_size < 0:
            raise SdpError("max-size is not negative")
        for attr in ("file_transfer_id", "file_disposition"):
            value = getattr(self, attr)
            if value is not None:
                _token(value, attr)
        if self.file_icon is not None and not _CID_URL.fullmatch(self.file_icon):
            raise SdpError(f"invalid file-icon: {self.file_icon!r}")

    def to_lines(self) -> list[str]:
        """``a=`` lines (without CRLF) in a fixed order; unset attributes are left out."""
        values: list[tuple[str, object]] = [
            ("accept-types", " ".join(self.accept_types) or None),
            ("accept-wrapped-types", " ".join(self.accept_wrapped_types) or None),
            ("max-size", self.max_size),
            ("path", format_path(self.path) if self.path else None),
            ("setup", self.setup),
            ("connection", self.connection),
            ("file-selector", self.file_selector),
            ("file-transfer-id", self.file_transfer_id),
            ("file-disposition", self.file_disposition),
            ("file-date", self.file_date),
            ("file-icon", self.file_icon),
            ("file-range", self.file_range),
        ]
        lines = [f"a={name}:{value}" for name, value in values if value is not None]
        if self.msrp_cema:
            lines.append("a=msrp-cema")
        return lines

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> MsrpMediaAttributes:
        """Read attribute lines (with or without ``a=``); other lines are ignored."""
        values: dict[str, Any] = {}
        for raw in lines:
            line = raw.rstrip("\r\n")
            if line.startswith("a="):
                line = line[2:]
            elif _OTHER_SDP_LINE.match(line):
                continue
            name, _, value = line.partition(":")
            name = name.lower()
            key = name.replace("-", "_")
            parsed = _parse_attribute(name, value.strip(" \t"))
            if parsed is _UNKNOWN:
                continue
            if key in values:
                raise SdpError(f"duplicate a={name}")
            values[key] = parsed
        return cls(**values)


_UNKNOWN = object()


def _parse_attribute(name: str, value: str) -> object:
    """The typed value of one known attribute, or ``_UNKNOWN``."""
    match name:
        case "path":
            try:
                return tuple(parse_path(value))
            except MsrpUriError as exc:
                raise SdpError(f"invalid a=path: {exc}") from exc
        case "accept-types" | "accept-wrapped-types":
            return _format_list(value, name)
        case "max-size":
            return _integer(value, name)
        case "setup":
            return _enum(Setup, value, name)
        case "connection":
            return _enum(Connection, value, name)
        case "msrp-cema":
            return True
        case "file-selector":
            return FileSelector.parse(value)
        case "file-transfer-id" | "file-disposition":
            return _token(value, name)
        case "file-date":
            return FileDate.parse(value)
        case "file-icon":
            if not _CID_URL.fullmatch(value):
                raise SdpError(f"invalid file-icon: {value!r}")
            return value
        case "file-range":
            return FileRange.parse(value)
    return _UNKNOWN
