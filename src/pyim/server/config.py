"""The application server's configuration: dataclasses with defaults that run on
127.0.0.1 with no file at all, loaded from TOML::

    [server]
    domain = "example.test"          # the SIP domain whose users this server serves
    host = "0.0.0.0"                 # where it listens
    advertise = "im.example.test"    # the host put in Contact, Via and a=path
    # proxy = "sip:10.0.0.5:5060"    # behind Kamailio: users reached through it
    # trusted_proxies = ["10.0.0.5"] # ... which replicates REGISTERs to us (and sends
                                     # INVITE/MESSAGE, authenticated by it)
    # digest_algorithms = ["SHA-256", "MD5"]  # REGISTER, INVITE, MESSAGE challenges
    store = "sqlite:///var/lib/pyim/pyim.db"     # sqlite://relative.db, postgresql://...
    log_level = "info"

    [sip]                            # ports: 0 any free port, -1 off
    udp = 5060
    tcp = 5060
    tls = 5061                       # SIP over TLS (sips:); needs cert and key
    cert = "server.pem"              # PEM chain, for the TLS listeners (SIP and MSRP)
    key = "server.key"               # PEM private key, not encrypted
    # ca = "devices-ca.pem"          # verify the TLS connections the server opens

    [msrp]
    port = 2855                      # 0: any free port
    tls = true                       # MSRP over TLS only (a=path msrps://...;tcp)
    # cert = "msrp.pem"              # default: sip.cert and sip.key
    # key = "msrp.key"

    [metrics]
    port = 9464                      # Prometheus text on http://host:port/metrics; 0: off

    [limits]
    max_message_size = 1048576       # stored messages; bigger ones get 413 when stored
    stream_above = 262144            # bigger ones go chunk by chunk to an open session
    max_queue_per_user = 10000       # offline messages kept per recipient
    messages_per_second = 50         # per sender; above: 503 / failure report

    [users]                          # plain passwords for tests and demos only;
    alice = "alice"                  # real users live in the store (pyim users add)

Relative paths are relative to the file's folder.  Unknown keys and bad values raise
:class:`ConfigError` naming the key; so do TLS files that cannot be read or used
(:meth:`ServerConfig.tls`).

TLS.  Devices connect to the server's TLS listeners and check its certificate (the
server asks for none of theirs: they authenticate with Digest).  When the server
opens a TLS connection itself (an INVITE or MESSAGE to a ``sips:`` or
``;transport=tls`` contact, a ``sips:`` proxy, an ``msrps`` URI of a device), it
checks the peer's certificate against ``sip.ca`` (chain and host name) when that is
set; without ``sip.ca`` such connections are encrypted but not verified, as SIP
servers do by default for client connections (Kamailio's ``verify_certificate = no``):
device contacts are IP addresses with throw-away certificates.  The server presents
its own certificate on those connections too.  ``msrp.tls = true`` makes every
session MSRP over TLS (SDP ``TCP/TLS/MSRP``): offers of plain ``TCP/MSRP`` get 488,
and devices that only do plain MSRP get their messages by page mode.
"""

from __future__ import annotations

import dataclasses
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configfile import ConfigError as ConfigError  # re-exported: pyim.server.ConfigError
from ..configfile import build_table, load_toml
from ..digest import Algorithm, DigestError

#: What ``pyim server`` runs with when given no file: everything on 127.0.0.1, two
#: demo users, a store in the current folder.
DEMO_USERS = {"alice": "alice", "bob": "bob"}


@dataclass(frozen=True, slots=True)
class SipSettings:
    udp: int = 5060
    tcp: int = 5060
    tls: int = -1
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None  # verifies the TLS connections the server opens (SIP, MSRP)


@dataclass(frozen=True, slots=True)
class MsrpSettings:
    port: int = 0
    tls: bool = False
    cert: Path | None = None  # default: sip.cert
    key: Path | None = None  # default: sip.key


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    port: int = 9464
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_size: int = 1024 * 1024  # kept in the store (and page mode's ceiling)
    stream_above: int = 256 * 1024  # bigger messages are relayed chunk by chunk...
    max_stream_size: int = 1024 * 1024 * 1024  # ... up to this, when the peer is there
    max_page_size: int = 1300  # page-mode bodies above this go as a session or fail (413)
    max_queue_per_user: int = 10_000
    messages_per_second: float = 50.0
    delivery_timeout: float = 30.0  # INVITE to a device / a message to be acknowledged
    max_sessions: int = 20_000
    sip_connections: int = 20_000  # SIP over TCP, in all...
    sip_connections_per_ip: int = 1024  # ... and per address (a proxy in front is one)
    msrp_connections: int = 20_000  # MSRP connections of the server's endpoint
    tls_handshake_timeout: float = 10.0  # SIP and MSRP over TLS: a handshake not done is closed


