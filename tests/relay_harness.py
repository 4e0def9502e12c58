"""Helpers for the relay tests: an in-process relay and a raw MSRP client.

The raw client writes hand-made frames and reads whole frames back, so tests can
send what a real client never would (hostile input) and check the exact answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace

from pyim.digest import DigestClient
from pyim.msrp import Event, Frame, FrameEnd, FrameParser, frames_from_events
from pyim.msrp.frame import new_tid
from pyim.msrp.uri import MsrpUri
from pyim.relay import Limits, Listener, Relay, RelayConfig

USERS = {"alice": "alice-secret", "bob": "bob-secret", "mallory": "mallory-secret"}
REALM = "relay.test"


def relay_config(**limits: float) -> RelayConfig:
    """A relay on a free port of 127.0.0.1 with the test users."""
    return RelayConfig(
        realm=REALM,
        users=dict(USERS),
        listen=(Listener(port=0),),
        limits=replace(Limits(), **limits),  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running_relay(
    config: RelayConfig | None = None, *, ssl_client: ssl.SSLContext | None = None
) -> AsyncIterator[Relay]:
    relay = Relay(config or relay_config(), ssl_client=ssl_client)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


class RawClient:
    """One connection to a relay that speaks frames, however malformed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = FrameParser()
        self.frames: list[Frame] = []
        self._events: list[Event] = []
        self.uri = MsrpUri(host="127.0.0.1", port=9, session_id=new_tid(10))

    @classmethod
    async def connect(cls, uri: MsrpUri, *, ssl_context: ssl.SSLContext | None = None) -> RawClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                uri.host,
                uri.port,
                ssl=ssl_context,
                server_hostname=uri.host if ssl_context else None,
            ),
            5,
        )
        return cls(reader, writer)

    async def send(self, data: Frame | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, Frame) else data)
        await self.writer.drain()

    async def read_frame(self, timeout: float = 5.0) -> Frame:
        """The next complete frame from the relay; TimeoutError if none comes."""
        async with asyncio.timeout(timeout):
            while True:
                done = [f for f in self.frames if f.flag]
                if done:
                    frame = done[0]
                    self.frames.remove(frame)
                    return frame
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("relay closed the connection")
                self._absorb(data)

    def _absorb(self, data: bytes) -> None:
        self._events.extend(self.parser.feed(data))
        ends = [i for i, event in enumerate(self._events) if isinstance(event, FrameEnd)]
        if ends:
            self.frames.extend(frames_from_events(self._events[: ends[-1] + 1]))
            del self._events[: ends[-1] + 1]

    async def read_until_closed(self, timeout: float = 5.0) -> bytes:
        """Everything the relay still sends, until it closes (TimeoutError otherwise)."""
        out = b""
        async with asyncio.timeout(timeout):
            while data := await self.reader.read(65536):
                out += data
        return out

    async def auth(
        self, relay: MsrpUri, user: str, password: str, *, expires: int | None = None
    ) -> str:
        """AUTH through the 401 challenge; returns the granted Use-Path."""
        digest = DigestClient(user, password)
        first = auth_frame(relay, self.uri, expires=expires)
        await self.send(first)
        challenge = await self.read_frame()
        assert challenge.code == 401, challenge
        value = digest.authorize(
            digest.choose(challenge.headers.get_all("WWW-Authenticate")),
            method="AUTH",
            uri=str(relay),
        )
        await self.send(auth_frame(relay, self.uri, authorization=value, expires=expires))
        ok = await self.read_frame()
        assert ok.code == 200, ok
        use_path = ok.headers.get("Use-Path")
        assert use_path
        return use_path

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


def auth_frame(
    relay: MsrpUri,
    me: MsrpUri,
    *,
    authorization: str | None = None,
    expires: int | None = None,
) -> Frame:
    frame = Frame(new_tid(), "AUTH")
    frame.headers.add("To-Path", str(relay))
    frame.headers.add("From-Path", str(me))
    if authorization is not None:
        frame.headers.add("Authorization", authorization)
    if expires is not None:
        frame.headers.add("Expires", str(expires))
    return frame


def send_frame(
    to_path: str,
    from_path: str,
    body: bytes = b"hello",
    *,
    message_id: str | None = None,
    byte_range: str | None = None,
    flag: str = "$",
    failure_report: str | None = None,
    success_report: bool = False,
) -> Frame:
    frame = Frame(new_tid(), "SEND")
    frame.headers.add("To-Path", to_path)
    frame.headers.add("From-Path", from_path)
    frame.headers.add("Message-ID", message_id or new_tid(10))
    frame.headers.add("Byte-Range", byte_range or f"1-{len(body)}/{len(body)}")
    if failure_report is not None:
        frame.headers.add("Failure-Report", failure_report)
    if success_report:
        frame.headers.add("Success-Report", "yes")
    frame.headers.add("Content-Type", "text/plain")
    frame.body = body
    frame.flag = flag
    return frame
