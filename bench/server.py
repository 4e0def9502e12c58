"""Benchmark of the IM application server (``python -m pyim server``).

Not a test: run by hand, results go to bench/RESULTS.md.  One JSON object per case
on stdout::

    PYTHONPATH=src python bench/server.py            # full run (a few minutes)
    PYTHONPATH=src python bench/server.py --quick    # smoke run
    PYTHONPATH=src python bench/server.py --case sessions --sessions 20000
    PYTHONPATH=src python bench/server.py --case messages --profile 30

The server runs as its own process (a TOML config in a temporary folder: SQLite
store there, SIP on free UDP and TCP ports, MSRP on a free port, metrics off,
``messages_per_second`` 1e6, ``max_sessions`` 100000, ``max_queue_per_user`` 1e6,
log level warning); a fresh server for every case, stopped by its PID (SIGTERM,
SIGKILL after a grace period).  The clients are pyim.sip user agents (``SipStack`` +
``ChatStack`` + ``MsrpEndpoint``) in this process, one event loop: on the 2-core
machine the server has one core and the clients the other.  MSRP is TCP.  SIP is
TCP in ``sessions`` and to Kamailio, UDP between the clients and the server in
``messages`` / ``page_vs_session`` (200 client stacks over TCP from 127.0.0.1 plus the
server's own connections to them pass the server's SIP limit of 256 TCP connections
per IP address, ``TransportConfig.max_connections_per_ip``; SIP only sets the
sessions up there, the messages go over MSRP).

With Success-Report yes and more than one message in flight, the server loses
reports (bench/RESULTS.md): a run without progress for 20 s is reported in
``error_with_window`` and measured again with one message in flight per sender.

Cases
-----
``sessions``
    N concurrent 1:1 sessions held by one server.  Users ``u0..u{C-1}`` are in the
    config; C callees are registered (K client stacks).  Session i is an INVITE from
    ``c{i // C}`` to ``u{i % C}`` (every (caller, callee) pair is distinct: the server
    keeps one leg per pair).  Phase 1: all N INVITEs (``--setup-window`` at a time),
    each answered by the server with an MSRP session (the server is the other end
    whether the callee is online or not: one leg per session, "offline" figure).
    Phase 2: one 16-byte message with Success-Report in every session: the server
    INVITEs the callee's device on the caller's behalf, so each session then holds
    two legs ("online" figure).  VmRSS of the server (/proc/PID/status) is read when
    its CPU has gone idle: before phase 1, at every tenth of phase 1, after phase 1
    and after phase 2.  Per session = (RSS after - RSS before) / N; "marginal" =
    slope between a tenth and all of N (excludes one-time growth).  MSRP: the
    sessions of one client stack share its connection (RFC 4975 reuse); the caller
    stacks are ``--clients`` (default 50) and the callee stacks 10, so the server
    holds about 60 MSRP and 60 SIP TCP connections, not one per session.
    Two readings per phase: right after set-up (``kib_per_session_offline`` /
    ``_online``: the INVITE transactions are still alive, RFC 6026 Timer L/M keep them
    64*T1 = 32 s with their messages, the ACKs of the 2xx 37 s) and ``--steady``
    seconds later (default 45; ``..._steady``: what holding the sessions costs, once
    those timers lapsed; RSS seldom shrinks, what was freed is reused).
    ``--tracemalloc DIR`` runs the server under tracemalloc and writes a heap snapshot
    (with live objects counted by type) at each reading into DIR, with the
    allocators' statistics (diagnostic: the RSS figures of such a run are not the
    server's; ``PYIM_TRACE_FRAMES=0`` in the environment: the statistics only).
``messages``
    1 KiB text messages through the server, at most ``--window`` unanswered per
    sender, for 1 pair and for 100 pairs (each party its own SIP stack and MSRP
    endpoint); ``reports_off``: Success-Report no (the sender's future resolves on
    the server's 200, hop by hop), ``reports_on``: Success-Report yes (resolves on
    the end-to-end report that the server relays from the recipient's device).
    Timed from the first send until every message was received by its recipient
    and every sender's future resolved.  The callee is registered and the session
    warmed by one message (the server's leg to the callee exists) before timing.
    Baseline: the same pyim endpoints chatting directly (no server, both ends in
    this process), same pairs, window and report setting.
``page_vs_session``
    The thesis' claim: the same conversation (alice -> bob, N messages, the same
    window) as page-mode MESSAGE through Kamailio (deploy/kamailio/proxy-registrar.cfg
    started like tests/peers.py's fixture, debug logging off, alice and bob pyim.sip
    stacks registered over TCP, bob answers 200) versus as an MSRP session through the
    pyim server (Success-Report yes: end to end, like the MESSAGE's 200 from bob;
    and no: hop by hop).  Bodies of 100 bytes and 10 KB; page mode over TCP (a 10 KB
    MESSAGE does not fit a UDP datagram under the 1300-byte rule).  messages/s and
    body bytes/s; ratio = MSRP via server / page mode via Kamailio.

``--profile N`` runs each server under cProfile and prints its top N functions on
stderr when it stops (the figures of a profiled run are not comparable).  ``py-spy
top --pid PID`` on the server (its PID is printed on stderr) works too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import pstats
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyim.msrp
from pyim.digest import DigestClient
from pyim.msrp.session_events import MessageReceived
from pyim.msrp.transport import MsrpEndpoint, Session
from pyim.sip.chat import ChatSession, ChatStack
from pyim.sip.registration import Registration
from pyim.sip.stack import IncomingRequest, SipStack, StackConfig
from pyim.sip.transaction import Destination
from pyim.sip.uri import NameAddr, SipUri

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
KIB = 1024
RUN_TIMEOUT = 600.0
PASSWORD = "pw"


# -- the server process --------------------------------------------------------------------


MEMORY_STORE = False  # --memory-store: sqlite://:memory: (diagnostic, not durable)
TRACEMALLOC: Path | None = None  # --tracemalloc DIR: snapshots of the server's heap there

# The server under tracemalloc (--tracemalloc): each SIGUSR1 writes a snapshot, and the
# live gc-tracked objects counted by type, to $PYIM_SNAPSHOT_DIR/snap-<n>.pickle.
# PYIM_TRACE_FRAMES=0: no tracemalloc (snapshot None), only the counts and, beside
# each pickle, the allocators' statistics (sys._debugmallocstats, glibc mallinfo2).
TRACED_SERVER = """
import gc, os, pickle, signal, sys, tracemalloc, collections, runpy, ctypes
frames = int(os.environ.get("PYIM_TRACE_FRAMES", "25"))
if frames:
    tracemalloc.start(frames)
