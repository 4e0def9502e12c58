"""The minimal proxy step: pyim as registrar + proxy between two pyim user agents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pyim.msrp.transport import MsrpEndpoint
from pyim.sip.chat import ChatStack
from pyim.sip.proxy import Proxy
from pyim.sip.registrar import Registrar
from pyim.sip.registration import RegistrarService, Registration
from pyim.sip.stack import IncomingRequest, SipStack, StackConfig
from pyim.sip.transaction import Destination, TimerConfig
from pyim.sip.uri import NameAddr, SipUri

FAST = TimerConfig(T1=0.05, T2=0.4, T4=0.5, trying_delay=0.0)


class Server:
    """Registrar + proxy: REGISTER is answered here, the rest goes to the users."""

    def __init__(self) -> None:
        self.stack = SipStack(StackConfig(timers=FAST))
        self.registrar = Registrar()
        self.proxy = Proxy(self.stack, self.registrar)
        self.registrar_service = RegistrarService(self.registrar)
        self.stack.on_request = self.on_request

    async def on_request(self, incoming: IncomingRequest) -> None:
        if incoming.request.method == "REGISTER":
            self.registrar_service.handle(incoming)
        elif not await self.proxy.handle(incoming) and incoming.transaction is not None:
            incoming.respond(404)


@pytest.fixture
async def net() -> AsyncIterator[tuple[Server, ChatStack, ChatStack, list[str]]]:
    server = Server()
    await server.stack.start()
    pages: list[str] = []

    def page(incoming: IncomingRequest) -> None:
        pages.append(incoming.request.body.decode())
        incoming.respond(200)

    users = []
    for user in ("alice", "bob"):
        sip = SipStack(StackConfig(timers=FAST))
        await sip.start()
        users.append(ChatStack(sip, await MsrpEndpoint.create(), user=user, fallback=page))
    yield server, users[0], users[1], pages
    for chat in users:
        await chat.close()
        await chat.msrp.close()
        await chat.sip.close()
    await server.stack.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_chat_and_page_through_the_proxy(
    net: tuple[Server, ChatStack, ChatStack, list[str]], transport: str
) -> None:
    server, alice, bob, pages = net
    host, port = server.stack.local_address(transport)
    params = (("transport", transport),) if transport != "udp" else ()
    registrar_uri = SipUri(scheme="sip", host=host, port=port, params=params)
    hop = Destination(transport, host, port)
    reg = Registration(
        bob.sip, registrar=registrar_uri, aor=SipUri(scheme="sip", user="bob", host=host)
    )
    await asyncio.wait_for(reg.start(), 5)
    bob_aor = SipUri(scheme="sip", user="bob", host=host)

    outgoing = await asyncio.wait_for(alice.invite(bob_aor, destination=hop), 10)
    incoming = await asyncio.wait_for(bob.accept(), 10)
    assert [str(r.uri) for r in outgoing.dialog.route_set] == [
        str(server.proxy.record_route_uri(transport).uri)
    ]
    assert (await asyncio.wait_for(outgoing.send("through pyim"), 5)).status == "delivered"
    assert (await asyncio.wait_for(incoming.receive(), 5)).body == b"through pyim"
    await asyncio.wait_for(outgoing.close(), 10)  # the BYE is loose-routed by the proxy
    await asyncio.wait_for(incoming.closed.wait(), 5)

    message = alice.sip.new_request(
        "MESSAGE",
        bob_aor,
        from_=NameAddr(uri=SipUri(scheme="sip", user="alice", host=host)).with_tag("p1"),
        to=NameAddr(uri=bob_aor),
        body=b"page through pyim",
        content_type="text/plain",
    )
    assert (await asyncio.wait_for(alice.sip.send(message, hop), 5)).status == 200
    assert pages == ["page through pyim"]

    nobody = SipUri(scheme="sip", user="carol", host=host)
    lost = alice.sip.new_request(
        "MESSAGE", nobody, from_=NameAddr(uri=bob_aor).with_tag("p2"), to=NameAddr(uri=nobody)
    )
    assert (await asyncio.wait_for(alice.sip.send(lost, hop), 5)).status == 404
    await reg.stop()


async def test_a_proxy_bound_elsewhere_record_routes_its_advertised_name() -> None:
    """Bound to 127.0.0.1, known as proxy.example.test: Record-Route carries the name
    (not the bound address), and both name us."""
    stack = SipStack(StackConfig(host="proxy.example.test", bind_host="127.0.0.1"))
    await stack.start(udp=0, tcp=None)
    try:
        proxy = Proxy(stack, Registrar())
        port = stack.local_address("udp")[1]
        route = proxy.record_route_uri("udp").uri
        assert (route.host, route.port) == ("proxy.example.test", port)
        assert proxy.is_local(SipUri(scheme="sip", host="proxy.example.test", port=port))
        assert proxy.is_local(SipUri(scheme="sip", host="127.0.0.1", port=port))
        assert not proxy.is_local(SipUri(scheme="sip", host="proxy.example.test", port=port + 1))
    finally:
        await stack.close()
