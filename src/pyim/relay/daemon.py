"""``pyim relay``: the relay as a daemon (config file, logs, signals, graceful stop)."""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import sys
from pathlib import Path

from .config import ConfigError, RelayConfig, load_config
from .credentials import ha1_lines
from .server import Relay, forward_impl

log = logging.getLogger("pyim.relay")


async def serve(config: RelayConfig, *, ready_line: bool = True) -> int:
    """Run the relay until SIGTERM or SIGINT, then stop it gracefully."""
    relay = Relay(config)
    await relay.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    uris = " ".join(str(uri) for uri in relay.uris)
    log.info("relay ready (forwarding fast path: %s): %s", forward_impl, uris)
    if ready_line:
        print(f"pyim relay ready: {uris}", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("stopping; stats: %s", dict(relay.stats))
        await relay.stop()
    return 0


def run(config_path: Path | None) -> int:
    """Entry point of ``pyim relay``; returns the exit status (2 for a bad config)."""
    try:
        config = load_config(config_path) if config_path is not None else RelayConfig().validate()
        logging.getLogger().setLevel(config.log_level.upper())
        return asyncio.run(serve(config))
    except ConfigError as exc:
        print(f"pyim relay: bad configuration: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pyim relay: cannot start: {exc}", file=sys.stderr)
        return 1


def hash_password(username: str, realm: str, algorithms: tuple[str, ...]) -> int:
    """Print the HA1 file lines for a user; the password comes from stdin or a prompt."""
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {username}@{realm}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("pyim relay: empty password", file=sys.stderr)
        return 2
    for line in ha1_lines(username, realm, password, algorithms):
        print(line)
    return 0
