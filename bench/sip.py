"""Benchmark of the SIP engine (``pyim.sip``) driven by sipp over 127.0.0.1.

Not a test: run by hand, results go to bench/RESULTS.md.  One JSON object per case on
stdout with the pyim figure, a baseline measured in the same run and their ratio
(pyim / baseline for rates: higher is better; for memory the ratio is bytes per
dialog pyim / sipp: lower is better)::

    PYTHONPATH=src python bench/sip.py                 # every case (about 15 min)
    PYTHONPATH=src python bench/sip.py --quick         # smoke run, about 2 min
    PYTHONPATH=src python bench/sip.py --case calls_udp --profile 30

The pyim side is a separate process (this file with ``--serve``): a plain
:class:`~pyim.sip.stack.SipStack` whose request handler answers an INVITE 200 with a
small SDP and a Contact and keeps the :class:`~pyim.sip.dialog.Dialog` it creates,
ignores the ACK, answers BYE 200 (481 without a dialog) and MESSAGE 200.  sipp
(``/usr/bin/sipp``, one process, single-threaded) and pyim each get one of the
machine's cores.  ``--uvloop`` runs the pyim process on uvloop (if installed).

Cases
-----
``calls_udp`` / ``calls_tcp``
    sipp's built-in ``-sn uac`` (INVITE with an audio SDP, 200, ACK, BYE, 200; no
    pause) at a call rate stepped up from ``--start-rate`` (x1.5 per step, then two
    bisection steps between the last rate passed and the first failed), each step
    ``--duration`` s of calls against a fresh server.  A step passes when sipp exits
    0 with no failed call, no retransmission, and the achieved rate (successful
    calls / time from the first call to the last one's end) is at least 95 % of the
    rate asked.  The figure is the highest achieved rate of a passing step.  Then one
    ``--sustain`` s run at that rate (longer than 64*T1 = 32 s, so that the
    transaction tables reach their steady state) says whether it holds.
    Baseline: the same steps with sipp's own built-in UAS (``-sn uas``) as the server.
``messages_udp`` / ``messages_tcp``
    tests/sipp/uac_message.xml (page-mode MESSAGE, 200 expected), stepped like the
    calls.  Baseline: against tests/sipp/uas_message.xml.
``dialogs``
    The built-in UAC sets up ``--dialogs`` calls over UDP and holds them (a long
    ``-d`` pause before the BYE).  pyim's RSS (VmRSS of /proc/PID/status) is read
    after a warm-up, once every dialog is established (the INVITE server transactions
    still in Accepted, timer L = 32 s), and again after the transactions are gone;
    bytes per dialog = (RSS with - RSS before) / N.  Baseline: sipp's built-in UAS
    holding the same calls (its RSS delta per call).

The server's CPU time (utime + stime from /proc/PID/stat) per call or message is
reported for every pyim step: it is the engine's cost, whatever sipp does.
``--profile N`` runs one more step per case at the best rate with the server under
cProfile and prints its top N functions (internal time) on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import platform
import pstats
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

HOST = "127.0.0.1"
CASES = ("calls_udp", "calls_tcp", "messages_udp", "messages_tcp", "dialogs")
TARGETS = {"calls": 2000.0, "messages": 5000.0, "dialogs": 10 * 1024.0}
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# sipp's -buff_size (SO_SNDBUF/SO_RCVBUF of its sockets; its default, 64 KiB, dropped
# datagrams at about 4,000 calls/s sipp against sipp): the same 4 MiB as pyim's UDP
# receive buffer (TransportConfig.udp_receive_buffer), for every sipp of the bench
SIPP_BUFFER = ["-buff_size", str(4 * 1024 * 1024)]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# -- the pyim server (a process of its own) ---------------------------------------------

SDP_ANSWER = (
    b"v=0\r\n"
    b"o=pyim 1 1 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)


def serve(args: argparse.Namespace) -> int:
    """Run the pyim UAS until SIGTERM; one JSON line on stdout when ready, one per
    SIGUSR1 (status) and one at the end."""
    if args.uvloop:
        import uvloop

        uvloop.install()
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from pyim.sip.dialog import Dialog, DialogError, DialogId
    from pyim.sip.stack import IncomingRequest, SipStack, StackConfig

    stack = SipStack(StackConfig(host=HOST, max_server_transactions=args.max_transactions))
    gc_time = [0.0, 0.0, 0.0]
    gc_count = [0, 0, 0]
    gc_longest = [0.0]
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            took = time.perf_counter() - gc_started[0]
            gc_time[info["generation"]] += took
            gc_count[info["generation"]] += 1
            gc_longest[0] = max(gc_longest[0], took)

    gc.callbacks.append(on_gc)
    if args.no_gc:
        gc.disable()
    if args.gc_threshold:
        gc.set_threshold(*args.gc_threshold)
    dialogs: dict[DialogId, Dialog] = {}

    def on_request(incoming: IncomingRequest) -> None:
        request = incoming.request
        method = request.method
        if method == "ACK":
            return
        if method == "INVITE" and request.to.tag is None:
            response = incoming.respond(
                200, body=SDP_ANSWER, content_type="application/sdp", contact=True
            )
            try:
                dialog = Dialog.as_uas(request, response)
            except DialogError:
                return
            dialogs[dialog.id] = dialog
        elif method == "BYE":
            key = DialogId(request.call_id, request.to.tag or "", request.from_.tag or "")
            incoming.respond(200 if dialogs.pop(key, None) is not None else 481)
        elif method == "CANCEL":
            return
        else:
            incoming.respond(200)

    stack.on_request = on_request
    await stack.start(
        udp=args.udp_port if args.udp_port >= 0 else None,
        tcp=args.tcp_port if args.tcp_port >= 0 else None,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def status() -> dict[str, Any]:
        return {
            "dialogs": len(dialogs),
            "server_transactions": stack.transactions.server_count,
            "client_transactions": stack.transactions.client_count,
            "timers": stack.transactions.timer_count,
            "rss": rss_bytes(os.getpid()),
            "stack": dict(stack.stats),
            "transactions": dict(stack.transactions.stats),
            "transport": dict(stack.transport.stats),
            "gc_ms": [round(t * 1000, 1) for t in gc_time],
            "gc_count": list(gc_count),
            "gc_longest_ms": round(gc_longest[0] * 1000, 1),
            "gc_objects": len(gc.get_objects()),
        }

    def on_usr1() -> None:
        print(json.dumps({"status": status()}), flush=True)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    profiler = cProfile.Profile() if args.profile_to else None
    ready = {
        "ready": True,
        "pid": os.getpid(),
        "udp": stack.transport.local.get("udp", (HOST, 0))[1],
        "tcp": stack.transport.local.get("tcp", (HOST, 0))[1],
        "loop": type(loop).__module__ + "." + type(loop).__name__,
    }
    print(json.dumps(ready), flush=True)
    if profiler is not None:
        profiler.enable()
    await stop.wait()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile_to)
    print(json.dumps({"final": status()}), flush=True)
    await stack.close()
    return 0


# -- process helpers ----------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def udp_receive_drops() -> int:
    """The host's UDP RcvbufErrors (datagrams dropped on a full receive buffer)."""
    lines = Path("/proc/net/snmp").read_text().splitlines()
    names, values = [line.split() for line in lines if line.startswith("Udp:")][:2]
    return int(values[names.index("RcvbufErrors")])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class PyimServer:
    """``bench/sip.py --serve`` as a child process, stopped by its PID."""

    def __init__(
        self,
        transport: str,
        *,
        uvloop: bool = False,
        profile_to: Path | None = None,
        max_transactions: int | None = None,
        extra: tuple[str, ...] = (),
        gc_threshold: list[int] | None = None,
    ) -> None:
        self.transport = transport
        self.extra = extra
        self.gc_threshold = gc_threshold
        self.uvloop = uvloop
        self.profile_to = profile_to
        self.max_transactions = max_transactions
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.pid = 0
        self.loop_name = ""
        self.final: dict[str, Any] = {}

    def __enter__(self) -> PyimServer:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        cmd += ["--udp-port", "0" if self.transport == "udp" else "-1"]
        cmd += ["--tcp-port", "0" if self.transport == "tcp" else "-1"]
        if self.uvloop:
            cmd.append("--uvloop")
        if self.profile_to is not None:
            cmd += ["--profile-to", str(self.profile_to)]
        if self.max_transactions is not None:
            cmd += ["--max-transactions", str(self.max_transactions)]
        if self.gc_threshold:
            cmd += ["--gc-threshold", *map(str, self.gc_threshold)]
        cmd += list(self.extra)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
        )
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env
        )
        ready = self._line(15.0)
        if not ready.get("ready"):
            self.stop()
            raise RuntimeError(f"pyim server did not start: {ready}")
        self.pid = int(ready["pid"])
        self.port = int(ready[self.transport])
        self.loop_name = str(ready["loop"])
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("no answer from the pyim server")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"pyim server exited ({self.proc.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def status(self) -> dict[str, Any]:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGUSR1)
        reply: dict[str, Any] = self._line(10.0)["status"]
        return reply

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            with contextlib.suppress(TimeoutError, RuntimeError, ValueError):
                self.final = self._line(20.0).get("final", {})
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- sipp runs ------------------------------------------------------------------------------