where = os.environ["PYIM_SNAPSHOT_DIR"]
count = [0]
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
        "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
def dump(signum, frame):
    gc.collect()
    types = collections.Counter()
    sizes = collections.Counter()
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        types[name] += 1
        sizes[name] += sys.getsizeof(obj)
    snap = tracemalloc.take_snapshot() if frames else None
    count[0] += 1
    path = os.path.join(where, "snap-%d.pickle" % count[0])
    err = os.dup(2)
    with open(path + ".malloc.txt", "w") as f:
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
            libc = ctypes.CDLL("libc.so.6")
            libc.mallinfo2.restype = MallInfo2
            info = libc.mallinfo2()
            print({n: getattr(info, n) for n, _ in MallInfo2._fields_}, file=sys.stderr)
            sys.stderr.flush()
        finally:
            os.dup2(err, 2)
            os.close(err)
    with open(path + ".tmp", "wb") as f:
        pickle.dump((snap, types, sizes), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.rename(path + ".tmp", path)
signal.signal(signal.SIGUSR1, dump)
sys.argv = ["pyim", *sys.argv[1:]]
runpy.run_module("pyim", run_name="__main__", alter_sys=True)
"""


def server_toml(workdir: Path, users: int) -> str:
    store = "sqlite://:memory:" if MEMORY_STORE else f"sqlite://{workdir / 'pyim.db'}"
    lines = [
        "[server]",
        f'domain = "{HOST}"',
        f'host = "{HOST}"',
        f'store = "{store}"',
        'log_level = "warning"',
        "[sip]",
        "udp = 0",
        "tcp = 0",
        "[msrp]",
        "port = 0",
        "[metrics]",
        "port = 0",
        "[limits]",
        "messages_per_second = 1000000.0",
        "max_sessions = 100000",
        "max_queue_per_user = 1000000",
        "[users]",
        # callees u*, callers a* (messages) and c* (sessions): callers authenticate
        *(f'{kind}{i} = "{PASSWORD}"' for kind in "uac" for i in range(max(users, 100))),
        "",
    ]
    return "\n".join(lines)


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """``python -m pyim server -c cfg.toml`` in a session of its own."""

    def __init__(self, workdir: Path, users: int, profile_top: int = 0) -> None:
        self.workdir = workdir
        self.profile_top = profile_top
        self.profile_path = workdir / "server.prof"
        config = workdir / "server.toml"
        config.write_text(server_toml(workdir, users))
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
        prefix = ["-m", "cProfile", "-o", str(self.profile_path)] if profile_top else []
        if TRACEMALLOC is not None:
            prefix = ["-c", TRACED_SERVER]
            env["PYIM_SNAPSHOT_DIR"] = str(workdir)
        self.snapshots = 0
        self.log_path = workdir / "server.log"
        module = [] if TRACEMALLOC is not None else ["-m", "pyim"]
        self.proc = subprocess.Popen(
            [sys.executable, *prefix, *module, "server", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=open(self.log_path, "wb"),  # noqa: SIM115
            env=env,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        print(f"[server pid {self.pid}]", file=sys.stderr, flush=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError, TypeError):
                buf += self.proc.stdout.read() or b""
            if b"\n" in buf:
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        line = buf.decode(errors="replace")
        tcp = re.search(r"sip:[\d.]+:(\d+);transport=tcp", line)
        udp = re.search(r"sip:[\d.]+:(\d+);transport=udp", line)
        msrp = re.search(r"msrp://[\d.]+:(\d+)", line)
        if "pyim server ready:" not in line or tcp is None or udp is None or msrp is None:
            raise RuntimeError(f"pyim server did not start: {line!r}\n{self.log_tail()}")
        self.sip_tcp = int(tcp.group(1))
        self.sip_udp = int(udp.group(1))
        self.msrp_port = int(msrp.group(1))

    def rss_kb(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    async def settle(self, idle: float = 0.02, timeout: float = 20.0) -> None:
        """Wait until the server uses less than ``idle`` CPU seconds in 0.5 s."""
        deadline = time.monotonic() + timeout
        last = self.cpu()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = self.cpu()
            if now - last < idle:
                return
            last = now

    async def snapshot(self, label: str) -> None:
        """--tracemalloc: the server's heap snapshot to TRACEMALLOC/<label>.pickle."""
        if TRACEMALLOC is None:
            return
        self.snapshots += 1
        made = self.workdir / f"snap-{self.snapshots}.pickle"
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 600
        while not made.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        TRACEMALLOC.mkdir(parents=True, exist_ok=True)
        shutil.move(made, TRACEMALLOC / f"{label}.pickle")
        with contextlib.suppress(OSError):
            shutil.move(f"{made}.malloc.txt", TRACEMALLOC / f"{label}.malloc.txt")
        status = Path(f"/proc/{self.pid}/status").read_text()
        rss = [line for line in status.splitlines() if line.startswith(("VmRSS", "Rss"))]
        (TRACEMALLOC / f"{label}.rss.txt").write_text("\n".join(rss) + "\n")
        print(f"[snapshot {label}]", file=sys.stderr, flush=True)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 8.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace if not self.profile_top else 120)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # anything left in its group
        if self.profile_top and self.profile_path.exists():
            out = io.StringIO()
            stats = pstats.Stats(str(self.profile_path), stream=out)
            stats.sort_stats("tottime").print_stats(self.profile_top)
            stats.sort_stats("cumulative").print_stats(self.profile_top)
            print(f"==== server profile (pid {self.pid}) ====", file=sys.stderr)
            print(out.getvalue(), file=sys.stderr)


