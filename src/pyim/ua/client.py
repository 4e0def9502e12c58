"""The asyncio face of pyim.ua: :class:`Client`.

::

    client = Client(ClientConfig(account="sip:alice@example.test", password="..."))
    await client.start()                       # REGISTER (digest); UaError if refused
    result = await client.send_page("sip:bob@example.test", "hi")   # PageResult
    chat = await client.chat("sip:bob@example.test")                # ChatSession
    await chat.send("hello"); reply = await chat.receive(); await chat.close()
    async for event in client.events(): ...   # RegistrationChanged, PageReceived, ...
    await client.stop()                        # safe in every state, idempotent

pjsua2 runs on its own thread (:mod:`pyim.ua.pjthread`, :mod:`pyim.ua.core`); this
module never touches a pjsua2 object. One client per process (one pjsua2 Endpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..msrp.transport import MsrpEndpoint, Session
from ..sip.sdp import (
    AnswerRejected,
    MsrpAnswer,
    SdpParseError,
    SessionDescription,
    parse_msrp_answer,
)
from .chat import CallWatch, ChatSession, IncomingCall
from .config import ClientConfig
from .cpim import CPIM_TYPE, CpimError, encode_cpim, parse_cpim, strip_uri
from .dialect import message_media
from .errors import ChatFailed, PageTooLarge, RegistrationError, TooManyCalls, UaError
from .events import BuddyStatus, Event, IncomingChat, PageReceived, PageStatus, RegistrationChanged

if TYPE_CHECKING:
    from .core import PjCore
    from .pjthread import PjThread

log = logging.getLogger(__name__)

#: PJSIP_MAX_PKT_LEN: a SIP message pjsua builds is at most 4000 bytes, headers included.
PJSIP_PACKET_LIMIT = 4000
MAX_CALLS = 4
#: MSRP sessions kept ready for incoming calls.
SPARE_SESSIONS = 2
PAGE_HINT = "use a chat session (client.chat) for larger content"

_slot = threading.Lock()
_active: list[Client] = []


@dataclass(frozen=True, slots=True)
class PageResult:
    """The final answer to a MESSAGE: ``code`` (200/202 = accepted) and ``reason``."""

    code: int
    reason: str
    message_id: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


@dataclass(eq=False, slots=True)
class _PendingPage:
    message_id: str
    to: str
    body: str
    future: asyncio.Future[PageResult]


class Client:
    """A SIP/MSRP instant-messaging client on pjsua2 (see the module docstring)."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.registered = False
        #: the SIP transport's published address ("host:port") once started
        self.local_address = ""
        #: NAT discovery, set by ``start()``: ``mapped_address`` is the address the STUN
        #: server (``stun_servers``) reported for the SIP UDP socket, which pjsua then
        #: publishes in Via and Contact ("" without STUN, if no server answered, or over
        #: TCP/TLS, for which pjsua asks no STUN server); ``bound_address`` is the
        #: socket's own; ``stun_server`` the address of the server pjsua used. (Should
        #: the server answer pjsua's probe but not the SIP socket's own Binding, pjsua
        #: only logs it and publishes the bound address, which pjsua2 cannot tell us.)
        self.mapped_address = ""
        self.bound_address = ""
        self.stun_server = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: PjThread | None = None
        self._core: PjCore | None = None
        self._msrp: MsrpEndpoint | None = None
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._watches: dict[int, CallWatch] = {}
        self._incoming: dict[int, IncomingCall] = {}
        self._pages: list[_PendingPage] = []
        self._reg_waiter: asyncio.Future[RegistrationChanged] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._started = False
        self._stop_task: asyncio.Future[None] | None = None
        self._spares: dict[int, Session] = {}
        self._tokens = itertools.count(1)

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self, *, wait_registered: bool = True) -> None:
        """Start pjsua2 on its thread, the SIP transport and the account.

        With ``register`` configured, wait (``register_wait`` seconds) for the first
        answer unless ``wait_registered=False``; a refusal or no answer stops the
        client and raises :class:`RegistrationError` with a one-line reason.
        """
        if self._started:
            raise UaError("this client was already started")
        self._started = True
        try:
            from . import core as core_module
            from .pjthread import PjThread
        except ImportError as exc:
            raise UaError(
                f"pjsua2 is not importable ({exc}): pip install 'pyim[ua]' "
                "(pjsua2-python==2.15.1.post1)"
            ) from None
        with _slot:
            if _active:
                raise UaError(
                    "a pyim.ua Client is already running in this process "
                    "(pjsua2 allows one Endpoint per process)"
                )
            _active.append(self)
        self._loop = loop = asyncio.get_running_loop()
        try:
            self._msrp = await MsrpEndpoint.create(self.config.msrp_host)
            self._thread = PjThread(loop, translate=core_module.translate)
            self._core = core = core_module.PjCore(self.config, self._thread, self)
            await self._thread.start(core.init, core.shutdown)
            self.mapped_address = core.mapped_address
            self.bound_address = core.bound_address
            self.stun_server = core.stun_server
            if self.config.register:
                self._reg_waiter = loop.create_future()
            self._refill_spares()
            self.local_address = await self._thread.call(core.create_account)
            if self.config.register and wait_registered:
                await self._wait_registered()
        except BaseException:
            await self.stop()
            raise

    async def _wait_registered(self) -> None:
        assert self._reg_waiter is not None
        wait = self.config.register_wait
        try:
            event = await asyncio.wait_for(asyncio.shield(self._reg_waiter), wait)
        except TimeoutError:
            raise RegistrationError(
                f"registration timed out: no answer from {self.config.registrar} in {wait:g}s"
            ) from None
        if not 200 <= event.code < 300:
            what = f"{event.code} {event.reason}" if event.code else event.reason
            hint = " (wrong user name or password?)" if event.code in (401, 403, 407) else ""
            raise RegistrationError(f"registration refused: {what}{hint}", event.code, event.reason)

    async def stop(self) -> None:
        """Hang up, unregister, drop every pjsua2 object and destroy the library.

        Idempotent and safe in every state (idle, registering, in a call, with a
        MESSAGE in flight): whatever is pending fails with :class:`UaError`."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        try:
            for watch in list(self._watches.values()):
                if watch.session is not None:
                    watch.session.closed.set()
                    with contextlib.suppress(Exception):
                        await watch.session.msrp.close()
            for incoming in list(self._incoming.values()):
                incoming.decided = True
                with contextlib.suppress(Exception):
                    await incoming.msrp.close()
            self._incoming.clear()
            for spare in list(self._spares.values()):
                with contextlib.suppress(Exception):
                    await spare.close()
            self._spares.clear()
            if self._thread is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._thread.stop()), 30)
                except TimeoutError:
                    log.error("the pjsua2 thread did not stop within 30 s")
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._thread.join, 5.0)
            stopped = UaError("the client stopped")
            for page in self._pages:
                if not page.future.done():
                    page.future.set_exception(
                        UaError("the client stopped before the MESSAGE was answered")
                    )
            self._pages.clear()
            if self._reg_waiter is not None and not self._reg_waiter.done():
                self._reg_waiter.set_exception(stopped)
                self._reg_waiter.exception()  # retrieved: no "never retrieved" warning
            for watch in self._watches.values():
                watch.disconnected.set()
            for task in list(self._tasks):
                task.cancel()
            if self._msrp is not None:
                await self._msrp.close()
        finally:
            self.registered = False
            self._events.put_nowait(None)
            with _slot:
                if self in _active:
                    _active.remove(self)

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _running(self) -> tuple[PjThread, PjCore]:
        if self._thread is None or self._core is None or self._stop_task is not None:
            raise UaError("the client is not running (start() it first)")
        return self._thread, self._core

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def events(self) -> AsyncIterator[Event]:
        """Events as they happen, until the client stops (one consumer)."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # later iterators end too
                return
            yield event

    def _emit(self, event: Event) -> None:
        if self._stop_task is None:
            self._events.put_nowait(event)

    # -- registration --------------------------------------------------------------------------

    async def set_registration(self, on: bool) -> None:
        """Re-REGISTER now (``on``) or unregister."""
        thread, core = self._running()
        await thread.call(lambda: core.set_registration(on))

    def _on_reg_state(self, code: int, reason: str, active: bool) -> None:
        self.registered = active
        event = RegistrationChanged(code, reason, active)
        if self._reg_waiter is not None and not self._reg_waiter.done():
            self._reg_waiter.set_result(event)
        self._emit(event)

    # -- page mode -----------------------------------------------------------------------------

    async def send_page(
        self, uri: str, text: str, *, cpim: bool = False, timeout: float = 40.0
    ) -> PageResult:
        """Send a page-mode MESSAGE (text/plain, or message/cpim wrapping it).

        Raises :class:`PageTooLarge` over PJSIP's 4000-byte packet limit."""
        thread, core = self._running()
        if cpim:
            body = encode_cpim(sender=self.config.account, recipient=uri, text=text)
            content_type = CPIM_TYPE
        else:
            body, content_type = text, "text/plain"
        size = len(body.encode())
        if size >= PJSIP_PACKET_LIMIT:
            raise PageTooLarge(
                f"the message is {size} bytes: a page-mode MESSAGE must fit PJSIP's "
                f"{PJSIP_PACKET_LIMIT}-byte packet with its headers; {PAGE_HINT}"
            )
        assert self._loop is not None
        page = _PendingPage(secrets.token_hex(8), uri, body, self._loop.create_future())
        self._pages.append(page)
        try:
            page.to = await thread.call(lambda: core.send_page(uri, content_type, body))
        except PageTooLarge as exc:
            self._discard(page)
            raise PageTooLarge(f"the message ({size} bytes) is too large: {exc}") from None
        except BaseException:
            self._discard(page)
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(page.future), timeout)
        except TimeoutError:
            self._discard(page)
            raise UaError(f"no answer to the MESSAGE to {uri} in {timeout:g}s") from None

    def _discard(self, page: _PendingPage) -> None:
        with contextlib.suppress(ValueError):
            self._pages.remove(page)
        if page.future.done() and not page.future.cancelled():
            page.future.exception()  # retrieved: pjsua may report a failure twice
        page.future.cancel()

    def _on_page_status(self, to: str, body: str, code: int, reason: str) -> None:
        page = next((p for p in self._pages if p.body == body and p.to == to), None)
        page = page or next((p for p in self._pages if p.body == body), None)
        if page is None:
            log.info("status %d %s of an unknown MESSAGE to %s", code, reason, to)
            return
        self._pages.remove(page)
        self._emit(PageStatus(page.message_id, code, reason))
        if not page.future.done():
            if "too long" in reason.lower() or "too big" in reason.lower():
                page.future.set_exception(
                    PageTooLarge(
                        f"the MESSAGE is over PJSIP's packet limit ({reason}); {PAGE_HINT}"
                    )
                )
            else:
                page.future.set_result(PageResult(code, reason, page.message_id))

    def _on_page(self, sender: str, content_type: str, body: str) -> None:
        sender = strip_uri(sender)
        if content_type.split(";")[0].strip().lower() == CPIM_TYPE:
            try:
                message = parse_cpim(body)
            except CpimError as exc:
                log.info("a message/cpim MESSAGE from %s that does not parse: %s", sender, exc)
            else:
                self._emit(
                    PageReceived(sender, message.content_type, message.body, message.header_dict())
                )
                return
        self._emit(PageReceived(sender, content_type, body))

    # -- presence ------------------------------------------------------------------------------

    async def subscribe(self, uri: str) -> None:
        """Watch ``uri``'s presence; changes come as :class:`BuddyStatus` events."""
        thread, core = self._running()
        await thread.call(lambda: core.subscribe(uri))

    async def unsubscribe(self, uri: str) -> None:
        thread, core = self._running()
        await thread.call(lambda: core.unsubscribe(uri))

    async def set_presence(self, online: bool, note: str = "") -> None:
        """Our own status (open/closed + note) for watchers (and PUBLISH if enabled)."""
        thread, core = self._running()
        await thread.call(lambda: core.set_presence(online, note))

    publish = set_presence

    def _on_buddy(self, uri: str, online: bool, note: str) -> None:
        self._emit(BuddyStatus(uri, online, note))

    # -- chat sessions -------------------------------------------------------------------------

    def _live_calls(self) -> int:
        return sum(1 for w in self._watches.values() if not w.disconnected.is_set())

    async def chat(self, uri: str, *, timeout: float = 30.0) -> ChatSession:
        """INVITE ``uri`` to a chat (pjsua dialect) and connect MSRP. Raises
        :class:`TooManyCalls` (4 per process) or :class:`ChatFailed`."""
        thread, core = self._running()
        assert self._msrp is not None
        if self._live_calls() >= MAX_CALLS:
            raise TooManyCalls(
                f"too many calls: pjsua2-python allows {MAX_CALLS} per process "
                "(PJSUA_MAX_CALLS); close a chat first"
            )
        session = self._msrp.new_session()
        media = message_media(session.path, self.config.msrp_host, tls=self._msrp.scheme == "msrps")
        watch = CallWatch(core.new_handle())
        self._watches[watch.handle] = watch
        try:
            await thread.call(lambda: core.make_call(watch.handle, uri, media))
            try:
                confirmed = await watch.settled(timeout)
            except TimeoutError:
                raise ChatFailed(f"no answer from {uri} in {timeout:g}s") from None
            if not confirmed:
                raise ChatFailed(
                    f"chat with {uri} refused: {watch.code} {watch.reason}", watch.code
                )
            try:
                negotiated = parse_msrp_answer(
                    SessionDescription.parse(watch.offer), SessionDescription.parse(watch.answer)
                )
            except (SdpParseError, AnswerRejected, ValueError) as exc:
                problems = "; ".join(watch.problems)
                raise ChatFailed(f"unusable answer from {uri}: {exc} {problems}".strip()) from None
            try:
                await session.start(
                    list(negotiated.remote.path), active=negotiated.active, timeout=timeout
                )
            except (TimeoutError, OSError) as exc:
                raise ChatFailed(f"MSRP connection with {uri} failed: {exc!r}") from None
            return ChatSession(self, watch, uri, session, outgoing=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._hangup(watch, 5.0)
            await session.close()
            raise

    async def accept(
        self, incoming: IncomingChat | IncomingCall, timeout: float = 30.0
    ) -> ChatSession:
        call = incoming.chat if isinstance(incoming, IncomingChat) else incoming
        return await call.accept(timeout)

    def _refill_spares(self) -> None:
        """Keep MSRP sessions ready for incoming calls (the pjsua2 thread takes their
        paths inside onIncomingCall, where it cannot wait for asyncio)."""
        if self._msrp is None or self._core is None or self._stop_task is not None:
            return
        while len(self._spares) < SPARE_SESSIONS:
            session = self._msrp.new_session()
            token = next(self._tokens)
            self._spares[token] = session
            self._core.spare_paths.put((token, list(session.path)))

    def _on_incoming_call(self, handle: int, remote: str, token: int, answer: MsrpAnswer) -> None:
        session = self._spares.pop(token, None)
        self._refill_spares()
        if session is None:  # stopping
            return
        watch = CallWatch(handle)
        self._watches[handle] = watch
        incoming = IncomingCall(self, watch, strip_uri(remote), session, answer)
        self._incoming[handle] = incoming
        self._emit(IncomingChat(incoming))

    async def _reject_handle(self, handle: int, code: int) -> None:
        thread, core = self._running()
        with contextlib.suppress(UaError, RuntimeError):
            await thread.call(lambda: core.answer(handle, code))

    async def _reject(self, incoming: IncomingCall, code: int) -> None:
        self._incoming.pop(incoming.watch.handle, None)
        await self._reject_handle(incoming.watch.handle, code)

    async def _accept(self, incoming: IncomingCall, timeout: float) -> ChatSession:
        thread, core = self._running()
        watch = incoming.watch
        self._incoming.pop(watch.handle, None)
        try:
            await thread.call(lambda: core.answer(watch.handle, 200))
            try:
                confirmed = await watch.settled(timeout)
            except TimeoutError:
                raise ChatFailed(f"no ACK from {incoming.peer} in {timeout:g}s") from None
            if not confirmed:
                raise ChatFailed(f"the chat with {incoming.peer} ended before it began")
            negotiated = incoming.negotiated
            try:
                await incoming.msrp.start(
                    list(negotiated.remote.path), active=negotiated.active, timeout=timeout
                )
            except (TimeoutError, OSError) as exc:
                raise ChatFailed(f"MSRP connection with {incoming.peer} failed: {exc!r}") from None
            return ChatSession(self, watch, incoming.peer, incoming.msrp, outgoing=False)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._hangup(watch, 5.0)
            await incoming.msrp.close()
            raise

    async def _hangup(self, watch: CallWatch, timeout: float) -> None:
        if watch.disconnected.is_set() or self._stop_task is not None:
            return
        thread, core = self._running()
        await thread.call(lambda: core.hangup(watch.handle))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch.disconnected.wait(), timeout)

    def _on_call_state(
        self, handle: int, state: str, code: int, reason: str, offer: str, answer: str
    ) -> None:
        watch = self._watches.get(handle)
        if watch is None:
            return
        watch.update(state, code, reason, offer, answer)
        if state == "disconnected":
            del self._watches[handle]
            incoming = self._incoming.pop(handle, None)
            if incoming is not None:
                incoming.decided = True
                self._spawn(incoming.msrp.close())
            if watch.session is not None and not watch.session.closed.is_set():
                self._spawn(watch.session._ended_by_peer())

    def _on_call_problem(self, handle: int, problem: str) -> None:
        watch = self._watches.get(handle)
        if watch is not None:
            watch.problems.append(problem)
