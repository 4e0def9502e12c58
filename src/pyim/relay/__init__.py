"""pyim.relay: the MSRP relay (RFC 4976) that lets clients behind NAT reach each other.

``pyim relay --config relay.toml`` runs it as a daemon; :class:`Relay` embeds it::

    relay = Relay(config)
    await relay.start()        # relay.uris: where clients AUTH
    ...
    await relay.stop()
"""

from __future__ import annotations

from .auth import AuthService, Grant
from .config import AuthSettings, ConfigError, Limits, Listener, RelayConfig, load_config
from .server import Relay, forward_impl

__all__ = [
    "AuthService",
    "AuthSettings",
    "ConfigError",
    "Grant",
    "Limits",
    "Listener",
    "Relay",
    "RelayConfig",
    "forward_impl",
    "load_config",
]
