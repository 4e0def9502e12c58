"""Benchmark of the SIP message parser: pyim.sip.parser against ``sipmessage``.

Not a test: run by hand, results go to bench/RESULTS.md.  One JSON object per case on
stdout: the pyim figure, the ``sipmessage`` figure measured in the same run and their
ratio (pyim / sipmessage, higher is better), plus the same figures in microseconds
per message (``pyim_us``, ``sipmessage_us``)::

    pip install sipmessage
    PYTHONPATH=src python bench/sip_parser.py            # full run (about half a minute)
    PYTHONPATH=src python bench/sip_parser.py --quick    # smoke run
    PYTHONPATH=src python bench/sip_parser.py --case invite --profile 20

Messages
--------
Realistic traffic between 200 users: each call is an INVITE with a 0.3 KB SDP
offer (0.9 KB in all), its 200 OK (two Vias, Record-Route, SDP answer), the ACK and
the BYE; each page-mode MESSAGE carries 100 bytes of text/plain.  Call-IDs, tags,
branches and CSeq numbers differ in every message; 2000 messages of each kind are
parsed in turn, so pyim's small caches of parsed URIs and name-addrs hit only for
what really repeats (the users' addresses), as they would on a server.

Cases
-----
``invite``, ``ok_200``, ``ack``, ``bye``, ``message``
    Parse, then read what a transaction and a dialog need: the top Via's branch,
    CSeq, Call-ID, From tag and To tag.  pyim validates and caches these while
    parsing; sipmessage parses them on access.  Unit: messages/s.
``invite_parse_only``
    Only the parse call (sipmessage then has only split the lines: it parses every
    typed header on access and checks nothing before).
``invite_cold``
    ``invite`` with pyim's URI and name-addr caches emptied before every message:
    the worst case, every URI and name-addr parsed from scratch.
``proxy_forward``
    Parse an INVITE, add a Via on top, decrement Max-Forwards and serialise.
``encode_unmodified``
    Serialise a parsed, unmodified INVITE (pyim hands back the received bytes).

Each figure is the best of ``--runs`` measurements of at least ``--seconds`` each.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from pyim.sip import uri as pyim_uri
from pyim.sip.message import SipRequest
from pyim.sip.parser import parse_message

try:
    import sipmessage
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("sipmessage is not installed; run `pip install sipmessage` first")

COUNT = 2000
USERS = 200

SDP_OFFER = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.101\r\n"
    "t=0 0\r\n"
    "m=audio 49172 RTP/AVP 0 8 97\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:97 iLBC/8000\r\n"
    "m=message 7394 TCP/MSRP *\r\n"
    "a=accept-types:text/plain message/cpim\r\n"
    "a=path:msrp://client.atlanta.example.com:7394/2s93i93idk;tcp\r\n"
    "a=sendrecv\r\n"
)
SDP_ANSWER = SDP_OFFER.replace("alice", "bob").replace("atlanta", "biloxi").replace("101", "201")
TEXT = "Hello Bob, are we still on for the meeting at three? The room moved to 4B. -- Alice\r\n"


def _calls(rng: random.Random, count: int) -> dict[str, list[bytes]]:
    """``count`` messages of each kind."""
    out: dict[str, list[bytes]] = {k: [] for k in ("invite", "ok_200", "ack", "bye", "message")}

    def token(n: int = 10) -> str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))

    for _ in range(count):
        a, b = rng.sample(range(USERS), 2)
        alice, bob = f"user{a:03d}", f"user{b:03d}"
        call_id = f"{token(16)}@client{a:03d}.example.com"
        ftag, ttag = token(), token()
        cseq = rng.randint(1, 2**20)
        via = f"SIP/2.0/UDP client{a:03d}.example.com:5060;branch=z9hG4bK{token()};rport"
        proxy_via = f"SIP/2.0/UDP proxy.example.com:5060;branch=z9hG4bK{token()}"
        from_ = f'"User {a}" <sip:{alice}@example.com>;tag={ftag}'
        to = f'"User {b}" <sip:{bob}@example.com>'
        contact_a = f"<sip:{alice}@192.0.2.{a % 250 + 1}:5060;transport=udp>"
        contact_b = f"<sip:{bob}@192.0.2.{b % 250 + 1}:5060;transport=udp>"
        common = f"Max-Forwards: 70\r\nFrom: {from_}\r\nCall-ID: {call_id}\r\n"
        out["invite"].append(
            (
                f"INVITE sip:{bob}@example.com SIP/2.0\r\n"
                f"Via: {via}\r\n{common}To: {to}\r\n"
                f"CSeq: {cseq} INVITE\r\n"
                f"Contact: {contact_a}\r\n"
                "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, MESSAGE, UPDATE\r\n"
                "Supported: replaces, timer\r\n"
                "User-Agent: pyim-bench/0.1\r\n"
                "Content-Type: application/sdp\r\n"
                f"Content-Length: {len(SDP_OFFER)}\r\n\r\n{SDP_OFFER}"
            ).encode()
        )
        out["ok_200"].append(
            (
                "SIP/2.0 200 OK\r\n"
                f"Via: {proxy_via}\r\nVia: {via};received=192.0.2.{a % 250 + 1}\r\n"
                "Record-Route: <sip:proxy.example.com;lr>\r\n"
                f"From: {from_}\r\nTo: {to};tag={ttag}\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n"
                f"Contact: {contact_b}\r\n"
                "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, MESSAGE, UPDATE\r\n"
                "Content-Type: application/sdp\r\n"
                f"Content-Length: {len(SDP_ANSWER)}\r\n\r\n{SDP_ANSWER}"
            ).encode()
        )
        in_dialog = f"Route: <sip:proxy.example.com;lr>\r\n{common}To: {to};tag={ttag}\r\n"
        out["ack"].append(
            (
                f"ACK {contact_b[1:-1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP client{a:03d}.example.com:5060;branch=z9hG4bK{token()};rport\r\n"
                f"{in_dialog}CSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        out["bye"].append(
            (
                f"BYE {contact_b[1:-1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP client{a:03d}.example.com:5060;branch=z9hG4bK{token()};rport\r\n"
                f"{in_dialog}CSeq: {cseq + 1} BYE\r\n"
                "User-Agent: pyim-bench/0.1\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        out["message"].append(
            (
                f"MESSAGE sip:{bob}@example.com SIP/2.0\r\n"
                f"Via: {via}\r\n{common}To: {to}\r\n"
                f"CSeq: {cseq} MESSAGE\r\n"
                "Content-Type: text/plain;charset=utf-8\r\n"
                f"Content-Length: {len(TEXT)}\r\n\r\n{TEXT}"
            ).encode()
        )
    return out


# -- what each side does per message ------------------------------------------------------


def _clear_pyim_caches() -> None:
    pyim_uri._URI_CACHE.clear()
    pyim_uri._NAME_ADDR_CACHE.clear()


def pyim_routing(messages: list[bytes]) -> int:
    for data in messages:
        m = parse_message(data)
        m.branch  # noqa: B018 - reading is the point
        m.cseq  # noqa: B018
        m.call_id  # noqa: B018
        m.from_.tag  # noqa: B018
        m.to.tag  # noqa: B018
    return len(messages)


def pyim_routing_cold(messages: list[bytes]) -> int:
    for data in messages:
        _clear_pyim_caches()
        m = parse_message(data)
        m.branch  # noqa: B018
        m.cseq  # noqa: B018
        m.call_id  # noqa: B018
        m.from_.tag  # noqa: B018
        m.to.tag  # noqa: B018
    return len(messages)


def sipmessage_routing(messages: list[bytes]) -> int:
    for data in messages:
        m = sipmessage.Message.parse(data)
        m.via[0].parameters.get("branch")
        m.cseq  # noqa: B018
        m.call_id  # noqa: B018
        m.from_address.parameters.get("tag")
        m.to_address.parameters.get("tag")
    return len(messages)


def pyim_parse(messages: list[bytes]) -> int:
    for data in messages:
        parse_message(data)
    return len(messages)


def sipmessage_parse(messages: list[bytes]) -> int:
    for data in messages:
        sipmessage.Message.parse(data)
    return len(messages)


def pyim_forward(messages: list[bytes]) -> int:
    for i, data in enumerate(messages):
        m = parse_message(data)
        m.headers.insert(0, "Via", f"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp{i}")
        m.headers.set("Max-Forwards", str((m.max_forwards or 70) - 1))
        m.encode()
    return len(messages)


def sipmessage_forward(messages: list[bytes]) -> int:
    for i, data in enumerate(messages):
        m = sipmessage.Message.parse(data)
        vias = m.via
        vias.insert(0, sipmessage.Via.parse(f"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp{i}"))
        m.via = vias
        m.max_forwards = (m.max_forwards or 70) - 1
        bytes(m)
    return len(messages)


def pyim_encode(parsed: list[Any]) -> int:
    for m in parsed:
        m.encode()
    return len(parsed)


def sipmessage_encode(parsed: list[Any]) -> int:
    for m in parsed:
        bytes(m)
    return len(parsed)


def measure(fn: Callable[[], int], seconds: float, runs: int) -> float:
    """Best rate (units per second) of ``runs`` measurements of >= ``seconds`` each."""
    best = 0.0
    fn()  # warm up
    for _ in range(runs):
        gc.collect()
        units = 0
        start = time.perf_counter()
        while True:
            units += fn()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, units / elapsed)
    return best


Case = tuple[Callable[[], int], Callable[[], int]]


def cases() -> dict[str, Case]:
    """name -> (pyim function, sipmessage function), each returning messages done."""
    msgs = _calls(random.Random(1), COUNT)
    invites = msgs["invite"]
    table: dict[str, Case] = {}
    for kind in ("invite", "ok_200", "ack", "bye", "message"):
        batch = msgs[kind]
        table[kind] = (
            lambda batch=batch: pyim_routing(batch),
            lambda batch=batch: sipmessage_routing(batch),
        )
    table["invite_parse_only"] = (lambda: pyim_parse(invites), lambda: sipmessage_parse(invites))
    table["invite_cold"] = (
        lambda: pyim_routing_cold(invites),
        lambda: sipmessage_routing(invites),
    )
    table["proxy_forward"] = (lambda: pyim_forward(invites), lambda: sipmessage_forward(invites))
    parsed_pyim = [parse_message(d) for d in invites]
    parsed_sm = [sipmessage.Message.parse(d) for d in invites]
    assert all(isinstance(m, SipRequest) for m in parsed_pyim)
    table["encode_unmodified"] = (
        lambda: pyim_encode(parsed_pyim),
        lambda: sipmessage_encode(parsed_sm),
    )
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--case", action="append", help="run only this case (repeatable)")
    ap.add_argument("--seconds", type=float, default=0.5, help="minimum time per measurement")
    ap.add_argument("--runs", type=int, default=3, help="measurements per figure (best kept)")
    ap.add_argument("--quick", action="store_true", help="0.1 s, 1 run: a smoke run")
    ap.add_argument("--profile", type=int, metavar="N", help="cProfile top N of pyim (stderr)")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.runs = 0.1, 1
    table = cases()
    names = args.case or list(table)
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, sipmessage "
        f"{getattr(sipmessage, '__version__', '?')}",
        file=sys.stderr,
    )
    for name in names:
        pyim_fn, sm_fn = table[name]
        pyim_rate = measure(pyim_fn, args.seconds, args.runs)
        sm_rate = measure(sm_fn, args.seconds, args.runs)
        print(
            json.dumps(
                {
                    "case": name,
                    "unit": "messages/s",
                    "pyim": round(pyim_rate),
                    "sipmessage": round(sm_rate),
                    "ratio": round(pyim_rate / sm_rate, 2),
                    "pyim_us": round(1e6 / pyim_rate, 2),
                    "sipmessage_us": round(1e6 / sm_rate, 2),
                }
            ),
            flush=True,
        )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            pyim_fn()
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.profile)
            print(out.getvalue(), file=sys.stderr)


if __name__ == "__main__":
    main()