@dataclass(frozen=True, slots=True)
class ServerConfig:
    domain: str = "127.0.0.1"
    host: str = "127.0.0.1"
    advertise: str = ""
    store: str = "sqlite://pyim.db"  # relative: from where the server runs (or the file)
    log_level: str = "info"
    realm: str = ""  # digest realm (default: the domain)
    # Behind a proxy/registrar (Kamailio): it replicates REGISTERs to us (accepted from
    # these addresses only) and we reach users through it, by AOR.
    proxy: str = ""
    trusted_proxies: tuple[str, ...] = ()
    # Digest for REGISTER, INVITE and MESSAGE (challenged strongest first; the store
    # keeps MD5 and SHA-256 HA1s). Only "MD5" for clients that cannot do SHA-256 and
    # mishandle a second challenge (sipp).
    digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    sip: SipSettings = field(default_factory=SipSettings)
    msrp: MsrpSettings = field(default_factory=MsrpSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    limits: Limits = field(default_factory=Limits)
    users: dict[str, str] = field(default_factory=dict)

    def digest(self) -> tuple[Algorithm, ...]:
        """The Digest algorithms to challenge with."""
        try:
            chosen = tuple(Algorithm.parse(name) for name in self.digest_algorithms)
        except DigestError as exc:
            raise ConfigError(f"server.digest_algorithms: {exc}") from None
        if not chosen or not set(chosen) <= {Algorithm.MD5, Algorithm.SHA_256}:
            raise ConfigError('server.digest_algorithms: "SHA-256" and/or "MD5"')
        return tuple(dict.fromkeys(chosen))

    @property
    def public_host(self) -> str:
        return self.advertise or self.host

    @property
    def auth_realm(self) -> str:
        return self.realm or self.domain

    @property
    def msrp_tls_files(self) -> tuple[Path | None, Path | None]:
        """The MSRP listener's (cert, key): its own, else the SIP ones."""
        return (self.msrp.cert or self.sip.cert, self.msrp.key or self.sip.key)

    def tls(self) -> TlsContexts:
        """The TLS contexts the config asks for, from its files; ConfigError naming the
        key whose file is missing, unreadable or unusable."""
        client = client_context(self.sip.ca)
        sip_server = msrp_server = None
        sip_client = msrp_client = client
        if self.sip.tls >= 0:
            assert self.sip.cert is not None and self.sip.key is not None
            sip_server = server_context(self.sip.cert, self.sip.key)
            sip_client = client_context(self.sip.ca, (self.sip.cert, self.sip.key))
        if self.msrp.tls:
            cert, key = self.msrp_tls_files
            assert cert is not None and key is not None
            names = (
                "msrp.cert" if self.msrp.cert else "sip.cert",
                "msrp.key" if self.msrp.key else "sip.key",
            )
            msrp_server = server_context(cert, key, names)
            msrp_client = client_context(self.sip.ca, (cert, key))
        return TlsContexts(sip_server, sip_client, msrp_server, msrp_client)

    def validate(self) -> ServerConfig:
        if self.public_host in ("0.0.0.0", "::"):
            raise ConfigError("server.advertise is needed when host is a wildcard")
        if not self.store.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ConfigError(f"server.store: unknown store URL {self.store!r}")
        if self.sip.tls >= 0 and (self.sip.cert is None or self.sip.key is None):
            raise ConfigError("sip.tls needs sip.cert and sip.key")
        if self.msrp.tls and None in self.msrp_tls_files:
            raise ConfigError("msrp.tls needs msrp.cert and msrp.key (or sip.cert and sip.key)")
        if max(self.sip.udp, self.sip.tcp, self.sip.tls) < 0:
            raise ConfigError("no SIP listener: set sip.udp, sip.tcp or sip.tls")
        for name, port in (("udp", self.sip.udp), ("tcp", self.sip.tcp), ("tls", self.sip.tls)):
            if not -1 <= port < 65536:
                raise ConfigError(f"sip.{name} {port}: expected 0..65535 (-1: off)")
        for f in dataclasses.fields(self.limits):
            if getattr(self.limits, f.name) <= 0:
                raise ConfigError(f"limits.{f.name} must be positive")
        self.digest()  # ConfigError for an unknown algorithm
        if self.proxy and not self.trusted_proxies:
            raise ConfigError("server.proxy needs server.trusted_proxies (who may REGISTER)")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"server.log_level {self.log_level!r} is not a log level")
        return self


