"""``pyim server`` as a subprocess for the daemon, durability and hostile-input tests.

:class:`ServerProcess` writes a TOML config (free ports on 127.0.0.1, a SQLite store in
the test's folder unless given one, metrics on a free port), runs ``python -m pyim
server -c`` in a session of its own, waits for its ``pyim server ready:`` line and
stops it by its PID (SIGTERM, or SIGKILL for the crash tests). Its stdout and stderr
go to files, appended to the report of a failed test (through peers' hooks).

Users in the test process are pyim.sip stacks (:class:`server_harness.User`) pointed
at the subprocess's SIP address by :func:`make_user_at`.

(PYTEST_DONT_REWRITE: no asserts here.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from peers import LOOPBACK, REPO_ROOT, _exited, _tail, _track, free_port, stop_process
from server_harness import USERS, User, make_user_via

SRC = REPO_ROOT / "src"
READY = "pyim server ready:"


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(SRC), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pyim_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pyim", *args]


def toml_config(
    *,
    sip_port: int,
    msrp_port: int,
    metrics_port: int,
    store: str,
    limits: dict[str, float] | None = None,
    users: dict[str, str] | None = None,
    log_level: str = "info",
) -> str:
    lines = [
        "[server]",
        'domain = "127.0.0.1"',
        'host = "127.0.0.1"',
        f'store = "{store}"',
        f'log_level = "{log_level}"',
        "",
        "[sip]",
        f"udp = {sip_port}",
        f"tcp = {sip_port}",
        "",
        "[msrp]",
        f"port = {msrp_port}",
        "",
        "[metrics]",
        f"port = {metrics_port}",
        "",
        "[limits]",
        *(f"{key} = {value!r}" for key, value in (limits or {}).items()),
        "",
        "[users]",
        *(f'{name} = "{password}"' for name, password in (users or USERS).items()),
        "",
    ]
    return "\n".join(lines)


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """One ``pyim server`` subprocess; ports and store stay the same across restarts."""

    name = "pyim-server"

    def __init__(
        self,
        workdir: Path,
        *,
        store: str | None = None,
        limits: dict[str, float] | None = None,
        users: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sip_port = free_port("both")
        self.msrp_port = free_port("tcp")
        self.metrics_port = free_port("tcp")
        self.store = store or f"sqlite://{workdir / 'pyim.db'}"
        self.config_path = workdir / "server.toml"
        self.config_path.write_text(
            toml_config(
                sip_port=self.sip_port,
                msrp_port=self.msrp_port,
                metrics_port=self.metrics_port,
                store=self.store,
                limits=limits,
                users=users,
            )
        )
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.ready_line = ""
        _track(self)

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"server-{self.runs}.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"server-{self.runs}.err"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError("not started")
        return self.proc.pid

    def start(self) -> ServerProcess:
        """Start (or restart) the server and wait for its ready line (bounded)."""
        if self.proc is not None and not _exited(self.proc):
            raise ServerError("already running")
        self.runs += 1
        deadline = time.monotonic() + self.startup_timeout
        while True:  # the ports were free when picked; TIME_WAIT or a race may differ
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(
                    pyim_command("server", "-c", str(self.config_path)),
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    cwd=self.workdir,
                    env=server_env(),
                    start_new_session=True,
                )
            if self._wait_ready(deadline):
                return self
            code = stop_process(self.proc)
            if "Address already in use" in _tail(self.stderr_path) and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise ServerError(
                f"pyim server did not start (exit {code}): {_tail(self.stderr_path, 20)}"
            )

    def _wait_ready(self, deadline: float) -> bool:
        assert self.proc is not None
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                for line in self.stdout_path.read_text().splitlines():
                    if line.startswith(READY):
                        self.ready_line = line
                        return True
            if _exited(self.proc):
                return False
            time.sleep(0.02)
        return False

    def terminate(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (bounded) for the exit code; SIGKILL if it hangs."""
        if self.proc is None:
            return None
        return stop_process(self.proc, term_timeout=timeout)

    def kill(self) -> int | None:
        """SIGKILL, like a crash; reaped."""
        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        return stop_process(self.proc)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def running(self) -> bool:
        return self.proc is not None and not _exited(self.proc)

    def metrics(self, timeout: float = 5.0) -> str:
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bytes(response.read()).decode()

    def logs(self) -> str:
        return _tail(self.stderr_path)

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def report_sections(self) -> list[tuple[str, str]]:
        return [
            (f"pyim server stdout (run {self.runs})", _tail(self.stdout_path)),
            (f"pyim server stderr (run {self.runs})", _tail(self.stderr_path)),
        ]

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one series in Prometheus text (0 when it is not there)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return 0.0


async def make_user_at(name: str, port: int, transport: str = "udp") -> User:
    """A pyim.sip user whose registrar and proxy is the server at 127.0.0.1:port."""
    return await make_user_via(name, LOOPBACK, port, transport)
