"""The IM server behind Kamailio, for the tests: an in-process server in proxy mode
(``proxy`` = Kamailio, ``trusted_proxies`` = 127.0.0.1) with Kamailio 5.6 in front
(deploy/kamailio/im-frontend.cfg), and pyim.sip users that register at Kamailio and
send everything through it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

from kamailio_im import KamailioFrontend
from peers import LOOPBACK, free_port
from pyim.server.app import ImServer
from pyim.sip.uri import SipUri
from server_harness import DOMAIN, USERS, User, make_user_via, server_config


@dataclass
class Frontend:
    """The server and the Kamailio in front of it."""

    server: ImServer
    kamailio: KamailioFrontend

    def bindings(self, user: str) -> list[str]:
        """The contacts the server learned for ``user`` (from replicated REGISTERs)."""
        aor = SipUri(scheme="sip", user=user, host=DOMAIN)
        found = self.server.registrar.lookup(aor, self.server.sip.loop.time())
        return [str(b.contact.uri) for b in found]

    async def wait_bindings(self, user: str, count: int = 1, timeout: float = 5.0) -> list[str]:
        """Bounded wait until the server knows ``count`` contacts of ``user``."""
        deadline = time.monotonic() + timeout
        while len(found := self.bindings(user)) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return found


@contextlib.asynccontextmanager
async def server_behind_kamailio(tmp: Path, **limits: float) -> AsyncIterator[Frontend]:
    """Start the server in behind-proxy mode, then Kamailio in front of it (its port is
    picked first: the server's config names it). Kamailio has the users of
    server_harness.USERS with the same passwords."""
    kport = free_port("both")
    config = replace(
        server_config(tmp, **limits),
        proxy=f"sip:{LOOPBACK}:{kport}",
        trusted_proxies=(LOOPBACK,),
    )
    server = ImServer(config)
    await server.start()
    try:
        _, server_port = server.sip.local_address("udp")
        kamailio = KamailioFrontend(tmp / "kamailio", server_port, port=kport, extra_users=USERS)
        # from the main thread (parent-death signal), blocking: it only talks to itself
        with kamailio:
            yield Frontend(server, kamailio)
    finally:
        await server.stop()


async def make_proxy_user(name: str, kamailio: KamailioFrontend) -> User:
    """A pyim.sip user whose registrar and outbound proxy is Kamailio (UDP)."""
    return await make_user_via(name, kamailio.host, kamailio.port)
