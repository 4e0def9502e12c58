"""What an MSRP session tells its user (sans-IO events)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .frame import Headers


@dataclass(slots=True)
class MessageReceived:
    """A complete incoming message, reassembled from its chunks."""

    message_id: str
    content_type: str | None
    body: bytes
    headers: Headers = field(default_factory=Headers)


@dataclass(slots=True)
class MessageAborted:
    """The sender aborted an incoming message (``#`` flag) after ``received`` bytes."""

    message_id: str
    received: int


@dataclass(slots=True)
class MessageSent:
    """Every chunk of an outgoing message was accepted by the next hop (or needs no answer)."""

    message_id: str


@dataclass(slots=True)
class MessageDelivered:
    """Success-Report(s) covering the whole outgoing message arrived."""

    message_id: str


@dataclass(slots=True)
class MessageFailed:
    """An outgoing message failed: an error response, a failure REPORT or a timeout (408)."""

    message_id: str
    code: int
    reason: str


@dataclass(slots=True)
class StreamStarted:
    """An incoming message is streamed (SessionConfig.stream_above): its body follows
    as StreamData, then StreamEnded (or MessageAborted)."""

    message_id: str
    content_type: str | None
    headers: Headers
    total: int | None


@dataclass(slots=True)
class StreamData:
    """A piece of a streamed message's body at ``offset`` (bytes from its start)."""

    message_id: str
    offset: int
    data: bytes


@dataclass(slots=True)
class StreamEnded:
    """A streamed message is complete (``total`` bytes)."""

    message_id: str
    total: int


SessionEvent = (
    MessageReceived
    | MessageAborted
    | MessageSent
    | MessageDelivered
    | MessageFailed
    | StreamStarted
    | StreamData
    | StreamEnded
)
