"""The server's Prometheus metrics (``prometheus_client``), in a registry of its own so
that several servers in one process (tests) do not collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class Metrics:
    """Counters and gauges of one server; ``serve(host, port)`` exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("pyim_sessions", "MSRP chat legs open", registry=r)
        self.registered = Gauge("pyim_registered_contacts", "Registered contacts", registry=r)
        self.messages_in = Counter(
            "pyim_messages_in", "Messages accepted from senders", ["mode"], registry=r
        )
        self.messages_out = Counter(
            "pyim_messages_out", "Messages delivered to devices", ["mode"], registry=r
        )
        self.stored = Counter("pyim_messages_stored", "Messages queued durably", registry=r)
        self.queued = Gauge("pyim_queue_depth", "Messages waiting for their recipient", registry=r)
        self.delivered = Counter(
            "pyim_messages_delivered", "Messages acknowledged by a device", registry=r
        )
        self.notifications = Counter(
            "pyim_notifications_sent", "Delivery notifications sent", ["kind"], registry=r
        )
        self.failures = Counter(
            "pyim_failures", "Refused or failed operations", ["reason"], registry=r
        )
        self.listener_errors = Counter(
            "pyim_listener_errors", "Bad input and closes per listener", ["listener"], registry=r
        )
        self._server: object | None = None

    def serve(self, host: str, port: int) -> None:
        """Start the HTTP endpoint (a thread of prometheus_client)."""
        self._server = start_http_server(port, addr=host, registry=self.registry)

    def stop(self) -> None:
        server = self._server
        self._server = None
        if isinstance(server, tuple):  # (WSGIServer, Thread) from prometheus_client >= 0.17
            server[0].shutdown()
            server[0].server_close()
