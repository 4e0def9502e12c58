"""Streaming: incoming messages handed out piece by piece (SessionConfig.stream_above)
and outgoing messages whose body is written as it comes (open_stream)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from pyim.msrp.session import SessionConfig
from pyim.msrp.session_events import MessageAborted, StreamData, StreamEnded, StreamStarted
from pyim.msrp.transport import EndpointConfig, MsrpEndpoint, Session


async def connected(config_a: SessionConfig, config_b: SessionConfig) -> tuple[Session, Session]:
    ea = await MsrpEndpoint.create(config=EndpointConfig(session=config_a))
    eb = await MsrpEndpoint.create(config=EndpointConfig(session=config_b))
    a, b = ea.new_session(), eb.new_session()
    await asyncio.gather(a.start(b.path, active=True), b.start(a.path, active=False))
    return a, b


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Session, Session]]:
    a, b = await connected(SessionConfig(chunk_size=4096), SessionConfig(stream_above=1000))
    yield a, b
    await a.endpoint.close()
    await b.endpoint.close()


def collector(session: Session) -> tuple[list[object], asyncio.Event]:
    events: list[object] = []
    done = asyncio.Event()

    def on_stream(event: object) -> None:
        events.append(event)
        if isinstance(event, StreamEnded | MessageAborted):
            done.set()

    session.on_stream = on_stream
    return events, done


async def test_large_incoming_message_comes_out_in_pieces(pair: tuple[Session, Session]) -> None:
    alice, bob = pair
    events, done = collector(bob)
    body = os.urandom(100_000)
    result = await alice.send("application/octet-stream", body, success_report=True)
    await asyncio.wait_for(done.wait(), 5)
    assert result.status == "delivered"
    started = events[0]
    assert isinstance(started, StreamStarted) and started.total == len(body)
    pieces = [e for e in events if isinstance(e, StreamData)]
    assert len(pieces) > 10  # it came as it arrived, never whole
    assert b"".join(p.data for p in sorted(pieces, key=lambda p: p.offset)) == body
    assert isinstance(events[-1], StreamEnded) and events[-1].total == len(body)
    small = await alice.send("text/plain", b"short ones are whole")
    assert small.ok and (await asyncio.wait_for(bob.receive(), 5)).body == b"short ones are whole"


@pytest.mark.parametrize("declared", [True, False])
async def test_outgoing_stream_written_as_it_comes(declared: bool) -> None:
    alice, bob = await connected(SessionConfig(chunk_size=1024), SessionConfig())
    parts = [os.urandom(700) for _ in range(20)]
    total = sum(map(len, parts)) if declared else None
    mid, future = alice.open_stream("application/octet-stream", total=total, success_report=True)
    for part in parts:
        alice.stream_write(mid, part)
        await asyncio.sleep(0.005)
        assert alice.engine.stream_backlog(mid) < 2048  # sent bytes are not kept
    alice.stream_end(mid)
    got = await asyncio.wait_for(bob.receive(), 5)
    assert got.message_id == mid and got.body == b"".join(parts)
    assert (await asyncio.wait_for(future, 5)).status == "delivered"
    await alice.endpoint.close()
    await bob.endpoint.close()


async def test_stream_relayed_piece_by_piece() -> None:
    """What a server does: a streamed incoming message goes out as a stream at once."""
    alice, server_in = await connected(
        SessionConfig(chunk_size=2048), SessionConfig(stream_above=0)
    )
    server_out, bob = await connected(SessionConfig(chunk_size=2048), SessionConfig())
    out: dict[str, str] = {}

    def relay(event: object) -> None:
        if isinstance(event, StreamStarted):
            out[event.message_id], _ = server_out.open_stream(
                event.content_type or "application/octet-stream", total=event.total
            )
        elif isinstance(event, StreamData):
            server_out.stream_write(out[event.message_id], event.data)
        elif isinstance(event, StreamEnded):
            server_out.stream_end(out[event.message_id])

    server_in.on_stream = relay
    body = os.urandom(300_000)
    sent = await alice.send("application/octet-stream", body)
    assert sent.ok
    got = await asyncio.wait_for(bob.receive(), 10)
    assert got.body == body
    for session in (alice, server_in, server_out, bob):
        await session.endpoint.close()
