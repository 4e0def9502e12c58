"""The ``pyim`` command.

``pyim demo`` runs the main job until the application server exists: alice INVITEs
bob on 127.0.0.1 (SIP over TCP, an SDP offer with ``m=message``), they chat over
the MSRP session it set up, every message shown with its delivery report, and
alice hangs up (BYE).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .msrp import parser_impl
from .msrp.session import SessionConfig
from .msrp.transport import DeliveryResult, EndpointConfig, MsrpEndpoint, Session
from .sip.chat import ChatStack
from .sip.stack import SipStack, StackConfig
from .sip.uri import SipUri

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


async def _chat_stack(user: str, config: EndpointConfig) -> ChatStack:
    sip = SipStack(StackConfig())
    await sip.start(udp=0, tcp=0)
    return ChatStack(sip, await MsrpEndpoint.create("127.0.0.1", config=config), user=user)


async def demo(file_size: int, interactive: bool) -> int:
    config = EndpointConfig(session=SessionConfig(chunk_size=64 * 1024))
    alice_chat = await _chat_stack("alice", config)
    bob_chat = await _chat_stack("bob", config)
    try:
        print(f"pyim {__version__} demo on 127.0.0.1 (MSRP frame parser: {parser_impl})")
        host, port = bob_chat.sip.local_address("tcp")
        target = SipUri(
            scheme="sip", user="bob", host=host, port=port, params=(("transport", "tcp"),)
        )
        print(f"[{_stamp()}] alice: INVITE {target}")
        outgoing = await asyncio.wait_for(alice_chat.invite(target), 10)
        incoming = await asyncio.wait_for(bob_chat.accept(), 10)
        for who, sdp in (("offer", outgoing.local_sdp), ("answer", incoming.local_sdp)):
            print(f"  {who}:")
            for line in sdp.encode().decode().splitlines():
                if line.startswith(("m=", "a=")):
                    print(f"      {line}")
        print(f"[{_stamp()}] 200 OK, ACK: MSRP session up, SIP dialog {outgoing.dialog.id.call_id}")
        alice, bob = outgoing.msrp, incoming.msrp
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
        await asyncio.wait_for(outgoing.close(), 10)
        await asyncio.wait_for(incoming.closed.wait(), 10)
        print(f"[{_stamp()}] alice: BYE, 200 OK: session closed")
        return 0 if ok else 1
    finally:
        for chat in (alice_chat, bob_chat):
            await chat.close()
            await chat.msrp.close()
            await chat.sip.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyim", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyim {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    demo_p = sub.add_parser("demo", help="alice INVITEs bob on 127.0.0.1 and they chat")
    demo_p.add_argument("--file-size", type=int, default=5 * 1024 * 1024)
    demo_p.add_argument("-i", "--interactive", action="store_true", help="then chat from stdin")
    sub.add_parser("info", help="print version and parser implementation")
    relay_p = sub.add_parser("relay", help="run the MSRP relay (RFC 4976) as a daemon")
    relay_p.add_argument("-c", "--config", type=Path, help="TOML config (see pyim.relay.config)")
    relay_p.add_argument(
        "--hash-password",
        metavar="USER",
        help="print HA1 file lines for USER (password from stdin) and exit",
    )
    relay_p.add_argument("--realm", default="pyim", help="realm for --hash-password")
    server_p = sub.add_parser("server", help="run the IM application server")
    server_p.add_argument("-c", "--config", type=Path, help="TOML config (pyim.server.config)")
    server_p.add_argument("--json-logs", action="store_true", help="one JSON object per log line")
    server_p.add_argument("--sip-port", type=int, help="SIP UDP and TCP port (0: any free one)")
    server_p.add_argument(
        "--sip-tls-port", type=int, help="SIP TLS port (0: any free one; needs sip.cert, sip.key)"
    )
    server_p.add_argument("--msrp-port", type=int, help="MSRP port (0: any free one)")
    server_p.add_argument("--metrics-port", type=int, help="Prometheus port (0: off)")
    users_p = sub.add_parser("users", help="manage the server's users (HA1 in its store)")
    users_p.add_argument("action", choices=["add", "remove", "list"])
    users_p.add_argument("name", nargs="?")
    users_p.add_argument("-c", "--config", type=Path)
    chat_p = sub.add_parser("chat", help="chat in a terminal (pjsua2 client, MSRP session)")
    from . import chat_terminal

    chat_terminal.add_arguments(chat_p)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "server":
        from .server import daemon as server_daemon

        return server_daemon.run(
            args.config,
            json_logs=args.json_logs,
            sip_port=args.sip_port,
            sip_tls_port=args.sip_tls_port,
            msrp_port=args.msrp_port,
            metrics_port=args.metrics_port,
        )
    if args.command == "users":
        from .server import daemon as server_daemon

        if args.action != "list" and not args.name:
            parser.error("users add/remove need a name")
        return server_daemon.users_command(args.config, args.action, args.name)
    if args.command == "chat":
        return chat_terminal.main(args)
    if args.command == "relay":
        from .relay import daemon

        if args.hash_password:
            return daemon.hash_password(args.hash_password, args.realm, ("SHA-256", "MD5"))
        return daemon.run(args.config)
    if args.command == "info":
        print(f"pyim {__version__}; MSRP frame parser: {parser_impl}")
        return 0
    try:
        return asyncio.run(demo(args.file_size, args.interactive))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
