"""The relay's configuration: dataclasses with safe defaults, loaded from TOML.

Every limit of the relay is here and can be set in the file::

    [relay]
    realm = "relay.example.net"
    ha1_file = "/etc/pyim/relay.ha1"    # lines "user:realm:algorithm:ha1" (pyim relay passwd)

    [[listen]]
    scheme = "msrps"                     # or "msrp"
    host = "0.0.0.0"
    port = 2855
    advertise = "relay.example.net"      # the host put in Use-Path (default: host)
    cert = "/etc/pyim/relay.pem"
    key = "/etc/pyim/relay.key"

    [auth]
    default_expires = 600                # granted when AUTH has no Expires
    min_expires = 60                     # below: 423 with Min-Expires
    max_expires = 3600                   # above: 423 with Max-Expires

    [limits]
    max_connections_per_ip = 64

Unknown keys and bad values raise :class:`ConfigError` naming the key.  Relative
paths (``ha1_file``, ``cert``, ``key``) are relative to the config file's folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configfile import ConfigError as ConfigError  # re-exported: pyim.relay.ConfigError
from ..configfile import build_table, load_toml
from ..digest import Algorithm, DigestError


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening socket: ``msrp`` (TCP) or ``msrps`` (TLS with cert and key)."""

    scheme: str = "msrp"
    host: str = "127.0.0.1"
    port: int = 2855
    advertise: str | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def public_host(self) -> str:
        return self.advertise or self.host


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """AUTH (RFC 4976 §6): digest parameters and the bounds of granted paths."""

    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    nonce_lifetime: float = 30.0
    default_expires: int = 600
    min_expires: int = 60
    max_expires: int = 3600
    max_failures: int = 3  # failed AUTHs per connection (and per IP per minute) before 403
    failure_window: float = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what peers can make the relay hold or do."""

    max_connections: int = 10_000
    max_connections_per_ip: int = 64
    max_unauthenticated_per_ip: int = 16  # connections not yet authenticated nor relaying
    auth_timeout: float = 10.0  # a new connection must AUTH or send a routable frame by then
    idle_timeout: float = 300.0  # a connection without grants and traffic is closed
    frame_timeout: float = 60.0  # a frame begun but silent this long closes the connection
    transaction_timeout: float = 30.0  # a forwarded SEND unanswered downstream: 408 REPORT
    connect_timeout: float = 10.0  # opening a connection to a next hop
    tls_handshake_timeout: float = 10.0  # msrps: a handshake not done by then is closed
    max_line_length: int = 4096
    max_header_bytes: int = 16 * 1024
    max_headers: int = 64
    max_chunk_size: int = 16 * 1024 * 1024
    write_high_water: int = 256 * 1024  # per connection: above it, upstreams stop being read
    max_queued_bytes: int = 1024 * 1024  # body bytes queued for one connection, not yet written
    interrupt_after: int = 64 * 1024  # a chunk this far along yields to waiting frames
    max_grants: int = 100_000


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """The whole relay configuration (``load_config`` reads it from TOML)."""

    realm: str = "pyim"
    ha1_file: Path | None = None
    users: dict[str, str] = field(default_factory=dict)  # plain passwords: tests and demos
    listen: tuple[Listener, ...] = (Listener(),)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: Limits = field(default_factory=Limits)
    log_level: str = "info"

    def validate(self) -> RelayConfig:
        """Check values that types alone do not; returns self, raises ConfigError."""
        if not self.realm or '"' in self.realm:
            raise ConfigError("relay.realm must be a non-empty string without quotes")
        if self.ha1_file is None and not self.users:
            raise ConfigError("no credentials: set relay.ha1_file (or [users] for tests)")
        if not self.listen:
            raise ConfigError("at least one [[listen]] is needed")
        for i, lst in enumerate(self.listen):
            where = f"listen[{i}]"
            if lst.scheme not in ("msrp", "msrps"):
                raise ConfigError(f"{where}.scheme must be 'msrp' or 'msrps', not {lst.scheme!r}")
            if not 0 <= lst.port <= 65535:
                raise ConfigError(f"{where}.port {lst.port} is out of range")
            if lst.public_host in ("0.0.0.0", "::", ""):
                raise ConfigError(f"{where}: a wildcard host needs advertise (the host in URIs)")
            if lst.scheme == "msrps" and (lst.cert is None or lst.key is None):
                raise ConfigError(f"{where}: msrps needs cert and key")
        auth = self.auth
        for name in auth.algorithms:
            try:
                Algorithm.parse(name)
            except DigestError as exc:
                raise ConfigError(f"auth.algorithms: {exc}") from exc
        if not 0 < auth.min_expires <= auth.default_expires <= auth.max_expires:
            raise ConfigError("auth: need 0 < min_expires <= default_expires <= max_expires")
        if auth.max_failures < 1 or auth.nonce_lifetime <= 0:
            raise ConfigError("auth.max_failures and auth.nonce_lifetime must be positive")
        for f in dataclasses.fields(self.limits):
            if getattr(self.limits, f.name) <= 0:
                raise ConfigError(f"limits.{f.name} must be positive")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"relay.log_level {self.log_level!r} is not a log level")
        return self


#: Keys that name files.
_PATHS = ("cert", "key", "ha1_file")


def config_from_dict(data: dict[str, Any]) -> RelayConfig:
    """Build and validate a config from parsed TOML."""
    unknown = set(data) - {"relay", "listen", "auth", "limits", "users"}
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    relay = data.get("relay", {})
    if not isinstance(relay, dict):
        raise ConfigError("[relay] must be a table")
    top: dict[str, Any] = {}
    for key, value in relay.items():
        if key == "realm" or key == "log_level":
            if not isinstance(value, str):
                raise ConfigError(f"relay.{key}: expected a string")
            top[key] = value
        elif key == "ha1_file":
            if not isinstance(value, str):
                raise ConfigError("relay.ha1_file: expected a path")
            top[key] = Path(value)
        else:
            raise ConfigError(f"relay.{key}: unknown key")
    users = data.get("users", {})
    if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
        raise ConfigError("[users] must map user names to password strings")
    listen_tables = data.get("listen", [{}])
    if not isinstance(listen_tables, list):
        raise ConfigError("listen must be an array of tables: [[listen]]")
    listen = tuple(
        build_table(Listener, t, f"listen[{i}]", paths=_PATHS) for i, t in enumerate(listen_tables)
    )
    return RelayConfig(
        users=dict(users),
        listen=listen,
        auth=build_table(AuthSettings, data.get("auth", {}), "auth", paths=_PATHS),
        limits=build_table(Limits, data.get("limits", {}), "limits"),
        **top,
    ).validate()


def load_config(path: Path) -> RelayConfig:
    """Read a TOML config file; raises ConfigError (with the file name) when invalid."""
    return _relative_to(load_toml(path, config_from_dict), path.parent)


def _relative_to(config: RelayConfig, base: Path) -> RelayConfig:
    """Relative paths in a file are relative to the file's folder."""

    def fix(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    listen = tuple(
        dataclasses.replace(lst, cert=fix(lst.cert) or lst.cert, key=fix(lst.key) or lst.key)
        for lst in config.listen
    )
    ha1_file = fix(config.ha1_file) or config.ha1_file
    return dataclasses.replace(config, listen=listen, ha1_file=ha1_file)