@dataclass
class Step:
    """One sipp UAC run at one rate."""

    rate: float
    calls: int
    returncode: int | None
    successful: int
    failed: int
    retransmissions: int
    elapsed: float
    achieved: float
    passed: bool
    server_cpu_us: float | None = None  # pyim CPU per call (microseconds)
    server_rss: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _num(stats: dict[str, str], name: str) -> int:
    try:
        return int(stats.get(name, "0") or 0)
    except ValueError:
        return 0


def _epoch(value: str) -> float:
    # "2026-11-24\t03:00:12.605386\t1795489212.605386"
    return float(value.split("\t")[-1])


def uac_args(kind: str) -> tuple[str, dict[str, str]]:
    """sipp scenario and keys of the UAC of a case kind ("calls" or "messages")."""
    if kind == "calls":
        return "-sn uac", {}
    return "uac_message.xml", {}


def run_uac(
    kind: str,
    transport: str,
    target_port: int,
    rate: float,
    duration: float,
    workdir: Path,
    label: str,
    *,
    hold_ms: int = 0,
    calls: int | None = None,
    limit: int | None = None,
) -> Step:
    from peers import Sipp, parse_stats

    calls = calls if calls is not None else max(1, int(rate * duration))
    limit = limit if limit is not None else max(200, int(rate))
    scenario, keys = uac_args(kind)
    drops = udp_receive_drops()
    timeout = calls / rate + hold_ms / 1000 + 20.0
    sipp = Sipp(
        scenario,
        workdir,
        target=f"{HOST}:{target_port}",
        service="bench",
        transport="udp" if transport == "udp" else "tcp",
        calls=calls,
        timeout=timeout,
        keys=keys,
        label=label,
        trace_msg=False,
        extra_args=["-r", f"{rate:g}", "-l", str(limit), "-d", str(hold_ms), *SIPP_BUFFER],
    )
    result = sipp.run()
    stats = result.stats or parse_stats(sipp.stat_path)
    successful = _num(stats, "SuccessfulCall(C)")
    failed = _num(stats, "FailedCall(C)")
    retrans = _num(stats, "Retransmissions(C)")
    try:
        elapsed = _epoch(stats["CurrentTime"]) - _epoch(stats["StartTime"])
    except (KeyError, ValueError):
        elapsed = float("nan")
    achieved = successful / elapsed if elapsed > 0 else 0.0
    passed = (
        result.returncode == 0
        and failed == 0
        and retrans == 0
        and successful == calls
        and achieved >= 0.95 * rate
    )
    step = Step(
        rate, calls, result.returncode, successful, failed, retrans, elapsed, achieved, passed
    )
    if transport == "udp":
        step.extra["udp_drops"] = udp_receive_drops() - drops
    return step


