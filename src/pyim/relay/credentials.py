"""The relay's credentials: a file of HA1 hashes, never plain passwords.

One line per user and algorithm, ``#`` starts a comment::

    alice:relay.example.net:SHA-256:5b8e...   # ha1 = H(user:realm:password)
    alice:relay.example.net:MD5:1f2c...

``pyim relay passwd USER`` prints such lines.  Lines for another realm are kept
but never match (the realm is part of the hash).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ..digest import Algorithm, CredentialLookup, DigestError, ha1
from .config import ConfigError

_HEX = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{64}")

HA1Table = dict[tuple[str, str, Algorithm], str]


def ha1_lines(username: str, realm: str, password: str, algorithms: tuple[str, ...]) -> list[str]:
    """The HA1 file lines of one user, one per algorithm."""
    out = []
    for name in algorithms:
        algorithm = Algorithm.parse(name).base
        out.append(f"{username}:{realm}:{algorithm}:{ha1(username, realm, password, algorithm)}")
    return out


def parse_ha1_file(text: str, source: str = "<ha1>") -> HA1Table:
    """Parse HA1 lines; raises ConfigError naming the line of the first bad one."""
    table: HA1Table = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(":")
        if len(parts) != 4 or not parts[0] or not _HEX.fullmatch(parts[3]):
            raise ConfigError(f"{source}:{number}: expected user:realm:algorithm:ha1")
        user, realm, alg, digest = parts
        try:
            algorithm = Algorithm.parse(alg).base
        except DigestError as exc:
            raise ConfigError(f"{source}:{number}: {exc}") from exc
        table[(user, realm, algorithm)] = digest.lower()
    return table


def load_ha1_file(path: Path) -> HA1Table:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    return parse_ha1_file(text, str(path))


def credential_lookup(table: HA1Table, passwords: Mapping[str, str]) -> CredentialLookup:
    """A lookup for :class:`~pyim.digest.DigestServer`: the HA1 table first, then
    plain passwords (hashed on demand)."""

    def lookup(username: str, realm: str, algorithm: Algorithm) -> str | None:
        stored = table.get((username, realm, algorithm.base))
        if stored is not None:
            return stored
        password = passwords.get(username)
        return None if password is None else ha1(username, realm, password, algorithm.base)

    return lookup