@contextlib.contextmanager
def running_server(users: int, profile_top: int) -> Any:
    with tempfile.TemporaryDirectory(prefix="pyim-bench-server-") as tmp:
        server = ServerProcess(Path(tmp), users, profile_top)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()
            if server.proc.returncode not in (0, None, -signal.SIGKILL):
                print(
                    f"server exit {server.proc.returncode}:\n{server.log_tail()}", file=sys.stderr
                )


# -- clients ---------------------------------------------------------------------------


def user_uri(name: str) -> SipUri:
    return SipUri(scheme="sip", user=name, host=HOST)


@dataclass
class Client:
    """One pyim.sip user agent stack: SIP over TCP, one MSRP endpoint, a chat stack.
    Incoming sessions are read by ``on_message``; MESSAGEs are answered 200."""

    sip: SipStack
    msrp: MsrpEndpoint
    chat: ChatStack
    registrar: SipUri
    hop: Destination
    on_message: Callable[[MessageReceived], None] | None = None
    registrations: list[Registration] = field(default_factory=list)
    incoming: list[ChatSession] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    pages: int = 0
    page_bytes: int = 0

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def register(self, name: str, password: str) -> None:
        reg = Registration(
            self.sip, registrar=self.registrar, aor=user_uri(name),
            auth=DigestClient(name, password), expires=3600,
        )  # fmt: skip
        await asyncio.wait_for(reg.register(), 10)
        self.registrations.append(reg)

    async def call(self, caller: str, callee: str) -> ChatSession:
        return await asyncio.wait_for(
            self.chat.invite(
                user_uri(callee),
                destination=self.hop,
                from_=NameAddr(uri=user_uri(caller)),
                auth=DigestClient(caller, PASSWORD),  # the server challenges the INVITE
            ),
            30,
        )

    async def _accept(self) -> None:
        while True:
            session = await self.chat.accept()
            self.incoming.append(session)
            self.spawn(self._read(session))

    async def _read(self, session: ChatSession) -> None:
        async for message in session:
            if self.on_message is not None:
                self.on_message(message)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.msrp.close(), 20)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sip.close(), 10)


