"""Kamailio's ``msrp`` module as an MSRP relay (RFC 4976) for the interop tests.

deploy/kamailio/msrp-relay.cfg runs in the foreground on 127.0.0.1, in a folder of its
own, on ports picked free; it is stopped by its PID. Load it as a plugin for the
fixtures (the relay's log goes into the report of a failed test through the ``peers``
plugin's hook, which this module registers too)::

    pytest_plugins = ["kamailio_msrp"]

    def test_auth(kamailio_msrp: KamailioMsrpRelay) -> None:
        sock = socket.create_connection((kamailio_msrp.host, kamailio_msrp.port))
        ...  # AUTH with To-Path: kamailio_msrp.uri

Or without pytest's fixtures: ``with KamailioMsrpRelay(tmp_path, tls=True) as relay:``.

``tls=True`` makes a throw-away self-signed certificate (``openssl``; CN and
subjectAltName 127.0.0.1) in the work folder and adds a TLS listener; then ``uri`` is the
``msrps://`` one and :meth:`KamailioMsrpRelay.client_ssl_context` trusts that
certificate. The plain TCP listener is always there too (``tcp_uri``).

A missing kamailio (or openssl, for TLS) fails the test with what to install.

(PYTEST_DONT_REWRITE: no asserts here.)
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

# peers.py's report hooks put the logs of the peers a test started (_track) into the
# report when the test fails.
from peers import (
    KAMAILIO_DIR,
    LOOPBACK,
    PeerProcess,
    _exited,
    _tail,
    _track,
    deathsig_prefix,
    find_binary,
    free_port,
    jsonrpc,
    kamailio_binary,
    process_has_bound,
    read_users,
    stop_process,
    write_users,
)

# Loading this plugin loads peers.py's as well (its report hooks, its fixtures).
pytest_plugins = ["peers"]

MSRP_RELAY_CFG = KAMAILIO_DIR / "msrp-relay.cfg"
REALM = "pyim.test"
OPENSSL_MISSING = "openssl not found: apt-get install openssl (scripts/test.sh installs it)"


class KamailioMsrpError(RuntimeError):
    pass


def make_self_signed_cert(directory: Path, name: str = "relay") -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 (CN and subjectAltName IP),
    valid one day: (certificate path, key path), PEM, in ``directory``."""
    openssl = find_binary("openssl", OPENSSL_MISSING)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    command = [
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", f"/CN={LOOPBACK}",
        "-addext", f"subjectAltName=IP:{LOOPBACK}",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0 or not cert.exists() or not key.exists():
        raise KamailioMsrpError(
            f"openssl could not make a certificate (exit {result.returncode}):\n"
            + result.stderr.decode(errors="replace")[-2000:]
        )
    return cert, key


def _group_pids(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (Kamailio's main process and workers)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            # after the ")" closing the command name: state ppid pgrp ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def _wait_group_bound(proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """Wait until a process of ``proc``'s group listens on 127.0.0.1:port over TCP.

    Kamailio's main process hands its TCP/TLS listeners to the tcp_main worker and
    closes them, so :func:`peers.wait_port_bound` (which looks at one PID) misses them.
    """
    while time.monotonic() < deadline:
        if _exited(proc):
            return False
        if any(process_has_bound(pid, port, "tcp") for pid in _group_pids(proc.pid)):
            return True
        time.sleep(0.05)
    return False


class KamailioMsrpRelay(PeerProcess):
    """deploy/kamailio/msrp-relay.cfg running in the foreground on 127.0.0.1.

    Everything lives in ``workdir``: a copy of the config, the credential table
    (deploy/kamailio/users.txt plus ``extra_users``), the run directory (PID file; -Y,
    -w), ``kamailio.log`` (its stderr) and, with ``tls``, the certificate. Started, it
    has answered an unauthenticated AUTH with 401 on every listener.
    """

    name = "kamailio-msrp"

    def __init__(
        self,
        workdir: Path,
        *,
        tls: bool = False,
        shm_mb: int = 512,
        pkg_mb: int = 32,
        extra_users: Mapping[str, str] | None = None,
        defines: Mapping[str, str | None] | None = None,
        debug: bool = True,
        startup_timeout: float = 15.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.host = LOOPBACK
        self.tcp_port = 0
        self.tls_port = 0
        self.rpc_port = 0
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.users: dict[str, str] = read_users() | dict(extra_users or {})
        self.defines = dict(defines or {})
        self.debug = debug
        self.startup_timeout = startup_timeout
        self.cfg_path = self.workdir / "msrp-relay.cfg"
        self.db_dir = self.workdir / "db"
        self.run_dir = self.workdir / "run"
        self.log_path = self.workdir / "kamailio.log"
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- addresses

    @property
    def realm(self) -> str:
        return REALM

    @property
    def port(self) -> int:
        """The port of :attr:`uri`: the TLS one with ``tls``, else the TCP one."""
        return self.tls_port if self.tls else self.tcp_port

    @property
    def tcp_uri(self) -> str:
        return f"msrp://{self.host}:{self.tcp_port};tcp"

    @property
    def tls_uri(self) -> str:
        if not self.tls:
            raise KamailioMsrpError("this relay has no TLS listener (tls=False)")
        return f"msrps://{self.host}:{self.tls_port};tcp"

    @property
    def uri(self) -> str:
        """The relay's URI, as a client puts it in the To-Path of its AUTH."""
        return self.tls_uri if self.tls else self.tcp_uri

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts (only) this relay's certificate."""
        if self.cert_path is None:
            raise KamailioMsrpError("this relay has no certificate (tls=False)")
        context = ssl.create_default_context(cafile=str(self.cert_path))
        context.check_hostname = True
        return context

    def connect(self, *, tls: bool | None = None, timeout: float = 5.0) -> socket.socket:
        """A client connection to the relay (TLS by default when the relay has it)."""
        use_tls = self.tls if tls is None else tls
        port = self.tls_port if use_tls else self.tcp_port
        sock = socket.create_connection((self.host, port), timeout=timeout)
        if not use_tls:
            return sock
        try:
            return self.client_ssl_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    # -- lifecycle

    def command(self) -> list[str]:
        cmd = [
            # SIGTERM: the main process then stops its workers
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
            "-A", f"MSRP_PORT={self.tcp_port}",
            "-A", f'REALM="{REALM}"',
            "-A", f'USERS_DB_URL="text://{self.db_dir}"',
            "-A", f'RPC_SOCKET="udp:{self.host}:{self.rpc_port}"',
        ]  # fmt: skip
        if self.tls:
            cmd += [
                "-A", "WITH_TLS",
                "-A", f"MSRPS_PORT={self.tls_port}",
                "-A", f'TLS_CERT="{self.cert_path}"',
                "-A", f'TLS_KEY="{self.key_path}"',
            ]  # fmt: skip
        if self.debug:
            cmd += ["-A", "WITH_DEBUG"]
        for name, value in self.defines.items():
            cmd += ["-A", name if value is None else f"{name}={value}"]
        return cmd

    def start(self) -> KamailioMsrpRelay:
        kamailio_binary()  # fail early, with the install hint
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_dir.mkdir(exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        shutil.copyfile(MSRP_RELAY_CFG, self.cfg_path)
        write_users(self.db_dir / "users.txt", self.users)
        if self.tls and self.cert_path is None:
            self.cert_path, self.key_path = make_self_signed_cert(self.workdir / "tls")
        _track(self)
        for attempt in range(3):
            self.tcp_port = free_port("tcp")
            self.tls_port = free_port("tcp") if self.tls else 0
            self.rpc_port = free_port("udp")
            if self._launch():
                return self
            if attempt < 2 and "Address already in use" in self.log_text():
                continue  # lost a race for a port: try others
            break
        raise KamailioMsrpError(
            f"kamailio msrp relay did not come up on {self.host}:{self.tcp_port} "
            f"(tls {self.tls_port}) within {self.startup_timeout} s (exit code "
            f"{self.returncode}); log {self.log_path}:\n{_tail(self.log_path, 60)}"
        )

    def _launch(self) -> bool:
        self._spawn(self.command(), self.run_dir)
        deadline = time.monotonic() + self.startup_timeout
        ports = [(self.tcp_port, False)] + ([(self.tls_port, True)] if self.tls else [])
        for port, _ in ports:
            if not _wait_group_bound(self.proc, port, deadline):
                self.returncode = stop_process(self.proc)
                return False
        # bound is not yet serving: wait for a 401 to an AUTH on every listener
        pending = list(ports)
        while pending and time.monotonic() < deadline:
            if _exited(self.proc):
                self.returncode = stop_process(self.proc)
                return False
            port, use_tls = pending[0]
            if self._probe(use_tls, timeout=min(1.0, max(0.1, deadline - time.monotonic()))):
                pending.pop(0)
            else:
                time.sleep(0.05)
        if pending:
            self.returncode = stop_process(self.proc)
            return False
        return True

    def _probe(self, use_tls: bool, timeout: float) -> bool:
        """One unauthenticated AUTH; True when a 401 comes back within ``timeout``."""
        uri = self.tls_uri if use_tls else self.tcp_uri
        scheme = "msrps" if use_tls else "msrp"
        frame = (
            "MSRP probe1 AUTH\r\n"
            f"To-Path: {uri}\r\n"
            f"From-Path: {scheme}://{self.host}:9/probe;tcp\r\n"
            "Message-ID: probe\r\n"
            "-------probe1$\r\n"
        ).encode()
        deadline = time.monotonic() + timeout
        try:
            with contextlib.closing(self.connect(tls=use_tls, timeout=timeout)) as sock:
                sock.sendall(frame)
                data = b""
                while b"-------probe1" not in data and (left := deadline - time.monotonic()) > 0:
                    sock.settimeout(left)
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except (OSError, ssl.SSLError):
            return False
        return data.startswith(b"MSRP probe1 401")

    # -- observation

    def report_sections(self) -> list[tuple[str, str]]:
        return [(f"kamailio msrp relay {self.host}:{self.port} log (tail)", _tail(self.log_path))]

    def rpc(self, method: str, *params: Any, timeout: float = 2.0) -> Any:
        """One JSON-RPC 2.0 call over the UDP control socket (e.g. ``msrp.cmaplist``)."""
        reply = jsonrpc(self.host, self.rpc_port, method, params, timeout)
        if "error" in reply:
            raise KamailioMsrpError(f"rpc {method}{list(params)}: {reply['error']}")
        return reply.get("result")


# --------------------------------------------------------------------------------------
# pytest fixtures


@pytest.fixture
def kamailio_msrp(tmp_path: Path) -> Iterator[KamailioMsrpRelay]:
    """A started Kamailio MSRP relay over TCP (msrp://127.0.0.1:port;tcp)."""
    with KamailioMsrpRelay(tmp_path / "kamailio-msrp") as relay:
        yield relay


@pytest.fixture
def kamailio_msrp_tls(tmp_path: Path) -> Iterator[KamailioMsrpRelay]:
    """A started Kamailio MSRP relay with a TLS listener (``uri`` is msrps://) and a
    TCP one; ``client_ssl_context()`` trusts its throw-away certificate."""
    with KamailioMsrpRelay(tmp_path / "kamailio-msrp-tls", tls=True) as relay:
        yield relay
