"""MSRP frames (RFC 4975 §7): requests and responses as plain values."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

CONTINUATION_FLAGS = frozenset("$+#")
END_LINE_PREFIX = b"-------"
_TID_ALPHABET = string.ascii_letters + string.digits
# Random bytes map onto the alphabet uniformly: 248 = 4 * 62 byte values are kept
# (b -> alphabet[b % 62]) and the 8 others are dropped (rejection sampling).
_TID_KEEP = len(_TID_ALPHABET) * (256 // len(_TID_ALPHABET))
_TID_TABLE = bytes(ord(_TID_ALPHABET[b % len(_TID_ALPHABET)]) for b in range(_TID_KEEP)).ljust(256)
_TID_DROP = bytes(range(_TID_KEEP, 256))


def new_tid(length: int = 12) -> str:
    """A random transaction id (also fit for Message-ID and session-id)."""
    out = b""
    while len(out) < length:  # ends: each round keeps each byte with p = 248/256
        out += secrets.token_bytes(length + 4).translate(_TID_TABLE, _TID_DROP)
    return out[:length].decode("ascii")


class Headers:
    """Ordered header fields with case-insensitive lookup by name."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first field called ``name``, or ``default``."""
        lname = name.lower()
        for key, value in self._items:
            if key == name or key.lower() == lname:  # most peers use the usual spelling
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self._items if key.lower() == lname]

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one, kept at the first one's place."""
        lname = name.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for key, old in self._items:
            if key.lower() != lname:
                out.append((key, old))
            elif not placed:
                out.append((name, value))
                placed = True
        if not placed:
            out.append((name, value))
        self._items = out

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        lname = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lname]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(slots=True)
class Frame:
    """One MSRP request (``method`` set) or response (``code`` set).

    ``body`` is ``None`` for a frame without content-stuff; ``flag`` is the
    continuation flag of the end-line.  ``tid`` may be left ``None``: ``encode``
    then picks one.
    """

    tid: str | None = None
    method: str | None = None
    code: int | None = None
    comment: str | None = None
    headers: Headers = field(default_factory=Headers)
    body: bytes | None = None
    flag: str = "$"

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def encode(self) -> bytes:
        """The frame on the wire.

        Picks a transaction id when none is set, and refuses one whose end-line
        occurs in the body (RFC 4975 §7.1.1).
        """
        if (self.method is None) == (self.code is None):
            raise ValueError("a frame is either a request (method) or a response (code)")
        if self.flag not in CONTINUATION_FLAGS:
            raise ValueError(f"bad continuation flag {self.flag!r}")
        body = self.body
        if self.tid is None:
            self.tid = new_tid()
            while body and END_LINE_PREFIX + self.tid.encode() in body:
                self.tid = new_tid()
        tid = self.tid.encode("ascii")
        if body and END_LINE_PREFIX + tid in body:
            raise ValueError(f"the end-line of transaction {self.tid} occurs in the body")
        if self.method is not None:
            start = f"MSRP {self.tid} {self.method}\r\n"
        elif self.comment:
            start = f"MSRP {self.tid} {self.code:03d} {self.comment}\r\n"
        else:
            start = f"MSRP {self.tid} {self.code:03d}\r\n"
        parts = [start]
        parts.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        head = "".join(parts).encode("utf-8")
        end = b"-------" + tid + self.flag.encode("ascii") + b"\r\n"
        if body is None:
            return head + end
        if "Content-Type" not in self.headers:
            raise ValueError("a frame with a body needs a Content-Type header")
        return b"".join((head, b"\r\n", body, b"\r\n", end))