async def make_client(name: str, hop_port: int, transport: str = "tcp") -> Client:
    sip = SipStack(StackConfig())
    await sip.start(udp=0 if transport == "udp" else None, tcp=0 if transport == "tcp" else None)
    msrp = await MsrpEndpoint.create(HOST)
    params = (("transport", "tcp"),) if transport == "tcp" else ()
    registrar = SipUri(scheme="sip", host=HOST, port=hop_port, params=params)
    hop = Destination(transport, HOST, hop_port)
    client = Client(sip, msrp, None, registrar, hop)  # type: ignore[arg-type]

    def fallback(incoming: IncomingRequest) -> None:
        if incoming.request.method == "MESSAGE":
            client.pages += 1
            client.page_bytes += len(incoming.request.body)
            incoming.respond(200)
        else:
            incoming.respond(405)

    client.chat = ChatStack(sip, msrp, user=name, fallback=fallback)
    client.spawn(client._accept())
    return client


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


class Tally:
    """Counts received messages; ``done`` is set at ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.bytes = 0
        self.done = asyncio.Event()

    def __call__(self, message: MessageReceived) -> None:
        if message.content_type == "text/plain" or message.content_type is None:
            self.count += 1
            self.bytes += len(message.body)
            if self.count >= self.target:
                self.done.set()


STALL = 20.0  # seconds without progress: the run is reported as stuck


async def watched(work: Awaitable[Any], progress: Callable[[], Any], what: str) -> None:
    """Await ``work``; raise if ``progress()`` stays the same for STALL seconds (a lost
    answer would otherwise hang the run) or the run exceeds RUN_TIMEOUT."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # no "never retrieved"
    start = time.monotonic()
    last, since = progress(), time.monotonic()
    try:
        while not task.done():
            await asyncio.wait([task], timeout=1.0)
            now = progress()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > STALL:
                raise RuntimeError(f"{what}: stuck for {STALL:.0f} s at {now}")
            if time.monotonic() - start > RUN_TIMEOUT:
                raise RuntimeError(f"{what}: longer than {RUN_TIMEOUT:.0f} s at {now}")
        task.result()
    finally:
        task.cancel()


class Failures(list[str]):
    """What failed, and how many sends resolved (the watchdog's progress)."""

    resolved = 0


async def pump(
    send: Callable[[], asyncio.Future[Any]], count: int, window: int, failures: Failures
) -> None:
    """``count`` sends, at most ``window`` unresolved; waits for all of them."""
    slots = asyncio.Semaphore(window)
    pending: list[asyncio.Future[Any]] = []

    def done(future: asyncio.Future[Any]) -> None:
        slots.release()
        failures.resolved += 1
        if future.cancelled() or future.exception() is not None:
            failures.append("cancelled or raised")
        elif not getattr(future.result(), "ok", True):
            failures.append(repr(future.result()))

    for _ in range(count):
        await slots.acquire()
        future = send()
        future.add_done_callback(done)
        pending.append(future)
    await asyncio.gather(*pending, return_exceptions=True)


# -- case: sessions ---------------------------------------------------------------------


async def steady_rss(server: ServerProcess, wait: float) -> int | None:
    """The server's VmRSS ``wait`` seconds later, once idle (None when ``wait`` is 0):
    the INVITE transactions of the sessions just set up have ended by then (RFC 6026
    Timer L at the server as UAS, Timer M as UAC: 64*T1 = 32 s; the ACKs of the 2xx
    it sent as UAC are kept 64*T1 + T4 = 37 s)."""
    if wait <= 0:
        return None
    await asyncio.sleep(wait)
    await server.settle()
    return server.rss_kb()


