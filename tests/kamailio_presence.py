"""Kamailio as a proxy/registrar WITH a presence server, for the pyim.ua tests.

deploy/kamailio/proxy-presence.cfg runs in the foreground on 127.0.0.1 (UDP and TCP on
one free port) in a folder of its own, and is stopped by its PID: a registrar with
digest auth (users of deploy/kamailio/users.txt), a relay of INVITE/MESSAGE/BYE... to
the registered contacts, and a presence server for ``Event: presence`` (PUBLISH,
SUBSCRIBE, NOTIFY; PUBLISH and SUBSCRIBE digest-authenticated with a 407). Load it as
a plugin for the fixture (the log goes into the report of a failed test through the
``peers`` plugin's hook, which this module registers too)::

    pytest_plugins = ["kamailio_presence"]

    def test_buddy(kamailio_presence: KamailioPresence) -> None:
        proxy = kamailio_presence.address            # "127.0.0.1:PORT"
        password = kamailio_presence.users["alice"]  # "alice-secret"
        ...

Or without pytest's fixtures: ``with KamailioPresence(tmp_path) as k: ...``.

The helper is :class:`peers.Kamailio` (same command line, start-up probe, ``rpc``,
``contacts``/``wait_contacts``) with the presence config and the db_text tables the
presence modules need, written to ``workdir/db`` next to users.txt. A missing kamailio,
or missing presence modules (Debian package ``kamailio-presence-modules``), fails the
test with what to install.

(PYTEST_DONT_REWRITE: no asserts here.)
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from peers import (
    KAMAILIO_DIR,
    Kamailio,
    KamailioError,
    _tail,
    _track,
    free_port,
    kamailio_binary,
    write_users,
)

# Loading this plugin loads peers.py's as well (its report hooks, its fixtures).
pytest_plugins = ["peers"]

PRESENCE_CFG = KAMAILIO_DIR / "proxy-presence.cfg"
MODULES_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu/kamailio/modules"),
    Path("/usr/lib/aarch64-linux-gnu/kamailio/modules"),
    Path("/usr/lib/kamailio/modules"),
    Path("/usr/local/lib64/kamailio/modules"),
    Path("/usr/local/lib/kamailio/modules"),
)
PRESENCE_MISSING = (
    "kamailio's presence modules not found (presence.so, presence_xml.so): "
    "apt-get install kamailio-presence-modules (scripts/test.sh installs it)"
)

# The db_text tables the presence and presence_xml modules open (and whose versions
# they check at start-up), as /usr/share/kamailio/dbtext/kamailio/ has them for 5.6.
# With publ_cache=2 and subs_db_mode=0 they stay empty.
PRESENCE_TABLES: dict[str, str] = {
    "version": (
        "id(int,auto) table_name(string) table_version(int) \n"
        "0:version:1\n"
        "0:presentity:5\n"
        "0:active_watchers:12\n"
        "0:watchers:3\n"
        "0:xcap:4\n"
    ),
    "presentity": (
        "id(int,auto) username(string) domain(string) event(string) etag(string) "
        "expires(int) received_time(int) body(string) sender(string) priority(int) "
        "ruid(string,null) \n"
    ),
    "active_watchers": (
        "id(int,auto) presentity_uri(string) watcher_username(string) "
        "watcher_domain(string) to_user(string) to_domain(string) event(string) "
        "event_id(string,null) to_tag(string) from_tag(string) callid(string) "
        "local_cseq(int) remote_cseq(int) contact(string) record_route(string,null) "
        "expires(int) status(int) reason(string,null) version(int) socket_info(string) "
        "local_contact(string) from_user(string) from_domain(string) updated(int) "
        "updated_winfo(int) flags(int) user_agent(string,null) \n"
    ),
    "watchers": (
        "id(int,auto) presentity_uri(string) watcher_username(string) "
        "watcher_domain(string) event(string) status(int) reason(string,null) "
        "inserted_time(int) \n"
    ),
    "xcap": (
        "id(int,auto) username(string) domain(string) doc(string) doc_type(int) "
        "etag(string) source(int) doc_uri(string) port(int) \n"
    ),
}


def presence_modules_dir() -> Path:
    """The folder holding presence.so and presence_xml.so; a pytest failure if none."""
    for folder in MODULES_DIRS:
        if (folder / "presence.so").exists() and (folder / "presence_xml.so").exists():
            return folder
    pytest.fail(PRESENCE_MISSING, pytrace=False)


def write_presence_tables(db_dir: Path) -> None:
    """The empty db_text tables of the presence modules (see PRESENCE_TABLES)."""
    db_dir.mkdir(parents=True, exist_ok=True)
    for table, text in PRESENCE_TABLES.items():
        (db_dir / table).write_text(text)


class KamailioPresence(Kamailio):
    """deploy/kamailio/proxy-presence.cfg running in the foreground on 127.0.0.1.

    Like :class:`peers.Kamailio`: ``workdir`` holds a copy of the config, ``db/`` (the
    credential table users.txt = deploy/kamailio/users.txt plus ``extra_users``, and
    the presence tables), ``run/`` and ``kamailio.log``. SIP on UDP and TCP on one
    port, a JSON-RPC control port over UDP (``rpc``: ``ul.dump``,
    ``presence.presentity_list``...); picked free unless ``port`` is given.
    ``presence_auth=False`` accepts PUBLISH/SUBSCRIBE without digest. Started, it has
    answered an OPTIONS over UDP and over TCP.
    """

    name = "kamailio-presence"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        shm_mb: int = 512,
        pkg_mb: int = 32,
        extra_users: Mapping[str, str] | None = None,
        defines: Mapping[str, str | None] | None = None,
        presence_auth: bool = True,
        debug: bool = True,
        startup_timeout: float = 15.0,
    ) -> None:
        all_defines: dict[str, str | None] = dict(defines or {})
        if not presence_auth:
            all_defines["WITHOUT_PRESENCE_AUTH"] = None
        super().__init__(
            workdir,
            port=port,
            shm_mb=shm_mb,
            pkg_mb=pkg_mb,
            extra_users=extra_users,
            defines=all_defines,
            debug=debug,
            startup_timeout=startup_timeout,
        )
        self.presence_auth = presence_auth
        self.cfg_path = self.workdir / PRESENCE_CFG.name

    @property
    def domain(self) -> str:
        """The SIP domain of the users (AOR ``sip:user@DOMAIN``); also the digest realm
        of REGISTER (To domain) and of PUBLISH/SUBSCRIBE (From domain)."""
        return self.host

    def aor(self, user: str) -> str:
        return f"sip:{user}@{self.domain}"

    def command(self) -> list[str]:
        return [*super().command(), "-A", f'PRESENCE_DB_URL="text://{self.db_dir}"']

    def start(self) -> KamailioPresence:
        kamailio_binary()  # fail early, with the install hint
        presence_modules_dir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        shutil.copyfile(PRESENCE_CFG, self.cfg_path)
        write_presence_tables(self.db_dir)
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
            f"kamailio (presence) did not come up on {self.address} within "
            f"{self.startup_timeout} s (exit code {self.returncode}); log "
            f"{self.log_path}:\n{_tail(self.log_path, 60)}"
        )

    def __enter__(self) -> KamailioPresence:
        return self.start()

    def report_sections(self) -> list[tuple[str, str]]:
        return [(f"kamailio presence {self.address} log (tail)", _tail(self.log_path))]

    # -- observation

    def presentities(self) -> list[dict[str, Any]]:
        """``presence.presentity_list``: the published states this server holds."""
        try:
            result = self.rpc("presence.presentity_list")
        except KamailioError:
            return []
        if isinstance(result, list):
            return result
        if isinstance(result, dict):
            for value in result.values():
                if isinstance(value, list):
                    return value
        return []

    def wait_log(self, text: str, timeout: float = 5.0) -> bool:
        """Wait (bounded) until ``text`` shows in the log."""
        deadline = time.monotonic() + timeout
        while True:
            if text in self.log_text():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


# --------------------------------------------------------------------------------------
# pytest fixture


@pytest.fixture
def kamailio_presence(tmp_path: Path) -> Iterator[KamailioPresence]:
    """A started Kamailio proxy/registrar/presence server of its own, 127.0.0.1."""
    with KamailioPresence(tmp_path / "kamailio-presence") as proxy:
        yield proxy
