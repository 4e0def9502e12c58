"""Watching the TLS handshakes of a listener (SIP and MSRP transports).

asyncio runs a server-side handshake before ``connection_made`` and closes a
connection whose handshake fails or times out without a word to the protocol. So
each accepted TLS connection gets a deadline (the handshake timeout and a little
grace): a protocol that by then never got its transport failed its handshake, and is
counted in the listener's ``tls_handshake_failures``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

#: After the handshake timeout, a handshake still not done has failed.
GRACE = 0.5


class Watched(Protocol):
    """A listener's protocol: its transport once connected, its handshake deadline."""

    transport: Any
    handshake: asyncio.TimerHandle | None


W = TypeVar("W", bound=Watched)


class HandshakeWatch:
    """The handshakes in progress on one layer's TLS listeners."""

    def __init__(self, timeout: float, stats: MutableMapping[str, int], what: str) -> None:
        self.timeout = timeout
        self.stats = stats
        self.what = what  # for the log: "SIP tls", "MSRP"
        self._pending: set[Watched] = set()

    def __len__(self) -> int:
        """Accepted TLS connections whose handshake is not over (nor known failed)."""
        return len(self._pending)

    def watch(self, protocol: W) -> W:
        """``protocol`` of a connection just accepted: its handshake has a deadline."""
        loop = asyncio.get_running_loop()
        protocol.handshake = loop.call_later(self.timeout + GRACE, self._lapsed, protocol)
        self._pending.add(protocol)
        return protocol

    def done(self, protocol: Watched) -> None:
        """Its handshake is over (``connection_made``)."""
        if protocol.handshake is not None:
            protocol.handshake.cancel()
            protocol.handshake = None
        self._pending.discard(protocol)

    def close(self) -> None:
        """Stop watching (the layer closes)."""
        for protocol in list(self._pending):
            self.done(protocol)

    def _lapsed(self, protocol: Watched) -> None:
        protocol.handshake = None
        self._pending.discard(protocol)
        if protocol.transport is None:  # asyncio closed it: failed or timed out
            self.stats["tls_handshake_failures"] += 1
            log.info("%s: a TLS handshake failed or timed out", self.what)