async def case_sessions(args: argparse.Namespace) -> dict[str, Any]:
    n, callees = args.sessions, args.callees
    callers = -(-n // callees)
    with running_server(callees, args.profile) as server:
        clients: list[Client] = []
        callee_side: list[Client] = []
        sessions: list[ChatSession] = []
        try:
            clients = [await make_client(f"caller{k}", server.sip_tcp) for k in range(args.clients)]
            callee_side = [await make_client(f"callee{k}", server.sip_tcp) for k in range(10)]
            got = Tally(n)
            for client in callee_side:
                client.on_message = got
            await asyncio.gather(
                *(callee_side[j % 10].register(f"u{j}", PASSWORD) for j in range(callees))
            )
            await server.settle()
            rss0 = server.rss_kb()
            await server.snapshot("idle")
            curve: list[tuple[int, int]] = [(0, rss0)]
            slots = asyncio.Semaphore(args.setup_window)
            errors: list[str] = []

            async def one(i: int) -> None:
                async with slots:
                    try:
                        session = await clients[i % len(clients)].call(
                            f"c{i // callees}", f"u{i % callees}"
                        )
                    except Exception as exc:
                        errors.append(repr(exc))
                        return
                    sessions.append(session)

            t0 = time.perf_counter()
            cpu0 = server.cpu()
            step = max(1, n // 10)
            for start in range(0, n, step):
                await asyncio.wait_for(
                    asyncio.gather(*(one(i) for i in range(start, min(n, start + step)))),
                    RUN_TIMEOUT,
                )
                curve.append((len(sessions), server.rss_kb()))
            setup_s = time.perf_counter() - t0
            setup_cpu = server.cpu() - cpu0
            await server.settle()
            rss1 = server.rss_kb()
            curve[-1] = (len(sessions), rss1)
            if errors:
                print(f"sessions: {len(errors)} INVITEs failed, e.g. {errors[:3]}", file=sys.stderr)
            await server.snapshot("one_leg")
            rss1_steady = await steady_rss(server, args.steady)
            await server.snapshot("one_leg_steady")
            # phase 2: a message in every session: the server calls the callee's device
            t1 = time.perf_counter()
            failures = Failures()
            phase2_error = None
            it = iter(sessions)
            try:
                await watched(
                    asyncio.gather(
                        pump(
                            lambda: next(it).msrp.send_nowait("text/plain", b"0123456789abcdef",
                                                              success_report=True),
                            len(sessions), args.setup_window, failures,
                        ),
                        got.done.wait(),
                    ),
                    lambda: (got.count, failures.resolved),
                    "sessions phase 2 (received, reports)",
                )  # fmt: skip
            except RuntimeError as exc:
                phase2_error = str(exc)
            online_s = time.perf_counter() - t1
            await server.settle()
            rss2 = server.rss_kb()
            legs_in = sum(len(c.incoming) for c in callee_side)
            await server.snapshot("two_legs")
            rss2_steady = await steady_rss(server, args.steady)
            await server.snapshot("two_legs_steady")
        finally:
            clients_all = clients + callee_side
        fds = len(os.listdir(f"/proc/{server.pid}/fd"))
        await close_all(clients_all)
    m = len(sessions)
    tenth = curve[1]

    def per(rss: int | None) -> float | None:
        return None if rss is None else round((rss - rss0) / max(1, m), 2)

    result = {
        "case": "sessions",
        "sessions": m,
        "failed": len(errors),
        "transport": "SIP/TCP, MSRP/TCP",
        "msrp_connections": f"{args.clients} caller stacks + 10 callee stacks (shared)",
        "callees": callees,
        "callers": callers,
        "rss_idle_kib": rss0,
        "rss_one_leg_kib": rss1,
        "rss_two_legs_kib": rss2,
        "kib_per_session_offline": round((rss1 - rss0) / max(1, m), 2),
        "kib_per_session_offline_marginal": round((rss1 - tenth[1]) / max(1, m - tenth[0]), 2),
        "kib_per_session_online": round((rss2 - rss0) / max(1, m), 2),
        "kib_per_extra_leg": round((rss2 - rss1) / max(1, legs_in), 2),
        "steady_after_s": args.steady,
        "rss_one_leg_steady_kib": rss1_steady,
        "rss_two_legs_steady_kib": rss2_steady,
        "kib_per_session_offline_steady": per(rss1_steady),
        "kib_per_session_online_steady": per(rss2_steady),
        "callee_legs": legs_in,
        "delivered": got.count,
        "phase2_failures": len(failures),
        "phase2_error": phase2_error,
        "setup_per_s": round(m / setup_s, 1),
        "setup_server_cpu_s": round(setup_cpu, 2),
        "online_setup_per_s": round(legs_in / online_s, 1),
        "server_fds": fds,
        "curve": curve,
        "target": ">= 10000 sessions, <= 20 KB (20,000 bytes = 19.5 KiB) each",
        "met_offline": m >= 10_000 and (rss1 - rss0) / max(1, m) <= 20_000 / 1024,
        "met_online": m >= 10_000 and (rss2 - rss0) / max(1, m) <= 20_000 / 1024,
        "met_online_steady": None
        if rss2_steady is None
        else m >= 10_000 and (rss2_steady - rss0) / max(1, m) <= 20_000 / 1024,
    }
    return result


# -- case: messages -------------------------------------------------------------------------


async def through_server(
    server: ServerProcess, pairs: int, per_pair: int, size: int, window: int, report: bool
) -> tuple[float, float]:
    """Seconds for ``pairs`` x ``per_pair`` messages through the server; server CPU s."""
    # SIP over UDP here: 2 x 100 stacks over TCP from 127.0.0.1, plus the server's own
    # connections to the receivers, pass the server's 256 SIP connections per IP
    senders = [await make_client(f"a{p}", server.sip_udp, "udp") for p in range(pairs)]
    receivers = [await make_client(f"b{p}", server.sip_udp, "udp") for p in range(pairs)]
    try:
        tally = Tally(pairs * (per_pair + 1))
        for r in receivers:
            r.on_message = tally
        await asyncio.gather(*(r.register(f"u{p}", PASSWORD) for p, r in enumerate(receivers)))
        sessions = await asyncio.gather(*(s.call(f"a{p}", f"u{p}") for p, s in enumerate(senders)))
        warm = await asyncio.wait_for(
            asyncio.gather(*(s.msrp.send("text/plain", b"warm-up", success_report=True)
                             for s in sessions)),
            60,
        )  # fmt: skip
        if not all(w.status == "delivered" for w in warm):
            raise RuntimeError(f"warm-up not delivered: {warm[:3]}")
        body = os.urandom(size // 2).hex().encode()[:size]
        failures = Failures()
        cpu0 = server.cpu()
        t0 = time.perf_counter()
        await watched(
            asyncio.gather(
                *(pump(functools_partial_send(s.msrp, body, report), per_pair, window, failures)
                  for s in sessions),
                tally.done.wait(),
            ),
            lambda: (tally.count, failures.resolved),
            f"through the server, report={report} (received, resolved)",
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
        cpu = server.cpu() - cpu0
        if failures or tally.count != tally.target:
            raise RuntimeError(f"{len(failures)} failed ({failures[:2]}), {tally.count} received")
        return elapsed, cpu
    finally:
        await close_all(senders + receivers)


def functools_partial_send(
    session: Session, body: bytes, report: bool
) -> Callable[[], asyncio.Future[Any]]:
    return lambda: session.send_nowait("text/plain", body, success_report=report)


async def direct(pairs: int, per_pair: int, size: int, window: int, report: bool) -> float:
    """The same pyim endpoints, no server: ``pairs`` direct MSRP sessions."""
    endpoints = []
    try:
        sessions: list[tuple[Session, Session]] = []
        for _ in range(pairs):
            ea, eb = await MsrpEndpoint.create(HOST), await MsrpEndpoint.create(HOST)
            endpoints += [ea, eb]
            a, b = ea.new_session(), eb.new_session()
            await asyncio.wait_for(
                asyncio.gather(a.start(b.path, active=True), b.start(a.path, active=False)), 10
            )
            sessions.append((a, b))
        tally = Tally(pairs * per_pair)

        async def read(b: Session) -> None:
            async for message in b:
                tally(message)

        readers = [asyncio.ensure_future(read(b)) for _, b in sessions]
        body = os.urandom(size // 2).hex().encode()[:size]
        failures = Failures()
        t0 = time.perf_counter()
        await watched(
            asyncio.gather(
                *(pump(functools_partial_send(a, body, report), per_pair, window, failures)
                  for a, _ in sessions),
                tally.done.wait(),
            ),
            lambda: (tally.count, failures.resolved),
            "direct (received, resolved)",
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
        for r in readers:
            r.cancel()
        if failures:
            raise RuntimeError(f"direct: {len(failures)} failed")
        return elapsed
    finally:
        for ep in endpoints:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ep.close(), 10)


async def server_rate(
    args: argparse.Namespace, pairs: int, per_pair: int, size: int, report: bool
) -> dict[str, Any]:
    """Runs through a fresh server each: seconds and server CPU seconds.  With
    Success-Report yes, a run that gets stuck (reports lost) is reported and the
    measurement is done again with one message in flight per sender."""
    out: dict[str, Any] = {"s": [], "cpu": [], "window": args.window}
    for _ in range(args.runs):
        try:
            with running_server(pairs, args.profile) as server:
                t, cpu = await through_server(server, pairs, per_pair, size, out["window"], report)
        except RuntimeError as exc:
            if not report or out["window"] == 1:
                raise
            out["error_with_window"] = f"window {out['window']}: {exc}"
            print(f"[{out['error_with_window']}; again with window 1]", file=sys.stderr)
            out["window"] = 1
            with running_server(pairs, args.profile) as server:
                t, cpu = await through_server(server, pairs, per_pair, size, 1, report)
        out["s"].append(t)
        out["cpu"].append(cpu)
    return out


async def case_messages(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for pairs in (1, 100):
        per_pair = max(1, args.messages // pairs)
        n = pairs * per_pair
        for report in (False, True):
            plural = "s" if pairs > 1 else ""
            name = f"messages_1k_{pairs}pair{plural}_reports_{'on' if report else 'off'}"
            try:
                run = await server_rate(args, pairs, per_pair, KIB, report)
                base = [
                    await direct(pairs, per_pair, KIB, args.window, report)
                    for _ in range(args.runs)
                ]
                best = min(range(len(run["s"])), key=run["s"].__getitem__)
                t, cpu = run["s"][best], run["cpu"][best]
                rate, base_rate = n / t, n / min(base)
                results.append({
                    "case": name, "unit": "messages/s", "pyim": round(rate, 1),
                    "baseline": round(base_rate, 1), "ratio": round(rate / base_rate, 3),
                    "pairs": pairs, "messages": n, "size": KIB,
                    "window_per_sender": run["window"], "baseline_window": args.window,
                    "success_report": report,
                    "server_cpu_per_s": round(cpu / t, 2),
                    "server_us_per_message": round(cpu / n * 1e6, 1),
                    "pyim_s": [round(x, 3) for x in run["s"]],
                    "baseline_s": [round(x, 3) for x in base],
                    "baseline_is": "same pyim MSRP endpoints, direct, no server",
                    "error_with_window": run.get("error_with_window"),
                })  # fmt: skip
            except Exception as exc:
                results.append({"case": name, "error": repr(exc)})
            print(json.dumps(common(results[-1])), flush=True)
    return results


# -- case: page mode via Kamailio vs MSRP via the server ------------------------------


async def page_mode(kamailio: Any, count: int, size: int, window: int) -> float:
    alice = await make_client("alice", kamailio.port)
    bob = await make_client("bob", kamailio.port)
    try:
        users = {"alice": "alice-secret", "bob": "bob-secret"}
        await alice.register("alice", users["alice"])
        await bob.register("bob", users["bob"])
        body = os.urandom(size // 2).hex().encode()[:size]
        sip = alice.sip
        failures = Failures()

        def send() -> asyncio.Future[Any]:
            request = sip.new_request(
                "MESSAGE", user_uri("bob"),
                from_=NameAddr(uri=user_uri("alice")).with_tag(sip.new_call_id()[:8]),
                to=NameAddr(uri=user_uri("bob")), body=body, content_type="text/plain",
            )  # fmt: skip
            future = asyncio.ensure_future(sip.send(request, alice.hop))

            def check(f: asyncio.Future[Any]) -> None:
                if not f.cancelled() and f.exception() is None and f.result().status != 200:
                    failures.append(f"{f.result().status} {f.result().reason}")

            future.add_done_callback(check)
            return future

        t0 = time.perf_counter()
        await watched(
            pump(send, count, window, failures),
            lambda: (bob.pages, failures.resolved),
            "page mode (received, answered)",
        )
        elapsed = time.perf_counter() - t0
        if failures or bob.pages != count:
            raise RuntimeError(
                f"page mode: {len(failures)} failed {failures[:3]}, bob got {bob.pages}"
            )
        return elapsed
    finally:
        await close_all([alice, bob])


async def case_page(args: argparse.Namespace) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from peers import Kamailio  # the tests' fixture (tests/peers.py)

    results = []
    count = args.page_messages
    with tempfile.TemporaryDirectory(prefix="pyim-bench-kamailio-") as tmp:
        kamailio = Kamailio(Path(tmp) / "kamailio", debug=False)
        kamailio.start()
        try:
            for size in (100, 10_000):
                name = f"page_vs_session_{'100b' if size == 100 else '10kb'}"
                try:
                    page_t = [
                        await page_mode(kamailio, count, size, args.window)
                        for _ in range(args.runs)
                    ]
                    off = await server_rate(args, 1, count, size, False)
                    on = await server_rate(args, 1, count, size, True)
                    page, hop, e2e = (
                        count / min(page_t),
                        count / min(off["s"]),
                        count / min(on["s"]),
                    )
                    results.append({
                        "case": name, "size": size, "messages": count, "window": args.window,
                        "page_kamailio_msgs_s": round(page, 1),
                        "page_kamailio_bytes_s": round(page * size),
                        "msrp_server_hop_msgs_s": round(hop, 1),
                        "msrp_server_hop_bytes_s": round(hop * size),
                        "msrp_server_e2e_msgs_s": round(e2e, 1),
                        "msrp_server_e2e_bytes_s": round(e2e * size),
                        "msrp_server_e2e_window": on["window"],
                        "ratio_hop": round(hop / page, 3), "ratio_e2e": round(e2e / page, 3),
                        "page_transport": "SIP/TCP through Kamailio (proxy-registrar.cfg)",
                        "kamailio": kamailio_version(),
                        "page_s": [round(t, 3) for t in page_t],
                        "msrp_hop_s": [round(t, 3) for t in off["s"]],
                        "msrp_e2e_s": [round(t, 3) for t in on["s"]],
                        "error_with_window": on.get("error_with_window"),
                    })  # fmt: skip
                except Exception as exc:
                    results.append({"case": name, "error": repr(exc)})
                print(json.dumps(common(results[-1])), flush=True)
        finally:
            kamailio.stop()
    return results


def kamailio_version() -> str:
    with contextlib.suppress(OSError):
        out = subprocess.run(
            ["/usr/sbin/kamailio", "-v"], capture_output=True, text=True, check=False
        ).stdout
        return out.splitlines()[0] if out else "?"
    return "?"


# -- driver ------------------------------------------------------------------------------


def common(result: dict[str, Any]) -> dict[str, Any]:
    return {
        **result,
        "store": "sqlite :memory:" if MEMORY_STORE else "sqlite file (WAL, synchronous=FULL)",
        "parser_impl": pyim.msrp.parser_impl,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


CASES = ("sessions", "messages", "page_vs_session")


async def main_async(args: argparse.Namespace) -> int:
    status = 0
    for case in args.case or CASES:
        try:
            if case == "sessions":
                print(json.dumps(common(await case_sessions(args))), flush=True)
            elif case == "messages":
                results = await case_messages(args)
                status |= any("error" in r for r in results)
            else:
                results = await case_page(args)
                status |= any("error" in r for r in results)
        except Exception as exc:
            print(json.dumps({"case": case, "error": repr(exc)}), flush=True)
            status = 1
    return int(status)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--case", action="append", choices=CASES, help="run only this case")
    ap.add_argument("--runs", type=int, default=1, help="runs per figure (best kept)")
    ap.add_argument("--sessions", type=int, help="sessions case: N (default 10000)")
    ap.add_argument("--callees", type=int, default=200, help="users called (default 200)")
    ap.add_argument("--clients", type=int, default=50, help="caller stacks (default 50)")
    ap.add_argument("--setup-window", type=int, default=100, help="INVITEs at a time")
    ap.add_argument("--messages", type=int, help="messages case: total per case (default 5000)")
    ap.add_argument("--page-messages", type=int, help="page case: messages (default 3000)")
    ap.add_argument("--window", type=int, default=64, help="unanswered per sender (64)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="cProfile each server, print its top N functions on stderr")  # fmt: skip
    ap.add_argument("--steady", type=float, default=45.0, metavar="S",
                    help="sessions case: RSS again S seconds after each phase, once the "
                    "INVITE transactions ended (default 45; 0: not measured)")  # fmt: skip
    ap.add_argument("--tracemalloc", type=Path, metavar="DIR",
                    help="diagnostic (sessions case): the server under tracemalloc, heap "
                    "snapshots at each RSS reading into DIR (its RSS figures: not the "
                    "server's)")  # fmt: skip
    ap.add_argument("--memory-store", action="store_true",
                    help="diagnostic: the server's SQLite store in memory (no fsync)")  # fmt: skip
    args = ap.parse_args(argv)
    global MEMORY_STORE, TRACEMALLOC
    MEMORY_STORE = args.memory_store
    TRACEMALLOC = args.tracemalloc
    args.sessions = args.sessions or (500 if args.quick else 10_000)
    args.callees = min(args.callees, args.sessions)
    args.messages = args.messages or (500 if args.quick else 5_000)
    args.page_messages = args.page_messages or (300 if args.quick else 3_000)
    raise_fd_limit()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
