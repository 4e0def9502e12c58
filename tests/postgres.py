"""A throw-away PostgreSQL server for the pyim.store tests (Debian's ``postgresql``).

One cluster per :class:`Postgres`: ``initdb`` into a fresh folder, then the postmaster
in the foreground, on 127.0.0.1 and a port picked free, its unix socket in the same
folder, ``fsync=on``; stopped by its PID (SIGINT = fast shutdown, then SIGKILL of its
process group). Load it as a plugin for the fixtures::

    pytest_plugins = ["postgres"]

    async def test_store(postgres_url: str) -> None:      # a fresh database per test
        store = open_store(postgres_url)

    def test_restart(postgres: Postgres) -> None:         # the session's server
        postgres.stop(); postgres.start()

Or without pytest's fixtures: ``with Postgres(tmp_path) as pg: pg.create_database("x")``.

PostgreSQL refuses to run as root. As root (CI, this machine), the cluster lives in a
``/tmp/pyim-pg-*`` folder owned by the ``postgres`` OS user (pytest's tmp_path is not
reachable by that user) and every program runs as that user through ``setpriv``; the
folder is removed by :meth:`Postgres.close`. As another user, it lives in ``workdir``.
The postmaster runs in the foreground of a session of its own (not daemonised by
``pg_ctl``) so that it gets SIGKILL when the test process dies (``--pdeathsig``): a test
run killed hard leaves no server behind.

A missing binary fails the test with what to install (``apt-get install postgresql``;
scripts/test.sh installs it).

(PYTEST_DONT_REWRITE: no asserts here.)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import psycopg
import pytest
from psycopg import sql

from peers import LOOPBACK, _exited, _tail, _track, free_port, stop_process

# Loading this plugin loads peers.py's as well (its report hooks).
pytest_plugins = ["peers"]

POSTGRES_MISSING = (
    "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): "
    "apt-get install postgresql (scripts/test.sh installs it)"
)
OS_USER = "postgres"
SUPERUSER = "postgres"


class PostgresError(RuntimeError):
    pass


def postgres_bindir() -> Path:
    """Where initdb and postgres are: $PYIM_PG_BINDIR, else the newest Debian version."""
    override = os.environ.get("PYIM_PG_BINDIR")
    candidates = [override] if override else glob.glob("/usr/lib/postgresql/*/bin")

    def version(path: str) -> float:
        with contextlib.suppress(ValueError):
            return float(Path(path).parent.name)
        return 0.0

    for bindir in sorted(candidates, key=version, reverse=True):
        if (Path(bindir) / "initdb").is_file() and (Path(bindir) / "postgres").is_file():
            return Path(bindir)
    pytest.fail(POSTGRES_MISSING, pytrace=False)


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_as_prefix(deathsig: bool) -> list[str]:
    """The prefix that runs a program as the postgres OS user (as root), with the
    parent-death signal when asked for."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        if _as_root():
            raise PostgresError("setpriv (util-linux) is needed to run PostgreSQL as root")
        return []
    prefix = [setpriv]
    if _as_root():
        prefix += [f"--reuid={OS_USER}", f"--regid={OS_USER}", "--init-groups"]
    if deathsig:
        prefix += ["--pdeathsig", "KILL"]
    return [*prefix, "--"] if len(prefix) > 1 else []


class Postgres:
    """A PostgreSQL cluster of its own, listening on 127.0.0.1:``port`` and a unix
    socket in :attr:`socket_dir`; superuser ``postgres`` with trust authentication."""

    name = "postgres"

    def __init__(self, workdir: Path, *, port: int | None = None, startup_timeout: float = 30.0):
        self.workdir = Path(workdir)
        self.host = LOOPBACK
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.root: Path | None = None  # cluster folder (data, socket, log)
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._databases = 0

    # -- paths, addresses

    @property
    def data_dir(self) -> Path:
        return self._root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root()

    @property
    def log_path(self) -> Path:
        return self._root() / "postgres.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _root(self) -> Path:
        if self.root is None:
            raise PostgresError("the cluster is not initialised (call start())")
        return self.root

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    # -- lifecycle

    def _init(self) -> None:
        bindir = postgres_bindir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if _as_root():
            root = Path(tempfile.mkdtemp(prefix="pyim-pg-"))
            entry = pwd.getpwnam(OS_USER)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        else:
            root = self.workdir / "cluster"
            root.mkdir()
        self.root = root
        initdb = [
            *_run_as_prefix(deathsig=False),
            str(bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",  # no fsync of the fresh files: the folder is thrown away anyway
        ]
        done = subprocess.run(
            initdb, capture_output=True, text=True, timeout=120, cwd=root, check=False
        )
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def command(self) -> list[str]:
        return [
            *_run_as_prefix(deathsig=True),
            str(postgres_bindir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "fsync=on",
            "-c",
            "max_connections=100",
        ]

    def start(self) -> Postgres:
        """Start the server (initdb first if needed); again after :meth:`stop`, on the
        same port and with the same data."""
        if self.root is None:
            self._init()
        _track(self)
        fixed = self.port != 0
        for _attempt in range(1 if fixed else 3):
            if not fixed:
                self.port = free_port("tcp")
            if self._launch():
                return self
        raise PostgresError(
            f"postgres did not come up on {self.host}:{self.port} within "
            f"{self.startup_timeout} s (exit code {self.returncode}); log:\n"
            f"{_tail(self.log_path, 60)}"
        )

    def _launch(self) -> bool:
        self.returncode = None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._root(),
                start_new_session=True,
                env={**os.environ, "LC_ALL": "C"},
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if _exited(self.proc):
                self.returncode = stop_process(self.proc, term_timeout=2.0)
                return False
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self, *, timeout: float = 10.0) -> int | None:
        """Fast shutdown (SIGINT) by PID; SIGKILL of its process group after
        ``timeout``."""
        proc = self.proc
        if proc is None or self.returncode is not None:
            return self.returncode
        if not _exited(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while not _exited(proc) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.returncode = stop_process(proc, term_timeout=2.0)
        return self.returncode

    def kill(self) -> int | None:
        """SIGKILL the postmaster and its backends (its process group), by its PID."""
        proc = self.proc
        if proc is None or self.returncode is not None:
            return self.returncode
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.returncode = stop_process(proc, term_timeout=5.0)
        return self.returncode

    def close(self) -> None:
        """Stop the server and remove the cluster folder."""
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- databases

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a fresh name by default) and return its URL."""
        if name is None:
            self._databases += 1
            name = f"pyim_test_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # -- observation

    def is_running(self) -> bool:
        return self.proc is not None and self.returncode is None and not _exited(self.proc)

    def report_sections(self) -> list[tuple[str, str]]:
        if self.root is None:
            return []
        return [(f"postgres {self.host}:{self.port} log (tail)", _tail(self.log_path, 60))]


# --------------------------------------------------------------------------------------
# pytest fixtures


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A started PostgreSQL server shared by the session (127.0.0.1, fsync=on).

    A test may stop and start it again; it is started again if a test left it down."""
    with Postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def postgres_url(postgres: Postgres) -> Iterator[str]:
    """The URL of a fresh database on the session's server, dropped afterwards."""
    if not postgres.is_running():
        postgres.start()
    url = postgres.create_database()
    yield url
    if postgres.is_running():
        postgres.drop_database(url.rsplit("/", 1)[1])