class SippUas:
    """The baseline server: sipp's built-in UAS or tests/sipp/uas_message.xml."""

    def __init__(self, kind: str, transport: str, workdir: Path, label: str) -> None:
        from peers import Sipp

        scenario = "-sn uas" if kind in ("calls", "dialogs") else "uas_message.xml"
        self.sipp = Sipp(
            scenario,
            workdir,
            transport="udp" if transport == "udp" else "tcp",
            calls=10_000_000,
            timeout=3600.0,
            label=label,
            trace_msg=False,
            extra_args=SIPP_BUFFER,
        )
        self.port = 0
        self.pid = 0

    def __enter__(self) -> SippUas:
        self.sipp.start()
        assert self.sipp.proc is not None
        self.port = self.sipp.port
        self.pid = self.sipp.proc.pid
        return self

    def __exit__(self, *exc: object) -> None:
        self.sipp.stop()


# -- cases ------------------------------------------------------------------------------------


@dataclass
class Search:
    steps: list[Step] = field(default_factory=list)

    @property
    def best(self) -> Step | None:
        passed = [s for s in self.steps if s.passed]
        return max(passed, key=lambda s: s.achieved) if passed else None


def step_rates(run: Any, start: float, top: float, factor: float = 1.5, bisect: int = 2) -> Search:
    """Step the rate up (x factor) until a step fails or ``top`` passes, then bisect
    between the last rate passed and the first failed.  ``run(rate) -> Step``."""
    search = Search()
    rate = start
    low: float | None = None
    high: float | None = None
    while True:
        step = run(rate)
        search.steps.append(step)
        if not step.passed:
            high = rate
            break
        low = rate
        if rate >= top:
            break
        rate = min(top, round(rate * factor, -1))
    if high is not None:
        lo = low if low is not None else 0.0
        for _ in range(bisect):
            mid = round((lo + high) / 2, -1)
            if mid <= lo or mid >= high or mid <= 0:
                break
            step = run(mid)
            search.steps.append(step)
            if step.passed:
                lo = mid
            else:
                high = mid
    return search


