"""REGISTER end to end: pyim's Registration against pyim's embedded registrar."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pyim.digest import DigestClient, DigestServer, password_lookup
from pyim.sip.registrar import Registrar, RegistrarConfig
from pyim.sip.registration import RegistrarService, Registration, RegistrationError
from pyim.sip.stack import SipStack, StackConfig
from pyim.sip.transaction import TimerConfig
from pyim.sip.uri import SipUri

FAST = TimerConfig(T1=0.05, T2=0.4, T4=0.5, trying_delay=0.0)


@pytest.fixture
async def server() -> AsyncIterator[tuple[SipStack, Registrar]]:
    stack = SipStack(StackConfig(timers=FAST))
    await stack.start()
    registrar = Registrar(RegistrarConfig(min_expires=60))
    digest = DigestServer("127.0.0.1", password_lookup({"alice": "secret", "bob": "hunter2"}))
    stack.on_request = RegistrarService(registrar, digest).handle
    yield stack, registrar
    await stack.close()


@pytest.fixture
async def client() -> AsyncIterator[SipStack]:
    stack = SipStack(StackConfig(timers=FAST))
    await stack.start()
    yield stack
    await stack.close()


def registrar_uri(stack: SipStack, transport: str) -> SipUri:
    host, port = stack.local_address(transport)
    params = (("transport", transport),) if transport != "udp" else ()
    return SipUri(scheme="sip", host=host, port=port, params=params)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_register_lookup_unregister(
    server: tuple[SipStack, Registrar], client: SipStack, transport: str
) -> None:
    stack, registrar = server
    aor = SipUri(scheme="sip", user="alice", host="127.0.0.1")
    reg = Registration(
        client,
        registrar=registrar_uri(stack, transport),
        aor=aor,
        auth=DigestClient("alice", "secret"),
        expires=300,
    )
    response = await asyncio.wait_for(reg.start(), 5)
    assert response.status == 200 and reg.granted == 300
    (binding,) = registrar.lookup(aor, stack.loop.time())
    assert binding.contact.uri.port == client.local_address(transport)[1]
    await asyncio.wait_for(reg.register(), 5)  # a refresh keeps one binding
    assert len(registrar.lookup(aor, stack.loop.time())) == 1
    await asyncio.wait_for(reg.stop(), 5)
    assert registrar.lookup(aor, stack.loop.time()) == []


async def test_wrong_password_and_foreign_aor_and_too_brief(
    server: tuple[SipStack, Registrar], client: SipStack
) -> None:
    stack, registrar = server
    uri = registrar_uri(stack, "udp")
    alice = SipUri(scheme="sip", user="alice", host="127.0.0.1")
    cases = [
        (Registration(client, registrar=uri, aor=alice, auth=DigestClient("alice", "nope")), 401),
        (Registration(client, registrar=uri, aor=alice, auth=DigestClient("bob", "hunter2")), 403),
        (Registration(client, registrar=uri, aor=alice, auth=None), 401),
        (
            Registration(
                client, registrar=uri, aor=alice, auth=DigestClient("alice", "secret"), expires=5
            ),
            423,
        ),
    ]
    for reg, status in cases:
        with pytest.raises(RegistrationError) as info:
            await asyncio.wait_for(reg.register(), 5)
        assert info.value.response.status == status
    assert registrar.bindings == {}
