"""Chat legs: the MSRP sessions between the server and users' devices.

A leg is one session with one device, on behalf of one other party: ``(owner, other)``
— alice's INVITE to bob gives the leg ``(alice, bob)``; the server's INVITE to bob's
device on alice's behalf gives ``(bob, alice)``.  Every message that arrives on a leg
goes into the store first (durable), then to the other party's leg.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..msrp.session_events import MessageReceived
from ..sip.chat import ChatSession
from ..sip.uri import NameAddr

log = logging.getLogger(__name__)

IS_COMPOSING = "application/im-iscomposing+xml"

MessageHandler = Callable[["Leg", MessageReceived], Awaitable[None]]


def aor_of(address: NameAddr) -> str:
    """``"Bob" <sip:bob@example.test;transport=tcp>;tag=x`` → ``sip:bob@example.test``."""
    uri = address.uri
    return f"sip:{uri.user}@{uri.host}" if uri.user else f"sip:{uri.host}"


@dataclass(eq=False, slots=True)
class Leg:
    """One open chat session with a device (``owner``'s), for ``other``."""

    owner: str
    other: str
    session: ChatSession
    incoming: bool  # the device INVITEd us
    reader: asyncio.Task[None] | None = None
    storing: int = 0  # messages read on this leg whose store write has not ended

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner, self.other)

    @property
    def open(self) -> bool:
        return not self.session.msrp.closed


class LegTable:
    """The open legs, one per (owner, other); a newer leg replaces an older one."""

    def __init__(self, on_message: MessageHandler, on_closed: Callable[[Leg], None]) -> None:
        self._legs: dict[tuple[str, str], Leg] = {}
        self._on_message = on_message
        self._on_closed = on_closed
        self._closing: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return len(self._legs)

    def get(self, owner: str, other: str) -> Leg | None:
        leg = self._legs.get((owner, other))
        return leg if leg is not None and leg.open else None

    def add(self, leg: Leg) -> Leg:
        old = self._legs.get(leg.key)
        self._legs[leg.key] = leg
        leg.reader = asyncio.ensure_future(self._read(leg))
        if old is not None and old is not leg:
            self._closing.add(asyncio.ensure_future(self.close(old)))
            self._closing = {t for t in self._closing if not t.done()}
        return leg

    async def _read(self, leg: Leg) -> None:
        try:
            async for message in leg.session:
                try:
                    await self._on_message(leg, message)
                except Exception:
                    log.exception("message %s on %s failed", message.message_id, leg.key)
                    leg.session.msrp.confirm(message.message_id, 500, "server error")
        finally:
            if self._legs.get(leg.key) is leg:
                del self._legs[leg.key]
            self._on_closed(leg)

    async def close(self, leg: Leg) -> None:
        if self._legs.get(leg.key) is leg:
            del self._legs[leg.key]
        with contextlib.suppress(Exception):
            await leg.session.close()

    async def close_all(self) -> None:
        for leg in list(self._legs.values()):
            await self.close(leg)
