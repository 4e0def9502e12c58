#!/usr/bin/env bash
# pyim's test command: provisions the machine, then runs lint, type checks and the tests.
#
# It assumes only a Debian bookworm machine with Python >= 3.11 and pip (CI runs it as
# root on a fresh machine, via .ci/run); everything else it installs itself:
#   1. Debian packages (APT_PACKAGES below) that the tests need;
#   2. pyim itself, editable, with its test/dev/ua extras (this also builds the Cython
#      extension pyim.msrp._speedups in place; PYIM_REQUIRE_NATIVE=1 makes a failed
#      native build an error here, so the tests never silently run on the fallback only);
#   3. scripts/build_pjsip.sh: the pinned pjsua2 wheel, verified, and the native build;
#   4. ruff check, mypy, python -m pytest -q (extra arguments go to pytest).
# Every step runs; the script exits non-zero if any check failed. pytest's exit code 5
# ("no tests collected") counts as a failure.
#
# Environment: PYTHON (default python3), SKIP_SETUP=1 to skip steps 1-3 on a machine
# that is already provisioned, CI=true for compact, non-interactive output.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
export PYTHON
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
export PYIM_REQUIRE_NATIVE=1
unset PYIM_PURE PYIM_NO_NATIVE  # the suite decides per test which implementation it uses

# ---------------------------------------------------------------------------------------
# Debian packages the tests need. Later issues extend this list (e.g. kamailio,
# kamailio-tls-modules, sip-tester, coturn, postgresql, iproute2, tshark).
APT_PACKAGES=(
    build-essential # C compiler for the Cython extension
    openssl         # throw-away TLS certificates (scripts/build_pjsip.sh, TLS tests)
    ca-certificates
    # Real SIP peers for the SIP-core interop tests (tests/peers.py, deploy/kamailio/):
    # Kamailio 5.6 proxy/registrar (+ its msrp relay module in extra-modules, TLS
    # transport) and sipp (Debian package sip-tester: /usr/bin/sipp).
    kamailio
    kamailio-extra-modules
    kamailio-tls-modules
    sip-tester
    # The MSRP relay's NAT test (tests/netns.py): network namespaces, veth pairs and
    # nftables masquerade, built and removed by the test itself.
    iproute2
    nftables
    # pyim.ua's peers: a STUN/TURN server, and Kamailio as presence server
    # (tests/coturn.py, tests/kamailio_presence.py, deploy/kamailio/proxy-presence.cfg).
    coturn
    kamailio-presence-modules
    # pyim.store's shared backend: a throw-away PostgreSQL cluster per test session
    # (tests/postgres.py runs initdb and postgres from /usr/lib/postgresql/*/bin).
    postgresql
)
# ---------------------------------------------------------------------------------------

section() { printf '\n==== %s\n' "$*"; }
is_ci() { [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; }

install_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "all Debian packages present: ${APT_PACKAGES[*]}"
        return
    fi
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            echo "missing Debian packages (need root to install): ${missing[*]}" >&2
            return 1
        fi
    fi
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [[ "${SKIP_SETUP:-0}" != "1" ]]; then
    section "Debian packages"
    install_apt_packages

    section "Python packages (pip install -e '.[test,dev,ua]')"
    pip_quiet=()
    if is_ci; then pip_quiet=(-q --progress-bar off); fi
    # (The filter drops this machine's pip-config noise about absent local index folders.)
    set +e
    "$PYTHON" -m pip install "${pip_quiet[@]}" -e '.[test,dev,ua]' 2>&1 |
        grep -v "^WARNING: Location 'file:///.*' is ignored"
    pip_rc=${PIPESTATUS[0]}
    set -e
    if [[ $pip_rc -ne 0 ]]; then
        echo "pip install -e '.[test,dev,ua]' failed (exit $pip_rc)" >&2
        exit "$pip_rc"
    fi
    if is_ci; then
        "$PYTHON" --version
        "$PYTHON" -m pip --version
        # One line: every installed distribution and its version.
        "$PYTHON" -m pip list --format=freeze 2>/dev/null | paste -sd ' ' -
    fi

    section "PJSIP and the native extension (scripts/build_pjsip.sh)"
    bash scripts/build_pjsip.sh
fi

failed=()

section "ruff check"
"$PYTHON" -m ruff check . || failed+=("ruff")

section "mypy"
"$PYTHON" -m mypy || failed+=("mypy")

section "pytest"
pytest_args=(-q)
if is_ci; then pytest_args+=(-p no:cacheprovider); fi
set +e
"$PYTHON" -m pytest "${pytest_args[@]}" "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "pytest collected no tests: that is a failure" >&2
    failed+=("pytest (no tests)")
elif [[ $rc -ne 0 ]]; then
    failed+=("pytest (exit $rc)")
fi

section "summary"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all checks passed"
