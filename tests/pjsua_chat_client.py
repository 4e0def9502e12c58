#!/usr/bin/env python3
"""A pjsua2 chat client: INVITE a pyim peer in the "pjsua dialect", chat over pyim MSRP.

Usage::

    python tests/pjsua_chat_client.py --target sip:bob@127.0.0.1:5070 \\
        --transport udp --messages 10 --size 200

pjsua2 (the ``pjsua2-python`` 2.15.1 wheel) does the SIP side: it makes a call
whose SDP offer is rewritten in ``onCallSdpCreated`` into the pjsua dialect (its
own ``m=audio`` line, PCMU only and ``a=inactive``, followed by an ``m=message``
line carrying our MSRP ``a=path``). pyim.msrp does the MSRP side. When the call
is confirmed, the ``m=message`` line of the 200 OK's SDP says where the peer's
MSRP session is and who connects; the script then sends ``--messages`` messages
of ``--size`` bytes with success reports, expects each one echoed back intact,
hangs up (BYE), waits for DISCONNECTED and shuts pjsua2 down.

Output: stdout carries exactly one JSON object (one line) with the results; all
pjsua logging goes to stderr (``--log-level``, pjsua's 0-6). Exit status 0 when
every message was delivered and echoed intact and the call ended cleanly, else 1
with a ``pjsua_chat_client: FAIL: ...`` line on stderr (the JSON is still printed
when the session got far enough to have results). Everything is bounded by
``--timeout`` seconds; SIGALRM kills the process if even the cleanup hangs.

pjsua2 aborts the whole process on misuse, so this runs as a subprocess and keeps
every pjsua2 call on the main thread: ``threadCnt=0``, ``mainThreadOnly``, no
Python threads; asyncio is the main loop and a task alternates
``libHandleEvents`` with yielding to asyncio. Callbacks never raise (a Python
exception escaping a SWIG director is fatal) and never hold the Call; the Call
and the Account are deleted, on this thread, before ``libDestroy``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pyim.msrp.transport import MsrpEndpoint, Session
from pyim.msrp.uri import MsrpUri
from pyim.sip.sdp import (
    AnswerRejected,
    Direction,
    MediaDescription,
    SdpParseError,
    SessionDescription,
    build_msrp_offer,
    parse_msrp_answer,
)

try:
    import pjsua2 as pj
except ImportError as exc:  # pragma: no cover - reported to the caller
    print(
        f"pjsua_chat_client: FAIL: pjsua2 is not importable ({exc}): "
        "pip install pjsua2-python==2.15.1.post1 (scripts/build_pjsip.sh)",
        file=sys.stderr,
    )
    sys.exit(3)

PROG = "pjsua_chat_client"
HOST = "127.0.0.1"
#: pjsua2 hands SDPs over this size to the callbacks as "" (see shared/DESIGN.md).
PJSUA_SDP_LIMIT = 1024
#: PCMU, the one codec left in the offer (keeps the SDP small).
PCMU = "0"
PT_ATTRIBUTES = ("rtpmap", "fmtp", "rtcp-fb")
ACCEPT_TYPES = ("text/plain", "message/cpim")


class Failure(Exception):
    """The chat could not be completed; the message says why."""


def log(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


# -- SDP rewriting -------------------------------------------------------------------------


def pjsua_dialect_offer(sdp_text: str, message_media: MediaDescription) -> str:
    """pjsua's offer rewritten to the pjsua dialect; idempotent.

    The first audio line stays (pjsua negotiates it) with PCMU only and
    ``a=inactive``; ``message_media`` takes the place of the second line (the
    second audio line that pjsua provisioned for it), so the m-line count stays
    what pjsua expects. Raise :class:`SdpParseError` or ``ValueError`` if the
    result cannot be produced (the caller then leaves pjsua's SDP alone and
    reports the error).
    """
    sdp = SessionDescription.parse(sdp_text)
    audio = next((m for m in sdp.media if m.media.lower() == "audio"), None)
    if audio is None:
        raise ValueError("pjsua's offer has no m=audio line")
    if PCMU not in audio.formats:
        raise ValueError(f"PCMU is not offered by pjsua: m=audio formats {audio.formats}")
    audio.formats = [PCMU]
    audio.attributes = [
        (name, value)
        for name, value in audio.attributes
        if name.lower() not in PT_ATTRIBUTES or (value or "").split(" ")[0] == PCMU
    ]
    if audio.get_attribute("rtpmap") is None:
        audio.add_attribute("rtpmap", "0 PCMU/8000")
    audio.direction = Direction.INACTIVE
    sdp.direction = None
    sdp.media = [audio, message_media]
    return sdp.encode().decode()


def message_media_for(session: Session) -> MediaDescription:
    """Our ``m=message`` line (a=path, accept-types, setup:actpass) for ``session``."""
    offer = build_msrp_offer(local_path=session.path, address=HOST, accept_types=ACCEPT_TYPES)
    (media,) = offer.media
    # pjmedia_sdp_validate() wants a c= line in every m= section when the session level
    # has none (pjsua puts its c= in the audio section): without it pjsua asserts.
    media.connection = offer.connection
    return media


def sip_body(message: str) -> str:
    """The body of a SIP message as received (``wholeMsg``)."""
    _, sep, body = message.partition("\r\n\r\n")
    if not sep:
        _, sep, body = message.partition("\n\n")
    return body if sep else ""


# -- pjsua2 call ---------------------------------------------------------------------------


@dataclass
class Observed:
    """What the callbacks saw; it never refers to the Call (no cycles, no late deletes)."""

    message_media: MediaDescription
    offers: list[str] = field(default_factory=list)  # pjsua's SDPs as handed to the callback
    offer: str = ""  # the dialect offer we gave back
    sdp_created_calls: int = 0
    answer: str = ""
    answer_source: str = ""
    answer_seen_in: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    confirmed: bool = False
    disconnected: bool = False
    last_status: int = 0
    last_reason: str = ""
    media_states: int = 0
    errors: list[str] = field(default_factory=list)


def _guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A SWIG director callback must never let an exception escape into pjsua2."""

    def wrapper(self: ChatCall, prm: Any) -> None:
        try:
            callback(self, prm)
        except BaseException as exc:  # recorded; the main flow reports it
            self.obs.errors.append(f"{callback.__name__}: {exc!r}")

    wrapper.__name__ = callback.__name__
    return wrapper


