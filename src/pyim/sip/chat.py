"""Chat sessions: MSRP (RFC 4975) set up by SIP INVITE, both sides.

:class:`ChatStack` joins a :class:`~pyim.sip.stack.SipStack` and an
:class:`~pyim.msrp.transport.MsrpEndpoint`::

    chat = ChatStack(sip, msrp, user="alice")
    session = await chat.invite(SipUri.parse("sip:bob@127.0.0.1:5070"))
    await session.send("hello")                  # -> DeliveryResult
    async for message in session: ...            # MessageReceived
    await session.close()                        # BYE, then the MSRP session ends

    incoming = await chat.accept()               # the UAS side

The offer carries ``m=message`` only, or also an inactive ``m=audio`` line for
pjsua2 peers (``pjsua_dialect=True``); the answerer accepts both and answers in
kind (:mod:`pyim.sip.sdp`).  The MSRP connection's direction follows ``a=setup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ..digest import DigestClient
from ..msrp.session import SessionConfig
from ..msrp.session_events import MessageReceived
from ..msrp.transport import DeliveryResult, MsrpEndpoint, Session
from ..msrp.uri import MsrpUri
from .dialog import Dialog, DialogError, DialogId, new_tag
from .message import SipRequest, SipResponse
from .sdp import (
    DEFAULT_ACCEPT_TYPES,
    AnswerRejected,
    OfferRejected,
    SdpParseError,
    SessionDescription,
    answer_msrp_offer,
    build_msrp_offer,
    parse_msrp_answer,
)
from .stack import IncomingRequest, RequestHandler, SipStack
from .transaction import ClientTransaction, Destination
from .uri import NameAddr, SipUri

log = logging.getLogger(__name__)


class ChatError(Exception):
    """A chat session could not be set up; ``status`` is the SIP status that said so."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(eq=False, slots=True)
class ChatSession:
    """One chat: a SIP dialog and the MSRP session it negotiated.

    ``sdp`` is our offer or answer as sent (a refresh is answered with it again);
    a server holds many sessions, so the parsed form is not kept (``local_sdp``)."""

    chat: ChatStack
    dialog: Dialog
    msrp: Session
    destination: Destination
    sdp: bytes
    # set when the chat ends; the Event is made on first use (a server holds many
    # idle sessions, and an asyncio.Event costs ~0.7 KB)
    _ended: bool = False
    _closed_event: asyncio.Event | None = None

    @property
    def local_sdp(self) -> SessionDescription:
        """Our offer or answer, parsed."""
        return SessionDescription.parse(self.sdp)

    @property
    def closed(self) -> asyncio.Event:
        """Set once the chat has ended (our BYE or the peer's)."""
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
            if self._ended:
                self._closed_event.set()
        return self._closed_event

    def _mark_ended(self) -> bool:
        """Mark the chat ended; False if it already was."""
        if self._ended:
            return False
        self._ended = True
        if self._closed_event is not None:
            self._closed_event.set()
        return True

    @property
    def remote(self) -> NameAddr:
        return self.dialog.remote

    async def send(
        self,
        content: str | bytes,
        content_type: str = "text/plain",
        *,
        success_report: bool = True,
    ) -> DeliveryResult:
        """Send a message in the session; returns how it was delivered."""
        body = content.encode() if isinstance(content, str) else content
        return await self.msrp.send(content_type, body, success_report=success_report)

    async def receive(self) -> MessageReceived:
        return await self.msrp.receive()

    def __aiter__(self) -> AsyncIterator[MessageReceived]:
        return self.msrp.__aiter__()

    async def close(self) -> None:
        """Hang up: BYE (if the peer did not already) and end the MSRP session."""
        if self._mark_ended():
            self.chat._sessions.pop(self.dialog.id, None)
            bye = self.dialog.request("BYE")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.chat.sip.send(bye, self._next_hop(bye)), 10)
        await self.msrp.close()

    def _next_hop(self, request: SipRequest) -> Destination:
        if request.routes:
            return self.chat.sip.destination_for(request)
        dest = self.chat.sip.destination_for(request)
        return dest if dest.transport == self.destination.transport else self.destination

    async def _ended_by_peer(self) -> None:
        self._mark_ended()
        await self.msrp.close()


