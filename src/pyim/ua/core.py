"""pjsua2's side of a client: the Endpoint, transport, Account, Calls and Buddies.

Every method here runs on the pjsua2 thread (:class:`~pyim.ua.pjthread.PjThread`);
the asyncio side calls them through ``thread.submit``. Teardown order, which pjsua2
enforces by aborting: hang up every call and wait for DISCONNECTED, drop the Calls,
the Buddies and the Account (their destructors run here), then ``libDestroy``.
"""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import time
from collections.abc import Callable

import pjsua2 as pj

from ..msrp.uri import MsrpUri
from ..sip.sdp import (
    MediaDescription,
    OfferRejected,
    SdpParseError,
    SessionDescription,
    answer_msrp_offer,
)
from .config import ClientConfig
from .dialect import ACCEPT_TYPES, with_connection
from .errors import PageTooLarge, TooManyCalls, UaError
from .listener import Listener
from .pjaccount import Account, Buddy, account_config, with_transport
from .pjcall import ChatCall, guarded
from .pjthread import PjThread, Poll

log = logging.getLogger(__name__)

#: pjsua2-python 2.15.1 is compiled with PJSUA_MAX_CALLS = 4.
MAX_CALLS = 4
PJ_ETOOMANY = 70010
PJSIP_EMSGTOOLONG = 171023
TRANSPORT_TYPES = {
    "udp": "PJSIP_TRANSPORT_UDP",
    "tcp": "PJSIP_TRANSPORT_TCP",
    "tls": "PJSIP_TRANSPORT_TLS",
}
TOO_MANY_CALLS = (
    f"too many calls: pjsua2-python allows {MAX_CALLS} per process (PJSUA_MAX_CALLS); "
    "close a chat first"
)
PAGE_HINT = "use a chat session (client.chat) for larger content"


def translate(exc: BaseException) -> BaseException:
    """A pjsua2.Error (which must not leave this thread as such) -> UaError."""
    if isinstance(exc, pj.Error):
        if exc.status == PJ_ETOOMANY:
            return TooManyCalls(TOO_MANY_CALLS)
        if exc.status == PJSIP_EMSGTOOLONG:
            return PageTooLarge(f"the message is over PJSIP's 4000-byte packet limit; {PAGE_HINT}")
        title = exc.title.split("(")[0].strip() or "pjsua2"
        return UaError(f"{title}: {exc.reason}")
    return exc


class StunEndpoint(pj.Endpoint):  # type: ignore[misc]
    """The Endpoint, told how the STUN servers resolved (``libInit`` tries them in
    turn and calls back before the SIP transport is made): ``stun`` is then
    ``(status, server name, server address)``, status 0 when one answered."""

    def __init__(self) -> None:
        super().__init__()
        self.stun: tuple[int, str, str] | None = None

    @guarded
    def onNatCheckStunServersComplete(self, prm: pj.OnNatCheckStunServersCompleteParam) -> None:
        self.stun = (int(prm.status), str(prm.name), str(prm.addr))


