"""pyim.ua: the pjsua2 client user agent, with an asyncio API.

pjsua2 itself is imported only when a :class:`Client` starts, so configuration and
the pure helpers (:mod:`~pyim.ua.cpim`, :mod:`~pyim.ua.dialect`) work without it.
"""

from .chat import ChatSession, IncomingCall
from .client import Client, PageResult
from .config import ClientConfig
from .errors import ChatFailed, PageTooLarge, RegistrationError, TooManyCalls, UaError
from .events import (
    BuddyStatus,
    Event,
    IncomingChat,
    PageReceived,
    PageStatus,
    RegistrationChanged,
)

__all__ = [
    "BuddyStatus",
    "ChatFailed",
    "ChatSession",
    "Client",
    "ClientConfig",
    "Event",
    "IncomingCall",
    "IncomingChat",
    "PageReceived",
    "PageResult",
    "PageStatus",
    "PageTooLarge",
    "RegistrationChanged",
    "RegistrationError",
    "TooManyCalls",
    "UaError",
]
