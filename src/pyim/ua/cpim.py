"""message/cpim (RFC 3862): encode and parse, pure functions.

A CPIM message is a block of message headers (``From``, ``To``, ``DateTime``,
``Subject``, namespaced ``NS``-prefixed headers...), an empty line, the MIME
headers of the content (``Content-Type`` at least), an empty line and the content.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

CPIM_TYPE = "message/cpim"
TEXT_TYPE = "text/plain;charset=utf-8"


class CpimError(ValueError):
    """Not a message/cpim body."""


@dataclass(frozen=True, slots=True)
class CpimMessage:
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    def header(self, name: str) -> str | None:
        return _find(self.headers, name)

    @property
    def content_type(self) -> str:
        return _find(self.content_headers, "Content-Type") or "text/plain"

    @property
    def sender(self) -> str | None:
        return self.header("From")

    @property
    def recipient(self) -> str | None:
        return self.header("To")

    def header_dict(self) -> dict[str, str]:
        """Message headers by name (a repeated header keeps its last value)."""
        return dict(self.headers)


def _find(headers: list[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers if key.lower() == lowered), None)


def _angle(uri: str) -> str:
    uri = uri.strip()
    return uri if uri.endswith(">") else f"<{uri}>"


def _check_header(name: str, value: str) -> None:
    if not name or any(c in name for c in ": \r\n") or any(c in value for c in "\r\n"):
        raise CpimError(f"bad CPIM header {name!r}: {value!r}")


def encode_cpim(
    *,
    sender: str,
    recipient: str,
    text: str,
    content_type: str = TEXT_TYPE,
    when: _dt.datetime | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> str:
    """A message/cpim body wrapping ``text``; ``sender``/``recipient`` are URIs
    (optionally with a display name: ``Alice <sip:alice@example.test>``)."""
    stamp = (when or _dt.datetime.now(_dt.UTC)).isoformat(timespec="seconds")
    lines = [("From", _angle(sender)), ("To", _angle(recipient)), ("DateTime", stamp)]
    lines.extend(headers or ())
    for name, value in lines:
        _check_header(name, value)
    head = "".join(f"{name}: {value}\r\n" for name, value in lines)
    return f"{head}\r\nContent-Type: {content_type}\r\n\r\n{text}"


def _split_block(data: str) -> tuple[str, str]:
    """The header block before the first empty line, and the rest."""
    for sep in ("\r\n\r\n", "\n\n"):
        index = data.find(sep)
        if index >= 0:
            other = data.find("\n\n" if sep == "\r\n\r\n" else "\r\n\r\n")
            if other < 0 or index <= other:
                return data[:index], data[index + len(sep) :]
    raise CpimError("no empty line after the CPIM headers")


def _parse_headers(block: str, what: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in block.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line[0] in " \t" and headers:  # folded continuation
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise CpimError(f"bad {what} header line: {line!r}")
        headers.append((name.strip(), value.strip()))
    return headers


def parse_cpim(data: str | bytes) -> CpimMessage:
    """Parse a message/cpim body; raise :class:`CpimError` if it is not one."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    head, rest = _split_block(text)
    headers = _parse_headers(head, "CPIM")
    if not headers:
        raise CpimError("no CPIM message headers")
    content_head, body = _split_block(rest)
    content_headers = _parse_headers(content_head, "MIME")
    if _find(content_headers, "Content-Type") is None:
        raise CpimError("no Content-Type in the CPIM content headers")
    return CpimMessage(headers, content_headers, body)


def strip_uri(value: str) -> str:
    """``Alice <sip:alice@x>`` -> ``sip:alice@x``."""
    value = value.strip()
    if "<" in value and value.endswith(">"):
        return value[value.index("<") + 1 : -1]
    return value
