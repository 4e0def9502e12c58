"""Benchmark of the MSRP relay: pyim's relay vs Kamailio's msrp relay vs no relay.

Not a test: run by hand, results go to bench/RESULTS.md.  One JSON object per case
on stdout::

    PYTHONPATH=src:tests python bench/relay.py            # full run
    PYTHONPATH=src:tests python bench/relay.py --quick    # smoke run

The same two pyim MSRP endpoints (alice sends, bob receives, one process) talk
(a) through the pyim relay (``python -m pyim relay``, a process of its own), (b)
through Kamailio 5.6's msrp module (deploy/kamailio/msrp-relay.cfg, started as in
the interop tests) and (c) directly.  Through a relay each endpoint AUTHs and
uses its own connection; the relay answers (pyim) or relays (Kamailio) every
transaction response.

Cases
-----
``messages_1k``  N messages of 1 KiB, at most ``--window`` unanswered, Failure-Report
                 yes (a 200 per message), all received by bob: messages/s.
``mb_10k``       one 32 MiB message in 10 KiB chunks, Success-Report yes: MB/s.
``mb_64k``       the same in 64 KiB chunks (Kamailio 5.6.3 routes no frame over about
                 11 KB: it cannot carry this case, reported as such).

Each figure is the best of ``--runs`` runs; ratios: ``pyim / kamailio`` (target
>= 1.5) and ``pyim / direct`` (target >= 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pyim.msrp.session import SessionConfig
from pyim.msrp.transport import EndpointConfig, MsrpEndpoint, Session
from pyim.msrp.uri import MsrpUri

ROOT = Path(__file__).resolve().parent.parent
KIB, MIB = 1024, 1024 * 1024
USERS = {"alice": "alice-secret", "bob": "bob-secret"}

Pair = tuple[Session, Session]
PairFactory = Callable[[int], Awaitable[tuple[Pair, Callable[[], Awaitable[None]]]]]


# -- the relays --------------------------------------------------------------------------


@contextlib.contextmanager
def pyim_relay(workdir: Path) -> Any:
    config = workdir / "relay.toml"
    users = "\n".join(f'{u} = "{p}"' for u, p in USERS.items())
    config.write_text(
        f'[relay]\nrealm = "bench"\nlog_level = "warning"\n[users]\n{users}\n'
        '[[listen]]\nhost = "127.0.0.1"\nport = 0\n'
    )
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}")
    profile = os.environ.get("BENCH_RELAY_PROFILE")  # a path: cProfile the relay into it
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    proc = subprocess.Popen(
        [sys.executable, *prefix, "-m", "pyim", "relay", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=open(workdir / "relay.log", "wb"),  # noqa: SIM115
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        match = re.search(r"ready: (\S+)", line)
        if match is None:
            raise RuntimeError(f"pyim relay did not start: {line!r}")
        yield MsrpUri.parse(match.group(1)), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def kamailio_relay(workdir: Path) -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from kamailio_msrp import KamailioMsrpRelay  # the interop tests' fixture

    relay = KamailioMsrpRelay(workdir / "kamailio", debug=False)
    relay.start()
    try:
        yield MsrpUri.parse(relay.uri), relay
    finally:
        relay.stop()


def kamailio_version() -> str:
    out = subprocess.run(["kamailio", "-v"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "?"


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- endpoints ---------------------------------------------------------------------------


async def relayed_pair(relay_uri: MsrpUri, chunk: int) -> tuple[Pair, Any]:
    config = EndpointConfig(session=SessionConfig(chunk_size=chunk, max_pending_chunks=64))
    endpoints, sessions = [], []
    for user in ("alice", "bob"):
        ep = await MsrpEndpoint.create(config=config)
        grant = await ep.authenticate(relay_uri, user, USERS[user])
        endpoints.append(ep)
        sessions.append(ep.new_session(relay=grant))
    a, b = sessions
    await asyncio.gather(a.start(b.path, active=True), b.start(a.path, active=True))

    async def close() -> None:
        for ep in endpoints:
            await ep.close()

    return (a, b), close


async def direct_pair(chunk: int) -> tuple[Pair, Any]:
    config = EndpointConfig(session=SessionConfig(chunk_size=chunk, max_pending_chunks=64))
    ea, eb = await MsrpEndpoint.create(config=config), await MsrpEndpoint.create(config=config)
    a, b = ea.new_session(), eb.new_session()
    await asyncio.gather(a.start(b.path, active=True), b.start(a.path, active=False))

    async def close() -> None:
        await ea.close()
        await eb.close()

    return (a, b), close


# -- raw clients: a load generator that costs far less than the relays it drives --------


class RawPeer(asyncio.Protocol):
    """A bare MSRP peer: sends pre-formatted SENDs and answers SENDs with 200, no
    session machinery, so a run measures the relay in the middle, not the clients."""

    def __init__(self) -> None:
        from pyim.msrp import FrameParser

        self.parser = FrameParser()
        self.transport: asyncio.Transport | None = None
        self.ok = 0  # 200s received
        self.got = 0  # SENDs received (complete)
        self.body_bytes = 0
        self.me = ""
        self.changed = asyncio.Event()
        self.answers: asyncio.Queue[Any] = asyncio.Queue()
        self._head: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        from pyim.msrp import BodyData, FrameEnd, FrameHead

        out = []
        for event in self.parser.feed(data):
            if type(event) is BodyData:
                self.body_bytes += len(event.data)
            elif type(event) is FrameHead:
                self._head = event
                if event.code is not None:
                    if event.code == 200:
                        self.ok += 1
                    else:
                        self.answers.put_nowait(event)
            elif type(event) is FrameEnd:
                head = self._head
                if head is not None and head.method == "SEND":
                    self.got += 1
                    to_path = from_path = ""
                    for name, value in head.headers:
                        if name == "To-Path":
                            to_path = value
                        elif name == "From-Path":
                            from_path = value
                    tid = head.tid
                    out.append(
                        f"MSRP {tid} 200 OK\r\nTo-Path: {from_path}\r\n"
                        f"From-Path: {to_path.split()[0]}\r\n-------{tid}$\r\n"
                    )
        if out and self.transport is not None:
            self.transport.write("".join(out).encode())
        self.changed.set()


async def raw_pair(relay: MsrpUri | None) -> tuple[RawPeer, RawPeer, str, str, Any]:
    """(sender, receiver, sender To-Path, sender From-Path, close)."""
    loop = asyncio.get_running_loop()
    if relay is None:
        receiver = RawPeer()
        server = await loop.create_server(lambda: receiver, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, sender = await loop.create_connection(RawPeer, "127.0.0.1", port)
        to_path = f"msrp://127.0.0.1:{port}/rawbob;tcp"
        from_path = "msrp://127.0.0.1:9/rawalice;tcp"
        await asyncio.sleep(0.05)

        async def close_direct() -> None:
            assert sender.transport is not None
            sender.transport.close()
            server.close()

        return sender, receiver, to_path, from_path, close_direct
    _, sender = await loop.create_connection(RawPeer, relay.host, relay.port)
    _, receiver = await loop.create_connection(RawPeer, relay.host, relay.port)
    # a 401 is not a 200: AUTH answers come through the answers queue (non-200) or ok
    sender_path = await raw_auth_any(sender, relay, "alice")
    receiver_path = await raw_auth_any(receiver, relay, "bob")
    to_path = f"{sender_path} {receiver_path} {receiver.me}"

    async def close() -> None:
        for peer in (sender, receiver):
            assert peer.transport is not None
            peer.transport.close()

    return sender, receiver, to_path, sender.me, close


async def raw_auth_any(peer: RawPeer, relay: MsrpUri, user: str) -> str:
    """AUTH with a RawPeer, reading the 200 too (data_received counts only non-200s)."""
    from pyim.digest import DigestClient
    from pyim.msrp import Frame, parse_frames
    from pyim.msrp.auth import AuthClient, RelayGrant

    me = MsrpUri(host="127.0.0.1", port=9, session_id=f"raw{user}")
    peer.me = str(me)
    client = AuthClient(relay, me, DigestClient(user, USERS[user]))
    step: Frame | RelayGrant = client.first_request()
    loop = asyncio.get_running_loop()
    assert peer.transport is not None
    transport = peer.transport
    while isinstance(step, Frame):
        got: asyncio.Future[bytes] = loop.create_future()
        original = peer.data_received
        peer.data_received = lambda data, got=got: got.done() or got.set_result(data)  # type: ignore[method-assign]
        transport.write(step.encode())
        data = await asyncio.wait_for(got, 10)
        peer.data_received = original  # type: ignore[method-assign]
        step = client.on_response(parse_frames(data)[0])
    return " ".join(str(u) for u in step.use_path)


async def raw_messages(relay: MsrpUri | None, count: int, window: int) -> float:
    sender, receiver, to_path, from_path, close = await raw_pair(relay)
    body = "x" * KIB
    head = f"\r\nTo-Path: {to_path}\r\nFrom-Path: {from_path}\r\nMessage-ID: m"
    assert sender.transport is not None
    transport = sender.transport
    sent = 0
    start = time.perf_counter()
    deadline = start + 300
    receiver.changed = sender.changed  # either side's progress wakes the loop
    while sender.ok < count or receiver.got < count:
        batch = []
        while sent < count and sent - sender.ok < window:
            tid = f"t{sent:09d}"
            batch.append(
                f"MSRP {tid} SEND{head}{sent}\r\nByte-Range: 1-1024/1024\r\n"
                f"Content-Type: text/plain\r\n\r\n{body}\r\n-------{tid}$\r\n"
            )
            sent += 1
        if batch:
            transport.write("".join(batch).encode())
        sender.changed.clear()
        await asyncio.wait_for(sender.changed.wait(), max(1.0, deadline - time.perf_counter()))
        if not sender.answers.empty():
            raise RuntimeError(f"error response: {sender.answers.get_nowait()}")
    elapsed = time.perf_counter() - start
    assert receiver.got >= count, (receiver.got, count)
    await close()
    return count / elapsed


async def raw_throughput(relay: MsrpUri | None, size: int, chunk: int, window: int) -> float:
    sender, receiver, to_path, from_path, close = await raw_pair(relay)
    body = os.urandom(chunk)
    chunks = size // chunk
    head = f"\r\nTo-Path: {to_path}\r\nFrom-Path: {from_path}\r\nMessage-ID: big\r\n"
    assert sender.transport is not None
    transport = sender.transport
    sent = 0
    start = time.perf_counter()
    deadline = start + 300
    receiver.changed = sender.changed
    while sender.ok < chunks or receiver.body_bytes < chunks * chunk:
        while sent < chunks and sent - sender.ok < window:
            tid = f"c{sent:09d}"
            first = sent * chunk + 1
            flag = "$" if sent == chunks - 1 else "+"
            transport.write(
                f"MSRP {tid} SEND{head}Byte-Range: {first}-{first + chunk - 1}/{size}\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n".encode()
                + body
                + f"\r\n-------{tid}{flag}\r\n".encode()
            )
            sent += 1
        sender.changed.clear()
        await asyncio.wait_for(sender.changed.wait(), max(1.0, deadline - time.perf_counter()))
        if not sender.answers.empty():
            raise RuntimeError(f"error response: {sender.answers.get_nowait()}")
    elapsed = time.perf_counter() - start
    assert receiver.body_bytes >= chunks * chunk, (receiver.body_bytes, chunks * chunk)
    await close()
    return chunks * chunk / elapsed / 1e6


# -- cases -------------------------------------------------------------------------------


async def messages(pair: Pair, count: int, window: int) -> float:
    alice, bob = pair
    body = os.urandom(KIB)
    sem = asyncio.Semaphore(window)

    async def receive_all() -> None:
        for _ in range(count):
            await bob.receive()

    receiver = asyncio.ensure_future(receive_all())
    pending: set[asyncio.Future[Any]] = set()
    start = time.perf_counter()
    for _ in range(count):
        await sem.acquire()
        future = alice.send_nowait("text/plain", body)
        future.add_done_callback(lambda _f: sem.release())
        pending.add(future)
    results = await asyncio.wait_for(asyncio.gather(*pending), 300)
    await asyncio.wait_for(receiver, 300)
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    return count / elapsed


async def throughput(pair: Pair, size: int) -> float:
    alice, bob = pair
    body = os.urandom(size)
    start = time.perf_counter()
    sending = alice.send("application/octet-stream", body, success_report=True)
    result, got = await asyncio.wait_for(asyncio.gather(sending, bob.receive()), 300)
    elapsed = time.perf_counter() - start
    assert result.status == "delivered" and got.body == body, result
    return size / elapsed / 1e6


async def measure(
    relay: MsrpUri | None, case: str, args: argparse.Namespace, pid: int | None, clients: str
) -> dict[str, Any]:
    """Best of ``args.runs`` runs of ``case`` through ``relay`` (None: direct)."""
    chunk = {"messages_1k": 16 * KIB, "mb_10k": 10 * KIB, "mb_64k": 64 * KIB}[case]
    best = 0.0
    cpu = None
    for _ in range(args.runs):
        cpu0 = cpu_seconds(pid) if pid else None
        t0 = time.perf_counter()
        if clients == "raw":
            if case == "messages_1k":
                figure = await raw_messages(relay, args.messages * 3, args.window)
            else:
                figure = await raw_throughput(relay, args.size, chunk, args.window)
        else:
            pair, close = await (
                direct_pair(chunk) if relay is None else relayed_pair(relay, chunk)
            )
            try:
                t0 = time.perf_counter()
                if case == "messages_1k":
                    figure = await messages(pair, args.messages, args.window)
                else:
                    figure = await throughput(pair, args.size)
            finally:
                await close()
        if pid and cpu0 is not None:
            cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0)
        best = max(best, figure)
    return {"value": round(best, 1), "relay_cpu": None if cpu is None else round(cpu, 2)}


async def run(args: argparse.Namespace) -> None:
    unit = {"messages_1k": "messages/s", "mb_10k": "MB/s", "mb_64k": "MB/s"}
    with tempfile.TemporaryDirectory(prefix="pyim-bench-relay-") as tmp:
        workdir = Path(tmp)
        results: dict[tuple[str, str], dict[str, Any]] = {}
        keys = [(c, k) for k in args.clients for c in args.cases]
        for key in keys:
            results[key] = {}
        with pyim_relay(workdir) as (uri, pid):
            for case, clients in keys:
                results[case, clients]["pyim"] = await measure(uri, case, args, pid, clients)
        with kamailio_relay(workdir) as (uri, _relay):
            for case, clients in keys:
                if case == "mb_64k":
                    note = "frames > ~11 KB not routed"
                    results[case, clients]["kamailio"] = {"value": None, "note": note}
                    continue
                results[case, clients]["kamailio"] = await measure(uri, case, args, None, clients)
        for case, clients in keys:
            results[case, clients]["direct"] = await measure(None, case, args, None, clients)
    for (case, clients), r in results.items():
        pyim, kam, direct = r["pyim"]["value"], r["kamailio"]["value"], r["direct"]["value"]
        print(
            json.dumps(
                {
                    "case": case,
                    "clients": clients,
                    "unit": unit[case],
                    "pyim_relay": pyim,
                    "kamailio_relay": kam,
                    "direct": direct,
                    "ratio_vs_kamailio": round(pyim / kam, 2) if kam else None,
                    "ratio_vs_direct": round(pyim / direct, 2),
                    "pyim_relay_cpu": r["pyim"].get("relay_cpu"),
                    "kamailio": kamailio_version(),
                    "python": platform.python_version(),
                    "forward_impl": forward_impl(),
                }
            ),
            flush=True,
        )


def forward_impl() -> str:
    from pyim.relay import forward_impl as impl

    return impl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--size", type=int, default=32 * MIB)
    parser.add_argument(
        "--case", action="append", dest="cases", choices=["messages_1k", "mb_10k", "mb_64k"]
    )
    parser.add_argument(
        "--clients",
        action="append",
        choices=["pyim", "raw"],
        help="pyim endpoints (sessions) and/or a raw load generator",
    )
    args = parser.parse_args()
    args.cases = args.cases or ["messages_1k", "mb_10k", "mb_64k"]
    args.clients = args.clients or ["pyim", "raw"]
    if args.quick:
        args.runs, args.messages, args.size = 1, 2000, 4 * MIB
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