class ChatCall(pj.Call):  # type: ignore[misc]
    """A pjsua2 call that offers the pjsua dialect and records what happens."""

    def __init__(self, account: pj.Account, obs: Observed) -> None:
        super().__init__(account)
        self.obs = obs

    @_guarded
    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        obs = self.obs
        obs.sdp_created_calls += 1
        original = prm.sdp.wholeSdp
        obs.offers.append(original)
        if prm.remSdp.wholeSdp:
            # an answer (to a re-INVITE offer): pyim never sends one; leave pjsua's alone
            obs.errors.append("unexpected: pjsua created an SDP answer (re-INVITE?)")
            return
        if not original:
            obs.errors.append("pjsua handed an empty SDP to onCallSdpCreated (over 1024 bytes?)")
            return
        rewritten = pjsua_dialect_offer(original, obs.message_media)
        if len(rewritten.encode()) >= PJSUA_SDP_LIMIT:
            obs.errors.append(f"the dialect offer is {len(rewritten)} bytes, too big for pjsua")
            return
        obs.offer = rewritten
        log(f"pjsua's offer:\n{original}the pjsua dialect offer:\n{rewritten}")
        if rewritten != original:
            prm.sdp.wholeSdp = rewritten

    @_guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        obs = self.obs
        obs.states.append(info.stateText)
        obs.last_status, obs.last_reason = info.lastStatusCode, info.lastReason
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            obs.confirmed = True
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            obs.disconnected = True
        self._take_answer(prm.e, "onCallState")

    @_guarded
    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        self._take_answer(prm.e, "onCallTsxState")

    @_guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self.obs.media_states += 1

    def _take_answer(self, event: pj.SipEvent, where: str) -> None:
        """Keep the SDP of a received 2xx to our INVITE (the answer)."""
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx_state = event.body.tsxState
        if tsx_state.type != pj.PJSIP_EVENT_RX_MSG or tsx_state.tsx.method != "INVITE":
            return
        message = tsx_state.src.rdata.wholeMsg
        if message.startswith("SIP/2.0 2"):
            body = sip_body(message)
            if body:
                self.obs.answer_seen_in.append(where)
                if not self.obs.answer:
                    self.obs.answer = body
                    self.obs.answer_source = where


# -- the chat ------------------------------------------------------------------------------


async def pump_events(ep: pj.Endpoint, stop: asyncio.Event) -> None:
    """Let pjsua2 work on this (the main) thread between asyncio's steps."""
    while not stop.is_set():
        ep.libHandleEvents(1)
        await asyncio.sleep(0)


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.005)


