"""Real third-party SIP peers for the tests: Kamailio (proxy/registrar) and sipp.

Plain helpers and context managers, plus pytest fixtures. Load it as a plugin to get
the fixtures and the failure report sections (the peers' logs appended to the report
of a failed test)::

    pytest_plugins = ["peers"]          # in a test module or in tests/conftest.py

    def test_call(kamailio: Kamailio, sipp: SippFactory) -> None:
        uas = sipp.start("uas_msrp.xml")
        assert sipp.register("bob", "bob-secret", kamailio, contact_port=uas.port).ok
        result = sipp.run("uac_msrp_invite.xml", target=kamailio.address, service="bob")
        assert result.ok, result.summary()
        assert uas.wait().ok

The helpers work without the plugin too (``with Kamailio(tmp_path) as k: ...``).

Rules (../shared/DESIGN.md): every peer listens on 127.0.0.1 only, on ports picked
free by :func:`free_port`; every wait is bounded; every process this module starts is
stopped by its PID (SIGTERM, then SIGKILL of its process group, which has the PID as
its id: each peer runs in a session of its own). A missing binary fails the test: it
never skips, because scripts/test.sh installs both programs.

(PYTEST_DONT_REWRITE: no asserts here, and test modules import it before pytest loads
it as a plugin.)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import pytest

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
KAMAILIO_DIR = REPO_ROOT / "deploy" / "kamailio"
KAMAILIO_CFG = KAMAILIO_DIR / "proxy-registrar.cfg"
USERS_FILE = KAMAILIO_DIR / "users.txt"
SIPP_DIR = Path(__file__).resolve().parent / "sipp"

KAMAILIO_MISSING = (
    "kamailio not found: apt-get install kamailio kamailio-extra-modules "
    "kamailio-tls-modules (scripts/test.sh installs it)"
)
SIPP_MISSING = "sipp not found: apt-get install sip-tester (scripts/test.sh installs it)"

# Where Debian puts daemons: not on a normal user's PATH.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")

PortKind = Literal["udp", "tcp", "both"]
Transport = Literal["udp", "tcp"]


# --------------------------------------------------------------------------------------
# binaries, ports


def find_binary(name: str, missing_message: str) -> str:
    """The path of ``name`` (PATH, then the sbin folders); a pytest failure if absent."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_SBIN_DIRS)
    found = shutil.which(name, path=path)
    if found is None:
        pytest.fail(missing_message, pytrace=False)
    return found