class ChatStack:
    """Sets up and answers chat sessions; other requests go to ``fallback``."""

    def __init__(
        self,
        sip: SipStack,
        msrp: MsrpEndpoint,
        *,
        user: str = "pyim",
        accept_types: tuple[str, ...] = (*DEFAULT_ACCEPT_TYPES, "*"),
        fallback: RequestHandler | None = None,
        setup_timeout: float = 30.0,
        screen: Callable[[IncomingRequest], bool] | None = None,
        session_config: SessionConfig | None = None,
    ) -> None:
        """``screen`` sees each new INVITE before it is answered: True goes on with it;
        False means it has answered it (a refusal such as 404 for a user the server
        does not know, or a Digest challenge).
        ``session_config`` is used for every MSRP session (default: the endpoint's)."""
        self.sip = sip
        self.msrp = msrp
        self.user = user
        self.accept_types = accept_types
        self.fallback = fallback
        self.setup_timeout = setup_timeout
        self.screen = screen
        self.session_config = session_config
        self.incoming: asyncio.Queue[ChatSession] = asyncio.Queue()
        self._sessions: dict[DialogId, ChatSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        sip.on_request = self.handle
        sip.on_ack_timeout = self._ack_timeout

    def _ack_timeout(self, invite: SipRequest, response: SipResponse) -> None:
        """Our 2xx was never ACKed (§13.3.1.4): the session is over, hang it up."""
        key = DialogId(invite.call_id, response.to.tag or "", invite.from_.tag or "")
        session = self._sessions.get(key)
        if session is not None:
            self._spawn(session.close())

    # -- UAC -------------------------------------------------------------------------------

    async def invite(
        self,
        target: SipUri,
        *,
        to: NameAddr | None = None,
        destination: Destination | None = None,
        pjsua_dialect: bool = False,
        auth: DigestClient | None = None,
        from_: NameAddr | None = None,
        on_transaction: Callable[[ClientTransaction], None] | None = None,
    ) -> ChatSession:
        """INVITE ``target`` to a chat; raises :class:`ChatError` if it is refused.

        ``from_`` replaces our own identity (a B2BUA calls on someone's behalf);
        ``on_transaction`` gets the INVITE's client transaction (to CANCEL it)."""
        msrp_session = self.msrp.new_session(self.session_config)
        dest = destination or self.sip.destination_for_uri(target)
        offer = build_msrp_offer(
            local_path=msrp_session.path,
            address=self.sip.config.host,
            accept_types=self.accept_types,
            tls=self.msrp.scheme == "msrps",
            pjsua_dialect=pjsua_dialect,
            username=self.user,
        )
        local = (
            from_ or NameAddr(uri=SipUri(scheme="sip", user=self.user, host=self.sip.config.host))
        ).with_tag(new_tag())
        invite = self.sip.new_request(
            "INVITE",
            target,
            from_=local,
            to=to or NameAddr(uri=target),
            body=offer.encode(),
            content_type="application/sdp",
            headers=[("Contact", str(self.sip.contact(dest.transport, self.user)))],
        )
        sent: list[SipRequest] = []  # the INVITE as last sent (after a challenge: CSeq + 1)

        def started(tx: ClientTransaction) -> None:
            sent.append(tx.request)
            if on_transaction is not None:
                on_transaction(tx)

        try:
            response = await self.sip.send(invite, dest, auth=auth, on_transaction=started)
            if not 200 <= response.status < 300:
                raise ChatError(response.status, response.reason)
            invite = sent[-1] if sent else invite  # the dialog and the ACK are of this one
            dialog = Dialog.as_uac(invite, response)
            self.sip.ack(dialog.ack(invite), invite, self._hop(dialog, dest))
            try:
                answer = SessionDescription.parse(response.body)
                negotiated = parse_msrp_answer(offer, answer)
            except (SdpParseError, AnswerRejected) as exc:
                session = ChatSession(self, dialog, msrp_session, dest, invite.body)
                await session.close()
                raise ChatError(488, f"unusable answer: {exc}") from None
            session = ChatSession(self, dialog, msrp_session, dest, invite.body)
            self._sessions[dialog.id] = session
            try:
                await msrp_session.start(
                    list(negotiated.remote.path),
                    active=negotiated.active,
                    timeout=self.setup_timeout,
                )
            except (TimeoutError, OSError) as exc:
                await session.close()
                raise ChatError(503, f"MSRP connection failed: {exc}") from None
            return session
        except BaseException:
            if not msrp_session.closed:
                await msrp_session.close()
            raise

    def _hop(self, dialog: Dialog, fallback: Destination) -> Destination:
        request = dialog.request("ACK", cseq=dialog.local_seq)
        dest = self.sip.destination_for(request)
        return dest if request.routes or dest.transport == fallback.transport else fallback

    # -- UAS -------------------------------------------------------------------------------

    async def accept(self) -> ChatSession:
        """The next chat session someone INVITEd us to."""
        return await self.incoming.get()

    def handle(self, incoming: IncomingRequest) -> None:
        """The SIP stack's request handler."""
        req = incoming.request
        to_tag = req.to.tag
        if to_tag is not None and req.method != "ACK":
            self._in_dialog(incoming)
        elif req.method == "INVITE":
            self._on_invite(incoming)
        elif req.method == "ACK":
            return
        elif self.fallback is not None:
            result = self.fallback(incoming)
            if asyncio.iscoroutine(result):
                self._spawn(result)
        elif req.method == "OPTIONS":
            incoming.respond(200, headers=[("Accept", "application/sdp")])
        elif req.method == "CANCEL":
            return
        else:
            incoming.respond(405)

    def _on_invite(self, incoming: IncomingRequest) -> None:
        req = incoming.request
        if req.mime_type != "application/sdp" or not req.body:
            incoming.respond(488, "Not Acceptable Here (an SDP offer with m=message is needed)")
            return
        if self.screen is not None and not self.screen(incoming):
            return
        msrp_session = self.msrp.new_session(self.session_config)
        try:
            offer = SessionDescription.parse(req.body)
            answer = answer_msrp_offer(
                offer,
                local_path=msrp_session.path,
                address=self.sip.config.host,
                accept_types=self.accept_types,
                tls_supported=self.msrp.scheme == "msrps",
                username=self.user,
            )
        except SdpParseError as exc:
            self._spawn(msrp_session.close())
            incoming.respond(400, f"Bad Request (SDP: {exc})")
            return
        except OfferRejected as exc:
            self._spawn(msrp_session.close())
            incoming.respond(exc.status, f"Not Acceptable Here ({exc.reason})")
            return
        sdp = answer.sdp.encode()
        response = incoming.respond(
            200,
            to_tag=new_tag(),
            body=sdp,
            content_type="application/sdp",
            contact=self.sip.contact(incoming.source.transport, self.user),
        )
        try:
            dialog = Dialog.as_uas(req, response)
        except DialogError as exc:
            log.info("INVITE without a usable dialog: %s", exc)
            self._spawn(msrp_session.close())
            return
        session = ChatSession(self, dialog, msrp_session, incoming.source, sdp)
        self._sessions[dialog.id] = session
        self._spawn(self._connect(session, list(answer.remote.path), answer.active))

    async def _connect(self, session: ChatSession, path: list[MsrpUri], active: bool) -> None:
        try:
            await session.msrp.start(path, active=active, timeout=self.setup_timeout)
        except (TimeoutError, OSError) as exc:
            log.info("MSRP connection of %s failed: %s", session.dialog.id.call_id, exc)
            await session.close()
            return
        await self.incoming.put(session)

    def _in_dialog(self, incoming: IncomingRequest) -> None:
        req = incoming.request
        key = DialogId(req.call_id, req.to.tag or "", req.from_.tag or "")
        session = self._sessions.get(key)
        if session is None:
            if req.method != "CANCEL":
                incoming.respond(481)
            return
        try:
            session.dialog.receive_request(req)
        except DialogError as exc:
            incoming.respond(exc.status, exc.reason)
            return
        if req.method == "BYE":
            incoming.respond(200)
            del self._sessions[key]
            self._spawn(session._ended_by_peer())
        elif req.method in ("INVITE", "UPDATE"):
            # a refresh (RFC 4028 session timer or a target refresh): same session, same SDP
            incoming.respond(
                200,
                body=session.sdp if req.body else b"",
                content_type="application/sdp",
                contact=self.sip.contact(incoming.source.transport, self.user),
            )
        elif req.method == "MESSAGE" and self.fallback is not None:
            result = self.fallback(incoming)
            if asyncio.iscoroutine(result):
                self._spawn(result)
        else:
            incoming.respond(200 if req.method in ("OPTIONS", "INFO") else 405)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Hang up every session."""
        for session in list(self._sessions.values()):
            await session.close()
        for task in list(self._tasks):
            task.cancel()
