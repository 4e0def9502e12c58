"""The ``pyim`` command.

``pyim demo`` runs the main job until the application server exists: two MSRP
endpoints on 127.0.0.1 negotiate a session (the SDP attributes of RFC 4975 §8),
chat, and show every message with its delivery report.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import time
from collections.abc import Sequence

from . import __version__
from .msrp import parser_impl
from .msrp.sdp import Setup, negotiate_setup
from .msrp.session import SessionConfig
from .msrp.transport import DeliveryResult, EndpointConfig, MsrpEndpoint, Session

SCRIPT = (
    ("alice", "Hello Bob, are you there?"),
    ("bob", "Hi Alice! Yes, over MSRP."),
    ("alice", "Sending you a file in chunks..."),
)


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"


def _report(result: DeliveryResult, elapsed: float) -> str:
    if result.status == "delivered":
        return f"delivered (Success-Report) in {elapsed * 1000:.1f} ms"
    if result.status == "sent":
        return f"sent (200 OK) in {elapsed * 1000:.1f} ms"
    return f"FAILED {result.code} {result.reason}"


async def _say(sender: str, session: Session, peer: Session, text: str) -> bool:
    started = time.perf_counter()
    result = await session.send("text/plain", text.encode(), success_report=True)
    elapsed = time.perf_counter() - started
    message = await asyncio.wait_for(peer.receive(), 10)
    print(f"[{_stamp()}] {sender:>5} -> {message.body.decode()!r}")
    print(f"{'':15}{_report(result, elapsed)}  Message-ID {result.message_id}")
    return result.ok


async def demo(file_size: int, interactive: bool) -> int:
    config = EndpointConfig(session=SessionConfig(chunk_size=64 * 1024))
    alice_ep = await MsrpEndpoint.create("127.0.0.1", config=config)
    bob_ep = await MsrpEndpoint.create("127.0.0.1", config=config)
    try:
        alice, bob = alice_ep.new_session(), bob_ep.new_session()
        offer = alice.media_attributes(setup=Setup.ACTPASS, accept_types=("text/plain", "*"))
        answer = bob.media_attributes(
            setup=negotiate_setup(offer.setup), accept_types=("text/plain", "*")
        )
        print(f"pyim {__version__} MSRP demo on 127.0.0.1 (frame parser: {parser_impl})")
        for who, attrs in (("alice offers", offer), ("bob answers", answer)):
            print(f"  {who}: m=message {attrs.path[0].port} TCP/MSRP *")
            for line in attrs.to_lines():
                print(f"      {line}")
        await asyncio.gather(
            alice.start_negotiated(offer, answer, offerer=True, timeout=10),
            bob.start_negotiated(answer, offer, offerer=False, timeout=10),
        )
        print(f"[{_stamp()}] session up: bob connected to alice (a=setup:{answer.setup})")
        ok = True
        peers = {"alice": (alice, bob), "bob": (bob, alice)}
        for sender, text in SCRIPT:
            ok &= await _say(sender, *peers[sender], text)
        if file_size:
            body = hashlib.sha256(b"pyim").digest() * (file_size // 32 + 1)
            body = body[:file_size]
            started = time.perf_counter()
            result = await alice.send("application/octet-stream", body, success_report=True)
            elapsed = time.perf_counter() - started
            message = await asyncio.wait_for(bob.receive(), 30)
            chunks = -(-file_size // config.session.chunk_size)
            intact = message.body == body
            print(
                f"[{_stamp()}] alice -> {file_size} bytes in {chunks} chunks, "
                f"{'intact' if intact else 'CORRUPTED'}, "
                f"{file_size / max(elapsed, 1e-9) / 1e6:.0f} MB/s"
            )
            print(f"{'':15}{_report(result, elapsed)}")
            ok &= result.ok and intact
        if interactive:
            print("type lines to send from alice to bob; end with Ctrl-D")
            loop = asyncio.get_running_loop()
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                ok &= await _say("alice", alice, bob, line.rstrip("\n"))
        return 0 if ok else 1
    finally:
        await alice_ep.close()
        await bob_ep.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyim", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyim {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    demo_p = sub.add_parser("demo", help="two MSRP endpoints on 127.0.0.1 chat")
    demo_p.add_argument("--file-size", type=int, default=5 * 1024 * 1024)
    demo_p.add_argument("-i", "--interactive", action="store_true", help="then chat from stdin")
    sub.add_parser("info", help="print version and parser implementation")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "info":
        print(f"pyim {__version__}; MSRP frame parser: {parser_impl}")
        return 0
    try:
        return asyncio.run(demo(args.file_size, args.interactive))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
