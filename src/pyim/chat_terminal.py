"""``pyim chat``: a terminal chat client on pyim.ua (pjsua2 SIP, pyim MSRP).

::

    pyim chat --account alice@example.test --password secret sip:bob@example.test
    pyim chat -c alice.toml                      # wait for someone to call

Incoming messages are printed above the input line with their sender and time while
you type (prompt_toolkit); every message you send shows its delivery state (sent,
delivered, failed).  Commands: ``/page TEXT`` (page-mode MESSAGE), ``/status away
[note]`` or ``/status online [note]``, ``/help``, ``/quit``.  Errors (a refused
password, an unreachable registrar, a peer that declines) are one clear line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

HELP = "/page TEXT  page-mode message | /status away|online [note] | /help | /quit"


@dataclass(frozen=True, slots=True)
class Command:
    """One line typed by the user, parsed."""

    kind: str  # "say", "page", "status", "help", "quit", "empty", "unknown"
    text: str = ""
    online: bool = True


def parse_command(line: str) -> Command:
    """What a typed line asks for (pure: unit tested)."""
    text = line.strip()
    if not text:
        return Command("empty")
    if not text.startswith("/") or text.startswith("//"):
        return Command("say", text[1:] if text.startswith("//") else text)
    name, _, rest = text[1:].partition(" ")
    name, rest = name.lower(), rest.strip()
    if name in ("quit", "exit", "q"):
        return Command("quit")
    if name in ("help", "?"):
        return Command("help")
    if name == "page":
        return Command("page", rest) if rest else Command("unknown", "usage: /page TEXT")
    if name == "status":
        state, _, note = rest.partition(" ")
        if state.lower() in ("away", "offline", "busy"):
            return Command("status", note.strip() or state.lower(), online=False)
        if state.lower() in ("online", "open", "available", "back"):
            return Command("status", note.strip(), online=True)
        return Command("unknown", "usage: /status away|online [note]")
    return Command("unknown", f"unknown command /{name} ({HELP})")


def stamp(at: float | None = None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(time.time() if at is None else at))


def incoming_line(sender: str, text: str, at: float | None = None, *, page: bool = False) -> str:
    kind = " (page)" if page else ""
    return f"[{stamp(at)}] {sender}{kind}: {text}"


def delivery_line(number: int, status: str, code: int = 200, reason: str = "") -> str:
    if status == "failed":
        return f"  #{number} failed: {code} {reason}".rstrip()
    return f"  #{number} {status}"


def short_name(uri: str) -> str:
    """``sip:bob@example.test`` → ``bob``."""
    text = uri.strip("<>")
    text = text.split(":", 1)[1] if ":" in text.split("@", 1)[0] else text
    return text.split("@", 1)[0] or uri


class ChatScreen:
    """The running chat: one client, at most one session, a printer for lines."""

    def __init__(self, client: Any, target: str | None, echo: Callable[[str], None]) -> None:
        self.client = client
        self.target = target
        self.echo = echo
        self.chat: Any = None
        self.sent = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open(self) -> None:
        """Call the target, or wait for a call when there is none."""
        if self.target:
            self.echo(f"calling {self.target} ...")
            self.chat = await self.client.chat(self.target)
            self.echo(f"chat with {self.chat.peer} open ({HELP})")
        else:
            self.echo("waiting for a chat (or /page needs a target) ...")
        self.spawn(self._client_events())
        if self.chat is not None:
            self.spawn(self._incoming(self.chat))

    async def _client_events(self) -> None:
        from .ua import BuddyStatus, IncomingChat, PageReceived, RegistrationChanged

        async for event in self.client.events():
            if isinstance(event, PageReceived):
                self.echo(incoming_line(short_name(event.sender), event.text, page=True))
            elif isinstance(event, IncomingChat):
                if self.chat is not None:
                    self.echo(f"declined a second chat from {event.chat.peer}")
                    continue
                self.chat = await event.accept()
                self.target = self.target or str(self.chat.peer)
                self.echo(f"chat with {self.chat.peer} open ({HELP})")
                self.spawn(self._incoming(self.chat))
            elif isinstance(event, BuddyStatus):
                state = "online" if event.online else "away"
                note = f" ({event.note})" if event.note else ""
                self.echo(f"* {short_name(event.uri)} is {state}{note}")
            elif isinstance(event, RegistrationChanged) and not event.active:
                self.echo(f"* registration lost: {event.code} {event.reason}")

    async def _incoming(self, chat: Any) -> None:
        peer = short_name(str(chat.peer))
        with contextlib.suppress(ConnectionError):
            async for message in chat:
                body = message.body.decode("utf-8", "replace")
                self.echo(incoming_line(peer, body))
        self.echo(f"* {peer} ended the chat")
        self.chat = None

    async def handle(self, command: Command) -> bool:
        """Carry out one command; False when the user quits."""
        if command.kind == "quit":
            return False
        if command.kind == "help":
            self.echo(HELP)
        elif command.kind == "unknown":
            self.echo(command.text)
        elif command.kind == "say":
            if self.chat is None:
                self.echo("no chat open yet (use /page TEXT for a page-mode message)")
            else:
                self.sent += 1
                self.spawn(self._say(self.sent, command.text))
        elif command.kind == "page":
            if not self.target:
                self.echo("no one to page yet")
            else:
                self.spawn(self._page(command.text))
        elif command.kind == "status":
            await self.client.set_presence(command.online, command.text)
            self.echo(f"* you are {'online' if command.online else 'away'}")
        return True

    async def _say(self, number: int, text: str) -> None:
        self.echo(f"[{stamp()}] you #{number}: {text}")
        result = await self.chat.send(text)
        self.echo(delivery_line(number, result.status, result.code, result.reason))

    async def _page(self, text: str) -> None:
        from .ua import UaError

        try:
            result = await self.client.send_page(self.target, text)
        except UaError as exc:
            self.echo(f"  page failed: {exc}")
            return
        state = "delivered" if 200 <= result.code < 300 else f"failed: {result.code}"
        self.echo(f"[{stamp()}] you (page): {text}  [{state} {result.reason}]".rstrip())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.chat is not None:
            with contextlib.suppress(Exception):
                await self.chat.close()


async def run(config: Any, target: str | None) -> int:
    """The interactive loop; returns the exit status."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    from .ua import Client, UaError

    client = Client(config)
    try:
        with stdout_to(config.log_file or None):
            await client.start()
    except UaError as exc:
        print(f"pyim chat: {exc}")
        return 1
    screen = ChatScreen(client, target, lambda line: print(line, flush=True))
    status = 0
    try:
        with patch_stdout(raw=True):
            try:
                await screen.open()
            except UaError as exc:
                print(f"pyim chat: {exc}")
                return 1
            prompt: PromptSession[str] = PromptSession("> ")
            while True:
                try:
                    line = await prompt.prompt_async()
                except (EOFError, KeyboardInterrupt):
                    break
                if not await screen.handle(parse_command(line)):
                    break
    finally:
        await screen.close()
        await client.stop()
    return status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", help="SIP URI to chat with (omit to wait)")
    parser.add_argument("-c", "--config", type=Path, help="TOML file (pyim.ua.ClientConfig)")
    parser.add_argument("--account", help="your address, e.g. alice@example.test")
    parser.add_argument("--password")
    parser.add_argument("--registrar", help="registrar URI (default: the account's domain)")
    parser.add_argument("--proxy", help="outbound proxy URI")
    parser.add_argument("--transport", choices=["udp", "tcp", "tls"])
    parser.add_argument("--stun", action="append", help="STUN server host:port")
    parser.add_argument("--no-register", action="store_true", help="do not REGISTER")
    parser.add_argument("--publish", action="store_true", help="PUBLISH presence (/status)")
    parser.add_argument("--log-file", help="where pjsua's log goes (errors only; default: nowhere)")


