"""pjsua2 (the pinned pjsua2-python wheel) is installed and has what pyim.ua needs.

Runs the same check as ``scripts/build_pjsip.sh`` (its ``--verify-only`` mode) in a
subprocess: pjsua2 aborts the whole process on misuse, so it is kept out of pytest's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "build_pjsip.sh"
PIN = "pjsua2-python==2.15.1.post1"
EXPECTED_VERSION = "2.15.1"


def _require_pjsua2() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import pjsua2.pjsua2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"pjsua2 is not importable ({(proc.stderr.strip().splitlines() or ['?'])[-1]}): "
            f"run `pip install {PIN}` (scripts/build_pjsip.sh does it)"
        )


def test_pjsua2_is_importable() -> None:
    _require_pjsua2()


def test_pjsua2_version_and_transports() -> None:
    _require_pjsua2()
    bash = shutil.which("bash")
    assert bash is not None, "bash is needed to run scripts/build_pjsip.sh"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        [bash, str(SCRIPT), "--verify-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{proc.stderr}"
    assert f"PJSUA2_VERSION={EXPECTED_VERSION}\n" in out, out
    for name in ("udp", "tcp", "tls-nocert", "tls"):
        assert re.search(rf"^PJSUA2_TRANSPORT {name} 127\.0\.0\.1:[1-9]\d*$", out, re.M), (
            f"no {name} transport on 127.0.0.1:\n{out}"
        )
    assert re.search(r"^PJSUA2_TLS_HANDSHAKE ok TLSv1\.[23]$", out, re.M), out
    assert "PJSUA2_OK" in out, out
