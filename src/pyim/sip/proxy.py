"""A minimal stateful proxy step (RFC 3261 §16) over the embedded registrar.

What the application server needs to reach a registered user without Kamailio:
a request for an AOR of our domain goes to its live contacts, best ``q`` first,
one after the other, until one answers 2xx or 6xx (§16.6, sequential search);
provisional and final responses come back through our server transaction with
our Via removed (§16.7).  Dialog-creating requests are record-routed, so in-dialog
requests come through us and are loose-routed on (§16.4, §16.12); the ACK of a 2xx
is forwarded statelessly.  A CANCEL from upstream cancels the pending branch.
"""

from __future__ import annotations

import logging

from .message import SipRequest, SipResponse
from .registrar import Registrar
from .stack import DIALOG_METHODS, IncomingRequest, SipStack
from .transaction import ClientTransaction, Destination
from .uri import NameAddr, SipUri

log = logging.getLogger(__name__)


class Proxy:
    """Forwards requests for registered users; other requests are left to the caller."""

    def __init__(self, stack: SipStack, registrar: Registrar, *, record_route: bool = True):
        self.stack = stack
        self.registrar = registrar
        self.record_route = record_route
        self._branches: dict[tuple[str, int], ClientTransaction] = {}

    # -- what is ours ----------------------------------------------------------------------

    def is_local(self, uri: SipUri) -> bool:
        """Whether ``uri`` names this proxy (one of its listening addresses, bound or
        advertised)."""
        port = uri.port or 5060
        return any(
            uri.host in (host, self.stack.config.host) and port == local_port
            for host, local_port in self.stack.transport.local.values()
        )

    def record_route_uri(self, transport: str) -> NameAddr:
        host, port = self.stack.advertised_address(transport)  # (not a wildcard bind)
        params: tuple[tuple[str, str | None], ...] = (("lr", None),)
        if transport != "udp":
            params = (("transport", transport), ("lr", None))
        return NameAddr(uri=SipUri(scheme="sip", host=host, port=port, params=params))

    # -- entry point -----------------------------------------------------------------------

    async def handle(self, incoming: IncomingRequest) -> bool:
        """Proxy ``incoming`` if it is for a registered user or routed through us.

        Returns False (and does nothing) for a request that is the caller's to answer:
        one addressed to this server itself, or out of dialog for an unknown user.
        """
        request = incoming.request
        routes = request.routes
        if routes and self.is_local(routes[0].uri):
            request.headers.remove_first("Route")  # loose routing: we are done with it
            routes = request.routes
        if request.method == "CANCEL":
            self._cancel(request)
            return True
        if routes or (request.to.tag is not None and not self.is_local(request.uri)):
            await self._forward_in_dialog(incoming)
            return True
        if request.method == "ACK":
            return False
        bindings = self.registrar.lookup(request.uri, self.stack.loop.time())
        if not bindings:
            return False
        targets = [(b.contact.uri, self._hop(b.contact.uri, b.source)) for b in bindings]
        await self.forward(incoming, targets)
        return True

    def _hop(self, uri: SipUri, source: object) -> Destination:
        """Reach a contact through the flow it registered over when there is one (NAT)."""
        if isinstance(source, Destination) and source.reliable:
            return source
        return self.stack.destination_for_uri(uri)

    # -- forwarding ------------------------------------------------------------------------

    async def forward(
        self, incoming: IncomingRequest, targets: list[tuple[SipUri, Destination]]
    ) -> SipResponse | None:
        """Try ``targets`` in order; relay provisional responses and the final one."""
        request = incoming.request
        if request.max_forwards is not None and request.max_forwards <= 0:
            incoming.respond(483)
            return None
        best: SipResponse | None = None
        for uri, destination in targets:
            if incoming.final is not None:  # cancelled upstream meanwhile
                return None
            response = await self._branch(incoming, uri, destination)
            if 200 <= response.status < 300 or response.status >= 600:
                best = response
                break
            if best is None or _rank(response) < _rank(best):
                best = response
        if best is None:
            incoming.respond(480)
            return None
        self._relay(incoming, best)
        return best

    async def _branch(
        self, incoming: IncomingRequest, uri: SipUri, destination: Destination
    ) -> SipResponse:
        request = self._copy(incoming.request, uri, destination.transport)
        key = (request.call_id, request.cseq.seq)

        def provisional(response: SipResponse) -> None:
            if response.status > 100:
                self._relay(incoming, response)

        tx, future = self.stack.start_transaction(request, destination, provisional, proxied=True)
        if request.method == "INVITE":
            self._branches[key] = tx
        try:
            return await future
        finally:
            self._branches.pop(key, None)

    def _copy(self, request: SipRequest, uri: SipUri, transport: str) -> SipRequest:
        """The request to forward (§16.6): new Request-URI, Max-Forwards - 1, Record-Route."""
        headers = request.headers.copy()
        forwards = request.max_forwards
        headers.set("Max-Forwards", str(69 if forwards is None else forwards - 1))
        if self.record_route and request.method in DIALOG_METHODS:
            headers.insert(0, "Record-Route", str(self.record_route_uri(transport)))
        return SipRequest(request.method, uri, headers, request.body)

    async def _forward_in_dialog(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        destination = self.stack.destination_for(request)
        headers = request.headers.copy()
        forwards = request.max_forwards
        headers.set("Max-Forwards", str(69 if forwards is None else forwards - 1))
        forward = SipRequest(request.method, request.uri, headers, request.body)
        if request.method == "ACK":
            self.stack.forward_stateless(forward, destination)
            return
        _, future = self.stack.start_transaction(forward, destination, proxied=True)
        self._relay(incoming, await future)

    def _relay(self, incoming: IncomingRequest, response: SipResponse) -> None:
        """Pass a downstream response upstream, without our Via (§16.7)."""
        if incoming.final is not None or incoming.transaction is None:
            return
        headers = response.headers.copy()
        headers.remove_first("Via")
        relayed = SipResponse(response.status, response.reason, headers, response.body)
        self.stack.respond(incoming, relayed, relayed=True)

    def _cancel(self, cancel: SipRequest) -> None:
        tx = self._branches.get((cancel.call_id, cancel.cseq.seq))
        if tx is not None:
            self.stack.cancel(tx)


def _rank(response: SipResponse) -> int:
    """§16.7 step 6, simplified: 6xx, then 2xx… here lower is better among failures."""
    status = response.status
    if status in (401, 407):
        return 0
    if 300 <= status < 400:
        return 1
    if status in (408, 503):
        return 3
    return 2