def payload(index: int, size: int) -> bytes:
    """Message ``index`` of exactly ``size`` bytes (recognisable, not constant)."""
    head = f"msg {index:06d} ".encode()
    filler = bytes(0x41 + (index + i) % 26 for i in range(max(0, size - len(head))))
    return (head + filler)[:size]


async def chat(obs: Observed, session: Session, args: argparse.Namespace) -> dict[str, Any]:
    """Once the call is up: start MSRP, send, collect the echoes."""
    await wait_for(
        lambda: obs.confirmed or obs.disconnected or bool(obs.errors),
        args.timeout,
        "the call to be confirmed",
    )
    if obs.errors:
        raise Failure("; ".join(obs.errors))
    if not obs.confirmed:
        raise Failure(f"the call failed: {obs.last_status} {obs.last_reason}")
    if not obs.answer:
        raise Failure("the call is confirmed but no SDP answer was seen in a 2xx")
    try:
        offer = SessionDescription.parse(obs.offer)
        answer = SessionDescription.parse(obs.answer)
        negotiated = parse_msrp_answer(offer, answer)
    except (SdpParseError, AnswerRejected, ValueError) as exc:
        raise Failure(f"unusable SDP answer ({exc}):\n{obs.answer}") from None
    audio = answer.media[0] if answer.media else None
    answer_audio_inactive = (
        audio is not None
        and audio.media == "audio"
        and answer.direction_of(audio) is Direction.INACTIVE
    )
    remote_path: list[MsrpUri] = list(negotiated.remote.path)
    try:
        await session.start(remote_path, active=negotiated.active, timeout=args.timeout)
    except (TimeoutError, OSError) as exc:
        raise Failure(f"MSRP connection to {remote_path[-1]} failed: {exc!r}") from None
    log(f"MSRP session up ({'active' if negotiated.active else 'passive'})")

    expected = [payload(i, args.size) for i in range(args.messages)]
    echoes: list[bytes] = []

    async def collect() -> None:
        while len(echoes) < len(expected):
            echoes.append((await session.receive()).body)

    collector = asyncio.create_task(collect())
    started = time.monotonic()
    statuses: list[str] = []
    try:
        for body in expected:
            result = await session.send("text/plain", body, success_report=True)
            statuses.append(result.status if result.ok else f"{result.code} {result.reason}")
        await asyncio.wait_for(collector, args.timeout)
    except ConnectionError as exc:
        raise Failure(f"MSRP session ended: {exc}") from None
    finally:
        collector.cancel()
    elapsed = time.monotonic() - started
    return {
        "transport": args.transport,
        "target": args.target,
        "messages": args.messages,
        "size": args.size,
        "delivered": statuses.count("delivered"),
        "statuses": sorted(set(statuses)),
        "echoed": len(echoes),
        "echo_intact": echoes == expected,
        "seconds": round(elapsed, 3),
        "msrp_active": negotiated.active,
        "answer_audio_inactive": answer_audio_inactive,
        "answer_source": obs.answer_source,
        "answer_seen_in": obs.answer_seen_in,
        "offer_bytes": len(obs.offer.encode()),
        "offer": obs.offer,
        "answer": obs.answer,
        "pjsua_offer": obs.offers[0] if obs.offers else "",
        "sdp_created_calls": obs.sdp_created_calls,
    }


async def hang_up(call: ChatCall, obs: Observed, timeout: float) -> None:
    """BYE (or CANCEL) unless the call already ended; wait for DISCONNECTED."""
    if obs.disconnected or not call.isActive():
        obs.disconnected = True
        return
    prm = pj.CallOpParam()
    call.hangup(prm)
    del prm
    await wait_for(lambda: obs.disconnected, timeout, "DISCONNECTED after hangup")


def make_account(ep: pj.Endpoint, transport_id: int) -> pj.Account:
    cfg = pj.AccountConfig()
    cfg.idUri = f"sip:alice@{HOST}"
    cfg.regConfig.registrarUri = ""
    cfg.regConfig.registerOnAdd = False
    cfg.sipConfig.transportId = transport_id
    cfg.mediaConfig.transportConfig.boundAddress = HOST  # RTP on 127.0.0.1 too
    account = pj.Account()
    account.create(cfg)
    return account


