"""pyim's SIP engine against real peers: sipp (UAC and UAS) and Kamailio (proxy/registrar).

sipp does SIP only; where its SDP names an MSRP path, the test listens there with a
sink (sipp as UAC) or pyim connects to it (sipp as UAS), so pyim's MSRP side runs for
real.  The Kamailio tests run two pyim chat stacks that REGISTER with digest auth,
then chat by AOR through the proxy: MSRP messages both ways, then BYE.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peers import Kamailio, SippFactory, free_port
from pyim.digest import DigestClient
from pyim.msrp.transport import MsrpEndpoint
from pyim.sip.chat import ChatStack
from pyim.sip.registration import Registration
from pyim.sip.stack import IncomingRequest, SipStack
from pyim.sip.transaction import Destination
from pyim.sip.uri import SipUri

pytest_plugins = ["peers"]


class MsrpSink:
    """A TCP listener that takes MSRP connections and reads whatever comes."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> MsrpSink:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            while await reader.read(65536):
                pass
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def chat_stack(user: str, fallback: object = None) -> ChatStack:
    sip = SipStack()
    await sip.start(udp=0, tcp=0)
    return ChatStack(sip, await MsrpEndpoint.create(), user=user, fallback=fallback)  # type: ignore[arg-type]


async def close(chat: ChatStack) -> None:
    await chat.close()
    await chat.msrp.close()
    await chat.sip.close()


def answer_pages(incoming: IncomingRequest) -> None:
    incoming.respond(200 if incoming.request.method == "MESSAGE" else 405)


@pytest.fixture
async def bob() -> AsyncIterator[ChatStack]:
    chat = await chat_stack("bob", answer_pages)
    yield chat
    await close(chat)


@pytest.fixture
async def sink() -> AsyncIterator[MsrpSink]:
    s = await MsrpSink().start()
    yield s
    await s.close()


def sipp_target(chat: ChatStack, transport: str) -> str:
    return f"127.0.0.1:{chat.sip.local_address(transport)[1]}"


async def run_sipp(sipp: SippFactory, scenario: str, **kwargs: object) -> object:
    return await asyncio.to_thread(sipp.run, scenario, **kwargs)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_uac_msrp_invite_ack_bye(
    bob: ChatStack, sink: MsrpSink, sipp: SippFactory, transport: str
) -> None:
    result = await run_sipp(
        sipp,
        "uac_msrp_invite.xml",
        target=sipp_target(bob, transport),
        service="bob",
        transport=transport,
        keys={"msrp_port": str(sink.port)},
    )
    assert result.ok, result.summary()  # type: ignore[attr-defined]
    session = await asyncio.wait_for(bob.accept(), 5)
    await asyncio.wait_for(session.closed.wait(), 5)  # sipp's BYE ended it
    assert sink.connections == 1  # pyim (active for actpass) connected to sipp's a=path
    assert not bob._sessions


async def test_sipp_uac_retransmissions_make_one_dialog(
    bob: ChatStack, sink: MsrpSink, sipp: SippFactory
) -> None:
    result = await run_sipp(
        sipp,
        "uac_invite_retrans.xml",
        target=sipp_target(bob, "udp"),
        service="bob",
        keys={"msrp_port": str(sink.port)},
    )
    assert result.ok, result.summary()  # type: ignore[attr-defined]
    await asyncio.wait_for(bob.accept(), 5)
    assert bob.incoming.empty()  # the INVITE retransmissions made no second session
    assert sink.connections == 1
    assert bob.sip.stats["in_INVITE"] == 1


async def test_sipp_uac_cancel_before_answer(sipp: SippFactory) -> None:
    stack = SipStack()
    await stack.start(udp=0, tcp=None)
    stack.on_request = lambda incoming: (
        incoming.respond(180, to_tag="ring") if incoming.request.method == "INVITE" else None
    )
    try:
        port = stack.local_address("udp")[1]
        result = await run_sipp(sipp, "uac_cancel.xml", target=f"127.0.0.1:{port}", service="bob")
        assert result.ok, result.summary()  # type: ignore[attr-defined]
        assert stack.stats["in_CANCEL"] == 1
    finally:
        await stack.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_uac_message(bob: ChatStack, sipp: SippFactory, transport: str) -> None:
    result = await run_sipp(
        sipp,
        "uac_message.xml",
        target=sipp_target(bob, transport),
        service="bob",
        transport=transport,
    )
    assert result.ok, result.summary()  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_pyim_uac_against_sipp_uas(sipp: SippFactory, tmp_path: Path, transport: str) -> None:
    msrp_port = free_port("tcp")
    uas = await asyncio.to_thread(
        sipp.start, "uas_msrp.xml", transport=transport, keys={"msrp_port": str(msrp_port)}
    )
    # sipp answers a=setup:passive with a path on msrp_port: pyim must connect there
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", msrp_port)
    alice = await chat_stack("alice")
    try:
        params = (("transport", "tcp"),) if transport == "tcp" else ()
        target = SipUri(scheme="sip", user="bob", host="127.0.0.1", port=uas.port, params=params)
        session = await asyncio.wait_for(alice.invite(target), 10)
        assert session.dialog.remote.tag is not None
        await asyncio.wait_for(session.close(), 10)
        result = await asyncio.to_thread(uas.wait, 15)
        assert result.ok, result.summary()
    finally:
        listener.close()
        await close(alice)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_chat_through_kamailio_with_digest_registration(
    kamailio: Kamailio, transport: str
) -> None:
    alice, bob = await chat_stack("alice"), await chat_stack("bob")
    try:
        params = (("transport", "tcp"),) if transport == "tcp" else ()
        proxy = SipUri(scheme="sip", host="127.0.0.1", port=kamailio.port, params=params)
        proxy_hop = Destination(transport, "127.0.0.1", kamailio.port)
        regs = []
        for chat, password in ((alice, "alice-secret"), (bob, "bob-secret")):
            aor = SipUri(scheme="sip", user=chat.user, host="127.0.0.1")
            reg = Registration(
                chat.sip, registrar=proxy, aor=aor, auth=DigestClient(chat.user, password)
            )
            assert (await asyncio.wait_for(reg.start(), 10)).status == 200
            regs.append(reg)
        bob_aor = SipUri(scheme="sip", user="bob", host="127.0.0.1")
        outgoing = await asyncio.wait_for(alice.invite(bob_aor, destination=proxy_hop), 10)
        incoming = await asyncio.wait_for(bob.accept(), 10)
        assert outgoing.dialog.route_set  # Kamailio record-routes: in-dialog requests via it
        assert (await asyncio.wait_for(outgoing.send("via kamailio"), 5)).status == "delivered"
        assert (await asyncio.wait_for(incoming.receive(), 5)).body == b"via kamailio"
        assert (await asyncio.wait_for(incoming.send("back"), 5)).status == "delivered"
        assert (await asyncio.wait_for(outgoing.receive(), 5)).body == b"back"
        await asyncio.wait_for(outgoing.close(), 10)
        await asyncio.wait_for(incoming.closed.wait(), 10)  # the BYE went through Kamailio
        for reg in regs:
            await reg.stop()
    finally:
        await close(alice)
        await close(bob)
