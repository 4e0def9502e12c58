"""The server's Prometheus metrics (``prometheus_client``), in a registry of its own so
that several servers in one process (tests) do not collide."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

#: The listeners' counters that are errors (bad input, refused or dropped connections).
LISTENER_ERRORS = frozenset(
    {
        "parse_errors",
        "udp_errors",
        "stream_errors",
        "connections_refused",
        "closed_slow_reader",
        "closed_bad_input",
        "closed_timeout",
        "tls_handshake_failures",
    }
)

StatsSource = Callable[[], Mapping[str, int]]


class ListenerErrors(Collector):
    """``pyim_listener_errors_total{listener, kind}``, read at scrape time from the
    counters the SIP transport layer and the MSRP endpoint keep themselves."""

    def __init__(self) -> None:
        self.sources: dict[str, StatsSource] = {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "pyim_listener_errors",
            "Bad input and closed connections per listener",
            labels=["listener", "kind"],
        )
        for listener, source in list(self.sources.items()):
            stats = dict(source())  # a copy: the event loop's thread updates them
            for kind in sorted(LISTENER_ERRORS):
                family.add_metric([listener, kind], float(stats.get(kind, 0)))
        yield family


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
        self.queued = Gauge(
            "pyim_queue_depth",
            "Messages waiting in the store's queue, every recipient and every server"
            " process sharing the store (read every few seconds)",
            registry=r,
        )
        self.delivered = Counter(
            "pyim_messages_delivered", "Messages acknowledged by a device", registry=r
        )
        self.notifications = Counter(
            "pyim_notifications_sent", "Delivery notifications sent", ["kind"], registry=r
        )
        self.failures = Counter(
            "pyim_failures", "Refused or failed operations", ["reason"], registry=r
        )
        self.listener_errors = ListenerErrors()
        r.register(self.listener_errors)
        self._server: object | None = None

    def watch_listener(self, name: str, source: StatsSource) -> None:
        """Report ``source()``'s error counters as ``listener=name``."""
        self.listener_errors.sources[name] = source

    def serve(self, host: str, port: int) -> None:
        """Start the HTTP endpoint (a thread of prometheus_client)."""
        self._server = start_http_server(port, addr=host, registry=self.registry)

    def stop(self) -> None:
        server = self._server
        self._server = None
        if isinstance(server, tuple):  # (WSGIServer, Thread) from prometheus_client >= 0.17
            server[0].shutdown()
            server[0].server_close()
