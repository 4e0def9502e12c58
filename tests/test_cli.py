"""The README's main job: `pyim demo` chats by INVITE on 127.0.0.1 with delivery reports."""

from __future__ import annotations

import subprocess
import sys


def test_pyim_demo_shows_messages_and_delivery_reports() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyim.cli", "demo", "--file-size", "1000000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "INVITE sip:bob@127.0.0.1" in out and "m=message" in out
    assert "a=setup:actpass" in out and "a=setup:active" in out
    assert "'Hello Bob, are you there?'" in out
    assert out.count("delivered (Success-Report)") == 4
    assert "1000000 bytes in 16 chunks, intact" in out
    assert "BYE, 200 OK: session closed" in out
    assert "FAILED" not in out and "Traceback" not in proc.stderr


def test_pyim_info_names_the_parser() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyim.cli", "info"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0
    assert "MSRP frame parser: " in proc.stdout
