"""The SIP transaction layer (RFC 3261 §17, with RFC 6026's fix), sans-IO.

One :class:`TransactionLayer` holds every client and server transaction of a
process.  It never touches a socket or a clock: messages come in with their source
and the current time, events come back, and what must be sent waits in an outbox.

Inputs (each returns ``list[Event]`` unless said otherwise)::

    layer.receive(message, source, now)        # a parsed request or response
    layer.handle_timeout(now)                  # when now >= layer.next_timeout()
    layer.send_request(request, dest, now)     # -> ClientTransaction
    server_tx.respond(response, now)           # (= layer.respond(server_tx, ...)) -> None
    layer.cancel(invite_tx, now)               # -> ClientTransaction | None (§9.1)
    layer.send_stateless(message, dest)        # e.g. the ACK of a 2xx -> None
    layer.transport_error(tx, reason, now)     # a send of this transaction failed
    layer.transport_failed(peer, reason, now)  # the transport could not reach a peer
    layer.terminate(tx)                        # the TU gives a transaction up

Outputs::

    layer.outgoing() -> list[Outgoing]         # drain after every input; each has
                                               # .data (bytes), .destination, .message
                                               # and .transaction (None if stateless)
    layer.next_timeout() -> float | None       # absolute time of the next timer

Events: :class:`RequestReceived` (a new request; its server transaction is made),
:class:`AckReceived` (an ACK the TU must see: the ACK of a 2xx, with the INVITE
transaction in Accepted when one matches, else ``None``), :class:`ResponseReceived`,
:class:`StrayResponse` (no client transaction, e.g. a 2xx after timer M: the dialog
layer re-ACKs it), :class:`TransactionTimeout` (timer B, F or H, or the §9.1 CANCEL
wait: the TU makes the 408), :class:`TransportError`, :class:`TransactionTerminated`
(the transaction left the tables) and :class:`MessageDiscarded`.

What the layer does and does not do to messages:

- Requests it receives get ``received``/``rport`` on their top Via (§18.2.1,
  RFC 3581) before the TU sees them; responses go where §18.2.2 says
  (:func:`~pyim.sip.transaction_server.response_destination`).
- It adds nothing to requests it sends: the Via (and its branch, see
  :meth:`TransactionLayer.new_branch`) is the TU's or stack's business.
- It builds the ACK of a non-2xx final response (§17.1.1.3), the ``100 Trying`` of an
  INVITE server transaction (after ``TimerConfig.trying_delay``) and, on request,
  CANCELs (§9.1).  It never builds or sends the ACK of a 2xx (the TU does, RFC 6026).

Timers of 0 s (D, I, J, K on reliable transports) go through the heap like any
other, so the transaction ends at the next :meth:`~TransactionLayer.handle_timeout`
(``next_timeout()`` is then ``now``).  The heap deletes lazily: cancelling a timer
just forgets its sequence number, and it is compacted when more than half of it is
stale, so every timer operation is O(log n) and memory stays bounded.

Limits: ``max_server_transactions`` (default 100 000) caps the server table; past it a
new request gets a stateless 503 and a :class:`MessageDiscarded`.  Per transaction
the layer keeps one ``__slots__`` object (the request, the last response and its
bytes) and at most two heap entries; nothing is asyncio.  A transaction that has its
final response keeps both messages packed (tuples of strings and bytes that the
cyclic GC does not visit; a received message as its bytes alone) until they are read
again (:meth:`Transaction.pack`): it lingers 64*T1 for retransmissions, and at 2,000
calls/s over UDP some 130,000 of them are alive.  A server transaction whose
TU never answers stays until :meth:`TransactionLayer.terminate` (§17.2 has no timer
for it).

RFC 2543 peers (no magic cookie in the branch) are matched by §17.2.3's fallback
rules for every method, ACK and CANCEL included.  Responses are matched by branch
and CSeq method only (§17.1.3); the sent-by of their top Via must be ours (§18.1.2).
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .message import SipRequest, SipResponse
from .transaction_client import (
    MAGIC_COOKIE,
    RETX,
    WAIT,
    ClientTransaction,
    Destination,
    Peer,
    TimerConfig,
    Transaction,
    TransactionState,
    TransactionStateError,
    build_ack,
    build_cancel,
    client_key,
    new_branch,
)
from .transaction_server import (
    TRYING_TIMER,
    AckOutcome,
    ServerTransaction,
    is_rfc2543_key,
    response_destination,
    server_key,
    stamp_via,
)

SipMessage = SipRequest | SipResponse
S = TransactionState

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "ClientTransaction",
    "Destination",
    "Event",
    "MessageDiscarded",
    "Outgoing",
    "Peer",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "StrayResponse",
    "TimerConfig",
    "Transaction",
    "TransactionLayer",
    "TransactionState",
    "TransactionStateError",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportError",
    "build_ack",
    "build_cancel",
    "new_branch",
    "response_destination",
]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: ``data`` to ``destination``."""

    data: bytes
    destination: Destination
    message: SipMessage
    transaction: Transaction | None


