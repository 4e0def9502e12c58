"""Test helpers for pyim.ua: the driver subprocess and a pyim.sip peer.

:class:`UaProcess` runs ``tests/ua_driver.py`` (one pyim.ua client per process) and
reads its JSON lines; :class:`SipPeer` is a pyim.sip stack on 127.0.0.1 that is at
once a registrar with digest auth, a page-mode MESSAGE peer and a chat peer (a
:class:`~pyim.sip.chat.ChatStack` that echoes every message).
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyim.digest import DigestServer, password_lookup
from pyim.msrp.transport import MsrpEndpoint
from pyim.sip.chat import ChatSession, ChatStack
from pyim.sip.message import SipRequest
from pyim.sip.registrar import Registrar, RegistrarConfig
from pyim.sip.registration import RegistrarService
from pyim.sip.stack import IncomingRequest, SipStack, StackConfig
from pyim.sip.uri import NameAddr, SipUri

DRIVER = Path(__file__).resolve().parent / "ua_driver.py"
USERS = {"alice": "secret", "bob": "hunter2", "carol": "pw3"}


class UaProcess:
    """One ``ua_driver.py`` subprocess; ``records`` are its JSON lines so far."""

    def __init__(
        self, config: dict[str, Any], script: list[dict[str, Any]], step_timeout: float = 15.0
    ) -> None:
        self.config = config
        self.script = script
        self.step_timeout = step_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.records: list[dict[str, Any]] = []
        self.stderr = b""
        self._stderr_task: asyncio.Task[bytes] | None = None

    async def start(self) -> UaProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(DRIVER),
            "--config",
            json.dumps(self.config),
            "--script",
            json.dumps(self.script),
            "--timeout",
            str(self.step_timeout),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        self._stderr_task = asyncio.create_task(self.proc.stderr.read())
        return self

    async def record(self, op: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next line of step ``op`` (earlier lines are kept in ``records``)."""
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise AssertionError(
                    f"the driver ended before {op!r}: {self.records}\n{await self.tail()}"
                )
            record: dict[str, Any] = json.loads(line)
            self.records.append(record)
            if record["op"] == op:
                return record
            if record["op"] == "exit" or not record.get("ok", True):
                raise AssertionError(f"waiting for {op!r}, got {record}\n{await self.tail()}")

    def send_line(self, text: str = "go") -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")

    async def finish(self, timeout: float = 60.0) -> int:
        """Wait for the exit (killing it after ``timeout``); all lines in ``records``."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            out = await asyncio.wait_for(self.proc.stdout.read(), timeout)
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"the driver did not end in time\n{await self.tail()}") from None
        self.records.extend(json.loads(line) for line in out.decode().splitlines() if line)
        return self.proc.returncode if self.proc.returncode is not None else -1

    async def tail(self, lines: int = 60) -> str:
        if (
            self._stderr_task is not None
            and self.proc is not None
            and self.proc.returncode is not None
        ):
            self.stderr = await self._stderr_task
        text = self.stderr.decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def by_op(self, op: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["op"] == op]

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def run_ua(
    config: dict[str, Any], script: list[dict[str, Any]], timeout: float = 60.0
) -> tuple[int, UaProcess]:
    proc = await UaProcess(config, script).start()
    try:
        status = await proc.finish(timeout)
    finally:
        await proc.kill()
    return status, proc


@dataclass
class SipPeer:
    """pyim.sip as registrar (digest), MESSAGE peer and echoing chat peer ("bob")."""

    sip: SipStack
    msrp: MsrpEndpoint
    registrar: Registrar
    chat: ChatStack = field(init=False)
    pages: list[SipRequest] = field(default_factory=list)
    page_status: int = 200  # 0: never answer a MESSAGE
    sessions: list[ChatSession] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    echo: bool = True
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        service = RegistrarService(
            self.registrar, DigestServer("127.0.0.1", password_lookup(USERS))
        )
        self._service = service
        self.chat = ChatStack(self.sip, self.msrp, user="bob", fallback=self._other)
        self._tasks.add(asyncio.create_task(self._serve()))

    def _other(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        if request.method == "REGISTER":
            self._service.handle(incoming)
        elif request.method == "MESSAGE":
            self.pages.append(request)
            if self.page_status:
                incoming.respond(self.page_status)
        elif request.method in ("SUBSCRIBE", "PUBLISH"):
            incoming.respond(489 if request.method == "SUBSCRIBE" else 405)
        else:
            incoming.respond(405)

    async def _serve(self) -> None:
        while True:
            session = await self.chat.accept()
            self.sessions.append(session)
            self._tasks.add(asyncio.create_task(self._echo(session)))

    async def _echo(self, session: ChatSession) -> None:
        try:
            async for message in session:
                self.received.append(message.body)
                if self.echo:
                    await session.send(message.body, message.content_type)
        except ConnectionError:
            pass

    def uri(self, user: str = "bob", transport: str = "udp") -> str:
        host, port = self.sip.local_address(transport)
        suffix = f";transport={transport}" if transport != "udp" else ""
        return f"sip:{user}@{host}:{port}{suffix}"

    def registrar_uri(self, transport: str = "udp") -> str:
        host, port = self.sip.local_address(transport)
        suffix = f";transport={transport}" if transport != "udp" else ""
        return f"sip:{host}:{port}{suffix}"

    async def send_page(self, target: str, body: str, content_type: str = "text/plain") -> int:
        uri = SipUri.parse(target)
        request = self.sip.new_request(
            "MESSAGE",
            uri,
            from_=NameAddr(uri=SipUri(scheme="sip", user="bob", host="127.0.0.1")).with_tag("b0b"),
            to=NameAddr(uri=uri),
            body=body.encode(),
            content_type=content_type,
        )
        response = await asyncio.wait_for(self.sip.send(request), 10)
        return response.status

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.chat.close()
        await self.msrp.close()
        await self.sip.close()


async def start_peer() -> SipPeer:
    sip = SipStack(StackConfig(host="127.0.0.1"))
    await sip.start(udp=0, tcp=0)
    msrp = await MsrpEndpoint.create("127.0.0.1")
    return SipPeer(sip, msrp, Registrar(RegistrarConfig(min_expires=60)))
