"""Chat sessions of a client: a pjsua2 call (pjsua dialect) carrying a pyim.msrp session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..msrp.session_events import MessageReceived
from ..msrp.transport import DeliveryResult, Session
from ..sip.sdp import MsrpAnswer
from .errors import ChatFailed

if TYPE_CHECKING:
    from .client import Client


@dataclass(eq=False)
class CallWatch:
    """What the asyncio side knows of one pjsua2 call (by handle)."""

    handle: int
    state: str = "null"
    code: int = 0
    reason: str = ""
    offer: str = ""
    answer: str = ""
    problems: list[str] = field(default_factory=list)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    session: ChatSession | None = None

    def update(self, state: str, code: int, reason: str, offer: str, answer: str) -> None:
        self.state, self.code, self.reason = state, code, reason
        self.offer = offer or self.offer
        self.answer = answer or self.answer
        if state == "confirmed":
            self.confirmed.set()
        elif state == "disconnected":
            self.disconnected.set()

    async def settled(self, timeout: float) -> bool:
        """Wait for CONFIRMED (True) or DISCONNECTED (False); TimeoutError after ``timeout``."""
        waits = [
            asyncio.ensure_future(self.confirmed.wait()),
            asyncio.ensure_future(self.disconnected.wait()),
        ]
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waits:
                waiter.cancel()
        if not done:
            raise TimeoutError
        return self.confirmed.is_set() and not self.disconnected.is_set()


class ChatSession:
    """One chat: ``await send(text)``, ``async for message in session``, ``await close()``."""

    def __init__(
        self, client: Client, watch: CallWatch, peer: str, msrp: Session, *, outgoing: bool
    ) -> None:
        self.client = client
        self.watch = watch
        self.peer = peer
        self.msrp = msrp
        self.outgoing = outgoing
        self.closed = asyncio.Event()
        watch.session = self

    @property
    def handle(self) -> int:
        return self.watch.handle

    async def send(
        self,
        content: str | bytes,
        content_type: str = "text/plain",
        *,
        success_report: bool = True,
    ) -> DeliveryResult:
        """Send a message over MSRP; the result says whether it was delivered."""
        if self.closed.is_set():
            raise ChatFailed(f"the chat with {self.peer} is closed")
        body = content.encode() if isinstance(content, str) else content
        try:
            return await self.msrp.send(content_type, body, success_report=success_report)
        except ConnectionError as exc:
            raise ChatFailed(f"the chat with {self.peer} is closed ({exc})") from None

    async def receive(self) -> MessageReceived:
        """The next message; ``ConnectionError`` once the session has ended."""
        return await self.msrp.receive()

    def __aiter__(self) -> AsyncIterator[MessageReceived]:
        return self.msrp.__aiter__()

    async def close(self, timeout: float = 5.0) -> None:
        """BYE (unless the peer hung up) and end the MSRP session; idempotent."""
        if not self.closed.is_set():
            self.closed.set()
            await self.client._hangup(self.watch, timeout)
        await self.msrp.close()

    async def _ended_by_peer(self) -> None:
        self.closed.set()
        await self.msrp.close()


class IncomingCall:
    """A chat someone INVITEd us to, ringing: ``accept()`` or ``reject()``."""

    def __init__(
        self, client: Client, watch: CallWatch, peer: str, msrp: Session, answer: MsrpAnswer
    ) -> None:
        self.client = client
        self.watch = watch
        self.peer = peer
        self.msrp = msrp
        self.negotiated = answer
        self.decided = False

    async def accept(self, timeout: float = 30.0) -> ChatSession:
        """200 OK with our m=message line; then MSRP per a=setup. Raises ChatFailed."""
        if self.decided:
            raise ChatFailed("this chat invitation was already answered")
        self.decided = True
        return await self.client._accept(self, timeout)

    async def reject(self, code: int = 486) -> None:
        if self.decided:
            return
        self.decided = True
        with contextlib.suppress(Exception):
            await self.client._reject(self, code)
        await self.msrp.close()