# -- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Base of the transaction layer's events."""


@dataclass(frozen=True, slots=True)
class RequestReceived(Event):
    """A new request; answer it with ``transaction.respond(...)``."""

    transaction: ServerTransaction
    request: SipRequest


@dataclass(frozen=True, slots=True)
class AckReceived(Event):
    """An ACK for the TU: for a 2xx (no transaction of its own, §17.1.1.3)."""

    request: SipRequest
    source: Destination
    transaction: ServerTransaction | None


@dataclass(frozen=True, slots=True)
class ResponseReceived(Event):
    transaction: ClientTransaction
    response: SipResponse


@dataclass(frozen=True, slots=True)
class StrayResponse(Event):
    """A response matching no client transaction (RFC 6026 §7.1.1)."""

    response: SipResponse
    source: Destination


@dataclass(frozen=True, slots=True)
class TransactionTimeout(Event):
    """Timer B, F or H fired (``timer``), or ``"cancel"``: no final response 64*T1
    after a CANCEL (§9.1).  A client TU treats it as a 408."""

    transaction: Transaction
    timer: str


@dataclass(frozen=True, slots=True)
class TransportError(Event):
    transaction: Transaction
    reason: str


@dataclass(frozen=True, slots=True)
class TransactionTerminated(Event):
    """The transaction reached Terminated and left the layer's tables."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class MessageDiscarded(Event):
    """A message the layer dropped (unusable headers, overload, wrong sent-by...)."""

    message: SipMessage
    source: Destination
    reason: str


# -- timers ---------------------------------------------------------------------------

# A heap entry is (when, sequence number, timer name, transaction); it is live while
# one of the transaction's two slots (RETX, WAIT) still holds its sequence number.
_CANCEL = "cancel"

HeapEntry = tuple[float, int, str, Transaction]


class TransactionLayer:
    """All transactions of a process (see the module docstring for the protocol).

    ``max_server_transactions`` bounds the server table: past it a new request is
    answered ``503`` statelessly and reported as :class:`MessageDiscarded`.
    ``randbits`` feeds :meth:`new_branch` (inject ``random.Random(n).getrandbits``).
    """

    def __init__(
        self,
        timers: TimerConfig | None = None,
        *,
        max_server_transactions: int | None = 100_000,
        randbits: Callable[[int], int] = secrets.randbits,
        compact_min: int = 1024,
    ) -> None:
        self.timers = timers or TimerConfig()
        self.max_server_transactions = max_server_transactions
        self.randbits = randbits
        self.stats: Counter[str] = Counter()
        self._clients: dict[tuple[object, ...], ClientTransaction] = {}
        self._servers: dict[tuple[object, ...], ServerTransaction] = {}
        self._heap: list[HeapEntry] = []
        self._seq = itertools.count(1)
        self._stale = 0
        self._compact_min = compact_min
        self._out: list[Outgoing] = []
        self._to_compact: list[Transaction] = []

    # -- introspection ------------------------------------------------------------------

    def new_branch(self) -> str:
        return new_branch(self.randbits)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def server_count(self) -> int:
        return len(self._servers)

    @property
    def timer_count(self) -> int:
        """Heap entries, stale ones included (bounded by the compaction)."""
        return len(self._heap)

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def find_client(self, branch: str, method: str) -> ClientTransaction | None:
        return self._clients.get(client_key(branch, method))

    def find_cancel_target(
        self, cancel: SipRequest | ServerTransaction
    ) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL targets (§9.2), or None (-> 481)."""
        request = cancel.request if isinstance(cancel, ServerTransaction) else cancel
        try:
            key = server_key(request, method="INVITE")
            tx = self._servers.get(key)
            if tx is not None and tx.rfc2543 and request.to.tag != tx.request.to.tag:
                return None
        except ValueError:
            return None
        return tx

    # -- output -------------------------------------------------------------------------

    def outgoing(self) -> list[Outgoing]:
        """Everything queued for sending since the last call, in order."""
        out, self._out = self._out, []
        return out

    def _emit(
        self, message: SipMessage, data: bytes, dest: Destination, tx: Transaction | None
    ) -> None:
        self._out.append(Outgoing(data, dest, message, tx))

    def send_stateless(self, message: SipMessage, destination: Destination) -> None:
        """Queue a message outside any transaction (the ACK of a 2xx, a stateless
        response: use :func:`response_destination` with the request's top Via)."""
        self._emit(message, message.encode(), destination, None)

    # -- input: messages ------------------------------------------------------------------

    def receive(self, message: SipMessage, source: Destination, now: float) -> list[Event]:
        """Feed one message received from ``source``."""
        if self._to_compact:
            self._compact()
        events: list[Event] = []
        try:
            if isinstance(message, SipResponse):
                self._on_response(message, source, now, events)
            else:
                self._on_request(message, source, now, events)
        except ValueError as exc:  # HeaderError, SipUriError: unusable headers
            self.stats["discarded"] += 1
            events.append(MessageDiscarded(message, source, str(exc) or type(exc).__name__))
        return events

    def _on_response(
        self, response: SipResponse, source: Destination, now: float, events: list[Event]
    ) -> None:
        via = response.top_via
        branch = via.branch
        tx = self._clients.get(client_key(branch, response.cseq.method)) if branch else None
        if tx is None:
            self.stats["stray_responses"] += 1
            events.append(StrayResponse(response, source))
            return
        ours = tx.request.top_via
        if via.host.lower() != ours.host.lower() or via.port != ours.port:
            self.stats["discarded"] += 1
            events.append(MessageDiscarded(response, source, "sent-by is not ours (§18.1.2)"))
            return
        if tx.on_response(self, response, now):
            events.append(ResponseReceived(tx, response))

    def _on_request(
        self, request: SipRequest, source: Destination, now: float, events: list[Event]
    ) -> None:
        key = server_key(request)  # before the Via is stamped (RFC 2543 keys use it)
        via = stamp_via(request, source)
        if request.method == "ACK":
            self._on_ack(request, key, source, now, events)
            return
        tx = self._servers.get(key)
        if tx is not None:
            if tx.rfc2543 and request.to.tag != tx.request.to.tag:
                self.stats["discarded"] += 1
                events.append(MessageDiscarded(request, source, "RFC 2543 key collision"))
                return
            tx.on_retransmission(now)
            return
        # the headers every response copies must be usable (HeaderError -> discarded)
        _ = (request.from_, request.to, request.call_id, request.cseq)
        destination = response_destination(via, source)
        limit = self.max_server_transactions
        if limit is not None and len(self._servers) >= limit:
            self.stats["overload"] += 1
            tag = f"{self.randbits(64):016x}"
            self.send_stateless(request.response(503, to_tag=tag), destination)
            events.append(MessageDiscarded(request, source, "too many transactions"))
            return
        is_invite = request.method == "INVITE"
        tx = ServerTransaction(
            request,
            destination,
            key,
            S.PROCEEDING if is_invite else S.TRYING,
            is_invite,
            source,
            self,
            rfc2543=is_rfc2543_key(key),
        )
        self._servers[key] = tx
        events.append(RequestReceived(tx, request))
        tx.start(now)

    def _on_ack(
        self,
        request: SipRequest,
        key: tuple[object, ...],
        source: Destination,
        now: float,
        events: list[Event],
    ) -> None:
        tx = self._servers.get(key)
        if tx is not None and tx.rfc2543 and request.to.tag != tx.response_to_tag:
            tx = None
        if tx is None:
            events.append(AckReceived(request, source, None))
            return
        outcome = tx.on_ack(now)
        if outcome is AckOutcome.TO_TU:
            events.append(AckReceived(request, source, tx))
        elif outcome is AckOutcome.EARLY:
            self.stats["discarded"] += 1
            events.append(MessageDiscarded(request, source, "ACK before a final response"))

    # -- input: the TU ----------------------------------------------------------------------

    def send_request(
        self, request: SipRequest, destination: Destination, now: float
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` (its top Via must carry a branch)."""
        method = request.method
        if method == "ACK":
            raise ValueError("ACK is not a transaction: use send_stateless()")
        branch = request.branch
        if not branch:
            raise ValueError("the request's top Via has no branch (see new_branch())")
        key = client_key(branch, method)
        if key in self._clients:
            raise TransactionStateError(f"a {method} client transaction for {branch} exists")
        is_invite = method == "INVITE"
        tx = ClientTransaction(
            request, destination, key, S.CALLING if is_invite else S.TRYING, is_invite
        )
        tx.data = request.encode()
        self._clients[key] = tx
        self._emit(request, tx.data, destination, tx)
        if not destination.reliable:
            tx.interval = self.timers.T1
            self._schedule(tx, RETX, "A" if is_invite else "E", tx.interval, now)
        self._schedule(tx, WAIT, "B" if is_invite else "F", self.timers.timeout, now)
        return tx

    def cancel(self, tx: ClientTransaction, now: float) -> ClientTransaction | None:
        """CANCEL an INVITE client transaction (§9.1).

        In Proceeding the CANCEL goes out now and its client transaction is returned.
        In Calling it waits for the first provisional response (§9.1 forbids sending
        it before), then appears as ``tx.cancel_transaction``; ``None`` is returned.
        After a final response there is nothing to cancel: ``None``.
        """
        if not tx.is_invite:
            raise ValueError("only INVITE transactions are cancelled")
        if tx.cancel_transaction is not None:
            return tx.cancel_transaction
        if tx.state is S.PROCEEDING:
            return self._send_cancel(tx, now)
        if tx.state is S.CALLING:
            tx.cancel_pending = True
        return None

    def _send_cancel(self, tx: ClientTransaction, now: float) -> ClientTransaction:
        tx.cancel_pending = False
        ctx = self._clients.get(client_key(str(tx.request.branch), "CANCEL"))
        if ctx is None:  # (unless the TU sent its own CANCEL already)
            ctx = self.send_request(build_cancel(tx.request), tx.destination, now)
        tx.cancel_transaction = ctx
        # §9.1: no final response 64*T1 after the CANCEL -> the INVITE is given up
        self._schedule(tx, WAIT, _CANCEL, self.timers.timeout, now)
        return ctx

    def respond(self, tx: ServerTransaction, response: SipResponse, now: float) -> None:
        """Send ``response`` through server transaction ``tx`` (see its ``respond``)."""
        tx.respond(response, now)

    def transport_error(self, tx: Transaction, reason: str, now: float) -> list[Event]:
        """A message of ``tx`` could not be sent (§17.1.4, §17.2.4): inform, terminate."""
        events: list[Event] = []
        if not tx.terminated:
            self.stats["transport_errors"] += 1
            events.append(TransportError(tx, reason))
            self._terminate(tx, events)
        return events

    def transport_failed(self, peer: Destination, reason: str, now: float) -> list[Event]:
        """The transport could not send to ``peer``: every live transaction whose
        messages go there fails (a scan: failures are rare; prefer
        :meth:`transport_error` when the failed :class:`Outgoing` is known)."""
        events: list[Event] = []
        address = peer.address
        table: Iterable[Transaction] = itertools.chain(
            list(self._clients.values()), list(self._servers.values())
        )
        for tx in table:
            dest = tx.destination
            if dest.address != address:
                continue
            if peer.conn_id is not None and dest.conn_id not in (None, peer.conn_id):
                continue
            events.extend(self.transport_error(tx, reason, now))
        return events

    def terminate(self, tx: Transaction) -> list[Event]:
        """Drop ``tx`` at once (the TU gives up on it)."""
        events: list[Event] = []
        self._terminate(tx, events)
        return events

    def _terminate(self, tx: Transaction, events: list[Event]) -> None:
        if tx.terminated:
            return
        tx.state = S.TERMINATED
        self._cancel_timer(tx, RETX)
        self._cancel_timer(tx, WAIT)
        if isinstance(tx, ClientTransaction):
            tx.cancel_pending = False
            if self._clients.get(tx.key) is tx:
                del self._clients[tx.key]
        elif isinstance(tx, ServerTransaction) and self._servers.get(tx.key) is tx:
            del self._servers[tx.key]
        events.append(TransactionTerminated(tx))

    # -- memory -----------------------------------------------------------------------------

    def _compact_later(self, tx: Transaction) -> None:
        """``tx`` has its final response and waits (timer H, J, L, M) with little to do."""
        self._to_compact.append(tx)

    def _compact(self) -> None:
        """Pack the transactions that got their final response since the last input
        (the TU has had the messages meanwhile; :meth:`Transaction.pack`).  At
        2,000 calls/s over UDP some 130,000 such transactions are alive, and a full GC
        pass over them was the longest pause of the process."""
        for tx in self._to_compact:
            if not tx.terminated:
                tx.pack()
        self._to_compact.clear()

    # -- timers -----------------------------------------------------------------------------

    def _schedule(self, tx: Transaction, slot: int, name: str, delay: float, now: float) -> None:
        seq = next(self._seq)
        if slot == RETX:
            if tx.retx_seq:
                self._stale += 1
            tx.retx_seq = seq
        else:
            if tx.timeout_seq:
                self._stale += 1
            tx.timeout_seq = seq
        heapq.heappush(self._heap, (now + delay, seq, name, tx))

    def _cancel_timer(self, tx: Transaction, slot: int) -> None:
        if slot == RETX:
            if not tx.retx_seq:
                return
            tx.retx_seq = 0
        else:
            if not tx.timeout_seq:
                return
            tx.timeout_seq = 0
        self._stale += 1
        if self._stale > self._compact_min and 2 * self._stale > len(self._heap):
            self._heap = [e for e in self._heap if e[1] in (e[3].retx_seq, e[3].timeout_seq)]
            heapq.heapify(self._heap)
            self._stale = 0

    def next_timeout(self) -> float | None:
        """When :meth:`handle_timeout` must next be called (absolute time), or None."""
        heap = self._heap
        while heap:
            when, seq, _, tx = heap[0]
            if seq == tx.retx_seq or seq == tx.timeout_seq:
                return when
            heapq.heappop(heap)
            self._stale -= 1
        return None

    def handle_timeout(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``."""
        if self._to_compact:
            self._compact()
        events: list[Event] = []
        while self._heap and self._heap[0][0] <= now:
            _, seq, name, tx = heapq.heappop(self._heap)
            if seq == tx.retx_seq:
                tx.retx_seq = 0
            elif seq == tx.timeout_seq:
                tx.timeout_seq = 0
            else:
                self._stale -= 1
                continue
            self._fire(tx, name, now, events)
        return events

    def _fire(self, tx: Transaction, name: str, now: float, events: list[Event]) -> None:
        if name == "A" or name == "E" or name == "G":
            self.stats["retransmissions"] += 1
            if isinstance(tx, ClientTransaction):
                tx.retransmit(self, name, now)
            elif isinstance(tx, ServerTransaction):
                tx.retransmit(now)
        elif name == TRYING_TIMER:
            if isinstance(tx, ServerTransaction):
                tx.send_trying()
        elif name in ("B", "F", "H", _CANCEL):
            self.stats["timeouts"] += 1
            events.append(TransactionTimeout(tx, name))
            self._terminate(tx, events)
        else:  # D, I, J, K, L, M: the wait is over
            self._terminate(tx, events)
