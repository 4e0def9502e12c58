"""Helpers for the application server tests: a server on 127.0.0.1 with a SQLite store
in a temporary folder, and pyim.sip users (SIP stack + registration + chat stack)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from pyim.digest import DigestClient
from pyim.msrp.transport import MsrpEndpoint
from pyim.server.app import ImServer
from pyim.server.config import Limits, MetricsSettings, ServerConfig, SipSettings
from pyim.sip.chat import ChatSession, ChatStack
from pyim.sip.dialog import new_tag
from pyim.sip.message import SipRequest
from pyim.sip.registration import Registration
from pyim.sip.stack import IncomingRequest, SipStack, StackConfig
from pyim.sip.transaction import TimerConfig
from pyim.sip.uri import NameAddr, SipUri

FAST = TimerConfig(T1=0.05, T2=0.4, T4=0.5, trying_delay=0.0)
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
DOMAIN = "127.0.0.1"


def server_config(tmp: Path, **limits: float) -> ServerConfig:
    return ServerConfig(
        domain=DOMAIN,
        store=f"sqlite://{tmp / 'pyim.db'}",
        sip=SipSettings(udp=0, tcp=0),
        metrics=MetricsSettings(port=0),
        limits=replace(Limits(), **limits),  # type: ignore[arg-type]
        users=dict(USERS),
    )


@contextlib.asynccontextmanager
async def running_server(config: ServerConfig) -> AsyncIterator[ImServer]:
    server = ImServer(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class User:
    """A pyim.sip user agent: registers at the server, chats, takes MESSAGEs."""

    name: str
    sip: SipStack
    chat: ChatStack
    server_uri: SipUri
    pages: asyncio.Queue[SipRequest] = field(default_factory=asyncio.Queue)
    registration: Registration | None = None

    @property
    def aor(self) -> SipUri:
        return SipUri(scheme="sip", user=self.name, host=DOMAIN)

    def from_addr(self) -> NameAddr:
        return NameAddr(uri=self.aor).with_tag(new_tag())

    def to_addr(self) -> NameAddr:
        return NameAddr(uri=self.aor)

    def auth(self) -> DigestClient:
        """Answers the server's Digest challenges (REGISTER, INVITE, MESSAGE)."""
        return DigestClient(self.name, USERS[self.name])

    async def register(self) -> None:
        self.registration = Registration(
            self.sip,
            registrar=self.server_uri,
            aor=self.aor,
            auth=self.auth(),
            expires=300,
        )
        await asyncio.wait_for(self.registration.start(), 5)

    async def call(self, other: str) -> ChatSession:
        """INVITE ``other``@domain through the server."""
        target = SipUri(scheme="sip", user=other, host=DOMAIN)
        return await asyncio.wait_for(
            self.chat.invite(
                target,
                destination=self.sip.destination_for_uri(self.server_uri),
                from_=NameAddr(uri=self.aor),
                auth=self.auth(),
            ),
            10,
        )

    async def close(self) -> None:
        if self.registration is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.registration.stop(), 3)
        await self.chat.close()
        await self.chat.msrp.close()
        await self.sip.close()


async def make_user_via(name: str, host: str, port: int, transport: str = "udp") -> User:
    """A pyim.sip user whose registrar (and next hop) is ``host:port``: the server, or a
    proxy in front of it.  It answers MESSAGEs 200 and keeps them in ``pages``."""
    sip = SipStack(StackConfig(timers=FAST))
    await sip.start()
    params = (("transport", transport),) if transport != "udp" else ()
    server_uri = SipUri(scheme="sip", host=host, port=port, params=params)
    return user_over(name, sip, await MsrpEndpoint.create(), server_uri)


def user_over(name: str, sip: SipStack, msrp: MsrpEndpoint, server_uri: SipUri) -> User:
    """A User over started SIP and MSRP stacks: it answers MESSAGEs 200 and keeps them
    in ``pages``."""
    user = User(name, sip, None, server_uri)  # type: ignore[arg-type]

    def on_page(incoming: IncomingRequest) -> None:
        if incoming.request.method == "MESSAGE":
            user.pages.put_nowait(incoming.request)
            incoming.respond(200)
        else:
            incoming.respond(405)

    user.chat = ChatStack(sip, msrp, user=name, fallback=on_page)
    return user


async def make_user(name: str, server: ImServer, transport: str = "udp") -> User:
    host, port = server.sip.local_address(transport)
    return await make_user_via(name, host, port, transport)