@dataclass(frozen=True, slots=True)
class TlsContexts:
    """What :meth:`ServerConfig.tls` builds: listeners' contexts (None: no TLS there)
    and the contexts of the connections the server opens."""

    sip_server: ssl.SSLContext | None
    sip_client: ssl.SSLContext
    msrp_server: ssl.SSLContext | None
    msrp_client: ssl.SSLContext


class _Encrypted(Exception):
    pass


def _no_passphrase() -> str:
    raise _Encrypted  # OpenSSL would otherwise ask for it on the terminal


def _readable(path: Path, name: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None


def _check_certificates(context: ssl.SSLContext, path: Path, name: str) -> None:
    try:
        context.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError):
        raise ConfigError(f"{name}: no PEM certificate in {path}") from None


def server_context(
    cert: Path, key: Path, names: tuple[str, str] = ("sip.cert", "sip.key")
) -> ssl.SSLContext:
    """A TLS listener's context with ``cert`` and ``key`` (``names``: their config keys,
    for errors); it asks clients for no certificate."""
    cert_name, key_name = names
    _readable(cert, cert_name)
    _readable(key, key_name)
    _check_certificates(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert, cert_name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _Encrypted:
        raise ConfigError(f"{key_name}: {key} is encrypted (no passphrase is asked)") from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ConfigError(f"{key_name}: {key} is not the key of {cert_name}") from None
        raise ConfigError(f"{key_name}: no usable PEM private key in {key}") from None
    return context


def client_context(ca: Path | None, identity: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """The context of TLS connections the server opens: peers verified against ``ca``
    (chain and host name), or not verified at all without it; ``identity`` (cert,
    key) is presented when the peer asks for a certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        _readable(ca, "sip.ca")
        _check_certificates(context, ca, "sip.ca")
    if identity is not None:
        context.load_cert_chain(*identity, password=_no_passphrase)
    return context


#: Keys that name files (relative to the config file's folder).
_PATHS = ("cert", "key", "ca")


def config_from_dict(data: dict[str, Any], base: Path | None = None) -> ServerConfig:
    known = {"server", "sip", "msrp", "metrics", "limits", "users"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    server = data.get("server", {})
    if not isinstance(server, dict):
        raise ConfigError("[server] must be a table")
    top: dict[str, Any] = {}
    for key, value in server.items():
        if key in ("trusted_proxies", "digest_algorithms"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"server.{key}: expected a list of strings")
            top[key] = tuple(value)
            continue
        if key not in ("domain", "host", "advertise", "store", "log_level", "realm", "proxy"):
            raise ConfigError(f"server.{key}: unknown key")
        if not isinstance(value, str):
            raise ConfigError(f"server.{key}: expected a string")
        top[key] = value
    store = top.get("store", "")
    if base is not None and store.startswith("sqlite://") and not store.startswith("sqlite:///"):
        relative = store[len("sqlite://") :]
        if relative and relative != ":memory:":
            top["store"] = f"sqlite://{base.resolve() / relative}"
    users = data.get("users", {})
    if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
        raise ConfigError("[users] must map user names to password strings")
    return ServerConfig(
        sip=build_table(SipSettings, data.get("sip", {}), "sip", paths=_PATHS, base=base),
        msrp=build_table(MsrpSettings, data.get("msrp", {}), "msrp", paths=_PATHS, base=base),
        metrics=build_table(
            MetricsSettings, data.get("metrics", {}), "metrics", paths=_PATHS, base=base
        ),
        limits=build_table(Limits, data.get("limits", {}), "limits", paths=_PATHS, base=base),
        users=dict(users),
        **top,
    ).validate()


def load_config(path: Path) -> ServerConfig:
    """Read a TOML file; ConfigError (with the file name) when it is invalid."""
    return load_toml(path, lambda data: config_from_dict(data, path.parent))
