"""Client transactions (RFC 3261 §17.1, amended by RFC 6026), and the small value
types every part of the transaction layer shares.

A transaction runs its own state machine, but the
:class:`~pyim.sip.transaction.TransactionLayer` owns what it acts through: the
tables, the timer heap, the outbox and the events.  The machine's methods take the
layer (a client transaction keeps no reference to it).  Nothing here imports the
layer at run time, so :mod:`pyim.sip.transaction_server` builds on this module and
the layer on both.

- :class:`Destination` (alias :data:`Peer`): where a message goes or came from.
- :class:`TimerConfig`: T1, T2, T4 and the timers derived from them (§17, Table 4).
- :class:`TransactionState`: the states of all four machines.
- :class:`ClientTransaction`: one client transaction (``__slots__``, no asyncio) and
  its two machines (INVITE: Figure 5 + RFC 6026; non-INVITE: Figure 6).
- :func:`build_ack` (§17.1.1.3, the ACK of a non-2xx final response) and
  :func:`build_cancel` (§9.1).
- :func:`new_branch`: ``z9hG4bK`` + 64 random bits, randomness injectable.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .message import PackedMessage, SipHeaders, SipRequest, SipResponse, unpack_message
from .uri import SipUri

if TYPE_CHECKING:
    from .transaction import TransactionLayer

MAGIC_COOKIE = "z9hG4bK"
UNRELIABLE = frozenset({"udp"})

# The two timer slots of a transaction: RETX (A, E, G and the 100 Trying delay) and
# WAIT (B, F, H, D, K, I, J, L, M and the §9.1 CANCEL wait).
RETX = 0
WAIT = 1


class TransactionStateError(Exception):
    """The TU asked for something the transaction's state does not allow."""


