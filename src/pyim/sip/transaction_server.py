"""Server transactions (RFC 3261 §17.2, amended by RFC 6026): data, request
matching (§17.2.3) and response routing (§18.2.1, §18.2.2, RFC 3581).

As in :mod:`pyim.sip.transaction_client`, the transaction runs its machine through
the layer that owns the timers and the outbox; a server transaction keeps a
reference to it so that the TU can call :meth:`ServerTransaction.respond`.

Matching.  A request whose top Via branch starts with the magic cookie
``z9hG4bK`` matches by (branch, sent-by host, sent-by port, method), ACK counting
as INVITE.  Without the cookie (an RFC 2543 peer) it matches by Request-URI, From
tag, Call-ID, CSeq number, method (ACK counting as INVITE) and top Via, and the
layer then compares the To tag: with the request's To tag for a retransmission or
a CANCEL, with the tag of the response sent for an ACK (§17.2.3).  Both forms are
keys of one table; they cannot collide (different first element).
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .headers import Via, header_key, split_header_list
from .message import SipRequest, SipResponse
from .transaction_client import (
    MAGIC_COOKIE,
    RETX,
    WAIT,
    Destination,
    Transaction,
    TransactionState,
    TransactionStateError,
)

if TYPE_CHECKING:
    from .transaction import TransactionLayer

_VIA_ADDED = frozenset({"received", "rport"})
TRYING_TIMER = "100"
S = TransactionState


class AckOutcome(enum.Enum):
    """What an ACK matched to an INVITE server transaction comes to."""

    ABSORBED = "absorbed"  # the ACK of our non-2xx (or a retransmission of it)
    TO_TU = "to TU"  # Accepted: an ACK for the 2xx, the TU's (RFC 6026 §8.7)
    EARLY = "early"  # no final response sent yet: discarded


@dataclass(slots=True, eq=False)
class ServerTransaction(Transaction):
    """One server transaction and its two machines (INVITE: Figure 7 + RFC 6026;
    non-INVITE: Figure 8).

    ``source`` is where the request came from; ``destination`` where responses go
    (§18.2.2, computed once).  ``last_response``/``last_data`` are the latest
    response sent and its bytes, re-sent when the request is retransmitted.
    ``rfc2543`` tells that the request had no magic cookie (see the module doc).
    The layer packs it once it has its final response (:meth:`Transaction.pack`).
    """

    source: Destination
    layer: TransactionLayer = field(repr=False)
    last_data: bytes | None = None
    rfc2543: bool = False

    def respond(self, response: SipResponse, now: float) -> None:
        """Send ``response`` through this transaction (the TU's entry point).

        Provisional responses in Trying/Proceeding, then one final response; in
        Accepted (an INVITE answered 2xx) further 2xx, which the TU retransmits
        itself (RFC 6026).  Anything else raises :class:`TransactionStateError`.
        """
        status = response.status
        if not 100 <= status <= 699:
            raise ValueError(f"bad status code {status}")
        layer = self.layer
        timers = layer.timers
        state = self.state
        if self.is_invite:
            if state is S.PROCEEDING:
                self._send(response)
                layer._cancel_timer(self, RETX)  # the 100 Trying delay
                if 200 <= status < 300:
                    self.state = S.ACCEPTED
                    layer._schedule(self, WAIT, "L", timers.timeout, now)
                    layer._compact_later(self)
                elif status >= 300:
                    self.state = S.COMPLETED
                    if not self.reliable:
                        self.interval = timers.T1
                        layer._schedule(self, RETX, "G", self.interval, now)
                    layer._schedule(self, WAIT, "H", timers.timeout, now)
                    layer._compact_later(self)
                return
            if state is S.ACCEPTED and 200 <= status < 300:
                self._send(response)
                return
        elif state is S.TRYING or state is S.PROCEEDING:
            self._send(response)
            if status < 200:
                self.state = S.PROCEEDING
            elif self.reliable:
                self.state = S.COMPLETED
                layer._schedule(self, WAIT, "J", 0.0, now)
            else:
                self.state = S.COMPLETED
                layer._schedule(self, WAIT, "J", timers.timeout, now)
                layer._compact_later(self)  # kept 64*T1 for retransmissions
            return
        raise TransactionStateError(f"cannot send {status} in state {state.value}")

    @property
    def response_to_tag(self) -> str | None:
        """The To tag of the final response sent, for matching an RFC 2543 ACK."""
        if self.last_response is None:
            return None
        return self.last_response.to.tag

    # -- the machine (driven by the layer) ------------------------------------------------

    def start(self, now: float) -> None:
        """A new INVITE: 100 Trying now, after ``trying_delay``, or never (§17.2.1)."""
        delay = self.layer.timers.trying_delay
        if self.is_invite and delay is not None:
            if delay <= 0:
                self.send_trying()
            else:
                self.layer._schedule(self, RETX, TRYING_TIMER, delay, now)

    def send_trying(self) -> None:
        if self.last_response is None and self.state is S.PROCEEDING:
            self._send(trying_response(self.request))

    def on_retransmission(self, now: float) -> None:
        """The request came again: re-send the latest response (§17.2.1, §17.2.2)."""
        layer = self.layer
        layer.stats["retransmissions_absorbed"] += 1
        state = self.state
        if self.is_invite:
            if state is S.PROCEEDING:
                if self.last_data is not None:
                    self._resend()
                elif layer.timers.trying_delay is not None:
                    layer._cancel_timer(self, RETX)  # quench it now rather than later
                    self.send_trying()
            elif state is S.COMPLETED:
                self._resend()
            # Confirmed: absorbed.  Accepted: absorbed, the TU owns the 2xx (RFC 6026 §8.7)
        elif state is S.PROCEEDING or state is S.COMPLETED:
            self._resend()

    def on_ack(self, now: float) -> AckOutcome:
        state = self.state
        if state is S.COMPLETED:
            self.state = S.CONFIRMED
            layer = self.layer
            layer._cancel_timer(self, RETX)
            layer._schedule(self, WAIT, "I", 0.0 if self.reliable else layer.timers.T4, now)
            return AckOutcome.ABSORBED
        if state is S.ACCEPTED:
            return AckOutcome.TO_TU
        if state is S.CONFIRMED:
            self.layer.stats["retransmissions_absorbed"] += 1
            return AckOutcome.ABSORBED
        return AckOutcome.EARLY

    def retransmit(self, now: float) -> None:
        """Timer G fired: send the final response again, interval doubled up to T2."""
        self._resend()
        self.interval = min(2 * self.interval, self.layer.timers.T2)
        self.layer._schedule(self, RETX, "G", self.interval, now)

    def _send(self, response: SipResponse) -> None:
        if self._packed is not None:  # a further 2xx in Accepted: the request back first
            self._unpack()
        self.last_response = response
        self.last_data = response.encode()
        self.layer._emit(response, self.last_data, self.destination, self)

    def _resend(self) -> None:
        if self.last_response is not None and self.last_data is not None:
            self.layer._emit(self.last_response, self.last_data, self.destination, self)


def via_port(via: Via) -> int:
    """The sent-by port, or the transport's default."""
    return via.sent_by[1]


def _via_identity(via: Via) -> tuple[object, ...]:
    params = tuple((k.lower(), v) for k, v in via.params if k.lower() not in _VIA_ADDED)
    return (via.transport.upper(), via.host.lower(), via.port, params)


def server_key(request: SipRequest, method: str | None = None) -> tuple[object, ...]:
    """The §17.2.3 matching key of ``request`` (``method`` overrides its method).

    Raises :class:`~pyim.sip.headers.HeaderError` (a ``ValueError``) when a header
    the key needs is missing or broken.
    """
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    via = request.top_via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, via.host.lower(), via_port(via), method)
    return (
        "2543",
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        method,
        _via_identity(via),
    )


