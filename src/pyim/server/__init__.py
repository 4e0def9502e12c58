"""pyim.server: the IM application server (``pyim server``).

:class:`~pyim.server.app.ImServer` holds the SIP front (registrar, chat sessions,
page mode), the MSRP legs and the store-and-forward queue; ``pyim.server.daemon`` runs
it with a TOML config, signals, structured logs and Prometheus metrics.
"""

from __future__ import annotations

from .config import ConfigError, Limits, ServerConfig, load_config

__all__ = ["ConfigError", "Limits", "ServerConfig", "load_config"]
