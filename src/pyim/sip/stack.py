"""The SIP stack: transports + transactions + the transaction user's core, on asyncio.

:class:`SipStack` owns a :class:`~pyim.sip.transport.SipTransportLayer` and a
:class:`~pyim.sip.transaction.TransactionLayer` and does the TU core's share of
RFC 3261: it stamps Via and Contact on requests it sends, turns timeouts and
transport errors into 408/503, retries once with Digest credentials on 401/407,
answers CANCEL (200, then 487 to the INVITE), refuses unsupported extensions (420),
exhausted Max-Forwards (483) and unknown methods (501), retransmits the 2xx of an
INVITE until its ACK arrives (§13.3.1.4) and re-ACKs retransmitted 2xx (§13.2.2.4).

What to do with a request is the application's: ``on_request`` gets every new
request as an :class:`IncomingRequest` to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import ssl
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..digest import CredentialsRejected, DigestClient, DigestError
from .dialog import new_tag
from .headers import CSeq, HeaderError, Via
from .message import (
    PackedMessage,
    SipHeaders,
    SipRequest,
    SipResponse,
    reason_phrase,
    unpack_message,
)
from .parser import SipParseError
from .transaction import (
    AckReceived,
    ClientTransaction,
    Destination,
    Event,
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponse,
    TimerConfig,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
)
from .transport import SipTransportLayer, TransportConfig
from .uri import NameAddr, SipUri

log = logging.getLogger(__name__)

SUPPORTED_METHODS = (
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "MESSAGE",
    "UPDATE",
    "INFO",
    "SUBSCRIBE",  # presence (RFC 3856): the TU answers, or 489 Bad Event
    "NOTIFY",
    "PUBLISH",
)
DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
SUPPORTED_EXTENSIONS: tuple[str, ...] = ("timer", "path", "outbound")


@dataclass(slots=True)
class StackConfig:
    """What a stack needs to know about itself (safe defaults for 127.0.0.1).

    ``host`` is the name others reach us by (Via, Contact, Call-ID) and, unless
    ``bind_host`` is set, where the listeners bind; ``bind_host`` binds elsewhere
    (``0.0.0.0``, an interface address) while Via and Contact still carry ``host``.
    """

    host: str = "127.0.0.1"
    bind_host: str | None = None
    user_agent: str = "pyim/0.1"
    timers: TimerConfig = field(default_factory=TimerConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    max_server_transactions: int = 100_000


@dataclass(slots=True)
class IncomingRequest:
    """A new request for the application; ``respond`` answers it (statefully).

    Every response but a 100 to a request without a To tag gets one (§8.2.6.2):
    ``to_tag`` when given, else ``local_tag``, chosen once and kept for the next ones.
    """

    stack: SipStack
    request: SipRequest
    source: Destination
    transaction: ServerTransaction | None
    responded: bool = False
    final: SipResponse | None = None
    local_tag: str | None = None

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        to_tag: str | None = None,
        contact: bool | NameAddr = False,
    ) -> SipResponse:
        if status != 100 and self.request.to.tag is None:
            to_tag = self.local_tag = to_tag or self.local_tag or new_tag()
        response = self.request.response(status, reason, to_tag=to_tag)
        if self.request.method in DIALOG_METHODS and 100 < status < 300:
            for value in self.request.headers.get_all("Record-Route"):  # §12.1.1
                response.headers.add("Record-Route", value)
        for name, value in headers or ():
            response.headers.add(name, value)
        if contact is not False:
            if contact is True:
                response.headers.add("Contact", self.stack.contact_text(self.source.transport))
            else:
                response.headers.add("Contact", str(contact))
        if body:
            response.headers.add("Content-Type", content_type or "application/sdp")
        response.body = body
        self.stack.respond(self, response)
        return response


RequestHandler = Callable[[IncomingRequest], Awaitable[None] | None]
ProvisionalHandler = Callable[[SipResponse], None]


@dataclass(slots=True)
class _Pending:
    tx: ClientTransaction  # held so that its id() is not reused while pending
    future: asyncio.Future[SipResponse]
    on_provisional: ProvisionalHandler | None


@dataclass(slots=True)
class _Retransmit:
    """A 2xx to an INVITE retransmitted until its ACK (§13.3.1.4).

    The INVITE and the 2xx are kept packed (for ``on_ack_timeout``, which rarely
    runs): held as objects until the ACK, they outlived the GC's young generations
    under load and made the full passes over the transaction tables more frequent."""

    key: tuple[str, int]
    data: bytes
    destination: Destination
    interval: float
    deadline: float
    resend: bool
    invite: PackedMessage
    invite_uri: SipUri
    response: PackedMessage
    handle: asyncio.TimerHandle | None = None


class SipStack:
    """One SIP endpoint: listeners, transactions and the TU core."""

    def __init__(
        self,
        config: StackConfig | None = None,
        *,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        on_request: RequestHandler | None = None,
    ) -> None:
        self.config = config or StackConfig()
        self.ssl_server = ssl_server
        self.transactions = TransactionLayer(
            self.config.timers, max_server_transactions=self.config.max_server_transactions
        )
        self.transport = SipTransportLayer(
            self._on_message,
            self._on_parse_error,
            self._on_failure,
            self.config.transport,
            ssl_client=ssl_client,
        )
        self.on_request = on_request
        # told when the ACK of a 2xx to an INVITE never came (64*T1, any transport): the
        # TU should end that dialog with a BYE (§13.3.1.4)
        self.on_ack_timeout: Callable[[SipRequest, SipResponse], None] | None = None
        self.stats: Counter[str] = Counter()
        self._pending: dict[int, _Pending] = {}
        self._retransmits: dict[tuple[str, int], _Retransmit] = {}
        # the ACKs of 2xx we sent, for re-ACKs, until they expire (in _ack_expiry order)
        self._acks: dict[tuple[str, str, str], tuple[bytes, Destination, float, str | None]] = {}
        self._ack_expiry: deque[tuple[float, tuple[str, str, str]]] = deque()
        self._acks_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._invites: dict[int, IncomingRequest] = {}  # INVITEs not finally answered
        self._loop: asyncio.AbstractEventLoop | None = None
        self._call_ids = itertools.count(1)
        self._contacts: dict[tuple[str, str | None, str, int], tuple[NameAddr, str]] = {}

    # -- life cycle --------------------------------------------------------------------

    async def start(
        self, *, udp: int | None = 0, tcp: int | None = 0, tls: int | None = None
    ) -> None:
        """Listen on the given ports (0: any free port; None: not at all)."""
        self._loop = asyncio.get_running_loop()
        host = self.config.bind_host or self.config.host
        if udp is not None:
            await self.transport.listen_udp(host, udp)
        if tcp is not None:
            await self.transport.listen_tcp(host, tcp)
        if tls is not None:
            if self.ssl_server is None:
                raise ValueError("a TLS listener needs ssl_server")
            await self.transport.listen_tls(self.ssl_server, host, tls)

    async def close(self) -> None:
        for retransmit in self._retransmits.values():
            if retransmit.handle is not None:
                retransmit.handle.cancel()
        self._retransmits.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_when = None
        if self._acks_timer is not None:
            self._acks_timer.cancel()
            self._acks_timer = None
        for task in list(self._tasks):
            task.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        await self.transport.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def local_address(self, transport: str) -> tuple[str, int]:
        """The address a listener is bound to (KeyError: no such listener)."""
        return self.transport.local[transport]

    def advertised_address(self, transport: str) -> tuple[str, int]:
        """The address Via and Contact carry for a listener: its port, and
        ``config.host`` when the stack binds elsewhere (``bind_host``)."""
        host, port = self.transport.local[transport]
        if self.config.bind_host is not None:
            host = self.config.host
        return host, port

    def contact(self, transport: str, user: str | None = None) -> NameAddr:
        """Our Contact for a transport: ``<sip:user@host:port;transport=...>``.

        Without a listener of that transport, the Contact of one we have: a request
        to send over it fails anyway (503, :meth:`send`), and a Contact is no reason
        to raise.  RuntimeError when the stack listens on nothing."""
        return self._contact(transport, user)[0]

    def contact_text(self, transport: str, user: str | None = None) -> str:
        """``str(self.contact(transport, user))``, made once."""
        return self._contact(transport, user)[1]

    def _contact(self, transport: str, user: str | None) -> tuple[NameAddr, str]:
        transport = self._listening(transport)
        host, port = self.advertised_address(transport)
        key = (transport, user, host, port)
        known = self._contacts.get(key)
        if known is not None:
            return known
        params: tuple[tuple[str, str | None], ...] = ()
        scheme = "sip"
        if transport == "tls":
            scheme = "sips"
        elif transport == "tcp":
            params = (("transport", "tcp"),)
        uri = SipUri(scheme=scheme, user=user, host=host, port=port, params=params)
        contact = NameAddr(uri=uri)
        if len(self._contacts) >= 256:  # users are few in practice; bounded anyway
            self._contacts.clear()
        made = self._contacts[key] = (contact, str(contact))
        return made

    def _listening(self, transport: str) -> str:
        """``transport`` if we listen on it, else another we do (UDP first)."""
        local = self.transport.local
        if transport in local:
            return transport
        for other in ("udp", "tcp", "tls"):
            if other in local:
                return other
        raise RuntimeError("the SIP stack has no listener (start() it first)")

    # -- building requests ---------------------------------------------------------------

    def new_call_id(self) -> str:
        return f"{secrets.token_hex(8)}-{next(self._call_ids)}@{self.config.host}"

    def new_request(
        self,
        method: str,
        uri: SipUri,
        *,
        from_: NameAddr,
        to: NameAddr,
        call_id: str | None = None,
        cseq: int = 1,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        """An out-of-dialog request (§8.1.1) without Via (``send`` adds it)."""
        h = SipHeaders()
        h.add("Max-Forwards", "70")
        h.add("From", str(from_))
        h.add("To", str(to))
        h.add("Call-ID", call_id or self.new_call_id())
        h.add("CSeq", str(CSeq(cseq, method)))
        h.add("User-Agent", self.config.user_agent)
        for name, value in headers or ():
            h.add(name, value)
        if content_type is not None:
            h.add("Content-Type", content_type)
        return SipRequest(method, uri, h, body)

    @staticmethod
    def destination_for(request: SipRequest) -> Destination:
        """Where a request goes: its first Route, else its Request-URI (RFC 3263 without DNS)."""
        routes = request.routes
        return SipStack.destination_for_uri(routes[0].uri if routes else request.uri)

    @staticmethod
    def destination_for_uri(uri: SipUri) -> Destination:
        """Transport, host and port of a URI (``transport`` param, sips -> TLS, 5060/5061)."""
        transport = uri.transport
        port = uri.port or (5061 if transport == "tls" else 5060)
        return Destination(transport, uri.maddr or uri.host, port)

    # -- sending ---------------------------------------------------------------------------

    async def send(
        self,
        request: SipRequest,
        destination: Destination | None = None,
        *,
        auth: DigestClient | None = None,
        on_provisional: ProvisionalHandler | None = None,
        on_transaction: Callable[[ClientTransaction], None] | None = None,
    ) -> SipResponse:
        """Send a request in a new client transaction and return its final response.

        A 401/407 is answered once (or again on ``stale``) with ``auth``'s credentials:
        the request goes out anew with CSeq + 1.  Timeouts come back as 408, transport
        failures as 503, as §8.1.3 says: among them a transport we do not listen on
        (``503 Service Unavailable (no TLS transport)``: no Via or Contact of ours
        could name it).
        """
        dest = destination or self.destination_for(request)
        had_credentials = False
        for _ in range(3):
            tx, future = self.start_transaction(request, dest, on_provisional)
            if on_transaction is not None:
                on_transaction(tx)
            response = await future
            if response.status not in (401, 407) or auth is None:
                return response
            challenge_name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
            challenges = response.headers.get_all(challenge_name)
            try:
                value = auth.authorize(
                    auth.choose(challenges),
                    method=request.method,
                    uri=str(request.uri),
                    body=request.body,
                    had_credentials=had_credentials,
                )
            except (CredentialsRejected, DigestError) as exc:
                log.info("authentication for %s gave up: %s", request.method, exc)
                return response
            had_credentials = True
            request = self._reissue(request)
            header = "Authorization" if response.status == 401 else "Proxy-Authorization"
            request.headers.remove(header)
            request.headers.add(header, value)
        return response

    def start_transaction(
        self,
        request: SipRequest,
        destination: Destination,
        on_provisional: ProvisionalHandler | None = None,
        *,
        proxied: bool = False,
    ) -> tuple[ClientTransaction, asyncio.Future[SipResponse]]:
        """Stamp a Via and start a client transaction; the future gets its final response.

        ``proxied`` keeps the Via headers already there (a proxy forwarding, §16.6).
        """
        self._stamp(request, destination, proxied=proxied)
        tx = self.transactions.send_request(request, destination, self.loop.time())
        future: asyncio.Future[SipResponse] = self.loop.create_future()
        self._pending[id(tx)] = _Pending(tx, future, on_provisional)
        self._flush()
        return tx, future

    def forward_stateless(self, request: SipRequest, destination: Destination) -> None:
        """Forward a request without a transaction (a proxy's ACK for a 2xx, §16.11)."""
        self._stamp(request, destination, proxied=True)
        self.transactions.send_stateless(request, destination)
        self._flush()

    def cancel(self, tx: ClientTransaction) -> None:
        """CANCEL a pending INVITE (§9.1); the INVITE's final response (487) still comes."""
        self.transactions.cancel(tx, self.loop.time())
        self._flush()

    def ack(self, request: SipRequest, invite: SipRequest, destination: Destination) -> None:
        """Send the ACK of a 2xx (the TU's job, §13.2.2.4) and remember it for re-ACKs.

        Remembered 64*T1 + T4: the UAS retransmits its 2xx for 64*T1 (§13.3.1.4) and
        T4 bounds a message's life in the network, so no retransmission comes later
        (kept for ever, a server held the ACKs of all its sessions, ~0.5 KB each)."""
        self._stamp(request, destination)
        self.transactions.send_stateless(request, destination)
        key = (invite.call_id, invite.from_.tag or "", str(invite.cseq.seq))
        timers = self.config.timers
        expires = self.loop.time() + timers.timeout + timers.T4
        self._acks[key] = (request.encode(), destination, expires, request.to.tag)
        self._ack_expiry.append((expires, key))
        if self._acks_timer is None:
            self._acks_timer = self.loop.call_at(expires, self._expire_acks)
        self._flush()

    def _expire_acks(self) -> None:
        """Forget the ACKs whose time is over; runs at most once a second."""
        self._acks_timer = None
        acks, order = self._acks, self._ack_expiry
        now = self.loop.time()
        while order:
            expires, key = order[0]
            if expires > now:
                self._acks_timer = self.loop.call_at(max(expires, now + 1.0), self._expire_acks)
                return
            order.popleft()
            entry = acks.get(key)
            if entry is not None and entry[2] <= now:  # (not sent again since)
                del acks[key]

    def _reissue(self, request: SipRequest) -> SipRequest:
        """The same request anew: CSeq + 1, no Via (a new transaction)."""
        headers = request.headers.copy()
        headers.remove("Via")
        headers.set("CSeq", str(CSeq(request.cseq.seq + 1, request.method)))
        return SipRequest(request.method, request.uri, headers, request.body)

    def _stamp(
        self, request: SipRequest, destination: Destination, *, proxied: bool = False
    ) -> None:
        """Put our Via on top: the only one (a UA), or above the others (a proxy, §16.6)."""
        host, port = self.advertised_address(self._listening(destination.transport))
        via = Via(
            transport=destination.transport.upper(),
            host=host,
            port=port,
            params=(("branch", self.transactions.new_branch()), ("rport", None)),
        )
        if not proxied:
            request.headers.remove("Via")
        request.headers.insert(0, "Via", str(via))
        if proxied:
            return
        if "Contact" not in request.headers and request.method in ("INVITE", "REGISTER"):
            request.headers.add("Contact", self.contact_text(destination.transport))

    # -- answering --------------------------------------------------------------------------

    def respond(
        self, incoming: IncomingRequest, response: SipResponse, *, relayed: bool = False
    ) -> None:
        """Send a response in the request's server transaction.

        ``relayed``: a proxy passing a downstream response on; the 2xx is then the
        UAS's to retransmit, not ours (§16.7).
        """
        if incoming.transaction is None:
            raise RuntimeError("an ACK is not answered")
        if incoming.final is not None:
            raise RuntimeError(f"{incoming.request.method} already answered")
        if "Server" not in response.headers:
            response.headers.add("Server", self.config.user_agent)
        incoming.responded = True
        if response.status >= 200:
            incoming.final = response
            self._invites.pop(id(incoming.transaction), None)
        incoming.transaction.respond(response, self.loop.time())
        self._flush()
        if incoming.request.method == "INVITE" and 200 <= response.status < 300 and not relayed:
            self._retransmit_2xx(
                incoming.request,
                response,
                incoming.transaction.destination,
                resend=not incoming.source.reliable,
            )

    def _retransmit_2xx(
        self,
        invite: SipRequest,
        response: SipResponse,
        destination: Destination,
        *,
        resend: bool = True,
    ) -> None:
        """Wait for the ACK of a 2xx, re-sending the 2xx meanwhile when ``resend``
        (unreliable transports); without an ACK after 64*T1, tell ``on_ack_timeout``."""
        t1 = self.config.timers.T1
        key = (invite.call_id, invite.cseq.seq)
        entry = _Retransmit(
            key,
            response.encode(),
            destination,
            t1,
            self.loop.time() + 64 * t1,
            resend,
            invite.pack(),
            invite.uri,
            response.pack(),
        )
        self._retransmits[key] = entry
        entry.handle = self.loop.call_later(t1 if resend else 64 * t1, self._fire_2xx, entry)

    def _fire_2xx(self, entry: _Retransmit) -> None:
        key = entry.key
        if self._retransmits.get(key) is not entry:
            return
        if self.loop.time() >= entry.deadline:
            del self._retransmits[key]
            self.stats["2xx_without_ack"] += 1
            log.info("no ACK for the 2xx of %s", key[0])
            if self.on_ack_timeout is not None:
                invite = unpack_message(entry.invite, entry.invite_uri)
                response = unpack_message(entry.response)
                assert isinstance(invite, SipRequest) and isinstance(response, SipResponse)
                try:
                    self.on_ack_timeout(invite, response)
                except Exception:
                    log.exception("on_ack_timeout failed for %s", key[0])
            return
        if not entry.resend:
            entry.handle = self.loop.call_at(entry.deadline, self._fire_2xx, entry)
            return
        self.transport.send(entry.data, entry.destination)
        entry.interval = min(entry.interval * 2, self.config.timers.T2)
        entry.handle = self.loop.call_later(entry.interval, self._fire_2xx, entry)

    # -- input --------------------------------------------------------------------------------

    def _on_message(self, message: SipRequest | SipResponse, peer: Destination) -> None:
        events = self.transactions.receive(message, peer, self.loop.time())
        self._flush()
        self._handle(events)

    def _on_parse_error(self, error: SipParseError, peer: Destination) -> None:
        partial = error.partial
        if partial is None or partial.method == "ACK" or error.status is None:
            return
        try:
            reason = f"{reason_phrase(error.status)} ({error.reason})"
            response = partial.response(error.status, reason, to_tag=new_tag())
            self.transactions.send_stateless(response, peer)
        except HeaderError:
            return
        self._flush()

    def _on_failure(self, peer: Destination, reason: str) -> None:
        self._handle(self.transactions.transport_failed(peer, reason, self.loop.time()))
        self._flush()

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._on_request(event.transaction, event.request)
            elif isinstance(event, ResponseReceived):
                self._on_response(event.transaction, event.response)
            elif isinstance(event, AckReceived):
                self._on_ack(event)
            elif isinstance(event, StrayResponse):
                self._on_stray(event.response)
            elif isinstance(event, TransactionTimeout | TransportError):
                tx = event.transaction
                if isinstance(tx, ClientTransaction):
                    if isinstance(event, TransactionTimeout):
                        self._resolve(tx, tx.request.response(408))
                    else:
                        reason = f"Service Unavailable ({event.reason})"
                        self._resolve(tx, tx.request.response(503, reason))
            elif isinstance(event, MessageDiscarded):
                self.stats["discarded"] += 1
        self._arm()

    def _on_request(self, tx: ServerTransaction, request: SipRequest) -> None:
        self.stats[f"in_{request.method}"] += 1
        incoming = IncomingRequest(self, request, tx.source, tx)
        if request.method == "INVITE":
            self._invites[id(tx)] = incoming
        refusal = self._refusal(request)
        if refusal is not None:
            status, headers = refusal
            incoming.respond(status, headers=headers)
            return
        if request.method == "CANCEL":
            self._on_cancel(incoming)
            return
        self._dispatch(incoming)

    def _refusal(self, request: SipRequest) -> tuple[int, list[tuple[str, str]]] | None:
        """A request the core answers itself (§8.2): 483, 420, 501."""
        if request.max_forwards == 0 and request.method not in ("OPTIONS",):
            return 483, []
        if "Require" in request.headers:
            unsupported = [opt for opt in request.require if opt not in SUPPORTED_EXTENSIONS]
            if unsupported and request.method not in ("CANCEL", "ACK"):
                return 420, [("Unsupported", ", ".join(unsupported))]
        if request.method not in SUPPORTED_METHODS:
            return 501, [("Allow", ", ".join(SUPPORTED_METHODS))]
        return None

    def _on_cancel(self, incoming: IncomingRequest) -> None:
        target = self.transactions.find_cancel_target(incoming.request)
        invite = None if target is None else self._invites.get(id(target))
        if invite is None or invite.final is not None:
            incoming.respond(481)
            return
        invite.local_tag = invite.local_tag or new_tag()
        incoming.respond(200, to_tag=invite.local_tag)  # the 487's To tag (§9.2)
        invite.respond(487)
        self._dispatch(incoming)  # the application may want to know (ringing stops)

    def _dispatch(self, incoming: IncomingRequest) -> None:
        handler = self.on_request
        if handler is None:
            if incoming.transaction is not None:
                incoming.respond(405 if incoming.request.method != "OPTIONS" else 200)
            return
        result = handler(incoming)
        if asyncio.iscoroutine(result):
            task = self.loop.create_task(self._guard(incoming, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guard(self, incoming: IncomingRequest, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            log.exception("handler for %s failed", incoming.request.method)
            if incoming.transaction is not None and incoming.final is None:
                with contextlib.suppress(Exception):
                    incoming.respond(500)

    def _on_ack(self, event: AckReceived) -> None:
        request = event.request
        key = (request.call_id, request.cseq.seq)
        entry = self._retransmits.pop(key, None)
        if entry is not None and entry.handle is not None:
            entry.handle.cancel()
        self._dispatch(IncomingRequest(self, request, event.source, None))

    def _on_response(self, tx: ClientTransaction, response: SipResponse) -> None:
        if response.status < 200:
            pending = self._pending.get(id(tx))
            if pending is not None and pending.on_provisional is not None:
                pending.on_provisional(response)
            return
        if id(tx) not in self._pending:
            # a 2xx retransmitted while the INVITE transaction is Accepted (RFC 6026):
            # the TU has the first one; this one is answered with its ACK again
            self._reack(response)
            return
        self._resolve(tx, response)

    def _resolve(self, tx: ClientTransaction, response: SipResponse) -> None:
        pending = self._pending.pop(id(tx), None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(response)

    def _on_stray(self, response: SipResponse) -> None:
        """A retransmitted 2xx after our INVITE transaction ended: send the ACK again."""
        self._reack(response)

    def _reack(self, response: SipResponse) -> None:
        """A retransmitted 2xx to an INVITE we ACKed gets the same ACK (§13.2.2.4);
        one from another fork (another To tag) or not ACKed yet gets nothing here."""
        if not 200 <= response.status < 300:
            return
        try:
            if response.cseq.method != "INVITE":
                return
            key = (response.call_id, response.from_.tag or "", str(response.cseq.seq))
            to_tag = response.to.tag
        except HeaderError:
            return
        ack = self._acks.get(key)
        if ack is not None and ack[3] == to_tag:
            self.stats["acks_resent"] += 1
            self.transport.send(ack[0], ack[1])

    def forget_ack(self, call_id: str, from_tag: str, seq: int) -> None:
        """The dialog is over: its remembered ACK can go."""
        self._acks.pop((call_id, from_tag, str(seq)), None)

    # -- timers and output ---------------------------------------------------------------------

    def _flush(self) -> None:
        for out in self.transactions.outgoing():
            self.transport.send(out.data, out.destination)
        self._arm()

    def _arm(self) -> None:
        when = self.transactions.next_timeout()
        if when == self._timer_when:
            return  # armed for that already (or None and nothing to arm)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_when = when
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = None
        events = self.transactions.handle_timeout(self.loop.time())
        self._flush()
        self._handle(events)
