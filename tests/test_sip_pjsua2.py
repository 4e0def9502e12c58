"""Interop: a pjsua2 client chats with pyim over SIP (pjsua dialect) and MSRP.

``tests/pjsua_chat_client.py`` runs as a subprocess (pjsua2 aborts the whole
process on misuse, so it is kept out of pytest's): it INVITEs the pyim
:class:`~pyim.sip.chat.ChatStack` started here with an offer of an inactive
``m=audio`` line plus ``m=message``, sends messages over MSRP with success
reports, expects each echoed back, and hangs up with BYE. This side accepts the
chat, echoes every message, and checks what it saw on the wire.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pyim.msrp.transport import MsrpEndpoint
from pyim.sip.chat import ChatSession, ChatStack
from pyim.sip.sdp import Direction, SessionDescription
from pyim.sip.stack import IncomingRequest, SipStack, StackConfig

CLIENT = Path(__file__).resolve().parent / "pjsua_chat_client.py"
PIN = "pjsua2-python==2.15.1.post1"
CLIENT_TIMEOUT = 60


def require_pjsua2() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import pjsua2.pjsua2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        pytest.fail(
            f"pjsua2 is not importable ({last}): pip install {PIN} (scripts/build_pjsip.sh)"
        )


@dataclass
class Bob:
    """A pyim chat peer that records INVITE offers and echoes every message."""

    chat: ChatStack
    offers: list[SessionDescription] = field(default_factory=list)
    sessions: list[ChatSession] = field(default_factory=list)
    echoed: int = 0

    def record(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        if request.method == "INVITE" and request.to.tag is None and request.body:
            self.offers.append(SessionDescription.parse(request.body))
        self.chat.handle(incoming)

    async def serve(self) -> None:
        while True:
            session = await self.chat.accept()
            self.sessions.append(session)
            async for message in session:
                result = await session.send(message.body, message.content_type)
                assert result.ok, result
                self.echoed += 1


@pytest.fixture
async def bob() -> AsyncIterator[Bob]:
    sip = SipStack(StackConfig(host="127.0.0.1"))
    await sip.start(udp=0, tcp=0)
    msrp = await MsrpEndpoint.create("127.0.0.1")
    peer = Bob(ChatStack(sip, msrp, user="bob"))
    sip.on_request = peer.record
    server = asyncio.create_task(peer.serve())
    yield peer
    server.cancel()
    await peer.chat.close()
    await msrp.close()
    await sip.close()


async def run_client(target: str, transport: str, messages: int, size: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENT),
        "--target",
        target,
        "--transport",
        transport,
        "--messages",
        str(messages),
        "--size",
        str(size),
        "--timeout",
        str(CLIENT_TIMEOUT),
        "--log-level",
        "4",  # SIP messages in full on stderr, shown if the test fails
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLIENT_TIMEOUT + 45)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("the pjsua2 client did not end in time")
    stderr = err.decode(errors="replace")
    tail = "\n".join(stderr.splitlines()[-150:])
    assert proc.returncode == 0, f"client exit {proc.returncode}\n{out.decode()}\n{tail}"
    lines = out.decode().splitlines()
    assert len(lines) == 1, f"stdout should be one JSON line:\n{out.decode()}\n{tail}"
    result: dict[str, Any] = json.loads(lines[0])
    return result


@pytest.mark.parametrize(
    ("transport", "messages", "size"),
    [("udp", 20, 200), ("tcp", 20, 200), ("udp", 3, 50_000), ("tcp", 3, 50_000)],
)
async def test_pjsua2_client_chats_with_pyim(
    bob: Bob, transport: str, messages: int, size: int
) -> None:
    require_pjsua2()
    host, port = bob.chat.sip.local_address(transport)
    target = f"sip:bob@{host}:{port}" + (";transport=tcp" if transport == "tcp" else "")

    result = await run_client(target, transport, messages, size)

    # the client's view: every message delivered (success report) and echoed intact
    assert result["ok"], result
    assert result["delivered"] == messages
    assert result["echoed"] == messages
    assert result["echo_intact"] is True
    assert result["answer_audio_inactive"] is True
    assert result["disconnected"] is True
    assert result["states"][-1] == "DISCONNECTED"
    assert result["offer_bytes"] < 1024

    # pyim's view: the pjsua dialect was offered (inactive audio before m=message) ...
    assert len(bob.offers) == 1
    offer = bob.offers[0]
    kinds = [media.media for media in offer.media]
    assert kinds == ["audio", "message"], kinds
    assert offer.direction_of(offer.media[0]) is Direction.INACTIVE
    assert offer.media[0].formats == ["0"]
    assert offer.media[1].proto == "TCP/MSRP"
    # ... and answered in kind
    assert len(bob.sessions) == 1
    session = bob.sessions[0]
    answer = session.local_sdp
    assert [media.media for media in answer.media] == ["audio", "message"]
    assert answer.media[0].port == 9
    assert answer.direction_of(answer.media[0]) is Direction.INACTIVE
    assert bob.echoed == messages
    # the BYE closed the session
    await asyncio.wait_for(session.closed.wait(), 5)
    assert not bob.chat._sessions