def deathsig_prefix(signame: str) -> list[str]:
    """``setpriv --pdeathsig SIG --`` (util-linux, always on Debian): the peer gets SIG
    when the process that started it dies, so a test run killed hard (SIGKILL, a CI
    timeout) leaves no peer behind. The signal follows the *thread* that started the
    peer: start peers from the main thread (the fixtures do)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", signame, "--"] if setpriv else []


def kamailio_binary() -> str:
    return find_binary("kamailio", KAMAILIO_MISSING)


def sipp_binary() -> str:
    return find_binary("sipp", SIPP_MISSING)


def _port_is_free(port: int, kind: PortKind) -> bool:
    kinds: list[int] = []
    if kind in ("udp", "both"):
        kinds.append(socket.SOCK_DGRAM)
    if kind in ("tcp", "both"):
        kinds.append(socket.SOCK_STREAM)
    for sock_type in kinds:
        with socket.socket(socket.AF_INET, sock_type) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_port(kind: PortKind = "both", *, attempts: int = 50) -> int:
    """A port on 127.0.0.1 that is free for UDP, TCP or both (the kernel picks it).

    There is a window between this check and the peer's bind; the peers' starters
    retry on a bind failure.
    """
    first: int = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, first) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if _port_is_free(port, kind):
            return port
    raise RuntimeError(f"no free {kind} port on {LOOPBACK} after {attempts} attempts")


def free_udp_pair(gap: int = 2, *, attempts: int = 50) -> int:
    """A UDP port p such that p and p + gap are both free (sipp's -mp uses both)."""
    for _ in range(attempts):
        port = free_port("udp")
        if port + gap < 65536 and _port_is_free(port + gap, "udp"):
            return port
    raise RuntimeError(f"no free UDP port pair on {LOOPBACK} after {attempts} attempts")


def _socket_inodes(port: int, kind: Literal["udp", "tcp"]) -> set[str]:
    """Inodes of the sockets bound to 127.0.0.1:port (TCP: listening), from /proc/net."""
    wanted = f"0100007F:{port:04X}"
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/net/{kind}").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[1] == wanted and (kind == "udp" or fields[3] == "0A"):
                inodes.add(fields[9])
    return inodes


def process_has_bound(pid: int, port: int, kind: Literal["udp", "tcp"]) -> bool:
    """Does process ``pid`` itself hold a socket bound to 127.0.0.1:port?"""
    inodes = _socket_inodes(port, kind)
    if not inodes:
        return False
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


def wait_port_bound(
    port: int, kind: Literal["udp", "tcp"], timeout: float, proc: subprocess.Popen[Any]
) -> bool:
    """Wait until ``proc`` has bound ``port`` on 127.0.0.1 (bounded); False if it exited
    or ran out of time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(proc):
            return False
        if process_has_bound(proc.pid, port, kind):
            return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------------------
# process handling


def _exited(proc: subprocess.Popen[Any]) -> bool:
    """Has the process exited? Does not reap it: a zombie keeps its PID (and so its
    process group id) from being reused until :func:`stop_process` reaps it."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _wait_exited(proc: subprocess.Popen[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _exited(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop_process(proc: subprocess.Popen[Any], *, term_timeout: float = 5.0) -> int | None:
    """Stop a peer that runs in a session of its own, by its PID: SIGTERM, then SIGKILL
    to its process group (whose id is its PID) if it is still there after
    ``term_timeout``; kill what is left in the group; reap it. Returns its exit code."""
    if proc.returncode is not None:
        return proc.returncode  # reaped already
    pid = proc.pid
    if not _exited(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_exited(proc, term_timeout):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            _wait_exited(proc, term_timeout)
    # The leader is a zombie now (not reaped), so the group id is still ours: kill what
    # is left in it (Kamailio's workers if the main process died without them).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=term_timeout)
    return proc.returncode


def _tail(path: Path, lines: int = 200) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept)


class _Peer(Protocol):
    name: str

    def report_sections(self) -> list[tuple[str, str]]: ...


# Peers started during the current test: their logs go into the report if it fails.
_STARTED: list[_Peer] = []


def _track(peer: _Peer) -> None:
    _STARTED.append(peer)
    del _STARTED[:-50]  # bounded when used without the plugin hooks


# --------------------------------------------------------------------------------------
# SIP without pyim: a hand-written OPTIONS


@dataclass(frozen=True)
class SipResponse:
    status: int
    reason: str
    text: str


def _options_request(
    host: str, port: int, transport: Transport, local: tuple[str, int]
) -> tuple[bytes, str]:
    branch = "z9hG4bK-probe-" + secrets.token_hex(6)
    call_id = secrets.token_hex(8) + "@" + LOOPBACK
    proto = transport.upper()
    text = (
        f"OPTIONS sip:{host}:{port};transport={transport} SIP/2.0\r\n"
        f"Via: SIP/2.0/{proto} {local[0]}:{local[1]};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{LOOPBACK}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "User-Agent: pyim-tests-probe\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return text.encode(), branch


def _parse_response(data: bytes) -> SipResponse | None:
    text = data.decode("utf-8", errors="replace")
    first, _, _ = text.partition("\r\n")
    parts = first.split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    return SipResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", text)


def sip_options(
    host: str, port: int, transport: Transport = "udp", timeout: float = 1.0
) -> SipResponse | None:
    """Send one OPTIONS to ``host:port`` and return the first final response, or None
    (no answer within ``timeout``, connection refused...)."""
    deadline = time.monotonic() + timeout
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            request, branch = _options_request(host, port, "udp", sock.getsockname())
            sock.sendto(request, (host, port))
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(65535)
                except (TimeoutError, ConnectionRefusedError):
                    return None
                response = _parse_response(data)
                if response and branch in response.text and response.status >= 200:
                    return response
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            request, branch = _options_request(host, port, "tcp", sock.getsockname())
            sock.sendall(request)
            buffer = b""
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                chunk = sock.recv(65535)
                if not chunk:
                    return None
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    response = _parse_response(head + b"\r\n\r\n")
                    if response and branch in response.text and response.status >= 200:
                        return response
    except (TimeoutError, OSError):
        return None
    return None


# --------------------------------------------------------------------------------------
# Kamailio


def read_users(path: Path = USERS_FILE) -> dict[str, str]:
    """user -> password from a db_text credential table (deploy/kamailio/users.txt)."""
    users: dict[str, str] = {}
    lines = path.read_text().splitlines()
    for line in lines[1:]:  # the first line declares the columns
        if line.strip():
            user, _, password = line.partition(":")
            users[user] = password.replace("\\:", ":")
    return users


def write_users(path: Path, users: Mapping[str, str]) -> None:
    rows = ["username(str) password(str)"]
    rows += [f"{user}:{password.replace(':', chr(92) + ':')}" for user, password in users.items()]
    path.write_text("\n".join(rows) + "\n")


class KamailioError(RuntimeError):
    pass


class PeerProcess:
    """What every peer program of the tests shares: stopped by its PID (idempotent),
    usable as a context manager, its log readable. Subclasses set ``proc``,
    ``returncode`` and ``log_path`` and define ``start``."""

    proc: subprocess.Popen[Any] | None
    returncode: int | None
    log_path: Path
    term_timeout: float = 5.0

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> int | None:
        if self.proc is not None and self.returncode is None:
            self.returncode = stop_process(self.proc, term_timeout=self.term_timeout)
        return self.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def is_running(self) -> bool:
        return self.proc is not None and self.returncode is None and not _exited(self.proc)

    def _spawn(self, command: list[str], cwd: Path) -> subprocess.Popen[Any]:
        """Start ``command`` in a session of its own (its PID is its process group's),
        its output appended to the log after a line naming it."""
        self.returncode = None
        with self.log_path.open("ab") as log:
            log.write(f"### {' '.join(command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        return self.proc

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def jsonrpc(host: str, port: int, method: str, params: Sequence[Any], timeout: float) -> Any:
    """One JSON-RPC 2.0 call over a Kamailio UDP control socket: the whole reply."""
    request = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(timeout)
        sock.sendto(json.dumps(request).encode(), (host, port))
        return json.loads(sock.recv(65535))


class Kamailio(PeerProcess):
    """deploy/kamailio/proxy-registrar.cfg running in the foreground on 127.0.0.1.

    Everything lives in ``workdir`` (a per-test folder): a copy of the config, the
    credential table (deploy/kamailio/users.txt plus ``extra_users``), the run
    directory (PID file; -Y, -w) and ``kamailio.log`` (its stderr). The SIP port (UDP
    and TCP) and the JSON-RPC port (UDP) are picked free unless given. Started, it has
    answered an OPTIONS over UDP and over TCP.
    """

    name = "kamailio"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        shm_mb: int = 512,
        pkg_mb: int = 32,
        extra_users: Mapping[str, str] | None = None,
        defines: Mapping[str, str | None] | None = None,
        debug: bool = True,
        startup_timeout: float = 15.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.host = LOOPBACK
        self._fixed_port = port
        self.port = port or 0
        self.rpc_port = 0
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.users = read_users() | dict(extra_users or {})
        self.defines = dict(defines or {})
        self.debug = debug
        self.startup_timeout = startup_timeout
        self.cfg_path = self.workdir / "proxy-registrar.cfg"
        self.db_dir = self.workdir / "db"
        self.run_dir = self.workdir / "run"
        self.log_path = self.workdir / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- lifecycle

    @property
    def address(self) -> str:
        """host:port, as sipp and SIP URIs want it."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        cmd = [
            # SIGTERM: Kamailio's main process then stops its workers (SIGKILL would
            # leave them running)
            *deathsig_prefix("TERM"),
            kamailio_binary(),
            "-DD",  # no daemon, no fork of the main process
            "-E",  # log to stderr
            "-f", str(self.cfg_path),
            "-m", str(self.shm_mb),
            "-M", str(self.pkg_mb),
            "-Y", str(self.run_dir),
            "-P", str(self.run_dir / "kamailio.pid"),
            "-w", str(self.run_dir),
            "-A", f"LISTEN_IP={self.host}",
            "-A", f"SIP_PORT={self.port}",
            "-A", f'USERS_DB_URL="text://{self.db_dir}"',
            "-A", f'RPC_SOCKET="udp:{self.host}:{self.rpc_port}"',
        ]  # fmt: skip
        if self.debug:
            cmd += ["-A", "WITH_DEBUG"]
        for name, value in self.defines.items():
            cmd += ["-A", name if value is None else f"{name}={value}"]
        return cmd

    def start(self) -> Kamailio:
        kamailio_binary()  # fail early, with the install hint
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_dir.mkdir(exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        shutil.copyfile(KAMAILIO_CFG, self.cfg_path)
        write_users(self.db_dir / "users.txt", self.users)
        _track(self)
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self.port = self._fixed_port or free_port("both")
            self.rpc_port = free_port("udp")
            if self._launch():
                return self
            if attempt + 1 < attempts and "Address already in use" in self.log_text():
                continue  # lost a race for the port: try others
            break
        raise KamailioError(
            f"kamailio did not come up on {self.address} within {self.startup_timeout} s "
            f"(exit code {self.returncode}); log {self.log_path}:\n{_tail(self.log_path, 60)}"
        )

    def _launch(self) -> bool:
        self._spawn(self.command(), self.run_dir)
        deadline = time.monotonic() + self.startup_timeout
        ready: set[str] = set()
        while time.monotonic() < deadline:
            if _exited(self.proc):
                self.returncode = stop_process(self.proc)
                return False
            for transport in ("udp", "tcp"):
                if transport not in ready:
                    answer = sip_options(self.host, self.port, transport, timeout=0.3)
                    if answer is not None and answer.status == 200:
                        ready.add(transport)
            if ready == {"udp", "tcp"}:
                return True
            time.sleep(0.05)
        self.returncode = stop_process(self.proc)
        return False

    # -- observation

    def report_sections(self) -> list[tuple[str, str]]:
        return [(f"kamailio {self.address} log (tail)", _tail(self.log_path))]

    def rpc(self, method: str, *params: Any, timeout: float = 2.0) -> Any:
        """One JSON-RPC 2.0 call over the UDP control socket; returns ``result``."""
        reply = jsonrpc(self.host, self.rpc_port, method, params, timeout)
        if "error" in reply:
            raise KamailioError(f"rpc {method}{list(params)}: {reply['error']}")
        return reply.get("result")

    def contacts(self, aor: str) -> list[str]:
        """The contact URIs registered for a user (the AOR is the user part)."""
        try:
            result = self.rpc("ul.lookup", "location", aor)
        except KamailioError:
            return []  # "AOR not found"
        return [c["Contact"]["Address"] for c in result.get("Contacts", [])]

    def wait_contacts(self, aor: str, count: int = 1, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.contacts(aor)
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)


# --------------------------------------------------------------------------------------
# sipp

# Arguments some scenarios need whoever runs them (see each file's header comment).
SCENARIO_ARGS: dict[str, list[str]] = {"uac_invite_retrans.xml": ["-nr"]}
# Defaults of the scenario keys ([msrp_port]: where the sipp UAC's a=path points; a
# test that lets the answerer connect there overrides it with a port it listens on).
SCENARIO_KEYS: dict[str, dict[str, str]] = {
    "uac_register_auth.xml": {"expires": "300"},
    "uac_msrp_invite.xml": {"msrp_port": "2855"},
    "uac_invite_retrans.xml": {"msrp_port": "2855"},
    "uac_cancel.xml": {"msrp_port": "2855"},
    "uas_msrp.xml": {"msrp_port": "2856"},
}


@dataclass
class SippResult:
    """What a finished sipp run left: exit code, final statistics, its traces."""

    scenario: str
    command: list[str]
    returncode: int | None  # None: killed after its time limit
    stats: dict[str, str] = field(default_factory=dict)
    stdout: str = ""
    errors: str = ""
    messages_path: Path | None = None

    @property
    def ok(self) -> bool:
        """Exit code 0: every call successful (and at least one call was made)."""
        return self.returncode == 0

    @property
    def successful(self) -> int | None:
        return _int_or_none(self.stats.get("SuccessfulCall(C)"))

    @property
    def failed(self) -> int | None:
        return _int_or_none(self.stats.get("FailedCall(C)"))

    def messages(self) -> str:
        if self.messages_path is None or not self.messages_path.exists():
            return ""
        return self.messages_path.read_text(errors="replace")

    def summary(self) -> str:
        meaning = {
            0: "all calls successful",
            1: "at least one call failed",
            97: "exit on internal command (global timeout?)",
            99: "normal exit without calls processed",
            255: "fatal error",
            254: "fatal error binding a socket",
            None: "killed after its time limit",
        }.get(self.returncode, "?")
        return (
            f"sipp {self.scenario}: exit {self.returncode} ({meaning}), "
            f"successful={self.successful} failed={self.failed}\n"
            f"command: {' '.join(self.command)}\n"
            f"errors:\n{self.errors[-4000:]}\n"
            f"screen (tail):\n{self.stdout[-3000:]}"
        )


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_stats(path: Path) -> dict[str, str]:
    """The last row of a sipp -trace_stat CSV (';'-separated), by column name."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    rows = [row for row in rows if row]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


class Sipp:
    """One sipp process with a scenario of tests/sipp/ (or a path, or ``-sn NAME``).

    It listens on 127.0.0.1:``port`` (picked free; UDP or TCP as ``transport``), sends
    to ``target`` (host:port) for UAC scenarios, runs ``calls`` calls (-m) and stops by
    itself after ``timeout`` s (-timeout, counted as an error); the process is killed
    by its PID ``timeout`` + 10 s after the start at the latest. Traces go to
    ``workdir``: <name>.errors.log, <name>.messages.log, <name>.stat.csv, <name>.out.
    """

    name = "sipp"

    def __init__(
        self,
        scenario: str | Path,
        workdir: Path,
        *,
        target: str | None = None,
        service: str | None = None,
        transport: Transport = "udp",
        calls: int = 1,
        timeout: float = 15.0,
        port: int | None = None,
        auth: tuple[str, str] | None = None,
        keys: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        label: str | None = None,
        trace_msg: bool = True,
    ) -> None:
        scenario_str = str(scenario)
        self.builtin = scenario_str.startswith("-sn ")
        if self.builtin:
            self.scenario_path: Path | None = None
            self.scenario = scenario_str
            base = "builtin-" + scenario_str[4:].strip()
        else:
            path = Path(scenario)
            if not path.is_absolute() and not path.exists():
                path = SIPP_DIR / path
            if not path.exists():
                raise FileNotFoundError(f"sipp scenario {path} not found")
            self.scenario_path = path
            self.scenario = path.name
            base = path.stem
        self.label = label or base
        self.workdir = Path(workdir)
        self.target = target
        self.service = service
        self.transport = transport
        self.calls = calls
        self.timeout = timeout
        self._fixed_port = port is not None
        self.port = port or free_port("both")
        self.auth = auth
        self.keys = dict(SCENARIO_KEYS.get(self.scenario, {}))
        self._contact_is_own_port = self.scenario == "uac_register_auth.xml" and not (
            keys and "contact_port" in keys
        )
        self.keys.update(keys or {})
        self.extra_args = [*SCENARIO_ARGS.get(self.scenario, []), *extra_args]
        if transport == "tcp" and self.label_is_uas(base):
            # The UAC closing its connection once its call is over is no failure of the
            # UAS call that lingers for retransmissions (sipp counts it as one otherwise).
            self.extra_args += ["-reconnect_close", "false"]
        self.trace_msg = trace_msg
        self.proc: subprocess.Popen[bytes] | None = None
        self.result: SippResult | None = None
        self._started_at = 0.0
        stem = self.workdir / self.label
        self.errors_path = stem.with_name(stem.name + ".errors.log")
        self.messages_path = stem.with_name(stem.name + ".messages.log")
        self.stat_path = stem.with_name(stem.name + ".stat.csv")
        self.out_path = stem.with_name(stem.name + ".out")

    @staticmethod
    def label_is_uas(base: str) -> bool:
        return base.startswith(("uas", "builtin-uas"))

    def command(self) -> list[str]:
        cmd = [*deathsig_prefix("KILL"), sipp_binary()]
        if self.builtin:
            cmd += ["-sn", self.scenario[4:].strip()]
        else:
            cmd += ["-sf", str(self.scenario_path)]
        cmd += [
            "-i", LOOPBACK,
            "-p", str(self.port),
            "-mp", str(free_udp_pair()),
            "-cp", str(free_port("udp")),
            "-t", "u1" if self.transport == "udp" else "t1",
            "-m", str(self.calls),
            "-timeout", f"{self.timeout}s",
            "-timeout_error",
            "-nostdin",
            "-trace_err", "-error_file", str(self.errors_path),
            "-trace_stat", "-stf", str(self.stat_path), "-fd", "1",
        ]  # fmt: skip
        if self.trace_msg:
            cmd += ["-trace_msg", "-message_file", str(self.messages_path)]
        if self.service is not None:
            cmd += ["-s", self.service]
        if self.auth is not None:
            cmd += ["-au", self.auth[0], "-ap", self.auth[1]]
        keys = dict(self.keys)
        if self._contact_is_own_port:
            keys["contact_port"] = str(self.port)
        for key, value in keys.items():
            cmd += ["-key", key, value]
        cmd += list(self.extra_args)
        if self.target is not None:
            cmd.append(self.target)
        return cmd

    # sipp's exit code for "cannot bind a socket" (-2): the main, media or control port
    # was taken between free_port() and sipp's bind (a parallel test run); new ports
    # are picked and sipp is started again, at most this many times in all.
    BIND_FAILED = 254
    START_ATTEMPTS = 3

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._command = self.command()
        self.result = None
        with self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._started_at = time.monotonic()
        return self.proc

    def _may_retry(self, returncode: int | None, attempt: int) -> bool:
        if returncode != self.BIND_FAILED or attempt + 1 >= self.START_ATTEMPTS:
            return False
        if self._fixed_port and "Unable to bind main socket" in _read(self.out_path):
            return False  # the port the caller asked for is taken: nothing to retry
        if not self._fixed_port:
            self.port = free_port("both")
        return True

    def start(self, *, wait_listening: bool = True) -> Sipp:
        """Start sipp in the background; by default wait until it has bound its port."""
        _track(self)
        kind: Literal["udp", "tcp"] = "udp" if self.transport == "udp" else "tcp"
        for attempt in range(self.START_ATTEMPTS):
            proc = self._spawn()
            if not wait_listening or wait_port_bound(self.port, kind, 5.0, proc):
                return self
            if not self._may_retry(stop_process(proc, term_timeout=2.0), attempt):
                break
        raise RuntimeError(
            f"sipp {self.scenario} did not bind {LOOPBACK}:{self.port}:\n{_tail(self.out_path, 40)}"
        )

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to finish (bounded) and collect the result."""
        if self.result is not None:
            return self.result
        if self.proc is None:
            raise RuntimeError("sipp was not started")
        limit = self.timeout + 10.0 if timeout is None else timeout
        remaining = max(0.0, self._started_at + limit - time.monotonic())
        returncode: int | None
        if _wait_exited(self.proc, remaining):
            returncode = stop_process(self.proc)  # reaps it
        else:
            stop_process(self.proc, term_timeout=2.0)
            returncode = None
        self.result = SippResult(
            scenario=self.scenario,
            command=self._command,
            returncode=returncode,
            stats=parse_stats(self.stat_path),
            stdout=_read(self.out_path),
            errors=_read(self.errors_path),
            messages_path=self.messages_path if self.trace_msg else None,
        )
        return self.result

    def run(self) -> SippResult:
        """Start, wait for the end, return the result (a UAC, typically)."""
        for attempt in range(self.START_ATTEMPTS):
            self.start(wait_listening=False)
            result = self.wait()
            if not self._may_retry(result.returncode, attempt):
                break
        return result

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, term_timeout=2.0)

    def __enter__(self) -> Sipp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def report_sections(self) -> list[tuple[str, str]]:
        sections = [(f"sipp {self.label} errors", _read(self.errors_path)[-6000:])]
        if self.trace_msg:
            sections.append((f"sipp {self.label} messages (tail)", _tail(self.messages_path)))
        sections.append((f"sipp {self.label} screen (tail)", _tail(self.out_path, 60)))
        return [(title, text) for title, text in sections if text.strip()]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class SippFactory:
    """Makes sipp runs in one test's folder and stops whatever is left at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.instances: list[Sipp] = []
        self._labels: dict[str, int] = {}

    def make(self, scenario: str | Path, **kwargs: Any) -> Sipp:
        base = kwargs.pop("label", None) or Path(str(scenario).replace("-sn ", "builtin-")).stem
        count = self._labels.get(base, 0)
        self._labels[base] = count + 1
        label = base if count == 0 else f"{base}-{count + 1}"
        sipp = Sipp(scenario, self.workdir, label=label, **kwargs)
        self.instances.append(sipp)
        return sipp

    def start(self, scenario: str | Path, **kwargs: Any) -> Sipp:
        """A sipp in the background (a UAS, typically), once it listens."""
        return self.make(scenario, **kwargs).start()

    def run(self, scenario: str | Path, **kwargs: Any) -> SippResult:
        """A sipp run to its end (a UAC, typically)."""
        return self.make(scenario, **kwargs).run()

    def register(
        self,
        user: str,
        password: str,
        registrar: Kamailio,
        *,
        contact_port: int | None = None,
        expires: int = 300,
        transport: Transport = "udp",
    ) -> SippResult:
        """REGISTER ``user`` at ``registrar`` with digest auth (uac_register_auth.xml);
        the contact is 127.0.0.1:``contact_port`` (another UA's port, e.g. a sipp UAS)."""
        keys = {"expires": str(expires)}
        if contact_port is not None:
            keys["contact_port"] = str(contact_port)
        return self.run(
            "uac_register_auth.xml",
            target=registrar.address,
            service=user,
            auth=(user, password),
            keys=keys,
            transport=transport,
            timeout=10.0,
        )

    def stop_all(self) -> None:
        for sipp in self.instances:
            sipp.stop()


# --------------------------------------------------------------------------------------
# pytest plugin: fixtures and the failure report


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    """A started Kamailio proxy/registrar of its own (deploy/kamailio), 127.0.0.1."""
    with Kamailio(tmp_path / "kamailio") as proxy:
        yield proxy


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippFactory]:
    """A :class:`SippFactory` writing to tmp_path/sipp; leftover processes are stopped."""
    factory = SippFactory(tmp_path / "sipp")
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for peer in _STARTED:
            for title, text in peer.report_sections():
                report.sections.append((title, text))
    if call.when == "teardown":
        _STARTED.clear()
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _STARTED.clear()
