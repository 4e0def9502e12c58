"""The application server bound to one address and known to others by another name
(``server.host`` vs ``server.advertise``), and a device registered with a contact over
a transport the server does not listen on (a ``sips:`` contact, no TLS listener)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from pyim.sip.message import SipRequest, SipResponse
from pyim.sip.registration import Registration
from pyim.sip.sdp import SessionDescription
from pyim.sip.transaction import Destination
from pyim.sip.uri import NameAddr, SipUri
from server_harness import User, make_user, running_server, server_config

pytestmark = pytest.mark.timeout(60)


def record(user: User) -> list[SipRequest | SipResponse]:
    """Every message ``user``'s stack receives, from now on."""
    seen: list[SipRequest | SipResponse] = []
    transport = user.sip.transport
    deliver = transport.on_message

    def on_message(message: SipRequest | SipResponse, peer: Destination) -> None:
        seen.append(message)
        deliver(message, peer)

    transport.on_message = on_message
    return seen


async def test_bound_on_host_advertised_as_another_name(tmp_path: Path) -> None:
    # "localhost" resolves here (so devices can follow Contact and a=path) and is not
    # what the listeners' sockets say (127.0.0.1): what they carry is the advertised name
    config = replace(server_config(tmp_path), host="127.0.0.1", advertise="localhost")
    async with running_server(config) as server:
        assert server.msrp is not None
        for transport in ("udp", "tcp"):
            assert server.sip.local_address(transport)[0] == "127.0.0.1"
        alice, bob = await make_user("alice", server), await make_user("bob", server)
        seen = record(bob)
        try:
            await alice.register()
            await bob.register()
            session = await alice.call("bob")
            assert session.dialog.remote_target.host == "localhost"  # the server's Contact
            sending = asyncio.ensure_future(session.send("hello bob", success_report=True))
            bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
            assert (await asyncio.wait_for(bob_side.receive(), 10)).body == b"hello bob"
            assert (await asyncio.wait_for(sending, 10)).status == "delivered"
            invite = next(m for m in seen if isinstance(m, SipRequest) and m.method == "INVITE")
            assert invite.top_via.host == "localhost"
            assert invite.contacts[0].uri.host == "localhost"
            offer = SessionDescription.parse(invite.body)
            path = next(
                value for m in offer.media for name, value in m.attributes if name == "path"
            )
            assert path is not None
            assert path.startswith(f"msrp://localhost:{server.msrp.port}/")
            await session.close()
        finally:
            await alice.close()
            await bob.close()


async def test_advertised_name_need_not_resolve(tmp_path: Path) -> None:
    config = replace(server_config(tmp_path), host="127.0.0.1", advertise="im.example.test")
    async with running_server(config) as server:  # was: the listeners bound that name
        assert server.sip.local_address("udp")[0] == "127.0.0.1"
        assert server.sip.contact("udp").uri.host == "im.example.test"
        alice = await make_user("alice", server)
        try:
            await alice.register()  # reached at 127.0.0.1
        finally:
            await alice.close()


class SipsRegistration(Registration):
    """Registers a ``sips:`` contact (as a device with a TLS listener would)."""

    @property
    def contact(self) -> NameAddr:
        port = self.stack.local_address("tcp")[1]
        return NameAddr(uri=SipUri(scheme="sips", user=self.aor.user, host="127.0.0.1", port=port))


async def test_a_sips_contact_without_a_tls_listener_keeps_its_messages_queued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_server(server_config(tmp_path)) as server:  # UDP and TCP only
        alice, bob = await make_user("alice", server), await make_user("bob", server)
        try:
            await alice.register()
            bob.registration = SipsRegistration(
                bob.sip, registrar=bob.server_uri, aor=bob.aor, auth=bob.auth(), expires=300
            )
            await asyncio.wait_for(bob.registration.start(), 5)
            session = await alice.call("bob")
            sending = asyncio.ensure_future(session.send("for bob", success_report=True))
            # the server tries bob's sips: contact: an INVITE (was: KeyError in the
            # delivery task, a traceback each time), then a MESSAGE; both 503 at once
            for _ in range(50):
                if server.sip.transport.stats["send_failures"] >= 2:
                    break
                await asyncio.sleep(0.1)
            assert server.sip.transport.stats["send_failures"] >= 2
            await asyncio.sleep(0.3)
            assert await server.store.depth("sip:bob@127.0.0.1") == 1  # still queued
            assert not sending.done()
            assert bob.pages.empty() and bob.chat.incoming.empty()
            assert any("no device of sip:bob" in r.getMessage() for r in caplog.records)
            tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
            assert not tracebacks, [r.getMessage() for r in tracebacks]
            sending.cancel()
            await session.close()
        finally:
            await alice.close()
            await bob.close()
