"""The pjsua2 Call of a chat session (lives and dies on the pjsua2 thread)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pjsua2 as pj

from ..sip.sdp import MediaDescription
from .dialect import DialectError, dialect_answer, dialect_offer, sip_body

if TYPE_CHECKING:
    from .core import PjCore

log = logging.getLogger(__name__)

STATES = {
    pj.PJSIP_INV_STATE_NULL: "null",
    pj.PJSIP_INV_STATE_CALLING: "calling",
    pj.PJSIP_INV_STATE_INCOMING: "incoming",
    pj.PJSIP_INV_STATE_EARLY: "early",
    pj.PJSIP_INV_STATE_CONNECTING: "connecting",
    pj.PJSIP_INV_STATE_CONFIRMED: "confirmed",
    pj.PJSIP_INV_STATE_DISCONNECTED: "disconnected",
}


def guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A SWIG director callback must never let an exception reach pjsua2 (fatal)."""

    def wrapper(self: Any, *args: Any) -> None:
        try:
            callback(self, *args)
        except BaseException:
            log.exception("pjsua2 callback %s failed", callback.__name__)

    wrapper.__name__ = callback.__name__
    return wrapper


class ChatCall(pj.Call):  # type: ignore[misc]
    """A call carrying an MSRP chat in the pjsua dialect.

    It refers to the core (which owns it) only by a plain reference that the core
    drops with it: no cycle keeps a Call alive until some other thread's GC pass.
    """

    def __init__(
        self, account: pj.Account, core: PjCore, handle: int, call_id: int | None = None
    ) -> None:
        if call_id is None:
            super().__init__(account)
        else:
            super().__init__(account, call_id)
        self.core: PjCore | None = core
        self.handle = handle
        self.offer_media: MediaDescription | None = None  # UAC: our m=message
        self.answer_media: MediaDescription | None = None  # UAS: our m=message
        self.answer_index = 1
        self.offer_sdp = ""  # the offer (ours as UAC, the peer's as UAS)
        self.answer_sdp = ""  # the answer (the peer's 2xx as UAC, ours as UAS)
        self.ended = False

    def _problem(self, text: str) -> None:
        log.warning("call %d: %s", self.handle, text)
        if self.core is not None:
            self.core.post(self.core.listener._on_call_problem, self.handle, text)

    @guarded
    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        original = prm.sdp.wholeSdp
        remote = prm.remSdp.wholeSdp
        if not original:
            self._problem("pjsua handed an empty SDP to onCallSdpCreated (over 1024 bytes?)")
            return
        try:
            if remote:
                if self.answer_media is None:
                    self._problem("an SDP answer is due but no m=message line is ready")
                    return
                rewritten = dialect_answer(original, self.answer_media, self.answer_index)
                self.answer_sdp = rewritten
            else:
                if self.offer_media is None:
                    self._problem("pjsua makes an offer but this side has no m=message line")
                    return
                rewritten = dialect_offer(original, self.offer_media)
                self.offer_sdp = rewritten
        except DialectError as exc:  # leave pjsua's SDP alone: an invalid one aborts
            self._problem(f"cannot rewrite pjsua's SDP: {exc}")
            return
        if rewritten != original:
            prm.sdp.wholeSdp = rewritten

    @guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        self._take_answer(prm.e)
        state = STATES.get(info.state, str(info.state))
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True
        core = self.core
        if core is None:
            return
        core.post(
            core.listener._on_call_state,
            self.handle,
            state,
            info.lastStatusCode,
            info.lastReason,
            self.offer_sdp,
            self.answer_sdp,
        )
        if self.ended:
            handle = self.handle
            core.thread.defer(lambda: core.drop_call(handle))

    @guarded
    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        self._take_answer(prm.e)

    def _take_answer(self, event: pj.SipEvent) -> None:
        """UAC: keep the SDP of the 2xx to our INVITE (CallInfo carries no SDP)."""
        if self.answer_media is not None or self.answer_sdp:
            return
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx_state = event.body.tsxState
        if tsx_state.type != pj.PJSIP_EVENT_RX_MSG or tsx_state.tsx.method != "INVITE":
            return
        message = tsx_state.src.rdata.wholeMsg
        if message.startswith("SIP/2.0 2"):
            self.answer_sdp = sip_body(message)