def new_branch(randbits: Callable[[int], int] = secrets.randbits) -> str:
    """A Via branch with the RFC 3261 magic cookie (§8.1.1.7) and 64 random bits.

    ``randbits`` is injectable for deterministic tests (``random.Random(1).getrandbits``).
    """
    return f"{MAGIC_COOKIE}{randbits(64):016x}"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a message goes, or where one came from.

    ``transport`` is ``"udp"``, ``"tcp"`` or ``"tls"`` (lower-case); ``conn_id``
    pins an existing stream connection (responses go back on the connection the
    request came in on, §18.2.2).  Same fields as :class:`pyim.sip.transport.Peer`.
    """

    transport: str
    host: str
    port: int
    conn_id: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport not in UNRELIABLE

    @property
    def address(self) -> tuple[str, str, int]:
        return (self.transport, self.host, self.port)


Peer = Destination


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 timer values in seconds (§17.1.1.1, Table 4; RFC 6026 §8.4/§8.7).

    ``trying_delay``: an INVITE server transaction sends ``100 Trying`` when the TU
    has not sent a provisional or final response within this delay (§17.2.1 says
    200 ms); ``0`` sends it at once, ``None`` never (the TU answers itself).
    ``timer_d``: how long a UDP INVITE client transaction absorbs final-response
    retransmissions ("at least 32 s").
    """

    T1: float = 0.5
    T2: float = 4.0
    T4: float = 5.0
    trying_delay: float | None = 0.2
    timer_d: float = 32.0

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J (UDP), L and M, and the CANCEL wait of §9.1."""
        return 64 * self.T1


class TransactionState(enum.Enum):
    """States of the four machines (Figures 5-8, RFC 6026 Figures 5 and 7)."""

    CALLING = "Calling"  # INVITE client
    TRYING = "Trying"  # non-INVITE client and server
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"  # INVITE server: ACK received
    ACCEPTED = "Accepted"  # RFC 6026, INVITE client and server: 2xx seen
    TERMINATED = "Terminated"


S = TransactionState


@dataclass(slots=True, eq=False)
class Transaction:
    """What client and server transactions share.

    ``destination``: where this transaction's messages go (the request for a client
    transaction, the responses for a server transaction).  ``key`` is the matching
    key in the layer's table.  The ``_seq`` fields name the pending heap entry of the
    two timer slots (retransmission; timeout or wait), 0 when none: the layer's heap
    deletes lazily, an entry whose sequence number is no longer here is stale.
    ``interval`` is the current retransmission interval.  ``last_response`` is the
    latest response sent (server) or passed up to the TU (client).

    Once it has its final response the layer packs it (:meth:`pack`): ``request`` and
    ``last_response`` are then kept as tuples of strings and bytes that the cyclic
    GC does not visit, and made into (equal) message objects again on first access.
    """

    request: SipRequest
    destination: Destination
    key: tuple[object, ...]
    state: TransactionState
    is_invite: bool
    retx_seq: int = field(default=0, init=False)
    timeout_seq: int = field(default=0, init=False)
    interval: float = field(default=0.0, init=False)
    last_response: SipResponse | None = field(default=None, kw_only=True)
    _packed: tuple[PackedMessage, PackedMessage | None] | None = field(
        default=None, init=False, repr=False
    )
    _packed_uri: SipUri | None = field(default=None, init=False, repr=False)

    def pack(self) -> None:
        """Keep ``request`` and ``last_response`` packed (see the class doc).

        A transaction that has its final response waits 64*T1 (32 s: timers L and M
        after a 2xx, H, D and J after others) for retransmissions, and needs neither
        message object for that.  A server holds one per session set up in the last
        32 s (some 130,000 at 2,000 calls/s over UDP): as message objects they were
        most of its memory and of what every full GC pass had to visit."""
        if self._packed is not None:
            return
        request = self.request
        response = self.last_response
        self._packed = (request.pack(), None if response is None else response.pack())
        self._packed_uri = request.uri
        del self.request
        del self.last_response

    def _unpack(self) -> None:
        packed, uri = self._packed, self._packed_uri
        assert packed is not None
        request = unpack_message(packed[0], uri)
        assert isinstance(request, SipRequest)
        response = None if packed[1] is None else unpack_message(packed[1])
        assert response is None or isinstance(response, SipResponse)
        self.request = request
        self.last_response = response
        self._packed = None
        self._packed_uri = None

    if not TYPE_CHECKING:  # mypy: the two fields are always there

        def __getattr__(self, name: str) -> Any:
            # called only when normal lookup fails: a packed field, or a real miss
            if name in ("request", "last_response"):
                try:
                    packed = object.__getattribute__(self, "_packed")
                except AttributeError:  # not initialised (yet)
                    packed = None
                if packed is not None:
                    self._unpack()
                    return object.__getattribute__(self, name)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def reliable(self) -> bool:
        return self.destination.reliable

    @property
    def terminated(self) -> bool:
        return self.state is TransactionState.TERMINATED


@dataclass(slots=True, eq=False)
class ClientTransaction(Transaction):
    """One client transaction: the request it sends and what came back.

    ``data`` is the encoded request (retransmitted as is); ``ack``/``ack_data`` the
    ACK of a non-2xx final response (re-sent on each retransmission of it);
    ``last_response`` the latest response passed up.  ``cancel_pending`` records a
    :meth:`~pyim.sip.transaction.TransactionLayer.cancel` asked before any
    provisional response (§9.1: the CANCEL waits for one); ``cancel_transaction`` is
    the CANCEL's own client transaction once sent.
    """

    data: bytes = b""
    ack: SipRequest | None = None
    ack_data: bytes | None = None
    cancel_pending: bool = False
    cancel_transaction: ClientTransaction | None = None

    def on_response(self, layer: TransactionLayer, response: SipResponse, now: float) -> bool:
        """Run the machine on a response matched to this transaction (§17.1.3);
        True when the response goes up to the TU."""
        if self.is_invite:
            return self._invite_response(layer, response, now)
        return self._non_invite_response(layer, response, now)

    def _invite_response(self, layer: TransactionLayer, response: SipResponse, now: float) -> bool:
        status = response.status
        state = self.state
        if state is S.CALLING or state is S.PROCEEDING:
            self.last_response = response
            if status < 200:
                if state is S.CALLING:
                    self.state = S.PROCEEDING
                    layer._cancel_timer(self, RETX)
                    layer._cancel_timer(self, WAIT)  # timer B runs in Calling only
                if self.cancel_pending:
                    layer._send_cancel(self, now)
                return True
            self.cancel_pending = False
            layer._cancel_timer(self, RETX)
            if status < 300:  # RFC 6026: Accepted, where 2xx retransmissions go up
                self.state = S.ACCEPTED
                layer._schedule(self, WAIT, "M", layer.timers.timeout, now)
                layer._compact_later(self)  # 32 s with nothing to send
            else:
                self.state = S.COMPLETED
                ack = build_ack(self.request, response)
                self.ack = ack
                self.ack_data = ack.encode()
                layer._emit(ack, self.ack_data, self.destination, self)
                delay = 0.0 if self.reliable else layer.timers.timer_d
                layer._schedule(self, WAIT, "D", delay, now)
            return True
        if state is S.COMPLETED:
            if status >= 300 and self.ack is not None and self.ack_data is not None:
                layer.stats["retransmissions_absorbed"] += 1
                layer._emit(self.ack, self.ack_data, self.destination, self)
            return False
        if state is S.ACCEPTED and 200 <= status < 300:
            if self._packed is not None:
                self._unpack()
            self.last_response = response
            layer._compact_later(self)
            return True
        return False

    def _non_invite_response(
        self, layer: TransactionLayer, response: SipResponse, now: float
    ) -> bool:
        if self.state is not S.TRYING and self.state is not S.PROCEEDING:
            layer.stats["retransmissions_absorbed"] += 1
            return False
        self.last_response = response
        if response.status < 200:
            self.state = S.PROCEEDING
        else:
            self.state = S.COMPLETED
            layer._cancel_timer(self, RETX)
            layer._schedule(self, WAIT, "K", 0.0 if self.reliable else layer.timers.T4, now)
        return True

    def retransmit(self, layer: TransactionLayer, timer: str, now: float) -> None:
        """Timer A or E fired: send the request again and re-arm the timer."""
        layer._emit(self.request, self.data, self.destination, self)
        timers = layer.timers
        if timer == "A":
            self.interval *= 2
        elif self.state is S.PROCEEDING:
            self.interval = timers.T2
        else:
            self.interval = min(2 * self.interval, timers.T2)
        layer._schedule(self, RETX, timer, self.interval, now)


def client_key(branch: str, method: str) -> tuple[str, str]:
    """The §17.1.3 matching key: top Via branch and CSeq method."""
    return (branch, method)


def _route_lines(request: SipRequest) -> list[str]:
    return request.headers.get_all("Route")


def _single_top_via(request: SipRequest) -> str:
    return str(request.top_via)


def build_ack(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a 300-699 response (§17.1.1.3).

    Request-URI, Call-ID, From and the CSeq number of the INVITE, CSeq method ACK,
    To of the response (with its tag), one Via equal to the INVITE's top Via, the
    INVITE's Route header fields, no body.
    """
    headers = SipHeaders()
    headers.add("Via", _single_top_via(request))
    for line in _route_lines(request):
        headers.add("Route", line)
    max_forwards = request.headers.get("Max-Forwards")
    headers.add("Max-Forwards", max_forwards if max_forwards is not None else "70")
    headers.add("From", _required(request.headers.get("From"), "From"))
    headers.add("To", _required(response.headers.get("To"), "To"))
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} ACK")
    return SipRequest("ACK", request.uri, headers)


def build_cancel(request: SipRequest) -> SipRequest:
    """A CANCEL for ``request`` (§9.1).

    Same Request-URI, Call-ID, To, From and CSeq number (method CANCEL), a single
    Via equal to the request's top Via (so the branch is the same and the CANCEL
    reaches the same server transaction), the request's Route header fields.
    """
    headers = SipHeaders()
    headers.add("Via", _single_top_via(request))
    for line in _route_lines(request):
        headers.add("Route", line)
    max_forwards = request.headers.get("Max-Forwards")
    headers.add("Max-Forwards", max_forwards if max_forwards is not None else "70")
    headers.add("From", _required(request.headers.get("From"), "From"))
    headers.add("To", _required(request.headers.get("To"), "To"))
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} CANCEL")
    return SipRequest("CANCEL", request.uri, headers)


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise ValueError(f"request has no {name} header")
    return value