class PjCore:
    """Owns every pjsua2 object of one client; used from the pjsua2 thread only."""

    def __init__(self, config: ClientConfig, thread: PjThread, listener: Listener) -> None:
        self.config = config
        self.thread = thread
        self.listener = listener
        self.ep: pj.Endpoint | None = None
        self.account: Account | None = None
        self.transport_id = -1
        self.local_address = ""
        #: the SIP transport's bound address, and its STUN-mapped one ("" without STUN)
        self.bound_address = ""
        self.mapped_address = ""
        #: the STUN server pjsua uses (its address), "" if none is configured or answered
        self.stun_server = ""
        self.calls: dict[int, ChatCall] = {}
        self.buddies: dict[str, Buddy] = {}
        self._handles = itertools.count(1)
        self._poll: Poll | None = None
        #: MSRP paths for incoming calls, made ready by the asyncio side: (token, path)
        self.spare_paths: queue.SimpleQueue[tuple[int, list[MsrpUri]]] = queue.SimpleQueue()

    def new_handle(self) -> int:
        """A call handle (any thread: ``itertools.count`` is atomic under the GIL)."""
        return next(self._handles)

    def post(self, fn: Callable[..., object], *args: object) -> None:
        self.thread.post(fn, *args)

    def error_text(self, status: int) -> str:
        if self.ep is None:
            return f"status {status}"
        try:
            return str(self.ep.utilStrError(status))
        except pj.Error:
            return f"status {status}"

    # -- life cycle ----------------------------------------------------------------------------

    def init(self) -> Poll:
        """Create the library, the SIP transport and start it (before the Account)."""
        config = self.config
        ep = StunEndpoint()
        ep.libCreate()
        self.ep = ep
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True  # this thread created the library: it is "main"
        cfg.uaConfig.maxCalls = MAX_CALLS
        cfg.uaConfig.userAgent = config.user_agent
        for server in config.stun_servers:
            cfg.uaConfig.stunServer.append(server)
        cfg.uaConfig.stunIgnoreFailure = True
        cfg.logConfig.level = max(config.log_level, 1)
        cfg.logConfig.consoleLevel = config.log_level
        if config.log_file:
            cfg.logConfig.filename = config.log_file
        ep.libInit(cfg)
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():  # PCMU only: the dialect SDP stays under 1024 bytes
            ep.codecSetPriority(codec.codecId, 255 if codec.codecId.startswith("PCMU/") else 0)
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = config.local_host
        tcfg.port = config.local_port
        if config.transport == "tls":
            tcfg.tlsConfig.CaListFile = config.tls_ca_file
            tcfg.tlsConfig.verifyServer = bool(config.tls_ca_file) and config.tls_verify_server
        kind = getattr(pj, TRANSPORT_TYPES[config.transport])
        self.transport_id = ep.transportCreate(kind, tcfg)
        info = ep.transportGetInfo(self.transport_id)
        self.local_address = str(info.localName)  # the published address (STUN-mapped)
        self.bound_address = str(info.localAddress)
        if ep.stun is not None and ep.stun[0] == 0:
            self.stun_server = ep.stun[2]
            # pjsua asks STUN for its SIP UDP socket only (TCP/TLS publish the bound one)
            if config.transport == "udp":
                self.mapped_address = self.local_address
        elif config.stun_servers:
            log.warning("no STUN server answered (%s): the contact is the bound address", ep.stun)
        ep.libStart()
        poll: Poll = ep.libHandleEvents
        self._poll = poll
        return poll

    def create_account(self) -> str:
        """Create the Account (it REGISTERs at once if so configured); return the
        local SIP address (host:port)."""
        account = Account(self)
        account.create(account_config(self.config, self.transport_id))
        self.account = account
        return self.local_address

    def set_registration(self, on: bool) -> None:
        if self.account is not None:
            self.account.setRegistration(on)

    def _pump(self, until: Callable[[], bool], seconds: float) -> None:
        """Poll (inside ``finish``) until ``until()`` or ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        while not until() and time.monotonic() < deadline:
            if self._poll is not None:
                self.thread.run_pending(self._poll, 10)

    def shutdown(self) -> None:
        """The teardown, in the order pjsua2 demands; safe in any state, never raises.

        Calls and Buddies die before ``libDestroy``; the Account lives through it:
        ``libDestroy`` unregisters it and ends pending transactions (a MESSAGE in
        flight), whose callbacks look the account up and assert if it is gone.
        """
        ep = self.ep
        if ep is None:
            return
        account = self.account
        try:
            self._hang_up_all(ep)
            self._drop_calls_and_buddies()
            if account is not None:
                account.core = None
            gc.collect()  # a pjsua2 object left in a cycle dies here, on this thread
        except BaseException:
            log.exception("pjsua2 teardown")
        finally:
            self.account = None
            self._poll = None
            self.ep = None
            try:
                ep.libDestroy()
            except pj.Error as exc:
                log.warning("libDestroy: %s", exc.info())
            # only now: the Account (no loop variable may keep a pjsua2 object alive here)
            del account
            del ep

    def _hang_up_all(self, ep: pj.Endpoint) -> None:
        if not self.calls:
            return
        try:
            ep.hangupAllCalls()
        except pj.Error as exc:
            log.info("hangupAllCalls: %s", exc.info())
        self._pump(lambda: all(c.ended for c in self.calls.values()), 5.0)
        if self._poll is not None:
            self.thread.run_pending(self._poll, 0)

    def _drop_calls_and_buddies(self) -> None:
        while self.calls:
            _, call = self.calls.popitem()
            call.core = None
            del call  # its destructor runs now, while the library is alive
        while self.buddies:
            _, buddy = self.buddies.popitem()
            buddy.core = None
            del buddy

    # -- calls ---------------------------------------------------------------------------------

    def _live_calls(self) -> int:
        return sum(1 for call in self.calls.values() if not call.ended)

    def make_call(self, handle: int, target: str, media: MediaDescription) -> None:
        assert self.account is not None
        if self._live_calls() >= MAX_CALLS:
            raise TooManyCalls(TOO_MANY_CALLS)
        call = ChatCall(self.account, self, handle)
        call.offer_media = media
        self.calls[handle] = call
        prm = pj.CallOpParam(True)
        # two audio lines, the second of which onCallSdpCreated turns into m=message
        prm.opt.audioCount = 2
        prm.opt.videoCount = 0
        try:
            call.makeCall(with_transport(target, self.config.transport), prm)
        except BaseException:
            call.core = None
            del self.calls[handle]
            raise

    def incoming_call(self, account: Account, call_id: int, offer: str) -> None:
        """onIncomingCall: keep the Call (pjsua2 hangs up calls nobody keeps), answer
        the offer with a spare MSRP path and ring. pjsua builds its SDP answer right
        after this callback, so our m=message line must be ready now."""
        handle = self.new_handle()
        call = ChatCall(account, self, handle, call_id)
        call.offer_sdp = offer
        self.calls[handle] = call
        try:
            spare = self.spare_paths.get_nowait()
        except queue.Empty:
            self._answer(call, 486, "Busy Here (no MSRP session ready)")
            return
        token, path = spare
        try:
            answer = answer_msrp_offer(
                SessionDescription.parse(offer),
                local_path=path,
                address=self.config.msrp_host,
                accept_types=ACCEPT_TYPES,
                tls_supported=path[-1].is_secure,
                username=self.config.aor_user,
            )
            media = with_connection(answer.sdp.media[answer.message_index], answer.sdp)
        except (SdpParseError, OfferRejected, ValueError) as exc:
            self.spare_paths.put(spare)  # unused: the next call may have it
            self._answer(call, 488, f"Not Acceptable Here ({exc})")
            return
        call.answer_media = media
        call.answer_index = answer.message_index
        remote = str(call.getInfo().remoteUri)
        self._answer(call, 180)
        self.post(self.listener._on_incoming_call, handle, remote, token, answer)

    def _answer(self, call: ChatCall, code: int, reason: str = "") -> None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        if reason:
            prm.reason = reason
        call.answer(prm)

    def answer(self, handle: int, code: int) -> None:
        call = self.calls.get(handle)
        if call is None or call.ended:
            raise UaError("the caller has gone")
        self._answer(call, code)

    def hangup(self, handle: int) -> None:
        call = self.calls.get(handle)
        if call is None or call.ended or not call.isActive():
            return
        try:
            call.hangup(pj.CallOpParam())
        except pj.Error as exc:
            log.info("hangup: %s", exc.info())

    def drop_call(self, handle: int) -> None:
        """After DISCONNECTED (deferred out of the callback): the Call dies here."""
        call = self.calls.pop(handle, None)
        if call is not None:
            call.core = None

    # -- page mode and presence ----------------------------------------------------------------

    def _buddy(self, uri: str, subscribe: bool) -> Buddy:
        assert self.account is not None
        target = with_transport(uri, self.config.transport)
        buddy = self.buddies.get(target)
        if buddy is None:
            buddy = Buddy(self, uri)
            cfg = pj.BuddyConfig()
            cfg.uri = target
            cfg.subscribe = subscribe
            buddy.create(self.account, cfg)
            self.buddies[target] = buddy
        elif subscribe:
            buddy.subscribePresence(True)
        return buddy

    def send_page(self, uri: str, content_type: str, body: str) -> str:
        """Send a MESSAGE; return the To URI pjsua reports its status under."""
        buddy = self._buddy(uri, subscribe=False)
        prm = pj.SendInstantMessageParam()
        prm.contentType = content_type
        prm.content = body
        buddy.sendInstantMessage(prm)
        return with_transport(uri, self.config.transport)

    def subscribe(self, uri: str) -> None:
        self._buddy(uri, subscribe=True)

    def unsubscribe(self, uri: str) -> None:
        buddy = self.buddies.get(with_transport(uri, self.config.transport))
        if buddy is not None:
            buddy.subscribePresence(False)

    def set_presence(self, online: bool, note: str) -> None:
        assert self.account is not None
        status = pj.PresenceStatus()
        status.status = pj.PJSUA_BUDDY_STATUS_ONLINE if online else pj.PJSUA_BUDDY_STATUS_OFFLINE
        status.activity = pj.PJRPID_ACTIVITY_UNKNOWN if online else pj.PJRPID_ACTIVITY_AWAY
        status.note = note
        self.account.setOnlineStatus(status)
