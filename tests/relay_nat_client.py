"""One side of an MSRP chat through a relay, run inside namespace ``a`` or ``b`` of the
NAT topology (tests/netns.py) by tests/test_relay_nat.py.

    python relay_nat_client.py --relay msrp://198.51.100.1:2855;tcp --user alice \\
        --password ... --host 10.1.0.2 --workdir DIR --role a

It AUTHs to the relay, writes its session path (what SDP ``a=path`` would carry) to
``DIR/<role>.path``, waits for the peer's ``DIR/<peer>.path`` (this file exchange
stands in for the SDP offer/answer), starts the session (through the relay both sides
connect out), then

* role ``a`` sends :data:`TEXTS` and a :data:`BIG_SIZE` byte message (deterministic,
  see :func:`big_body`), each with a Success-Report, and waits for one reply per text;
* role ``b`` receives them, checks the SHA-256 of the big one against its own copy of
  :func:`big_body`, and answers each text with :func:`reply_to`.

Every step prints one JSON object per line on stdout (``{"event": ...}``); the last
line is ``{"event": "result", "ok": true, ...}`` (exit 0) or ``"ok": false`` with a
``reason`` (exit 1). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pyim.msrp.transport import DeliveryResult, MsrpEndpoint, Session
from pyim.msrp.uri import MsrpUri, format_path, parse_path

TEXTS = ("hello 1 from a", "hello 2 from a", "hello 3 from a")
BIG_SIZE = 10 * 1024 * 1024
BIG_SEED = b"pyim relay nat test"
TEXT_TYPE = "text/plain"
BIG_TYPE = "application/octet-stream"

PEER_PATH_TIMEOUT = 20.0  # waiting for the peer's path file
STEP_TIMEOUT = 30.0  # one send (with its Success-Report) or one receive
TOTAL_TIMEOUT = 50.0  # the whole run


class Failure(Exception):
    """The run failed; the message says why."""


def big_body(size: int = BIG_SIZE, seed: bytes = BIG_SEED) -> bytes:
    """``size`` deterministic bytes: SHA-256 blocks, each the hash of the previous one."""
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < size:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:size])


def big_sha256() -> str:
    return hashlib.sha256(big_body()).hexdigest()


def reply_to(text: str) -> str:
    return f"reply to: {text}"


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


def write_path(path_file: Path, text: str) -> None:
    """Write atomically: the peer never reads half a path."""
    tmp = path_file.with_name(path_file.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path_file)


async def read_peer_path(path_file: Path, timeout: float) -> list[MsrpUri]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        if text:
            return parse_path(text)
        if time.monotonic() >= deadline:
            raise Failure(f"no peer path in {path_file} after {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def send_checked(session: Session, ctype: str, body: bytes, what: str) -> DeliveryResult:
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(
            session.send(ctype, body, success_report=True), STEP_TIMEOUT
        )
    except TimeoutError as exc:
        raise Failure(f"{what}: no Success-Report within {STEP_TIMEOUT:.0f} s") from exc
    elapsed = time.monotonic() - started
    emit(
        "sent",
        what=what,
        size=len(body),
        status=result.status,
        code=result.code,
        reason=result.reason,
        seconds=round(elapsed, 3),
    )
    if result.status != "delivered":
        raise Failure(f"{what}: {result.status} {result.code} {result.reason}")
    return result


async def receive_one(session: Session, what: str) -> tuple[str, bytes]:
    """The next non-empty message (empty SENDs are the peer's connection keepalives)."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure(f"waiting for {what}: nothing within {STEP_TIMEOUT:.0f} s")
        try:
            message = await asyncio.wait_for(session.receive(), left)
        except TimeoutError as exc:
            raise Failure(f"waiting for {what}: nothing within {STEP_TIMEOUT:.0f} s") from exc
        except ConnectionError as exc:
            raise Failure(f"waiting for {what}: session ended ({exc})") from exc
        if message.body:
            return (message.content_type or "", message.body)


async def run_a(session: Session) -> dict[str, Any]:
    for i, text in enumerate(TEXTS):
        await send_checked(session, TEXT_TYPE, text.encode(), f"text {i + 1}")
    body = big_body()
    digest = hashlib.sha256(body).hexdigest()
    started = time.monotonic()
    await send_checked(session, BIG_TYPE, body, "big")
    big_seconds = time.monotonic() - started
    expected = {reply_to(text) for text in TEXTS}
    replies: list[str] = []
    while len(replies) < len(TEXTS):
        ctype, data = await receive_one(session, f"reply {len(replies) + 1}")
        reply = data.decode("utf-8", errors="replace")
        emit("received", content_type=ctype, size=len(data), text=reply)
        if ctype != TEXT_TYPE or reply not in expected or reply in replies:
            raise Failure(f"unexpected reply {ctype} {reply!r}")
        replies.append(reply)
    return {
        "texts_sent": len(TEXTS),
        "big_bytes_sent": len(body),
        "big_sha256": digest,
        "big_seconds": round(big_seconds, 3),
        "replies": len(replies),
    }


async def run_b(session: Session) -> dict[str, Any]:
    expected_digest = big_sha256()
    texts: list[str] = []
    big_checked = 0
    while len(texts) < len(TEXTS) or not big_checked:
        ctype, data = await receive_one(session, "a message from a")
        if ctype == BIG_TYPE:
            digest = hashlib.sha256(data).hexdigest()
            emit("received", content_type=ctype, size=len(data), sha256=digest)
            if big_checked:
                raise Failure("the big message arrived twice")
            if len(data) != BIG_SIZE or digest != expected_digest:
                raise Failure(
                    f"big message corrupt: {len(data)} bytes, sha256 {digest}, "
                    f"expected {BIG_SIZE} bytes, sha256 {expected_digest}"
                )
            big_checked = len(data)
            continue
        text = data.decode("utf-8", errors="replace")
        emit("received", content_type=ctype, size=len(data), text=text)
        if ctype != TEXT_TYPE or text not in TEXTS or text in texts:
            raise Failure(f"unexpected message {ctype} {text!r}")
        texts.append(text)
        await send_checked(session, TEXT_TYPE, reply_to(text).encode(), f"reply {len(texts)}")
    return {
        "texts_received": len(texts),
        "big_bytes_checked": big_checked,
        "big_sha256": expected_digest,
        "replies_sent": len(texts),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    peer = "b" if args.role == "a" else "a"
    endpoint = await MsrpEndpoint.create(host=args.host)
    try:
        relay = MsrpUri.parse(args.relay)
        try:
            grant = await endpoint.authenticate(relay, args.user, args.password, timeout=10.0)
        except TimeoutError as exc:
            raise Failure(f"AUTH to {relay}: no answer within 10 s") from exc
        emit("auth", user=args.user, use_path=format_path(grant.use_path))
        session = endpoint.new_session(relay=grant)
        own_path = format_path(session.path)
        write_path(workdir / f"{args.role}.path", own_path)
        emit("path", path=own_path)
        peer_path = await read_peer_path(workdir / f"{peer}.path", PEER_PATH_TIMEOUT)
        emit("peer_path", path=format_path(peer_path))
        try:
            await session.start(peer_path, active=True, timeout=10.0)
        except TimeoutError as exc:
            raise Failure("session start: timed out after 10 s") from exc
        emit("started")
        run = run_a if args.role == "a" else run_b
        summary = await run(session)
        await asyncio.wait_for(session.close(), 10)
        return summary
    finally:
        await asyncio.wait_for(endpoint.close(), 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relay", required=True, help="the relay's URI (msrp://host:port;tcp)")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", required=True, help="own address (to listen on)")
    parser.add_argument("--workdir", required=True, help="where the path files are exchanged")
    parser.add_argument("--role", required=True, choices=("a", "b"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        summary = asyncio.run(asyncio.wait_for(main_async(args), TOTAL_TIMEOUT))
    except TimeoutError:
        reason = f"did not finish within {TOTAL_TIMEOUT:.0f} s"
    except Exception as exc:  # any failure ends in a result line with the reason
        reason = f"{type(exc).__name__}: {exc}"
    else:
        emit(
            "result",
            ok=True,
            role=args.role,
            seconds=round(time.monotonic() - started, 3),
            **summary,
        )
        return 0
    emit("result", ok=False, role=args.role, reason=reason)
    return 1


if __name__ == "__main__":
    sys.exit(main())
