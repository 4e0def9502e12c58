"""Benchmark of the MSRP asyncio stack between two endpoints on 127.0.0.1.

Not a test: run by hand, results go to bench/RESULTS.md.  One JSON object per case
on stdout, each with the pyim figure, a baseline measured in the same run and
their ratio (pyim / baseline; higher is better, 1.0 = as fast as the baseline)::

    PYTHONPATH=src python bench/session.py            # full run
    PYTHONPATH=src python bench/session.py --quick    # smoke run, a few seconds
    PYTHONPATH=src python bench/session.py --case messages_1k --profile 25

Cases
-----
``messages_1k``
    N messages of 1 KiB from Alice to Bob, at most ``--window`` in flight
    (``send_nowait``; Failure-Report yes, so each gets a 200 transaction response),
    all received by Bob.  Baseline: raw asyncio TCP (``asyncio.Protocol`` on both
    sides) exchanging N length-prefixed 1 KiB records, one 4-byte application ack
    per record, the same window, the receiver fed through an ``asyncio.Queue``.
``throughput_64k`` / ``throughput_64k_tls``
    One 64 MiB message, chunk_size 64 KiB, Success-Report yes; timed until Bob has
    the reassembled body and Alice has the "delivered" result.  Baseline: raw
    asyncio TCP (or TLS) pushing 64 MiB in 64 KiB writes with the same write
    high-water mark, the receiver collecting it into one buffer and acking once.

Each figure is the best of ``--runs`` runs (fresh endpoints each run, set-up not
timed).  ``--profile N`` runs the pyim side once more under cProfile and prints the
top N functions (by internal time) on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import ssl
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pyim.msrp
from pyim.msrp.session import SessionConfig
from pyim.msrp.transport import EndpointConfig, MsrpEndpoint

HOST = "127.0.0.1"
KIB = 1024
MIB = 1024 * 1024
HIGH_WATER = EndpointConfig().write_high_water  # the same write buffer limit on both sides
RUN_TIMEOUT = 300.0  # no single run may take longer than this (seconds)


@dataclass(frozen=True)
class Params:
    messages: int
    message_size: int
    window: int
    bulk_size: int
    chunk_size: int
    runs: int


# -- TLS ----------------------------------------------------------------------------


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client context trusting one throw-away CA (trustme)."""
    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


# -- pyim side ----------------------------------------------------------------------


class MsrpPair:
    """Two endpoints with Alice (active) connected to Bob (passive) by one session."""

    def __init__(self, chunk_size: int, tls: tuple[ssl.SSLContext, ssl.SSLContext] | None):
        self.chunk_size = chunk_size
        self.tls = tls
        self.endpoints: list[MsrpEndpoint] = []

    async def __aenter__(self) -> MsrpPair:
        server_ctx, client_ctx = self.tls if self.tls else (None, None)
        config = EndpointConfig(session=SessionConfig(chunk_size=self.chunk_size))
        try:
            for _ in range(2):
                self.endpoints.append(
                    await MsrpEndpoint.create(
                        HOST, config=config, ssl_server=server_ctx, ssl_client=client_ctx
                    )
                )
            self.alice = self.endpoints[0].new_session()
            self.bob = self.endpoints[1].new_session()
            await asyncio.wait_for(
                asyncio.gather(
                    self.alice.start(self.bob.path, active=True, timeout=10),
                    self.bob.start(self.alice.path, active=False, timeout=10),
                ),
                15,
            )
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for ep in self.endpoints:
            try:
                await asyncio.wait_for(ep.close(), 10)
            except (TimeoutError, OSError) as exc:
                print(f"warning: endpoint close: {exc!r}", file=sys.stderr)
        self.endpoints.clear()


async def pyim_messages(p: Params, tls: Any = None) -> float:
    """Seconds to send and receive ``p.messages`` messages of ``p.message_size`` bytes."""
    body = os.urandom(p.message_size)
    async with MsrpPair(p.chunk_size, tls) as pair:
        alice, bob = pair.alice, pair.bob
        window = asyncio.Semaphore(p.window)
        failures: list[str] = []

        def done(future: asyncio.Future[Any]) -> None:
            window.release()
            if future.cancelled() or future.exception() is not None:
                failures.append("cancelled or raised")
            elif not future.result().ok:
                failures.append(repr(future.result()))

        async def receiver() -> int:
            got = 0
            for _ in range(p.messages):
                msg = await bob.receive()
                got += len(msg.body)
            return got

        t0 = time.perf_counter()
        rx = asyncio.ensure_future(receiver())
        try:
            futures = []
            for _ in range(p.messages):
                await window.acquire()
                future = alice.send_nowait("text/plain", body)
                future.add_done_callback(done)
                futures.append(future)
            await asyncio.gather(*futures)
            got = await rx
        finally:
            rx.cancel()
        elapsed = time.perf_counter() - t0
        if failures or got != p.messages * p.message_size:
            raise RuntimeError(f"pyim messages: {len(failures)} failed, {got} bytes received")
        return elapsed