def _brief(step: Step) -> dict[str, Any]:
    out = {
        "rate": step.rate,
        "achieved": round(step.achieved, 1),
        "passed": step.passed,
        "failed": step.failed,
        "retrans": step.retransmissions,
    }
    if step.returncode != 0:
        out["rc"] = step.returncode
    if step.server_cpu_us is not None:
        out["cpu_us"] = round(step.server_cpu_us, 1)
    if step.server_rss is not None:
        out["rss_mb"] = round(step.server_rss / 1e6, 1)
    out.update(step.extra)
    return out


def rate_case(case: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    kind, transport = case.split("_")
    duration = args.duration
    start = args.start_rate or (500.0 if kind == "calls" else 1000.0)
    top = args.top_rate or (20000.0 if kind == "calls" else 40000.0)

    def pyim_step(rate: float, seconds: float = duration, profile: Path | None = None) -> Step:
        with PyimServer(
            transport,
            uvloop=args.uvloop,
            profile_to=profile,
            max_transactions=args.max_transactions,
            gc_threshold=args.gc_threshold,
        ) as server:
            cpu0 = server.cpu()
            label = f"{case}-pyim-{int(rate)}-{int(seconds)}s"
            step = run_uac(kind, transport, server.port, rate, seconds, workdir, label)
            used = server.cpu() - cpu0
            step.server_cpu_us = used / max(1, step.successful) * 1e6
            step.server_rss = server.rss()
            st = server.status()
            step.extra["server_tx"] = st["server_transactions"]
            step.extra["gc_ms"] = st["gc_ms"]  # time in the collector, per generation
            step.extra["gc_longest_ms"] = st["gc_longest_ms"]
            if st["transactions"].get("overload"):
                step.extra["overload_503"] = st["transactions"]["overload"]
        log(f"{case} pyim {_brief(step)}")
        return step

    def baseline_step(rate: float) -> Step:
        with SippUas(kind, transport, workdir, f"{case}-uas-{int(rate)}") as uas:
            label = f"{case}-base-{int(rate)}"
            step = run_uac(kind, transport, uas.port, rate, duration, workdir, label)
        log(f"{case} baseline {_brief(step)}")
        return step

    if args.rate is not None:  # one run at a given rate, no search, no baseline
        seconds = args.sustain or duration
        step = pyim_step(args.rate, seconds)
        return {
            "case": case,
            "unit": "calls/s" if kind == "calls" else "messages/s",
            "pyim": round(step.achieved, 1) if step.passed else 0.0,
            "seconds": seconds,
            "max_server_transactions": args.max_transactions,
            "step": _brief(step),
        }
    pyim = step_rates(pyim_step, start, top, bisect=args.bisect)
    base = step_rates(baseline_step, start, top, bisect=args.bisect)
    best = pyim.best
    base_best = base.best
    figure = best.achieved if best else 0.0
    base_figure = base_best.achieved if base_best else 0.0
    result: dict[str, Any] = {
        "case": case,
        "unit": "calls/s" if kind == "calls" else "messages/s",
        "pyim": round(figure, 1),
        "baseline": round(base_figure, 1),
        "ratio": round(figure / base_figure, 3) if base_figure else None,
        "target": TARGETS[kind],
        "met": figure >= TARGETS[kind],
        "baseline_hit_top": bool(base_best and base_best.rate >= top),
        "step_seconds": duration,
        "pyim_cpu_us_per_call": round(best.server_cpu_us or 0, 1) if best else None,
        "pyim_steps": [_brief(s) for s in pyim.steps],
        "baseline_steps": [_brief(s) for s in base.steps],
    }
    if best is not None and args.sustain > 0:
        # Server transactions alive at rate r: the INVITE's (timer L) and, over UDP, the
        # BYE's (timer J) live 64*T1 = 32 s each, a MESSAGE's 32 s over UDP and none over
        # TCP.  Past max_server_transactions a new request gets a stateless 503, so the
        # steady state cannot hold more than max_server_transactions / (32 s * n).
        per_call = {"calls_udp": 2, "calls_tcp": 1, "messages_udp": 1, "messages_tcp": 0}[case]
        cap = args.max_transactions / (32.0 * per_call) if per_call else float("inf")
        rate = min(best.rate, round(0.95 * cap, -1))
        sustained = pyim_step(rate, args.sustain)
        result["sustained"] = {"seconds": args.sustain, **_brief(sustained)}
        if per_call:
            result["sustained"]["rate_cap_by_max_server_transactions"] = round(cap)
    if best is not None and args.profile:
        prof = workdir / f"{case}.prof"
        pyim_step(best.rate, duration, profile=prof)
        print_profile(case, prof, args.profile)
    return result


def dialogs_case(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    n = args.dialogs
    rate = float(args.dialog_rate)
    setup_s = n / rate
    settle = 2.0
    # hold: setup + measuring + the wait for timer L (64*T1 = 32 s) to clear the tables
    hold_s = setup_s + settle + (0.0 if args.quick else 36.0) + 5.0
    hold_ms = int(hold_s * 1000)
    out: dict[str, Any] = {"case": "dialogs", "unit": "bytes/dialog", "dialogs": n}

    def hold(port: int, label: str) -> tuple[Any, Any]:
        from peers import Sipp

        sipp = Sipp(
            "-sn uac",
            workdir,
            target=f"{HOST}:{port}",
            service="bench",
            transport="udp",
            calls=n,
            timeout=hold_s + setup_s + 60,
            label=label,
            trace_msg=False,
            extra_args=["-r", f"{rate:g}", "-l", str(n + 10), "-d", str(hold_ms), *SIPP_BUFFER],
        )
        sipp.start(wait_listening=False)
        return sipp, time.monotonic()

    with PyimServer(
        "udp",
        uvloop=args.uvloop,
        max_transactions=args.max_transactions,
        gc_threshold=args.gc_threshold,
    ) as server:
        # warm-up: a few hundred full calls, then the tables empty again (timer L/J)
        run_uac("calls", "udp", server.port, 200.0, 1.0, workdir, "dialogs-warmup")
        rss_start = server.rss()
        sipp, t0 = hold(server.port, "dialogs-pyim")
        try:
            st = wait_for(lambda: server.status(), lambda s: s["dialogs"] >= n, setup_s + 30)
            time.sleep(settle)
            st = server.status()
            rss_with = server.rss()
            out["pyim_setup_seconds"] = round(time.monotonic() - t0, 1)
            out["pyim_status_with"] = {k: st[k] for k in ("dialogs", "server_transactions")}
            if not args.quick:
                # timer L (32 s) ends every INVITE server transaction: dialogs only
                st2 = wait_for(
                    lambda: server.status(),
                    lambda s: s["server_transactions"] == 0,
                    40.0,
                )
                rss_dialogs_only = server.rss()
                out["pyim_status_later"] = {k: st2[k] for k in ("dialogs", "server_transactions")}
                out["pyim_rss_dialogs_only_mb"] = round(rss_dialogs_only / 1e6, 2)
                out["pyim_bytes_per_dialog_without_transactions"] = round(
                    (rss_dialogs_only - rss_start) / n
                )
            result = sipp.wait()
            out["pyim_sipp"] = {
                "rc": result.returncode,
                "successful": result.successful,
                "failed": result.failed,
            }
        finally:
            sipp.stop()
    per = (rss_with - rss_start) / n
    out["pyim_rss_before_mb"] = round(rss_start / 1e6, 2)
    out["pyim_rss_with_mb"] = round(rss_with / 1e6, 2)

    with SippUas("dialogs", "udp", workdir, "dialogs-uas") as uas:
        base_start = rss_bytes(uas.pid)
        sipp, t0 = hold(uas.port, "dialogs-base")
        try:
            time.sleep(setup_s + settle)
            base_with = rss_bytes(uas.pid)
        finally:
            sipp.stop()
    base_per = (base_with - base_start) / n
    out.update(
        {
            "pyim": round(per),
            "baseline": round(base_per),
            "ratio": round(per / base_per, 2) if base_per > 0 else None,
            "target": TARGETS["dialogs"],
            "met": per <= TARGETS["dialogs"],
            "baseline_rss_before_mb": round(base_start / 1e6, 2),
            "baseline_rss_with_mb": round(base_with / 1e6, 2),
        }
    )
    return out


def wait_for(poll: Any, done: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    value = poll()
    while not done(value):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"still {value}")
        time.sleep(0.5)
        value = poll()
    return value


def print_profile(case: str, path: Path, top: int) -> None:
    out = sys.stderr
    print(f"--- profile of the pyim server, {case} (internal time) ---", file=out)
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--udp-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--tcp-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--no-gc", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--gc-threshold",
        type=int,
        nargs=3,
        metavar="N",
        help="gc.set_threshold() in the pyim server (an application's choice; default: "
        "Python's 700 10 10)",
    )
    ap.add_argument(
        "--max-transactions",
        type=int,
        default=100_000,
        help="the server's max_server_transactions (default: StackConfig's 100000)",
    )
    ap.add_argument("--quick", action="store_true", help="short steps, no sustain run")
    ap.add_argument("--case", action="append", choices=CASES, help="run only this case")
    ap.add_argument("--duration", type=float, help="seconds of calls per step (default 5)")
    ap.add_argument("--start-rate", type=float, help="first rate (500 calls, 1000 messages)")
    ap.add_argument("--top-rate", type=float, help="highest rate tried")
    ap.add_argument("--bisect", type=int, default=2, help="bisection steps after a failure")
    ap.add_argument(
        "--rate", type=float, help="only one pyim run at this rate (--sustain or --duration s)"
    )
    ap.add_argument("--sustain", type=float, help="seconds of the sustain run (default 40)")
    ap.add_argument("--dialogs", type=int, default=10_000, help="dialogs held (default 10000)")
    ap.add_argument("--dialog-rate", type=int, default=1000, help="set-up rate of the dialogs")
    ap.add_argument("--uvloop", action="store_true", help="run the pyim server on uvloop")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile top N")
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args)
    if shutil.which("sipp") is None:
        ap.error("sipp not found (apt-get install sip-tester)")
    if args.duration is None:
        args.duration = 2.0 if args.quick else 5.0
    if args.sustain is None:
        args.sustain = 0.0 if args.quick else 40.0
    if args.quick and args.bisect == 2:
        args.bisect = 1
    if args.quick and args.dialogs == 10_000:
        args.dialogs = 2_000
    cases = args.case or list(CASES)
    log(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"sipp {shutil.which('sipp')}, uvloop={args.uvloop}"
    )
    status = 0
    with tempfile.TemporaryDirectory(prefix="pyim-bench-sip-") as tmp:
        workdir = Path(tmp)
        for case in cases:
            try:
                if case == "dialogs":
                    result = dialogs_case(args, workdir)
                else:
                    result = rate_case(case, args, workdir)
                result["uvloop"] = args.uvloop
                if args.gc_threshold:
                    result["gc_threshold"] = args.gc_threshold
                print(json.dumps(result), flush=True)
            except Exception as exc:  # report it and go on with the next case
                print(json.dumps({"case": case, "error": repr(exc)}), flush=True)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
