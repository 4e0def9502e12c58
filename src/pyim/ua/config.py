"""Client configuration: a dataclass, from a dict or a TOML file."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sip.uri import SipUri
from .errors import UaError

TRANSPORTS = ("udp", "tcp", "tls")
#: pjsua2 2.15.1 re-REGISTERs 5 s (``delayBeforeRefreshSec``) before the expiry but never
#: sooner than 5 s after a success (expiry 6..10 s: refreshed after 5 s), and with an
#: expiry under 5 s not at all (seen: no refresh in 20 s): the binding would lapse.
MIN_REG_TIMEOUT = 6
#: pjsua2 2.15.1 starts its UDP keep-alive timer a little short of the interval (its log:
#: 12..14 s for 15, 4 s for 5, 1 s for 2) and at 1 s with 0 s, which then sends CRLFs in
#: a busy loop (~200,000 a second, seen). 0 turns keep-alives off.
MIN_KEEPALIVE_SECONDS = 2


@dataclass(slots=True)
class ClientConfig:
    """Everything a :class:`~pyim.ua.client.Client` needs.

    ``account`` is the SIP AOR (``sip:alice@example.test``). ``registrar`` defaults
    to the AOR's domain; ``register=False`` runs without a registrar (peer to peer).
    ``reg_timeout`` is the registration expiry asked for (pjsua's ``timeoutSec``);
    ``register_wait`` bounds how long ``start()`` waits for the first answer.
    ``reg_timeout`` is at least :data:`MIN_REG_TIMEOUT` (pjsua's refresh timing).
    ``keepalive_seconds`` (CRLF keep-alives to the registrar, UDP only) is 0 (off) or
    at least :data:`MIN_KEEPALIVE_SECONDS`.
    """

    account: str
    password: str = ""
    username: str = ""
    registrar: str = ""
    proxy: str = ""
    transport: str = "udp"
    local_host: str = "127.0.0.1"
    local_port: int = 0
    tls_ca_file: str = ""
    tls_verify_server: bool = True
    stun_servers: list[str] = field(default_factory=list)
    outbound: bool = False
    keepalive_seconds: int = 15
    contact_rewrite: bool = True
    ice: bool = False
    turn_server: str = ""
    turn_user: str = ""
    turn_password: str = ""
    register: bool = True
    reg_timeout: int = 300
    register_wait: float = 10.0
    publish: bool = False
    log_level: int = 1
    log_file: str = ""
    msrp_host: str = ""
    display_name: str = ""
    user_agent: str = "pyim-ua/0.1"

    def __post_init__(self) -> None:
        try:
            aor = SipUri.parse(self.account)
        except ValueError as exc:
            raise UaError(f"account: not a SIP URI: {self.account!r} ({exc})") from None
        if not aor.user:
            raise UaError(f"account: {self.account!r} has no user part")
        self.transport = self.transport.lower()
        if self.transport not in TRANSPORTS:
            raise UaError(f"transport: {self.transport!r} is not one of {', '.join(TRANSPORTS)}")
        if not 0 <= self.log_level <= 6:
            raise UaError(f"log_level: {self.log_level} is not in 0..6")
        if self.reg_timeout < MIN_REG_TIMEOUT:
            raise UaError(
                f"reg_timeout: {self.reg_timeout} s is too short: pjsua re-REGISTERs 5 s "
                f"before the expiry, never sooner than 5 s after; use {MIN_REG_TIMEOUT} or more"
            )
        if self.keepalive_seconds != 0 and self.keepalive_seconds < MIN_KEEPALIVE_SECONDS:
            raise UaError(
                f"keepalive_seconds: {self.keepalive_seconds} is not 0 (off) or at least "
                f"{MIN_KEEPALIVE_SECONDS} (pjsua sends keep-alives in a busy loop at 1 s)"
            )
        if not 0 <= self.local_port <= 65535:
            raise UaError(f"local_port: {self.local_port} is not a port")
        self.username = self.username or aor.user
        if not self.registrar:
            port = f":{aor.port}" if aor.port else ""
            self.registrar = f"{aor.scheme}:{aor.host}{port}"
        self.msrp_host = self.msrp_host or self.local_host

    @property
    def aor_user(self) -> str:
        return SipUri.parse(self.account).user or ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientConfig:
        """Build from a mapping (e.g. a TOML table); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UaError(f"unknown client setting(s): {', '.join(unknown)}")
        if "account" not in data:
            raise UaError("the client configuration needs an 'account' (a SIP AOR)")
        try:
            return cls(**data)
        except TypeError as exc:
            raise UaError(f"bad client configuration: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> ClientConfig:
        """Read ``path``; the settings live in a ``[client]`` table or at the top level."""
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UaError(f"cannot read {path}: {exc}") from None
        table = data.get("client", data)
        if not isinstance(table, dict):
            raise UaError(f"{path}: [client] must be a table")
        return cls.from_dict(table)
