#!/usr/bin/env bash
# Provision PJSIP (pjsua2) for pyim, verify it, and build pyim's native extension.
#
# Why this does not build pjproject: pjproject's sources cannot be downloaded on this
# machine nor on CI (the only network is PyPI and Debian's package archive), and Debian
# bookworm has no pjproject package at all. So pyim takes PJSIP from the pinned binary wheel
# `pjsua2-python==2.15.1.post1` on PyPI (pjproject 2.15.1, its own OpenSSL 1.0.2k bundled:
# TLS up to 1.2). pyim relies on measured behaviour of exactly this build (see
# shared/DESIGN.md), hence the exact pin, here and in pyproject's `ua` extra.
#
# Steps:
#   (a) pip-install the exact pin;
#   (b) verify it in a separate python process: `import pjsua2`, library version 2.15.1
#       (Endpoint.libVersion().full, readable right after libCreate), and UDP, TCP and TLS
#       transports created on 127.0.0.1 port 0. A TLS transport can be created without a
#       certificate (enough for outgoing/client use), but as a listener it then fails every
#       handshake ("no shared cipher"); so the check also creates a TLS listener with a
#       throw-away self-signed certificate made by `openssl` in a temp dir and completes a
#       real TLS handshake against it. Then libDestroy, and the process must exit 0.
#       pjsua2 aborts the whole process on misuse (a call from a thread not registered with
#       libRegisterThread, destructors included; objects still alive at libDestroy), so the
#       check runs everything on the main thread (threadCnt=0, mainThreadOnly) and deletes
#       its objects before libDestroy;
#   (c) build pyim's Cython extension in place (setup.py build_ext --inplace) and print
#       which MSRP parser implementation pyim.msrp selects.
#
# Usage: scripts/build_pjsip.sh [--verify-only]
#   --verify-only   step (b) alone: no install, no build (tests/test_pjsua2_capabilities.py)
# Environment:
#   PYTHON               interpreter to use (default: python3)
#   PYIM_REQUIRE_NATIVE  default 1 here: a failed native build fails this script
set -euo pipefail

PJSUA2_PIN="pjsua2-python==2.15.1.post1"
EXPECTED_PJ_VERSION="2.15.1"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

verify_only=0
case "${1:-}" in
    "") ;;
    --verify-only) verify_only=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--verify-only]" >&2; exit 2 ;;
esac

log() { printf '[build_pjsip] %s\n' "$*"; }

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# ---------------------------------------------------------------- (a) install the pin
if [[ $verify_only -eq 0 ]]; then
    log "installing $PJSUA2_PIN"
    "$PYTHON" -m pip install -q "$PJSUA2_PIN"
fi

# ---------------------------------------------------------------- (b) verify pjsua2
if ! "$PYTHON" -c 'import pjsua2.pjsua2' 2>/dev/null; then
    echo "[build_pjsip] pjsua2 is not importable with $PYTHON;" \
        "run: $PYTHON -m pip install $PJSUA2_PIN (scripts/build_pjsip.sh does it)" >&2
    exit 3
fi
if ! command -v openssl >/dev/null; then
    echo "[build_pjsip] openssl is needed to make a throw-away TLS certificate" \
        "(apt-get install openssl)" >&2
    exit 3
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
    -keyout "$workdir/key.pem" -out "$workdir/cert.pem" >/dev/null 2>&1

log "verifying pjsua2 (expecting pjproject $EXPECTED_PJ_VERSION)"
# Bounded: the check has its own deadlines; timeout(1) guards against a hang in pjsua2.
timeout 120 "$PYTHON" - "$EXPECTED_PJ_VERSION" "$workdir/cert.pem" "$workdir/key.pem" <<'PY'
"""pjsua2 capability check: version, UDP/TCP/TLS transports on 127.0.0.1, TLS handshake."""

import socket
import ssl
import sys
import time

import pjsua2 as pj

expected, cert_file, key_file = sys.argv[1:4]

ep = pj.Endpoint()
ep.libCreate()
version = ep.libVersion().full  # available right after libCreate
print(f"PJSUA2_PACKAGE={pj.__version__}")
print(f"PJSUA2_VERSION={version}")
if version != expected:
    print(f"FAIL: pjproject {version}, expected {expected}", file=sys.stderr)
    ep.libDestroy()
    sys.exit(1)

cfg = pj.EpConfig()
cfg.uaConfig.threadCnt = 0  # no pjsua worker threads: everything on this thread
cfg.uaConfig.mainThreadOnly = True
cfg.logConfig.level = 2
cfg.logConfig.consoleLevel = 2
ep.libInit(cfg)
del cfg


def create(kind: int, name: str, cert: bool = False) -> int:
    tc = pj.TransportConfig()
    tc.boundAddress = "127.0.0.1"
    tc.port = 0
    if cert:
        tc.tlsConfig.certFile = cert_file
        tc.tlsConfig.privKeyFile = key_file
    tid = ep.transportCreate(kind, tc)
    local = ep.transportGetInfo(tid).localName
    print(f"PJSUA2_TRANSPORT {name} {local}")
    return int(local.rsplit(":", 1)[1])


create(pj.PJSIP_TRANSPORT_UDP, "udp")
create(pj.PJSIP_TRANSPORT_TCP, "tcp")
create(pj.PJSIP_TRANSPORT_TLS, "tls-nocert")  # creatable; usable for outgoing TLS only
tls_port = create(pj.PJSIP_TRANSPORT_TLS, "tls", cert=True)
ep.libStart()

# A real TLS handshake against the listener, pumping pjsip's events on this thread.
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # throw-away self-signed certificate
raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
raw.setblocking(False)
tls = ctx.wrap_socket(raw, do_handshake_on_connect=False)
outcome = "timeout"
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        tls.do_handshake()
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        ep.libHandleEvents(20)
        continue
    except (ssl.SSLError, OSError) as exc:
        outcome = f"failed: {exc!r}"
        break
    outcome = f"ok {tls.version()}"
    break
tls.close()
for _ in range(5):  # let pjsip see the close before shutting down
    ep.libHandleEvents(10)
print(f"PJSUA2_TLS_HANDSHAKE {outcome}")

ep.libDestroy()
del ep
if not outcome.startswith("ok"):
    print("FAIL: TLS handshake with the pjsua2 TLS listener did not complete", file=sys.stderr)
    sys.exit(1)
print("PJSUA2_OK")
PY
log "pjsua2 OK"

if [[ $verify_only -eq 1 ]]; then
    exit 0
fi

# ---------------------------------------------------------------- (c) native extension
cd "$ROOT"
if ! "$PYTHON" -c 'import Cython, setuptools' 2>/dev/null; then
    log "installing the build requirements (Cython, setuptools)"
    "$PYTHON" -m pip install -q "Cython>=3.0" "setuptools>=68" wheel
fi
log "building pyim's native extension (setup.py build_ext --inplace)"
PYIM_REQUIRE_NATIVE="${PYIM_REQUIRE_NATIVE:-1}" "$PYTHON" setup.py -q build_ext --inplace

impl="$(PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c \
    'import pyim.msrp as m; print(getattr(m, "parser_impl", "unknown (no parser_impl)"))' \
    2>/dev/null)" || impl="unknown (pyim.msrp not importable yet)"
log "pyim.msrp parser implementation: $impl"
