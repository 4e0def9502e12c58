"""Two pyim SIP stacks on 127.0.0.1: requests, dialogs, auth, CANCEL, over UDP and TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pyim.digest import DigestClient, DigestServer, Ok, password_lookup
from pyim.sip.dialog import Dialog, new_tag
from pyim.sip.stack import IncomingRequest, SipStack, StackConfig
from pyim.sip.transaction import TimerConfig
from pyim.sip.uri import NameAddr, SipUri

FAST = TimerConfig(T1=0.05, T2=0.4, T4=0.5, trying_delay=0.0)


@pytest.fixture(params=["udp", "tcp"])
async def stacks(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SipStack, SipStack, str]]:
    alice, bob = SipStack(StackConfig(timers=FAST)), SipStack(StackConfig(timers=FAST))
    await alice.start()
    await bob.start()
    yield alice, bob, request.param
    await alice.close()
    await bob.close()


def target(stack: SipStack, transport: str, user: str = "bob") -> SipUri:
    host, port = stack.local_address(transport)
    params = (("transport", transport),) if transport != "udp" else ()
    return SipUri(scheme="sip", user=user, host=host, port=port, params=params)


def me(user: str) -> NameAddr:
    return NameAddr(uri=SipUri(scheme="sip", user=user, host="127.0.0.1")).with_tag(new_tag())


async def test_options_and_message(stacks: tuple[SipStack, SipStack, str]) -> None:
    alice, bob, transport = stacks
    seen: list[str] = []

    def on_request(incoming: IncomingRequest) -> None:
        seen.append(incoming.request.method)
        if incoming.request.method == "MESSAGE":
            assert incoming.request.body == b"hello bob"
        incoming.respond(200)

    bob.on_request = on_request
    for method, body in (("OPTIONS", b""), ("MESSAGE", b"hello bob")):
        uri = target(bob, transport)
        request = alice.new_request(
            method,
            uri,
            from_=me("alice"),
            to=NameAddr(uri=uri),
            body=body,
            content_type="text/plain" if body else None,
        )
        response = await asyncio.wait_for(alice.send(request), 5)
        assert response.status == 200
    assert seen == ["OPTIONS", "MESSAGE"]


async def test_invite_ack_bye_dialog(stacks: tuple[SipStack, SipStack, str]) -> None:
    alice, bob, transport = stacks
    acked = asyncio.Event()
    dialogs: dict[str, Dialog] = {}

    def on_request(incoming: IncomingRequest) -> None:
        req = incoming.request
        if req.method == "INVITE":
            tag = new_tag()
            incoming.respond(180, to_tag=tag)
            response = incoming.respond(200, to_tag=tag, contact=True)
            dialogs["bob"] = Dialog.as_uas(req, response)
        elif req.method == "ACK":
            acked.set()
        elif req.method == "BYE":
            dialogs["bob"].receive_request(req)
            incoming.respond(200)

    bob.on_request = on_request
    uri = target(bob, transport)
    invite = alice.new_request("INVITE", uri, from_=me("alice"), to=NameAddr(uri=uri))
    provisional: list[int] = []
    response = await asyncio.wait_for(
        alice.send(invite, on_provisional=lambda r: provisional.append(r.status)), 5
    )
    assert response.status == 200 and 180 in provisional
    dialog = Dialog.as_uac(invite, response)
    alice.ack(dialog.ack(invite), invite, alice.destination_for(dialog.ack(invite)))
    await asyncio.wait_for(acked.wait(), 5)
    bye = dialog.request("BYE")
    assert (await asyncio.wait_for(alice.send(bye), 5)).status == 200
    assert dialogs["bob"].state.value == "terminated"


async def test_digest_challenge_is_answered(stacks: tuple[SipStack, SipStack, str]) -> None:
    alice, bob, transport = stacks
    server = DigestServer("pyim.test", password_lookup({"alice": "secret"}))

    def on_request(incoming: IncomingRequest) -> None:
        value = incoming.request.headers.get("Authorization")
        if value is not None:
            verdict = server.verify(value, method=incoming.request.method)
            if isinstance(verdict, Ok):
                incoming.respond(200)
                return
        incoming.respond(401, headers=[("WWW-Authenticate", c) for c in server.challenge()])

    bob.on_request = on_request
    uri = target(bob, transport, "registrar")
    for password, status in (("secret", 200), ("wrong", 401)):
        request = alice.new_request("REGISTER", uri, from_=me("alice"), to=NameAddr(uri=uri))
        response = await asyncio.wait_for(
            alice.send(request, auth=DigestClient("alice", password)), 5
        )
        assert response.status == status


async def test_cancel_gets_487_and_timeout_gets_408(
    stacks: tuple[SipStack, SipStack, str],
) -> None:
    alice, bob, transport = stacks
    cancelled = asyncio.Event()

    def on_request(incoming: IncomingRequest) -> None:
        if incoming.request.method == "INVITE":
            incoming.respond(180, to_tag=new_tag())  # ring forever
        elif incoming.request.method == "CANCEL":
            cancelled.set()

    bob.on_request = on_request
    uri = target(bob, transport)
    invite = alice.new_request("INVITE", uri, from_=me("alice"), to=NameAddr(uri=uri))
    ringing = asyncio.Event()
    txs = []
    pending = asyncio.ensure_future(
        alice.send(invite, on_provisional=lambda r: ringing.set(), on_transaction=txs.append)
    )
    await asyncio.wait_for(ringing.wait(), 5)
    alice.cancel(txs[0])
    response = await asyncio.wait_for(pending, 5)
    assert response.status == 487
    await asyncio.wait_for(cancelled.wait(), 5)

    bob.on_request = lambda incoming: None  # never answers a MESSAGE
    request = alice.new_request("MESSAGE", uri, from_=me("alice"), to=NameAddr(uri=uri))
    response = await asyncio.wait_for(alice.send(request), 10)
    assert response.status == 408