async def run(ep: pj.Endpoint, transport_id: int, args: argparse.Namespace) -> dict[str, Any]:
    """The whole chat; pjsua2 objects are created and destroyed here, on this thread."""
    stop = asyncio.Event()
    pump = asyncio.create_task(pump_events(ep, stop))
    endpoint = await MsrpEndpoint.create(HOST)
    session = endpoint.new_session()
    obs = Observed(message_media=message_media_for(session))
    account: pj.Account | None = None
    call: ChatCall | None = None
    result: dict[str, Any] = {}
    failures: list[str] = []
    try:
        account = make_account(ep, transport_id)
        call = ChatCall(account, obs)
        prm = pj.CallOpParam(True)
        # Two audio lines, the second of which onCallSdpCreated turns into m=message:
        # pjsua asserts (pjsua_media_channel_update: med_prov_cnt >= media_count) when
        # the offer has more m-lines than the media it provisioned.
        prm.opt.audioCount = 2
        prm.opt.videoCount = 0
        call.makeCall(args.target, prm)
        del prm
        try:
            result = await asyncio.wait_for(chat(obs, session, args), args.timeout)
        except Failure as exc:
            failures.append(str(exc))
        except TimeoutError:
            failures.append(f"the chat did not finish within {args.timeout:.0f}s")
        except Exception as exc:  # still hang up and shut down cleanly, then report
            traceback.print_exc()
            failures.append(f"unexpected error: {exc!r}")
    except pj.Error as exc:
        failures.append(f"pjsua2: {exc.info()}")
    finally:
        if call is not None:
            try:
                await hang_up(call, obs, 10)
            except Failure as exc:
                failures.append(str(exc))
            except pj.Error as exc:
                failures.append(f"pjsua2 hangup: {exc.info()}")
            call = None  # the Call's destructor runs here, on the main thread
            gc.collect()
        if account is not None:
            account.shutdown()
            account = None
            gc.collect()
        for _ in range(20):  # let the BYE transaction and TCP close settle
            await asyncio.sleep(0.005)
        stop.set()
        await pump
        await session.close()
        await endpoint.close()
    failures.extend(obs.errors)
    result["states"] = obs.states
    result["disconnected"] = obs.disconnected
    if result.get("delivered") != args.messages and "delivered" in result:
        failures.append(f"{result['delivered']}/{args.messages} messages delivered")
    if result.get("echo_intact") is False:
        failures.append(f"{result['echoed']}/{args.messages} echoes, not all intact")
    result["ended_cleanly"] = obs.disconnected and not failures
    result["failures"] = failures
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="SIP URI of the pyim peer")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--log-level", type=int, default=3, help="pjsua console log level")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.size < 1 or args.timeout <= 0:
        parser.error("--messages and --size must be at least 1, --timeout positive")
    if args.transport == "tcp" and "transport=" not in args.target.lower():
        args.target += ";transport=tcp"

    # stdout carries the JSON only: pjsua's console log goes to stderr
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    # last resort: if pjsua2 hangs even in the cleanup, die rather than hang the caller
    signal.alarm(int(args.timeout) + 30)
    gc.disable()  # collect only where we choose (main thread, before libDestroy)

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = 4
    cfg.uaConfig.userAgent = "pyim-pjsua-chat-client"
    cfg.logConfig.level = max(args.log_level, 1)
    cfg.logConfig.consoleLevel = args.log_level
    result: dict[str, Any] = {}
    try:
        ep.libInit(cfg)
        del cfg
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():  # PCMU only: the offer stays well under 1024 bytes
            ep.codecSetPriority(codec.codecId, 255 if codec.codecId.startswith("PCMU/") else 0)
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = HOST
        tcfg.port = 0
        kind = pj.PJSIP_TRANSPORT_UDP if args.transport == "udp" else pj.PJSIP_TRANSPORT_TCP
        transport_id = ep.transportCreate(kind, tcfg)
        del tcfg
        log(f"SIP {args.transport} on {ep.transportGetInfo(transport_id).localName}")
        ep.libStart()
        result = asyncio.run(run(ep, transport_id, args))
    except pj.Error as exc:
        result.setdefault("failures", []).append(f"pjsua2: {exc.info()}")
    finally:
        gc.collect()
        ep.libDestroy()
        del ep
    failures = result.get("failures", ["no result"])
    result["ok"] = not failures
    json_out.write(json.dumps(result) + "\n")
    json_out.flush()
    if failures:
        for failure in failures:
            log(f"FAIL: {failure}")
        return 1
    log(f"OK: {result['messages']} messages of {result['size']} bytes delivered and echoed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