async def pyim_bulk(p: Params, tls: Any = None) -> float:
    """Seconds to deliver one ``p.bulk_size`` message, reassembled, Success-Report yes."""
    body = os.urandom(1 * MIB) * (p.bulk_size // MIB)
    async with MsrpPair(p.chunk_size, tls) as pair:
        t0 = time.perf_counter()
        result, msg = await asyncio.gather(
            pair.alice.send("application/octet-stream", body, success_report=True),
            pair.bob.receive(),
        )
        elapsed = time.perf_counter() - t0
        if result.status != "delivered" or len(msg.body) != len(body) or msg.body != body:
            raise RuntimeError(f"pyim bulk: {result}, {len(msg.body)} bytes")
        return elapsed


# -- baseline: raw asyncio ----------------------------------------------------------


class RecordServer(asyncio.Protocol):
    """Receives length-prefixed records, queues each for the app, acks each one."""

    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self.queue = queue
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        assert self.transport is not None
        while len(buf) - pos >= 4:
            (size,) = struct.unpack_from("!I", buf, pos)
            if len(buf) - pos - 4 < size:
                break
            record = bytes(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            self.queue.put_nowait(record)
            self.transport.write(b"\x00\x00\x00\x01")  # one ack per record
        del buf[:pos]


class RecordClient(asyncio.Protocol):
    """Sends records; each 4-byte ack resolves the oldest pending future."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []
        self.head = 0
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_write_buffer_limits(high=HIGH_WATER, low=HIGH_WATER // 4)
        self.transport = transport

    def send(self, record: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        future: asyncio.Future[None] = self.loop.create_future()
        self.pending.append(future)
        self.transport.write(struct.pack("!I", len(record)) + record)
        return future

    def data_received(self, data: bytes) -> None:
        data = self.buf + data
        n = len(data) // 4
        self.buf = data[n * 4 :]
        for _ in range(n):
            self.pending[self.head].set_result(None)
            self.head += 1


async def _raw_server(factory: Callable[[], asyncio.Protocol], ctx: ssl.SSLContext | None) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, HOST, 0, ssl=ctx)


async def baseline_messages(p: Params, tls: Any = None) -> float:
    loop = asyncio.get_running_loop()
    server_ctx, client_ctx = tls if tls else (None, None)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    server = await _raw_server(lambda: RecordServer(queue), server_ctx)
    transport: asyncio.BaseTransport | None = None
    try:
        port = server.sockets[0].getsockname()[1]
        transport, client = await asyncio.wait_for(
            loop.create_connection(
                RecordClient,
                HOST,
                port,
                ssl=client_ctx,
                server_hostname=HOST if client_ctx else None,
            ),
            10,
        )
        body = os.urandom(p.message_size)
        window = asyncio.Semaphore(p.window)

        def done(_: asyncio.Future[None]) -> None:
            window.release()

        async def receiver() -> int:
            got = 0
            for _ in range(p.messages):
                got += len(await queue.get())
            return got

        t0 = time.perf_counter()
        rx = asyncio.ensure_future(receiver())
        try:
            futures = []
            for _ in range(p.messages):
                await window.acquire()
                future = client.send(body)
                future.add_done_callback(done)
                futures.append(future)
            await asyncio.gather(*futures)
            got = await rx
        finally:
            rx.cancel()
        elapsed = time.perf_counter() - t0
        if got != p.messages * p.message_size:
            raise RuntimeError(f"baseline messages: {got} bytes received")
        return elapsed
    finally:
        if transport is not None:
            transport.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


class BulkReceiver(asyncio.Protocol):
    """Collects ``total`` bytes into one buffer, then acks with one byte."""

    def __init__(self, total: int, done: asyncio.Future[bytes]) -> None:
        self.total = total
        self.buf = bytearray()
        self.done = done
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= self.total and not self.done.done():
            assert self.transport is not None
            self.transport.write(b"\x01")
            self.done.set_result(bytes(self.buf))


class BulkSender(asyncio.Protocol):
    """Writes a body in fixed-size writes, respecting flow control (like the MSRP pump)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.view = memoryview(b"")
        self.offset = 0
        self.chunk = 0
        self.paused = False
        self.acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_write_buffer_limits(high=HIGH_WATER, low=HIGH_WATER // 4)
        self.transport = transport

    def start(self, body: bytes, chunk: int) -> None:
        self.view, self.offset, self.chunk = memoryview(body), 0, chunk
        self.pump()

    def pump(self) -> None:
        assert self.transport is not None
        view, chunk = self.view, self.chunk
        while not self.paused and self.offset < len(view):
            # bytes(): the MSRP side also hands one bytes object per chunk to write()
            self.transport.write(bytes(view[self.offset : self.offset + chunk]))
            self.offset += chunk

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()

    def data_received(self, data: bytes) -> None:
        if not self.acked.done():
            self.acked.set_result(None)


async def baseline_bulk(p: Params, tls: Any = None) -> float:
    loop = asyncio.get_running_loop()
    server_ctx, client_ctx = tls if tls else (None, None)
    body = os.urandom(1 * MIB) * (p.bulk_size // MIB)
    received: asyncio.Future[bytes] = loop.create_future()
    server = await _raw_server(lambda: BulkReceiver(len(body), received), server_ctx)
    transport: asyncio.BaseTransport | None = None
    try:
        port = server.sockets[0].getsockname()[1]
        transport, sender = await asyncio.wait_for(
            loop.create_connection(
                BulkSender,
                HOST,
                port,
                ssl=client_ctx,
                server_hostname=HOST if client_ctx else None,
            ),
            10,
        )
        t0 = time.perf_counter()
        sender.start(body, p.chunk_size)
        got, _ = await asyncio.gather(received, sender.acked)
        elapsed = time.perf_counter() - t0
        if got != body:
            raise RuntimeError(f"baseline bulk: {len(got)} bytes received")
        return elapsed
    finally:
        if transport is not None:
            transport.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


# -- driver -------------------------------------------------------------------------

Runner = Callable[[Params, Any], Awaitable[float]]


async def timed(runner: Runner, p: Params, tls: Any) -> float:
    gc.collect()
    return await asyncio.wait_for(runner(p, tls), RUN_TIMEOUT)


async def measure(case: str, p: Params, tls: Any, profile_top: int) -> dict[str, Any]:
    if case.startswith("messages"):
        pyim_run, base_run = pyim_messages, baseline_messages
        unit, amount = "messages/s", float(p.messages)
        extra = {"messages": p.messages, "size": p.message_size, "window": p.window}
    else:
        pyim_run, base_run = pyim_bulk, baseline_bulk
        unit, amount = "MB/s", p.bulk_size / 1e6
        extra = {"bytes": p.bulk_size, "chunk_size": p.chunk_size}
    # interleave the two sides so that a noisy neighbour hurts both alike
    pyim_times: list[float] = []
    base_times: list[float] = []
    for _ in range(p.runs):
        pyim_times.append(await timed(pyim_run, p, tls))
        base_times.append(await timed(base_run, p, tls))
    pyim_rate, base_rate = amount / min(pyim_times), amount / min(base_times)
    result: dict[str, Any] = {
        "case": case,
        "unit": unit,
        "pyim": round(pyim_rate, 1),
        "baseline": round(base_rate, 1),
        "ratio": round(pyim_rate / base_rate, 3),
        **extra,
        "tls": tls is not None,
        "openssl": ssl.OPENSSL_VERSION if tls is not None else None,
        "runs": p.runs,
        "pyim_s": [round(t, 4) for t in pyim_times],
        "baseline_s": [round(t, 4) for t in base_times],
        "parser_impl": pyim.msrp.parser_impl,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loop": type(asyncio.get_running_loop()).__name__,
    }
    if profile_top:
        profiler = cProfile.Profile()
        profiler.enable()
        t = await asyncio.wait_for(pyim_run(p, tls), RUN_TIMEOUT)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(profile_top)
        stats.sort_stats("cumulative").print_stats(profile_top)
        print(f"==== profile of pyim {case} ({t:.3f} s under cProfile) ====", file=sys.stderr)
        print(out.getvalue(), file=sys.stderr)
    return result


CASES = ("messages_1k", "throughput_64k", "throughput_64k_tls")


async def main_async(args: argparse.Namespace) -> int:
    p = Params(
        messages=args.messages or (2_000 if args.quick else 20_000),
        message_size=1 * KIB,
        window=args.window,
        bulk_size=(args.mib or (8 if args.quick else 64)) * MIB,
        chunk_size=64 * KIB,
        runs=args.runs or (1 if args.quick else 3),
    )
    cases = args.case or list(CASES)
    tls = tls_contexts() if any(c.endswith("_tls") for c in cases) else None
    status = 0
    for case in cases:
        try:
            result = await measure(
                case,
                p,
                tls if case.endswith("_tls") else None,
                args.profile,
            )
            print(json.dumps(result), flush=True)
        except Exception as exc:  # a timeout too: report it and go on to the next case
            print(json.dumps({"case": case, "error": repr(exc)}), flush=True)
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test")
    ap.add_argument("--case", action="append", choices=CASES, help="run only this case")
    ap.add_argument("--runs", type=int, help="runs per figure (best is kept); default 3")
    ap.add_argument("--messages", type=int, help="messages in messages_1k; default 20000")
    ap.add_argument("--window", type=int, default=64, help="messages in flight; default 64")
    ap.add_argument("--mib", type=int, help="MiB in the throughput cases; default 64")
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile one more pyim run per case, print the top N functions on stderr",
    )
    args = ap.parse_args(argv)
    for name in ("runs", "messages", "window", "mib"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
