"""coturn's ``turnserver`` as a STUN/TURN server for the pyim.ua (pjsua2) tests.

One turnserver runs in the foreground on 127.0.0.1, on a UDP/TCP port picked free,
with a config file written to its work folder (no TLS/DTLS, no CLI, no RFC 5780
alternate port, long-term credentials for TURN, loopback peers allowed, relay ports in
a small range derived from the listening port); it is stopped by its PID. Load it as a
plugin for the fixture (its log goes into the report of a failed test through the
``peers`` plugin's hook, which this module registers too)::

    pytest_plugins = ["coturn"]

    def test_ice(coturn: Coturn) -> None:
        ep_cfg.uaConfig.stunServer.append(coturn.stun_address)      # pjsua2 EpConfig
        acc_cfg.natConfig.turnEnabled = True                        # pjsua2 AccountConfig
        acc_cfg.natConfig.turnServer = coturn.stun_address
        acc_cfg.natConfig.turnUserName = coturn.turn_user
        acc_cfg.natConfig.turnPassword = coturn.turn_password

Or without pytest's fixtures: ``with Coturn(tmp_path) as turn: ...``.

A missing ``turnserver`` fails the test with what to install (``apt-get install
coturn``; scripts/test.sh installs it).

(PYTEST_DONT_REWRITE: no asserts here.)
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from peers import (
    LOOPBACK,
    PeerProcess,
    _exited,
    _tail,
    _track,
    deathsig_prefix,
    find_binary,
    free_port,
    stop_process,
    wait_port_bound,
)

# Loading this plugin loads peers.py's as well (its report hooks, its fixtures).
pytest_plugins = ["peers"]

COTURN_MISSING = "turnserver not found: apt-get install coturn (scripts/test.sh installs it)"
DEFAULT_REALM = "pyim.test"
DEFAULT_TURN_USER = "pyim"
# RFC 5389 §6
STUN_MAGIC_COOKIE = 0x2112A442
STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020
# relay ports per server: a small range, so that parallel servers rarely collide
RELAY_PORTS = 64


class CoturnError(RuntimeError):
    pass


def coturn_binary() -> str:
    return find_binary("turnserver", COTURN_MISSING)


# --------------------------------------------------------------------------------------
# a minimal STUN client (RFC 5389 Binding), for the readiness probe and the tests


def stun_binding_request(transaction_id: bytes | None = None) -> tuple[bytes, bytes]:
    """A Binding request without attributes: (packet, its 96-bit transaction id)."""
    tid = transaction_id if transaction_id is not None else secrets.token_bytes(12)
    if len(tid) != 12:
        raise ValueError("a STUN transaction id has 12 bytes")
    return struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC_COOKIE) + tid, tid


def parse_stun_attributes(packet: bytes) -> tuple[int, bytes, dict[int, bytes]]:
    """(message type, transaction id, {attribute type: value}) of a STUN message
    (the first of each attribute type); ValueError if it is not one."""
    if len(packet) < 20:
        raise ValueError("shorter than a STUN header")
    msg_type, length, cookie = struct.unpack("!HHI", packet[:8])
    if cookie != STUN_MAGIC_COOKIE or msg_type & 0xC000 or length % 4:
        raise ValueError("not a STUN message")
    if 20 + length > len(packet):
        raise ValueError("truncated STUN message")
    tid = packet[8:20]
    attributes: dict[int, bytes] = {}
    offset, end = 20, 20 + length
    while offset + 4 <= end:
        attr_type, attr_len = struct.unpack("!HH", packet[offset : offset + 4])
        value = packet[offset + 4 : offset + 4 + attr_len]
        if len(value) != attr_len:
            raise ValueError("truncated STUN attribute")
        attributes.setdefault(attr_type, value)
        offset += 4 + attr_len + (-attr_len % 4)  # values are padded to 4 bytes
    return msg_type, tid, attributes


def decode_xor_mapped_address(value: bytes) -> tuple[str, int]:
    """An IPv4 XOR-MAPPED-ADDRESS value (RFC 5389 §15.2) as (address, port)."""
    if len(value) < 8 or value[1] != 0x01:
        raise ValueError("not an IPv4 XOR-MAPPED-ADDRESS")
    xport, xaddr = struct.unpack("!HI", value[2:8])
    port = xport ^ (STUN_MAGIC_COOKIE >> 16)
    address = socket.inet_ntoa(struct.pack("!I", xaddr ^ STUN_MAGIC_COOKIE))
    return address, port


def stun_binding(host: str, port: int, timeout: float = 1.0) -> tuple[str, int] | None:
    """One Binding request over UDP from 127.0.0.1: the XOR-MAPPED-ADDRESS of the
    success response, or None (no answer in ``timeout``, refused, not a success)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        request, tid = stun_binding_request()
        sock.sendto(request, (host, port))
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(2048)
            except (TimeoutError, ConnectionRefusedError):
                return None
            try:
                msg_type, got_tid, attributes = parse_stun_attributes(data)
            except ValueError:
                continue
            if got_tid != tid:
                continue
            if msg_type != STUN_BINDING_SUCCESS or STUN_ATTR_XOR_MAPPED_ADDRESS not in attributes:
                return None
            return decode_xor_mapped_address(attributes[STUN_ATTR_XOR_MAPPED_ADDRESS])
    return None


