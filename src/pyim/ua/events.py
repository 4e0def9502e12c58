"""Events that a :class:`~pyim.ua.client.Client` yields from ``events()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .chat import ChatSession, IncomingCall


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """A REGISTER ended: ``code`` (0 for a transport error), ``active`` if bound now."""

    code: int
    reason: str
    active: bool


@dataclass(frozen=True, slots=True)
class PageReceived:
    """A page-mode MESSAGE (RFC 3428); for message/cpim, ``text`` is the inner body."""

    sender: str
    content_type: str
    text: str
    cpim_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PageStatus:
    """The final answer to a MESSAGE we sent."""

    message_id: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class BuddyStatus:
    """The presence of a buddy we subscribed to."""

    uri: str
    online: bool
    note: str


@dataclass(frozen=True, slots=True)
class IncomingChat:
    """Someone INVITEs us to a chat: ``await event.accept()`` or ``await event.reject()``."""

    chat: IncomingCall

    @property
    def peer(self) -> str:
        return self.chat.peer

    async def accept(self, timeout: float = 30.0) -> ChatSession:
        return await self.chat.accept(timeout)

    async def reject(self, code: int = 486) -> None:
        await self.chat.reject(code)


Event = RegistrationChanged | PageReceived | PageStatus | BuddyStatus | IncomingChat
