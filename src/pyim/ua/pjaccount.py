"""The pjsua2 Account and Buddy of a client, and their configuration."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pjsua2 as pj

from ..sip.uri import SipUri
from .config import ClientConfig
from .dialect import sip_body
from .pjcall import guarded

if TYPE_CHECKING:
    from .core import PjCore

log = logging.getLogger(__name__)


def with_transport(uri: str, transport: str) -> str:
    """``uri`` with ``;transport=`` for TCP/TLS unless it names one (pjsua picks the
    transport from the URI, and the account's transport must suit it)."""
    if transport == "udp":
        return uri
    try:
        parsed = SipUri.parse(uri)
    except ValueError:
        return uri
    if parsed.scheme != "sip" or parsed.has_param("transport"):
        return uri
    return str(parsed.with_param("transport", transport))


def account_config(config: ClientConfig, transport_id: int) -> pj.AccountConfig:
    cfg = pj.AccountConfig()
    cfg.idUri = (
        f'"{config.display_name}" <{config.account}>' if config.display_name else config.account
    )
    cfg.regConfig.registrarUri = (
        with_transport(config.registrar, config.transport) if config.register else ""
    )
    cfg.regConfig.registerOnAdd = config.register
    cfg.regConfig.timeoutSec = config.reg_timeout
    cfg.regConfig.unregWaitMsec = 2000
    if config.password or config.username:
        cred = pj.AuthCredInfo("digest", "*", config.username, 0, config.password)
        cfg.sipConfig.authCreds.append(cred)
    if config.proxy:
        proxy = with_transport(config.proxy, config.transport)
        cfg.sipConfig.proxies.append(proxy if ";lr" in proxy else f"{proxy};lr")
    cfg.sipConfig.transportId = transport_id
    nat = cfg.natConfig
    use_stun = pj.PJSUA_STUN_USE_DEFAULT if config.stun_servers else pj.PJSUA_STUN_USE_DISABLED
    nat.sipStunUse = use_stun
    nat.mediaStunUse = use_stun
    nat.sipOutboundUse = 1 if config.outbound else 0
    nat.udpKaIntervalSec = config.keepalive_seconds
    nat.contactRewriteUse = 1 if config.contact_rewrite else 0
    nat.viaRewriteUse = 1 if config.contact_rewrite else 0
    nat.iceEnabled = config.ice
    if config.turn_server:
        nat.turnEnabled = True
        nat.turnServer = config.turn_server
        nat.turnUserName = config.turn_user
        nat.turnPassword = config.turn_password
    cfg.mediaConfig.transportConfig.boundAddress = config.local_host
    cfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE  # no re-INVITE refreshes
    cfg.presConfig.publishEnabled = config.publish
    return cfg


class Account(pj.Account):  # type: ignore[misc]
    def __init__(self, core: PjCore) -> None:
        super().__init__()
        self.core: PjCore | None = core

    @guarded
    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        core = self.core
        if core is None:
            return
        active = bool(self.getInfo().regIsActive)
        reason = prm.reason or (core.error_text(prm.status) if prm.status else "")
        core.post(core.listener._on_reg_state, int(prm.code), reason, active)

    @guarded
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        if self.core is not None:
            self.core.incoming_call(self, prm.callId, sip_body(prm.rdata.wholeMsg))

    @guarded
    def onInstantMessage(self, prm: pj.OnInstantMessageParam) -> None:
        core = self.core
        if core is not None:
            core.post(core.listener._on_page, prm.fromUri, prm.contentType, prm.msgBody)

    @guarded
    def onInstantMessageStatus(self, prm: pj.OnInstantMessageStatusParam) -> None:
        core = self.core
        if core is not None:
            core.post(
                core.listener._on_page_status, prm.toUri, prm.msgBody, int(prm.code), prm.reason
            )

    @guarded
    def onIncomingSubscribe(self, prm: pj.OnIncomingSubscribeParam) -> None:
        prm.code = 200  # anyone may watch our presence (no authorization lists yet)


class Buddy(pj.Buddy):  # type: ignore[misc]
    def __init__(self, core: PjCore, uri: str) -> None:
        super().__init__()
        self.core: PjCore | None = core
        self.uri = uri

    @guarded
    def onBuddyState(self) -> None:
        core = self.core
        if core is not None:  # read the state after the callback (not inside it)
            core.thread.defer(self.report)

    def report(self) -> None:
        core = self.core
        if core is None or not self.isValid():
            return
        # Keep the BuddyInfo in a variable while its fields are read: SWIG's
        # ``info.presStatus`` is a non-owning view into ``info``, so
        # ``self.getInfo().presStatus.note`` reads a freed BuddyInfo (garbage string
        # length -> std::bad_alloc -> abort).
        info = self.getInfo()
        status = info.presStatus
        online = status.status == pj.PJSUA_BUDDY_STATUS_ONLINE
        note = str(status.note or "")
        del status, info
        core.post(core.listener._on_buddy, self.uri, online, note)