def config_from_args(args: argparse.Namespace) -> Any:
    """ClientConfig from a TOML file and/or flags (flags win)."""
    from .ua import ClientConfig

    if args.config is not None:
        config = ClientConfig.from_toml(args.config)
    elif args.account:
        account = args.account if args.account.startswith("sip") else f"sip:{args.account}"
        config = ClientConfig(account=account)
    else:
        raise SystemExit("pyim chat: give --account (and --password) or -c FILE")
    changes: dict[str, Any] = {}
    if args.account and args.config is not None:
        changes["account"] = (
            args.account if args.account.startswith("sip") else f"sip:{args.account}"
        )
    for name in ("password", "registrar", "proxy", "transport"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.stun:
        changes["stun_servers"] = list(args.stun)
    if args.no_register:
        changes["register"] = False
    if args.publish:
        changes["publish"] = True
    if args.log_file:
        changes["log_file"] = args.log_file
    changes["log_level"] = 0  # the screen is the chat's: pjsua writes to its file only
    return replace(config, **changes)


@contextlib.contextmanager
def stdout_to(path: str | None) -> Iterator[None]:
    """Send what C code writes to file descriptor 1 to ``path`` (or nowhere) for a
    while: pjlib prints its start-up lines before any log setting applies."""
    sys.stdout.flush()
    saved = os.dup(1)
    target = os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(target, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(target)


def main(args: argparse.Namespace) -> int:
    target = args.target
    if target and not target.startswith(("sip:", "sips:")):
        target = f"sip:{target}"
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:
        print(f"pyim chat: bad configuration: {exc}")
        return 2
    try:
        return asyncio.run(run(config, target))
    except KeyboardInterrupt:
        return 130
