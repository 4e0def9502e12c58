"""``pyim server`` and ``pyim users``: the application server as a daemon."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import logging
import signal
import sys
import time
from pathlib import Path

from ..store import StoreError, open_store
from .config import DEMO_USERS, ConfigError, ServerConfig, load_config

log = logging.getLogger("pyim.server")


def _one_line(exc: BaseException) -> str:
    """Errors are one line on stderr (database drivers' messages span several)."""
    return " ".join(str(exc).split())


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (structured logs for collectors)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, json_logs: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


async def serve(config: ServerConfig) -> int:
    from .app import ImServer

    server = ImServer(config)
    try:
        await server.start()
    except StoreError as exc:
        print(f"pyim server: store unavailable: {_one_line(exc)}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            await server.reload_users()
        except StoreError as exc:
            log.warning("users not reloaded (store unavailable): %s", exc)

    def on_hup() -> None:  # SIGHUP: users added or removed with `pyim users`
        task = asyncio.ensure_future(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    assert server.msrp is not None
    listeners = " ".join(
        f"sips:{h}:{p}" if t == "tls" else f"sip:{h}:{p};transport={t}"
        for t, (h, p) in server.sip.transport.local.items()
    )
    msrp = f"{server.msrp.scheme}://{config.public_host}:{server.msrp.port}"
    print(f"pyim server ready: {listeners} {msrp}", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("stopping: hanging up %d sessions", len(server.legs))
        await server.stop()
    return 0


def with_ports(
    config: ServerConfig,
    *,
    sip_port: int | None = None,
    sip_tls_port: int | None = None,
    msrp_port: int | None = None,
    metrics_port: int | None = None,
) -> ServerConfig:
    """The config with the ports given on the command line instead of its own
    (``--sip-port`` sets UDP and TCP, ``--sip-tls-port`` TLS)."""
    if sip_port is not None:
        config = dataclasses.replace(
            config, sip=dataclasses.replace(config.sip, udp=sip_port, tcp=sip_port)
        )
    if sip_tls_port is not None:
        config = dataclasses.replace(config, sip=dataclasses.replace(config.sip, tls=sip_tls_port))
    if msrp_port is not None:
        config = dataclasses.replace(config, msrp=dataclasses.replace(config.msrp, port=msrp_port))
    if metrics_port is not None:
        config = dataclasses.replace(
            config, metrics=dataclasses.replace(config.metrics, port=metrics_port)
        )
    for name, port in (
        ("--sip-port", sip_port),
        ("--sip-tls-port", sip_tls_port),
        ("--msrp-port", msrp_port),
    ):
        if port is not None and not 0 <= port < 65536:
            raise ConfigError(f"{name} {port}: expected 0..65535")
    if metrics_port is not None and not 0 <= metrics_port < 65536:
        raise ConfigError(f"--metrics-port {metrics_port}: expected 0..65535 (0: off)")
    return config.validate()


def run(
    config_path: Path | None,
    *,
    json_logs: bool = False,
    sip_port: int | None = None,
    sip_tls_port: int | None = None,
    msrp_port: int | None = None,
    metrics_port: int | None = None,
) -> int:
    """``pyim server``: exit 0 after SIGTERM, 2 on a bad config, 1 if it cannot start.
    SIGHUP reloads the users from the store."""
    try:
        if config_path is None:
            config = ServerConfig(users=dict(DEMO_USERS)).validate()
        else:
            config = load_config(config_path)
        config = with_ports(
            config,
            sip_port=sip_port,
            sip_tls_port=sip_tls_port,
            msrp_port=msrp_port,
            metrics_port=metrics_port,
        )
        config.tls()  # certificates and keys are read here: errors are config errors
    except ConfigError as exc:
        print(f"pyim server: bad configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, json_logs)
    if config_path is None:
        log.warning("no config file: demo users %s on 127.0.0.1", ", ".join(DEMO_USERS))
    try:
        return asyncio.run(serve(config))
    except OSError as exc:
        print(f"pyim server: cannot start: {_one_line(exc)}", file=sys.stderr)
        return 1


def users_command(config_path: Path | None, action: str, name: str | None) -> int:
    """``pyim users add|remove|list``: HA1 hashes in the server's store."""
    try:
        config = load_config(config_path) if config_path else ServerConfig().validate()
    except ConfigError as exc:
        print(f"pyim users: bad configuration: {exc}", file=sys.stderr)
        return 2

    async def work() -> int:
        store = open_store(config.store)
        await store.open()
        await store.migrate()
        try:
            if action == "list":
                for user in await store.list_users():
                    print(f"{user.username}\t{user.realm}")
                return 0
            assert name is not None
            if action == "remove":
                await store.delete_user(name, config.auth_realm)
                return 0
            if sys.stdin.isatty():
                password = getpass.getpass(f"password for {name}@{config.auth_realm}: ")
            else:
                password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                print("pyim users: empty password", file=sys.stderr)
                return 2
            await store.add_user(name, config.auth_realm, password)
            print(f"added {name} in realm {config.auth_realm} at {time.strftime('%F %T')}")
            return 0
        finally:
            await store.close()

    try:
        return asyncio.run(work())
    except StoreError as exc:
        print(f"pyim users: store unavailable: {_one_line(exc)}", file=sys.stderr)
        return 1