def is_rfc2543_key(key: tuple[object, ...]) -> bool:
    return key[0] == "2543"


def _same_address(a: str, b: str) -> bool:
    if a.lower() == b.lower():
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def stamp_via(request: SipRequest, source: Destination) -> Via:
    """Add ``received``/``rport`` to the request's top Via when §18.2.1 / RFC 3581 say so.

    ``received`` when the sent-by host is not the source address (a name, or another
    address); ``rport`` given a value (the source port) when present without one, and
    then ``received`` always (RFC 3581 §4).  Returns the (possibly new) top Via; the
    request's headers are rewritten only when something changed.
    """
    via = request.top_via
    new = via
    if via.rport is True:
        new = new.with_param("rport", str(source.port)).with_param("received", source.host)
    elif not _same_address(via.host, source.host):
        new = new.with_param("received", source.host)
    if new is not via:
        replace_top_via(request, new)
    return new


def replace_top_via(request: SipRequest, via: Via) -> None:
    """Replace the first Via value in place, leaving the others as they are."""
    headers = request.headers
    index = next(i for i, (name, _) in enumerate(headers.items()) if header_key(name) == "via")
    line = headers.remove_first("Via")
    assert line is not None
    values = split_header_list(line) if "," in line else [line]
    values[0] = str(via)
    headers.insert(index, "Via", ", ".join(values))


def response_destination(via: Via, source: Destination) -> Destination:
    """Where responses to a request go (§18.2.2, RFC 3581 §4).

    Reliable transport: back on the connection the request came in on (``source``
    with its ``conn_id``; the transport reconnects to it if that connection is gone).
    Unreliable: ``maddr`` if present (sent-by port or 5060); else the ``received``
    address (the sent-by host otherwise) and the ``rport`` port when it has a value,
    else the sent-by port or 5060.  The host may be a name (RFC 3263 is the
    transport's business).
    """
    if source.reliable:
        return source
    maddr = via.maddr
    if maddr:
        return Destination(source.transport, maddr, via_port(via))
    host = via.received or via.host
    rport = via.rport
    port = rport if isinstance(rport, int) and not isinstance(rport, bool) else via_port(via)
    if host == source.host and port == source.port:
        return source  # the usual case: one object less per transaction
    return Destination(source.transport, host, port)


def trying_response(request: SipRequest) -> SipResponse:
    """The 100 (Trying) an INVITE server transaction sends (§17.2.1, §8.2.6.1).

    No To tag; ``SipRequest.response`` copies the Timestamp header of a 100.
    """
    return request.response(100)


__all__ = [
    "AckOutcome",
    "ServerTransaction",
    "is_rfc2543_key",
    "replace_top_via",
    "response_destination",
    "server_key",
    "stamp_via",
    "trying_response",
    "via_port",
]