# --------------------------------------------------------------------------------------
# the server


class Coturn(PeerProcess):
    """coturn's turnserver in the foreground on 127.0.0.1 (UDP and TCP on one port).

    Everything lives in ``workdir``: ``turnserver.conf``, the PID file, the (unused)
    SQLite user database and ``turnserver.log`` (its log; stdout goes to
    ``turnserver.out``). ``users`` (user -> password) are the TURN long-term
    credentials; by default one random user :attr:`turn_user`. Started, it has
    answered a STUN Binding request over UDP.
    """

    term_timeout = 3.0

    name = "coturn"

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        realm: str = DEFAULT_REALM,
        port: int | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.host = LOOPBACK
        self._fixed_port = port
        self.port = port or 0
        self.min_port = 0
        self.max_port = 0
        self.realm = realm
        self.users: dict[str, str] = (
            dict(users) if users else {DEFAULT_TURN_USER: secrets.token_hex(8)}
        )
        self.startup_timeout = startup_timeout
        self.cfg_path = self.workdir / "turnserver.conf"
        self.log_path = self.workdir / "turnserver.log"
        self.out_path = self.workdir / "turnserver.out"
        self.pid_path = self.workdir / "turnserver.pid"
        self.db_path = self.workdir / "turndb"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- addresses, credentials

    @property
    def stun_address(self) -> str:
        """host:port of the STUN/TURN listener (UDP and TCP), as pjsua2 wants it."""
        return f"{self.host}:{self.port}"

    @property
    def turn_user(self) -> str:
        return next(iter(self.users))

    @property
    def turn_password(self) -> str:
        return self.users[self.turn_user]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # -- lifecycle

    def config_text(self) -> str:
        lines = [
            "# written by tests/coturn.py",
            f"listening-ip={self.host}",
            f"listening-port={self.port}",
            f"relay-ip={self.host}",
            f"min-port={self.min_port}",
            f"max-port={self.max_port}",
            "relay-threads=1",
            "no-tls",
            "no-dtls",
            "no-rfc5780",
            "no-cli",
            "no-multicast-peers",
            "allow-loopback-peers",
            "fingerprint",
            "lt-cred-mech",
            f"realm={self.realm}",
            *(f"user={user}:{password}" for user, password in self.users.items()),
            f"userdb={self.db_path}",
            f"pidfile={self.pid_path}",
            f"log-file={self.log_path}",
            "simple-log",
            "new-log-timestamp",
            "verbose",
        ]
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        # SIGKILL: turnserver keeps no children, and its state is all in memory
        return [*deathsig_prefix("KILL"), coturn_binary(), "-c", str(self.cfg_path)]

    def start(self) -> Coturn:
        coturn_binary()  # fail early, with the install hint
        self.workdir.mkdir(parents=True, exist_ok=True)
        _track(self)
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self.port = self._fixed_port or free_port("both")
            self._pick_relay_range()
            if self._launch():
                return self
            if attempt + 1 < attempts:
                continue  # most likely lost a race for the port: try others
        raise CoturnError(
            f"turnserver did not come up on {self.stun_address} within "
            f"{self.startup_timeout} s (exit code {self.returncode}); log "
            f"{self.log_path}:\n{_tail(self.log_path, 60)}\nstdout:\n{_tail(self.out_path, 30)}"
        )

    def _pick_relay_range(self) -> None:
        # a range of RELAY_PORTS above 49152 derived from the listening port: distinct
        # servers (each on its own free port) mostly get distinct ranges
        base = 49152 + (self.port * RELAY_PORTS) % (65535 - 49152 - RELAY_PORTS)
        self.min_port, self.max_port = base, base + RELAY_PORTS - 1

    def _launch(self) -> bool:
        self.returncode = None
        self.cfg_path.write_text(self.config_text())
        self.log_path.unlink(missing_ok=True)
        with self.out_path.open("ab") as out:
            out.write(f"### {' '.join(self.command())}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                env={**os.environ, "LC_ALL": "C"},
            )
        deadline = time.monotonic() + self.startup_timeout
        if not wait_port_bound(self.port, "udp", self.startup_timeout, self.proc):
            self.returncode = stop_process(self.proc, term_timeout=2.0)
            return False
        while time.monotonic() < deadline:
            if _exited(self.proc):
                self.returncode = stop_process(self.proc, term_timeout=2.0)
                return False
            if stun_binding(self.host, self.port, timeout=0.3) is not None:
                return True
            time.sleep(0.05)
        self.returncode = stop_process(self.proc, term_timeout=2.0)
        return False

    # -- observation

    def report_sections(self) -> list[tuple[str, str]]:
        return [
            (f"coturn {self.stun_address} log (tail)", _tail(self.log_path)),
            (f"coturn {self.stun_address} stdout (tail)", _tail(self.out_path, 40)),
        ]


# --------------------------------------------------------------------------------------
# pytest fixture


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    """A started coturn STUN/TURN server of its own on 127.0.0.1 (UDP and TCP)."""
    with Coturn(tmp_path / "coturn") as server:
        yield server
