"""Benchmark of the MSRP frame parser: the compiled one against the pure-Python reference.

Not a test: run by hand, results go to bench/RESULTS.md.  One JSON object per case on
stdout, with the native figure, the pure-Python reference measured in the same run,
their ratio (native / pure) and the target of the native figure::

    PYTHONPATH=src python bench/parser.py            # full run (about half a minute)
    PYTHONPATH=src python bench/parser.py --quick    # smoke run
    PYTHONPATH=src python bench/parser.py --case small_frames --profile 20

Cases
-----
``small_frames``
    SEND frames with a 100-byte body and the usual headers (To-Path, From-Path,
    Message-ID, Byte-Range, Content-Type), each with its own transaction id and
    Message-ID, 336 bytes each; 2000 of them in one buffer (656 KiB), fed at once.
    Unit: frames/s.
``small_frames_64k_reads``
    The same stream fed in 64 KiB reads, as a socket would hand it over.
``chunk_64k``
    Frames with a 64 KiB body, fed in 64 KiB reads (so reads and frames do not line
    up).  Unit: MB/s of body bytes handed out (10^6 bytes per second).
``chunk_1m``
    Frames with a 1 MiB body, fed in 64 KiB reads.  Unit: MB/s of body bytes.

Each figure is the best of ``--runs`` measurements of at least ``--seconds`` each
(``time.perf_counter``); the events are dropped inside the timed loop, so creating
and freeing them (and the cyclic garbage collector's work on them) is part of the
cost.
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

from pyim.msrp.events import BodyData
from pyim.msrp.parser import FrameParser as PureFrameParser

try:
    from pyim.msrp._speedups import FrameParser as NativeFrameParser
except ImportError as exc:  # pragma: no cover - depends on the build
    sys.exit(f"pyim.msrp._speedups is not built ({exc}); run `pip install -e .` first")

KIB = 1024
SMALL_FRAMES = 2000


def send_frame(tid: str, body: bytes, msg_id: str) -> bytes:
    head = (
        f"MSRP {tid} SEND\r\n"
        "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n"
        "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n"
        f"Message-ID: {msg_id}\r\n"
        f"Byte-Range: 1-{len(body)}/{len(body)}\r\n"
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    return head + body + b"\r\n-------" + tid.encode() + b"$\r\n"


def small_frames_stream(count: int = SMALL_FRAMES) -> bytes:
    rng = random.Random(1)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    text = b"The quick brown fox jumps over the lazy dog. " * 3
    frames = []
    for i in range(count):
        tid = "".join(rng.choice(letters) for _ in range(10))
        frames.append(send_frame(tid, text[:100], f"m{i:08d}"))
    return b"".join(frames)


def chunk_stream(body_size: int, total: int) -> bytes:
    """Frames of ``body_size`` random bytes, about ``total`` bytes of body in all."""
    rng = random.Random(2)
    body = rng.randbytes(body_size)
    frames = [send_frame(f"chunk{i:06d}", body, f"m{i}") for i in range(max(1, total // body_size))]
    return b"".join(frames)


def run_small(parser_cls: Callable[[], Any], stream: bytes, frames: int) -> int:
    """Feed the whole stream at once; returns the number of frames (checked)."""
    events = parser_cls().feed(stream)
    if len(events) != 3 * frames:  # FrameHead, BodyData, FrameEnd each
        raise AssertionError(f"{len(events)} events for {frames} frames")
    return frames


def run_small_reads(parser_cls: Callable[[], Any], reads: list[bytes], frames: int) -> int:
    """Feed the stream in reads; returns the number of frames (checked)."""
    parser = parser_cls()
    count = 0
    for data in reads:
        count += len(parser.feed(data))
    if count != 3 * frames:
        raise AssertionError(f"{count} events for {frames} frames")
    return frames


def run_chunks(parser_cls: Callable[[], Any], reads: list[bytes]) -> int:
    """Feed the reads one by one; returns the number of body bytes handed out."""
    parser = parser_cls()
    total = 0
    for data in reads:
        for ev in parser.feed(data):
            if type(ev) is BodyData:
                total += len(ev.data)
    return total


def measure(fn: Callable[[], int], seconds: float, runs: int) -> float:
    """Best rate (units per second) of ``runs`` measurements of >= ``seconds`` each."""
    best = 0.0
    fn()  # warm up
    for _ in range(runs):
        gc.collect()
        units = 0
        loops = 0
        start = time.perf_counter()
        while True:
            units += fn()
            loops += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, units / elapsed)
    return best


def cases() -> dict[str, tuple[str, float, float, Callable[[Any], Callable[[], int]]]]:
    """name -> (unit, divisor, target, factory(parser_cls) -> measured function)."""
    small = small_frames_stream(SMALL_FRAMES)
    small_reads = _reads(small, 64 * KIB)
    reads_64k = _reads(chunk_stream(64 * KIB, 4 * 1024 * KIB), 64 * KIB)
    reads_1m = _reads(chunk_stream(1024 * KIB, 8 * 1024 * KIB), 64 * KIB)
    n = SMALL_FRAMES
    return {
        "small_frames": ("frames/s", 1.0, 500_000, lambda cls: lambda: run_small(cls, small, n)),
        "small_frames_64k_reads": (
            "frames/s",
            1.0,
            500_000,
            lambda cls: lambda: run_small_reads(cls, small_reads, n),
        ),
        "chunk_64k": ("MB/s", 1e6, 2000, lambda cls: lambda: run_chunks(cls, reads_64k)),
        "chunk_1m": ("MB/s", 1e6, 2000, lambda cls: lambda: run_chunks(cls, reads_1m)),
    }


def _reads(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", action="append", help="run only this case (repeatable)")
    ap.add_argument("--seconds", type=float, default=0.5, help="minimum time per measurement")
    ap.add_argument("--runs", type=int, default=3, help="measurements per figure (best kept)")
    ap.add_argument("--quick", action="store_true", help="0.1 s, 1 run: a smoke run")
    ap.add_argument("--profile", type=int, metavar="N", help="cProfile top N (stderr)")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.runs = 0.1, 1
    table = cases()
    names = args.case or list(table)
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    for name in names:
        unit, divisor, target, factory = table[name]
        native = measure(factory(NativeFrameParser), args.seconds, args.runs) / divisor
        pure = measure(factory(PureFrameParser), args.seconds, args.runs) / divisor
        print(
            json.dumps(
                {
                    "case": name,
                    "unit": unit,
                    "native": round(native, 1),
                    "pure": round(pure, 1),
                    "ratio": round(native / pure, 2),
                    "target": target,
                }
            ),
            flush=True,
        )
        if args.profile:
            for label, cls in (("native", NativeFrameParser), ("pure", PureFrameParser)):
                fn = factory(cls)
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(20):
                    fn()
                prof.disable()
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.profile)
                print(f"--- {name} ({label})\n{out.getvalue()}", file=sys.stderr)


if __name__ == "__main__":
    main()
