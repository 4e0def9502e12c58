"""The IM application server: registrar, chat sessions through the server, the
offline queue, page-mode interworking.

- REGISTER: the embedded registrar with Digest against the store's users; a user's
  REGISTER starts the delivery of what waits for them.
- INVITE with ``m=message`` to a user of the domain: answered at once (the server is
  the other end of the caller's session, whether the callee is online or not); the
  callee's devices are INVITEd when there is something to deliver, on the caller's
  behalf, forking to every contact (the first to answer wins, the others are
  CANCELled) and retrying in the pjsua dialect on 488.
- Each message on a leg is stored durably, then answered (its last chunk's 200),
  then delivered; the sender gets its Success-Report when the device acknowledged
  it, or an IMDN by page mode when the session is gone.
- MESSAGE (page mode) to a user: stored and answered 202, delivered into an open
  session with the sender if there is one, else as MESSAGE.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Coroutine
from typing import Any

from ..digest import Algorithm, DigestServer, Ok, Stale, ha1
from ..msrp.session import SessionConfig
from ..msrp.session_events import MessageReceived
from ..msrp.transport import EndpointConfig, MsrpEndpoint
from ..sip.auth import authenticate
from ..sip.chat import ChatError, ChatSession, ChatStack
from ..sip.dialog import new_tag
from ..sip.message import SipResponse
from ..sip.registrar import Registrar, RegistrarConfig
from ..sip.registration import RegistrarService
from ..sip.stack import IncomingRequest, SipStack, StackConfig
from ..sip.transaction import ClientTransaction, Destination
from ..sip.transport import TransportConfig
from ..sip.uri import NameAddr, SipUri
from ..store import (
    NewMessage,
    QueueFull,
    Store,
    StoreError,
    StoreLimits,
    StoreUnavailable,
    TooLarge,
    open_store,
)
from ..store.model import StoredMessage
from ..ua.cpim import CPIM_TYPE, encode_cpim
from .config import ServerConfig
from .delivery import CLAIM_BATCH, LEASE_SECONDS, Deliverer, DeliveryTarget
from .imdn import imdn_message, wants_delivery_notice
from .legs import IS_COMPOSING, Leg, LegTable, aor_of
from .metrics import Metrics
from .rate import RateLimiter
from .streams import StreamRelay
from .writes import StoreWriter

log = logging.getLogger(__name__)

#: Answers of a device that takes no MSRP session: deliver to it by page mode.
PAGE_ONLY = frozenset({405, 415, 488, 501, 606})
#: How often pyim_queue_depth is read from the store (seconds).
QUEUE_DEPTH_EVERY = 5.0
#: Messages of one leg read but not yet stored; beyond, the leg is not read.
STORING_PER_LEG = 64


def one_line(exc: Exception, limit: int) -> str:
    """An error's text fit for a reason phrase: one line of printable text (driver
    messages span lines; a CR or LF there would end the status line)."""
    text = " ".join(str(exc).split())
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


def store_refusal(exc: StoreError) -> tuple[int, str, str]:
    """How a message the store did not take is refused: (SIP status, reason, metric).
    In a session (MSRP) the same codes are used but 486 becomes 413."""
    if isinstance(exc, StoreUnavailable):
        return 503, "Service Unavailable", "store"
    if isinstance(exc, QueueFull):
        return 486, "Busy Here, queue full", "queue_full"
    if isinstance(exc, TooLarge):
        return 413, "Request Entity Too Large", "too_large"
    return 400, "Bad Request", "store_refused"


class ImServer(DeliveryTarget):
    """One application server: SIP and MSRP listeners, registrar, legs, queue."""

    def __init__(self, config: ServerConfig, *, store: Store | None = None) -> None:
        self.config = config.validate()
        self.store = store or open_store(
            config.store,
            limits=StoreLimits(
                max_body=config.limits.max_message_size,
                max_queue_depth=config.limits.max_queue_per_user,
            ),
        )
        self.metrics = Metrics()
        self.registrar = Registrar(
            RegistrarConfig(domains=tuple({config.domain, config.public_host, config.host}))
        )
        self._ha1: dict[tuple[str, Algorithm], str] = {}
        self.digest = DigestServer(config.auth_realm, self._credentials, algorithms=config.digest())
        limits = config.limits
        self.tls = config.tls()  # ConfigError when a certificate or key is not usable
        self.sip = SipStack(
            StackConfig(
                host=config.public_host,  # in Via and Contact
                bind_host=config.host,  # where the listeners are
                transport=TransportConfig(
                    max_connections=limits.sip_connections,
                    max_connections_per_ip=limits.sip_connections_per_ip,
                    tls_handshake_timeout=limits.tls_handshake_timeout,
                ),
            ),
            ssl_server=self.tls.sip_server,
            ssl_client=self.tls.sip_client,
        )
        self.msrp: MsrpEndpoint | None = None
        self.chat: ChatStack | None = None
        self.legs = LegTable(self._on_message, self._on_leg_closed)
        self.streams = StreamRelay(
            self.legs,
            self._on_message,
            max_buffered=config.limits.max_message_size,
            record=self._record_streamed,
        )
        self._registrar_service = RegistrarService(self.registrar, self.digest)
        self._replica_service = RegistrarService(self.registrar, None)
        self._proxy: Destination | None = None
        if config.proxy:
            self._proxy = self.sip.destination_for_uri(SipUri.parse(config.proxy))
        self._deliverers: dict[str, Deliverer] = {}
        self._owed: dict[str, Leg] = {}  # Message-ID -> the leg that wants its report
        self.writer = StoreWriter(self.store)  # queue writes, group-committed
        self._page_only: set[tuple[str, str]] = set()
        self._dialect: dict[str, bool] = {}  # contact -> needs the pjsua dialect
        self._rate = RateLimiter(config.limits.messages_per_second)  # per sender
        self._notifying: set[str] = set()  # addressees whose IMDNs are being sent
        self._notify_again: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting: asyncio.Task[None] | None = None
        self.started = False

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        await self.store.migrate()
        await self._load_users()
        cfg = self.config
        self.msrp = await MsrpEndpoint.create(
            cfg.host,
            cfg.msrp.port,
            config=EndpointConfig(
                session=self._session_config(),
                max_connections=cfg.limits.msrp_connections,
                tls_handshake_timeout=cfg.limits.tls_handshake_timeout,
            ),
            ssl_server=self.tls.msrp_server,  # msrps: a=path msrps://...;tcp
            ssl_client=self.tls.msrp_client if cfg.msrp.tls else None,
        )
        self.msrp.host = cfg.public_host
        self.chat = ChatStack(
            self.sip,
            self.msrp,
            user="pyim",
            fallback=self._on_request,
            screen=self._screen,
            session_config=self._session_config(),
        )
        await self.sip.start(
            udp=None if cfg.sip.udp < 0 else cfg.sip.udp,
            tcp=None if cfg.sip.tcp < 0 else cfg.sip.tcp,
            tls=None if cfg.sip.tls < 0 else cfg.sip.tls,
        )
        self._accepting = asyncio.ensure_future(self._accept_loop())
        self._spawn(self._watch_queue())
        msrp = self.msrp
        self.metrics.watch_listener("sip", lambda: self.sip.transport.stats)
        self.metrics.watch_listener("msrp", lambda: msrp.stats)
        if cfg.metrics.port:
            self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
        self.started = True
        log.info(
            "pyim server for %s: SIP %s, MSRP %s://%s:%d, store %s",
            cfg.domain,
            self.sip.transport.local,
            self.msrp.scheme,
            cfg.public_host,
            self.msrp.port,
            cfg.store,
        )
        if (cfg.sip.tls >= 0 or cfg.msrp.tls) and cfg.sip.ca is None:
            log.warning("sip.ca not set: TLS connections the server opens are not verified")

    def _session_config(self) -> SessionConfig:
        limits = self.config.limits
        return SessionConfig(
            hold_completion=True,
            max_message_size=max(limits.max_message_size, limits.max_stream_size),
            # anything too big to keep is streamed: relayed live, or refused when gathered
            stream_above=min(limits.stream_above, limits.max_message_size),
        )

    async def _record_streamed(self, sender: str, recipient: str, ctype: str, mid: str) -> None:
        """History of a message relayed chunk by chunk: its Message-ID and type only."""
        with contextlib.suppress(StoreError):
            await self.store.add_history(
                sender, recipient, ctype or "application/octet-stream", b"", mid
            )

    async def stop(self) -> None:
        """BYE every session, stop delivering, close listeners and the store."""
        if self._accepting is not None:
            self._accepting.cancel()
        for deliverer in list(self._deliverers.values()):
            await deliverer.stop()
        await self.streams.close()
        await self.legs.close_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # they finish their store writes before the store closes
            await asyncio.wait(tasks, timeout=5)
        if self.chat is not None:
            await self.chat.close()
        await self.sip.close()
        if self.msrp is not None:
            await self.msrp.close()
        await self.writer.close()  # what was accepted is committed
        self.metrics.stop()
        await self.store.close()

    async def _load_users(self) -> None:
        realm = self.config.auth_realm
        loaded: dict[tuple[str, Algorithm], str] = {}
        for user in await self.store.list_users(realm):
            loaded[(user.username, Algorithm.MD5)] = user.ha1_md5
            loaded[(user.username, Algorithm.SHA_256)] = user.ha1_sha256
        for name, password in self.config.users.items():
            for algorithm in (Algorithm.MD5, Algorithm.SHA_256):
                loaded[(name, algorithm)] = ha1(name, realm, password, algorithm)
        self._ha1 = loaded  # swapped whole: a reload also drops removed users

    async def reload_users(self) -> int:
        """Read the users again from the store (``pyim users add`` while running;
        the daemon does it on SIGHUP); returns how many there are. A store that is down
        keeps the users loaded before (and raises StoreError)."""
        await self._load_users()
        count = len(self._ha1) // 2
        log.info("users reloaded: %d", count)
        return count

    def _credentials(self, username: str, realm: str, algorithm: Algorithm) -> str | None:
        return self._ha1.get((username, algorithm.base))

    def knows(self, aor: str) -> bool:
        user = aor.split(":", 1)[-1].split("@", 1)[0]
        return (user, Algorithm.MD5) in self._ha1

    def _aor(self, uri: SipUri) -> str | None:
        """Our user's AOR for a Request-URI of our domain, else None."""
        if uri.user is None or uri.host not in self.registrar.config.domains:
            return None
        return f"sip:{uri.user}@{self.config.domain}"

    # -- SIP requests --------------------------------------------------------------------

    def _screen(self, incoming: IncomingRequest) -> bool:
        """New INVITEs: from whom (:meth:`_authorized`), only to users of this domain,
        within the session limit. False once answered."""
        if not self._authorized(incoming):
            return False
        target = self._aor(incoming.request.uri)
        if target is None or not self.knows(target):
            self.metrics.failures.labels("unknown_user").inc()
            incoming.respond(404, "Not Found")
            return False
        if len(self.legs) >= self.config.limits.max_sessions:
            self.metrics.failures.labels("too_many_sessions").inc()
            incoming.respond(503, "Service Unavailable (too many sessions)")
            return False
        return True

    def _authorized(self, incoming: IncomingRequest) -> bool:
        """May this INVITE or MESSAGE come in? From a trusted proxy, yes (it
        authenticated the sender). Behind a proxy, nothing else (403). Standalone,
        the sender proves who it is with Digest (401 and a challenge) and sends as
        itself: the From user is the authenticated user (403 otherwise). False once
        answered."""
        if incoming.source.host in self.config.trusted_proxies:
            return True
        if self._proxy is not None:
            self.metrics.failures.labels("untrusted_source").inc()
            incoming.respond(403, "Forbidden (requests come through the proxy)")
            return False
        verdict = authenticate(incoming, self.digest)
        if not isinstance(verdict, Ok):  # challenged (401)
            if verdict is not None and not isinstance(verdict, Stale):
                self.metrics.failures.labels("auth").inc()
            return False
        sender = incoming.request.from_.uri
        if sender.user != verdict.username or self._aor(sender) is None:
            self.metrics.failures.labels("from_not_authenticated_user").inc()
            incoming.respond(403, "Forbidden (From is not the authenticated user)")
            return False
        return True

    def _on_request(self, incoming: IncomingRequest) -> None:
        method = incoming.request.method
        if method == "REGISTER":
            self._on_register(incoming)
        elif method == "MESSAGE":
            self._spawn(self._on_page(incoming))
        elif method == "OPTIONS":
            incoming.respond(200, headers=[("Accept", "application/sdp, message/cpim")])
        elif method in ("SUBSCRIBE", "PUBLISH"):
            incoming.respond(489, "Bad Event")
        else:
            incoming.respond(405)

    def _on_register(self, incoming: IncomingRequest) -> None:
        if self._proxy is not None:
            # behind a proxy: it authenticated the REGISTER and replicates it to us
            if incoming.source.host not in self.config.trusted_proxies:
                self.metrics.failures.labels("untrusted_register").inc()
                incoming.respond(403, "Forbidden (REGISTER goes to the proxy)")
                return
            self._replica_service.handle(incoming)
        else:
            self._registrar_service.handle(incoming)
        contacts = sum(len(b) for b in self.registrar.bindings.values())
        self.metrics.registered.set(contacts)
        uri = incoming.request.to.uri
        if self.registrar.lookup(uri, self.sip.loop.time()):
            aor = self._user_aor(uri)
            self.deliverer(aor).kick()  # what waited for this user
            self._notify(aor)

    def _user_aor(self, uri: SipUri) -> str:
        return f"sip:{uri.user}@{self.config.domain}"

    async def _on_page(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        if not self._authorized(incoming):
            return
        target = self._aor(request.uri)
        if target is None or not self.knows(target):
            self.metrics.failures.labels("unknown_user").inc()
            incoming.respond(404)
            return
        sender = aor_of(request.from_)
        ctype = request.mime_type or "text/plain"
        if len(request.body) > self.config.limits.max_message_size:
            self.metrics.failures.labels("too_large").inc()
            incoming.respond(
                413, f"Request Entity Too Large (over {self.config.limits.max_message_size} bytes)"
            )
            return
        if not self._within_rate(sender):
            self.metrics.failures.labels("rate").inc()
            incoming.respond(
                503, "Service Unavailable (too many messages)", headers=[("Retry-After", "1")]
            )
            return
        mid = request.call_id
        imdn = wants_delivery_notice(ctype, request.body)
        try:
            await self._accept_message(target, sender, ctype, request.body, mid, imdn=imdn)
        except StoreError as exc:
            status, reason, label = store_refusal(exc)
            self.metrics.failures.labels(label).inc()
            headers = [("Retry-After", "5")] if status == 503 else None
            incoming.respond(status, f"{reason} ({one_line(exc, 80)})", headers=headers)
            return
        if self.legs.get(target, sender) is None:
            # (only once accepted: a refused page does not change how the rest goes;
            # set before the deliverer runs, as it only runs at our next await)
            self._page_only.add((target, sender))
        self.metrics.messages_in.labels("page").inc()
        incoming.respond(202, "Accepted")

    # -- sessions --------------------------------------------------------------------------

    async def _accept_loop(self) -> None:
        assert self.chat is not None
        while True:
            session = await self.chat.accept()
            owner, other = aor_of(session.dialog.remote), aor_of(session.dialog.local)
            other = self._aor(session.dialog.local.uri) or other
            self.streams.attach(self.legs.add(Leg(owner, other, session, incoming=True)))
            self._page_only.discard((owner, other))
            self.metrics.sessions.set(len(self.legs))
            self.deliverer(owner).kick()  # replies queued while the caller was away

    async def _on_message(self, leg: Leg, message: MessageReceived) -> None:
        """A message on a leg: queued for the other party; its 200 goes when stored.
        The leg's next messages are read meanwhile (they go into the same or the next
        commit, in order) up to ``STORING_PER_LEG`` not yet stored."""
        msrp = leg.session.msrp
        ctype = message.content_type or "text/plain"
        mid = message.message_id
        if ctype.split(";")[0].strip().lower() == IS_COMPOSING:
            other = self.legs.get(leg.other, leg.owner)
            if other is not None:
                with contextlib.suppress(Exception):
                    other.session.msrp.send_nowait(ctype, message.body, failure_report="no")
            msrp.confirm(mid)
            return
        if not self._within_rate(leg.owner):
            self.metrics.failures.labels("rate").inc()
            msrp.confirm(mid, 503, "too many messages")
            return
        wants_report = (message.headers.get("Success-Report") or "no").lower() == "yes"
        imdn = wants_report or wants_delivery_notice(ctype, message.body)
        if wants_report:
            # owed before the store write: the deliverer may deliver it during that await
            self._owed[mid] = leg
        stored = self._accept_message(leg.other, leg.owner, ctype, message.body, mid, imdn=imdn)
        leg.storing += 1
        stored.add_done_callback(functools.partial(self._stored, leg, mid))
        if leg.storing > STORING_PER_LEG:  # this one stored: all before it are too
            await asyncio.wait([stored])

    def _stored(self, leg: Leg, mid: str, stored: asyncio.Future[StoredMessage]) -> None:
        """A session message's store write ended: its 200, or the store's refusal."""
        leg.storing -= 1
        msrp = leg.session.msrp
        exc = stored.exception() if not stored.cancelled() else StoreUnavailable("cancelled")
        if exc is None:
            msrp.confirm(mid)
            self.metrics.messages_in.labels("session").inc()
            return
        self._owed.pop(mid, None)
        if not isinstance(exc, StoreError):
            log.error("message %s on %s not stored: %r", mid, leg.key, exc)
            msrp.confirm(mid, 500, "server error")
            return
        status, _, label = store_refusal(exc)
        self.metrics.failures.labels(label).inc()
        msrp.confirm(mid, 413 if status in (413, 486) else status, one_line(exc, 60))

    def _accept_message(
        self, recipient: str, sender: str, ctype: str, body: bytes, mid: str, *, imdn: bool
    ) -> asyncio.Future[StoredMessage]:
        """Durable first: queue (and history, one transaction), then wake the
        recipient's deliverer. Refusals (QueueFull, TooLarge, StoreUnavailable) are
        the future's StoreError."""
        stored = self.writer.enqueue(NewMessage(recipient, sender, ctype, body, mid, imdn, True))
        stored.add_done_callback(functools.partial(self._queued, recipient))
        return stored

    def _queued(self, recipient: str, stored: asyncio.Future[StoredMessage]) -> None:
        if stored.cancelled() or stored.exception() is not None:
            return
        self.metrics.stored.inc()
        self.deliverer(recipient).kick()

    def _on_leg_closed(self, leg: Leg) -> None:
        self.metrics.sessions.set(len(self.legs))
        for mid, owed in list(self._owed.items()):
            if owed is leg:
                del self._owed[mid]  # its sender gets an IMDN instead, if it asked

    async def _watch_queue(self) -> None:
        """``pyim_queue_depth`` from the store (the queue is shared by every process)."""
        while True:
            try:
                self.metrics.queued.set(await self.store.total_depth())
            except StoreError as exc:
                log.debug("queue depth not read: %s", exc)
            await asyncio.sleep(QUEUE_DEPTH_EVERY)

    def _within_rate(self, sender: str) -> bool:
        return self._rate.allow(sender)

    # -- delivery (DeliveryTarget) ---------------------------------------------------------

    def deliverer(self, recipient: str) -> Deliverer:
        deliverer = self._deliverers.get(recipient)
        if deliverer is None:
            deliverer = self._deliverers[recipient] = Deliverer(recipient, self)
        return deliverer

    def online(self, recipient: str) -> bool:
        return bool(self._contacts(recipient))

    def _contacts(self, recipient: str) -> list[SipUri]:
        """Where to reach ``recipient``: its contacts, or (behind a proxy) its AOR,
        which the proxy resolves itself."""
        uri = SipUri.parse(recipient)
        bindings = self.registrar.lookup(uri, self.sip.loop.time())
        if not bindings:
            return []
        if self._proxy is not None:
            return [uri]
        return [b.contact.uri for b in bindings]

    async def claim(self, recipient: str) -> list[StoredMessage]:
        return await self.store.claim(recipient, "server", LEASE_SECONDS, limit=CLAIM_BATCH)

    async def release(self, messages: list[StoredMessage]) -> None:
        await self.store.release([m.id for m in messages])

    def leg(self, recipient: str, sender: str) -> Leg | None:
        return self.legs.get(recipient, sender)

    def page_only(self, recipient: str, sender: str) -> bool:
        return (recipient, sender) in self._page_only

    async def open_leg(self, recipient: str, sender: str) -> Leg | None:
        """INVITE every contact of ``recipient`` on ``sender``'s behalf; first 2xx wins."""
        assert self.chat is not None
        contacts = self._contacts(recipient)
        if not contacts:
            return None
        pending: dict[asyncio.Task[ChatSession], SipUri] = {}
        transactions: dict[str, ClientTransaction] = {}
        for contact in contacts:
            task = asyncio.ensure_future(self._invite(contact, recipient, sender, transactions))
            pending[task] = contact
        winner: ChatSession | None = None
        codes: list[int] = []
        try:
            async with asyncio.timeout(self.config.limits.delivery_timeout + 5):
                while pending and winner is None:
                    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        pending.pop(task)
                        try:
                            session = task.result()
                        except ChatError as exc:
                            codes.append(exc.status)
                            continue
                        if winner is None:
                            winner = session
                        else:
                            await session.close()
        except TimeoutError:
            codes.append(408)
        for task, uri in pending.items():  # CANCEL the other branches
            tx = transactions.get(str(uri))
            if tx is not None:
                self.sip.cancel(tx)
            task.add_done_callback(self._close_late_winner)
        if winner is None:
            if codes and all(code in PAGE_ONLY for code in codes):
                self._page_only.add((recipient, sender))
            log.info("no device of %s took a session from %s: %s", recipient, sender, codes)
            return None
        leg = self.legs.add(Leg(recipient, sender, winner, incoming=False))
        self.streams.attach(leg)
        self.metrics.sessions.set(len(self.legs))
        return leg

    def _close_late_winner(self, task: asyncio.Task[ChatSession]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._spawn(task.result().close())

    async def _invite(
        self,
        contact: SipUri,
        recipient: str,
        sender: str,
        transactions: dict[str, ClientTransaction],
    ) -> ChatSession:
        assert self.chat is not None
        key = str(contact)
        dialects = [self._dialect[key]] if key in self._dialect else [False, True]
        last: ChatError | None = None
        for dialect in dialects:
            try:
                session = await self.chat.invite(
                    contact,
                    destination=self._destination(contact),
                    to=NameAddr(uri=SipUri.parse(recipient)),
                    from_=NameAddr(uri=SipUri.parse(sender)),
                    pjsua_dialect=dialect,
                    on_transaction=functools.partial(transactions.__setitem__, key),
                )
            except ChatError as exc:
                last = exc
                if exc.status != 488:
                    raise
                continue
            self._dialect[key] = dialect
            return session
        assert last is not None
        raise last

    async def send_page(self, message: StoredMessage) -> bool | None:
        """Deliver by MESSAGE (CPIM with the original sender and time) to a contact."""
        contacts = self._contacts(message.recipient)
        if not contacts:
            return None
        if len(message.body) > self.config.limits.max_page_size:
            await self._failed(message, 413, "too large for page mode")
            return True  # answered for good: a failure report, not a retry
        body = encode_cpim(
            sender=message.sender,
            recipient=message.recipient,
            text=message.body.decode("utf-8", "replace"),
            content_type=message.content_type,
        ).encode()
        response = await self._page_to(contacts[0], message.sender, message.recipient, body)
        return 200 <= response.status < 300

    async def _page_to(
        self, contact: SipUri, sender: str, recipient: str, body: bytes
    ) -> SipResponse:
        """A page-mode MESSAGE (CPIM body) from ``sender`` to a contact of ``recipient``."""
        request = self.sip.new_request(
            "MESSAGE",
            contact,
            from_=NameAddr(uri=SipUri.parse(sender)).with_tag(new_tag()),
            to=NameAddr(uri=SipUri.parse(recipient)),
            body=body,
            content_type=CPIM_TYPE,
        )
        return await self.sip.send(request, self._destination(contact))

    def _destination(self, contact: SipUri) -> Destination:
        if self._proxy is not None:
            return self._proxy
        return self.sip.destination_for_uri(contact)

    def delivered(self, message: StoredMessage, mode: str) -> asyncio.Future[None]:
        """The device acknowledged it: off the queue (the future: once committed);
        the sender learns it."""
        self.metrics.delivered.inc()
        self.metrics.messages_out.labels(mode).inc()
        return self._settle(message, 200, "OK", "delivered")

    def _failed(self, message: StoredMessage, code: int, reason: str) -> asyncio.Future[None]:
        self.metrics.failures.labels(f"undeliverable_{code}").inc()
        return self._settle(message, code, reason, "failed")

    def _settle(
        self, message: StoredMessage, code: int, reason: str, status: str
    ) -> asyncio.Future[None]:
        """Off the queue; a Success-Report (or failure REPORT) in the sender's session if
        it is still open, else an IMDN in her open session with the recipient, else
        (when asked for) an IMDN queued in the same transaction as the acknowledgement
        and sent by page mode once committed."""
        leg = self._owed.pop(message.message_id, None)
        notify: str | None = None
        if (
            leg is not None
            and leg.open
            and leg.session.msrp.report(message.message_id, code, reason)
        ):
            self.metrics.notifications.labels("report").inc()
        elif message.imdn:
            session = self.legs.get(message.sender, message.recipient)
            if session is None or not self._imdn_in_session(session, message, status):
                notify = status
        acked = self.writer.ack(message.id, notify)
        acked.add_done_callback(functools.partial(self._acked, message.sender, notify))
        return acked

    def _acked(self, sender: str, notify: str | None, acked: asyncio.Future[None]) -> None:
        if acked.cancelled() or acked.exception() is not None:
            return
        if notify is not None:
            self._notify(sender)

    def _imdn_in_session(self, leg: Leg, message: StoredMessage, status: str) -> bool:
        """An IMDN (RFC 5438) to the sender inside her open session with the recipient."""
        body = imdn_message(
            server=message.recipient,
            to=message.sender,
            recipient=message.recipient,
            message_id=message.message_id,
            status=status,
            when=time.time(),
        ).encode()
        try:
            leg.session.msrp.send_nowait(CPIM_TYPE, body)
        except (ConnectionError, RuntimeError, ValueError):
            return False
        self.metrics.notifications.labels("imdn_session").inc()
        return True

    def _notify(self, to: str) -> None:
        """Send the IMDNs waiting for ``to`` (in the background: delivery does not wait
        for the sender's device). One sender of notifications per addressee at a time,
        so that none goes twice; asked again while at work, it looks again after."""
        if to in self._notifying:
            self._notify_again.add(to)
            return
        self._notifying.add(to)
        self._spawn(self._send_notifications(to))

    async def _send_notifications(self, to: str) -> None:
        try:
            while True:
                self._notify_again.discard(to)
                more = await self._send_notification_batch(to)
                if not more and to not in self._notify_again:
                    return
        except StoreError as exc:
            log.warning("notifications to %s wait: %s", to, exc)
        finally:
            self._notifying.discard(to)
            self._notify_again.discard(to)

    async def _send_notification_batch(self, to: str) -> bool:
        """IMDNs waiting for ``to``, by page mode, once it is registered; the first one
        refused stops the batch (the rest wait for the next REGISTER or delivery). True
        when all of a full batch went (there may be more)."""
        contacts = self._contacts(to)
        if not contacts:
            return False
        sent = []
        server = f"sip:pyim@{self.config.domain}"
        notes = await self.store.pending_notifications(to)
        try:
            for note in notes:
                body = imdn_message(
                    server=server,
                    to=to,
                    recipient=note.recipient,
                    message_id=note.about_message_id,
                    status=note.status,
                    when=note.at,
                ).encode()
                response = await self._page_to(contacts[0], server, to, body)
                if not 200 <= response.status < 300:
                    log.info("IMDN to %s refused: %d %s", to, response.status, response.reason)
                    break
                sent.append(note.id)
                self.metrics.notifications.labels("imdn").inc()
        finally:  # what went is off the outbox even if we are stopped midway
            if sent:
                await self.store.ack_notifications(sent)
        return len(notes) >= 100 and len(sent) == len(notes)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
