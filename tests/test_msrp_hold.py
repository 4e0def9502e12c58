"""SessionConfig.hold_completion: the receiver answers a message's last chunk and sends
its Success-Report when the application says so (store-and-forward servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pyim.msrp.session import SessionConfig
from pyim.msrp.transport import EndpointConfig, MsrpEndpoint, Session


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Session, Session]]:
    alice_ep = await MsrpEndpoint.create()
    held = EndpointConfig(session=SessionConfig(hold_completion=True, chunk_size=1024))
    bob_ep = await MsrpEndpoint.create(config=held)
    alice, bob = alice_ep.new_session(), bob_ep.new_session()
    await asyncio.gather(alice.start(bob.path, active=True), bob.start(alice.path, active=False))
    yield alice, bob
    await alice_ep.close()
    await bob_ep.close()


async def test_last_chunk_waits_for_confirm_and_report_for_the_application(
    pair: tuple[Session, Session],
) -> None:
    alice, bob = pair
    sending = alice.send_nowait("text/plain", b"x" * 5000, success_report=True)
    message = await asyncio.wait_for(bob.receive(), 5)
    await asyncio.sleep(0.2)
    assert not sending.done()  # no 200 for the last chunk, no report yet
    assert bob.confirm(message.message_id)
    assert not bob.confirm(message.message_id)  # once only
    await asyncio.sleep(0.2)
    assert not sending.done()  # 200 came, the report is still owed
    assert bob.report(message.message_id)
    result = await asyncio.wait_for(sending, 5)
    assert result.status == "delivered"


async def test_confirm_with_an_error_fails_the_message(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    sending = alice.send_nowait("text/plain", b"cannot store me", success_report=True)
    message = await asyncio.wait_for(bob.receive(), 5)
    assert bob.confirm(message.message_id, 503, "store unavailable")
    result = await asyncio.wait_for(sending, 5)
    assert result.status == "failed" and result.code == 503
    assert not bob.report(message.message_id)  # nothing owed after a refusal


async def test_failure_report_after_confirm(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    sending = alice.send_nowait("text/plain", b"never delivered", success_report=True)
    message = await asyncio.wait_for(bob.receive(), 5)
    bob.confirm(message.message_id)
    bob.report(message.message_id, 408, "recipient never came back")
    result = await asyncio.wait_for(sending, 5)
    assert result.status == "failed" and result.code == 408
