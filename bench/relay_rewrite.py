"""Benchmark of the relay's forwarding rewrite: the compiled one against the reference.

Not a test: run by hand.  Prints one JSON object on stdout::

    PYTHONPATH=src python bench/relay_rewrite.py [--seconds 0.5] [--runs 5]

``rewrite_head`` on a realistic request head: SEND with 6 headers, To-Path with 2
URIs (this relay, then the next hop), From-Path with 1.  Figures are calls per second,
the best of ``--runs`` measurements of at least ``--seconds`` each; ``ratio`` is
native / pure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from pyim.relay.forward import rewrite_head as pure_rewrite_head

try:
    from pyim.msrp._speedups import rewrite_head as native_rewrite_head
except ImportError as exc:  # pragma: no cover - depends on the build
    sys.exit(f"pyim.msrp._speedups is not built ({exc}); run `pip install -e .` first")

TID = "a786hjs2"
HEADERS = [
    (
        "To-Path",
        "msrp://relay.example.com:2855/kjhd37s2s20w2a;tcp msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    ),
    ("From-Path", "msrp://alicepc.example.com:7777/iau39soe2843z;tcp"),
    ("Message-ID", "87652491"),
    ("Byte-Range", "1-25/25"),
    ("Content-Type", "text/plain"),
    ("Success-Report", "yes"),
]


def per_second(fn: Callable[..., Any], seconds: float, runs: int) -> float:
    loops = 1
    while True:  # calibrate: enough calls for about a tenth of the time
        start = time.perf_counter()
        for _ in range(loops):
            fn(TID, "SEND", HEADERS)
        if time.perf_counter() - start >= seconds / 10:
            break
        loops *= 2
    best = 0.0
    for _ in range(runs):
        calls = 0
        start = time.perf_counter()
        while True:
            for _ in range(loops):
                fn(TID, "SEND", HEADERS)
            calls += loops
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, calls / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if native_rewrite_head(TID, "SEND", HEADERS) != pure_rewrite_head(TID, "SEND", HEADERS):
        sys.exit("native and pure rewrite_head disagree")
    native = per_second(native_rewrite_head, args.seconds, args.runs)
    pure = per_second(pure_rewrite_head, args.seconds, args.runs)
    print(
        json.dumps(
            {
                "case": "rewrite_head",
                "native_per_s": round(native),
                "pure_per_s": round(pure),
                "ratio": round(native / pure, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
