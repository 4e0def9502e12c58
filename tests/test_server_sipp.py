"""sipp against the standalone IM server (the server is the registrar of its domain).

sipp sends an INVITE whose SDP has only an ``m=message`` line (no audio at all: a
standard MSRP-only chat offer, which pjsua cannot make) to sip:bob@127.0.0.1 at the
server: 200 with an m=message answer and the server's a=path, ACK; the server
connects to the MSRP path of the offer (a tiny MSRP listener of the test) and opens
the session; BYE -> 200. Then the refusals: an unknown user (404) and an audio-only
offer (488).

The same MSRP-only INVITE through Kamailio 5.6 (deploy/kamailio/im-frontend.cfg) in
front of the server in behind-proxy mode. The server runs in this process (its event
loop); sipp runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from peers import LOOPBACK, Sipp, SippResult
from pyim.msrp import frames_from_events
from pyim.msrp.frame import Frame
from pyim.msrp.parser import FrameParser
from pyim.server.app import ImServer
from server_harness import running_server, server_config
from server_peers import server_behind_kamailio

pytest_plugins = ["peers"]
pytestmark = pytest.mark.timeout(90)


class MsrpListener:
    """Accepts MSRP connections on 127.0.0.1, records every request and answers 200."""

    def __init__(self) -> None:
        self.requests: list[Frame] = []
        self.got_request = asyncio.Event()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> MsrpListener:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        parser = FrameParser()
        events = []
        done = 0
        while data := await reader.read(65536):
            events += parser.feed(data)
            frames = frames_from_events(events)
            for frame in frames[done:]:
                if frame.flag == "":
                    break  # unfinished
                done += 1
                if frame.method is None:
                    continue
                self.requests.append(frame)
                self.got_request.set()
                if frame.method == "SEND":
                    answer = (
                        f"MSRP {frame.tid} 200 OK\r\n"
                        f"To-Path: {frame.header('From-Path')}\r\n"
                        f"From-Path: {frame.header('To-Path')}\r\n"
                        f"-------{frame.tid}$\r\n"
                    )
                    writer.write(answer.encode())
        writer.close()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


#: sipp's From is sip:sipp@127.0.0.1: a user of the standalone server, who
#: authenticates its INVITEs (sipp -au/-ap answers the 401).
SIPP_USER = ("sipp", "sipp-pw")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ImServer]:
    # sipp answers only the first challenge, and only MD5: the server offers MD5 alone
    config = replace(server_config(tmp_path), digest_algorithms=("MD5",))
    config.users[SIPP_USER[0]] = SIPP_USER[1]
    async with running_server(config) as server:
        yield server


@pytest.fixture
async def msrp_listener() -> AsyncIterator[MsrpListener]:
    listener = await MsrpListener().start()
    yield listener
    await listener.close()


def server_target(server: ImServer) -> str:
    host, port = server.sip.local_address("udp")
    return f"{host}:{port}"


async def run_sipp(sipp: Sipp) -> SippResult:
    """sipp blocks (it is waited for): run it off the event loop the server runs on."""
    return await asyncio.to_thread(sipp.run)


def final_status(result: SippResult) -> list[int]:
    """The final status codes sipp received, from its message trace."""
    return [int(code) for code in re.findall(r"^SIP/2\.0 ([2-6]\d\d) ", result.messages(), re.M)]


async def msrp_only_call(
    server: ImServer, listener: MsrpListener, workdir: Path, target: str, *, challenged: bool
) -> str:
    """sipp's MSRP-only INVITE to sip:bob@127.0.0.1 sent to ``target``, ACK, BYE; checks
    the answer, the server's MSRP connection to the offer's path, and that no session
    is left. Returns sipp's message trace."""
    sipp = Sipp(
        "uac_msrp_only_invite.xml",
        workdir,
        target=target,
        service="bob",  # bob is not even registered: the server is the other end
        keys={"msrp_port": str(listener.port), "msrp_session": "sippsess1"},
        auth=SIPP_USER,
        # the digest uri is the Request-URI (sipp's default is the target address)
        extra_args=["-auth_uri", "bob@127.0.0.1"],
        timeout=20,
    )
    result = await run_sipp(sipp)
    assert result.ok, result.summary() + "\n" + result.messages()[-4000:]
    trace = result.messages()
    answer = trace[trace.index("SIP/2.0 200") :]
    assert challenged == ("SIP/2.0 401" in trace), "401 (standalone) or none (via Kamailio)"
    assert re.search(r"^m=message \d+ TCP/MSRP \*", answer, re.M)
    path = re.search(r"^a=path:(msrp://127\.0\.0\.1:(\d+)/\S+;tcp)", answer, re.M)
    assert server.msrp is not None
    assert path is not None and int(path.group(2)) == server.msrp.port
    assert "m=audio" not in answer
    # the server (active, RFC 6135) connected to the offer's a=path and opened the session
    await asyncio.wait_for(listener.got_request.wait(), 5)
    first = listener.requests[0]
    assert first.method == "SEND"
    assert first.header("To-Path") == f"msrp://127.0.0.1:{listener.port}/sippsess1;tcp"
    assert first.header("From-Path") == path.group(1)
    # after the BYE the server holds no session any more
    for _ in range(50):
        if len(server.legs) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(server.legs) == 0
    return trace


async def test_msrp_only_invite_from_sipp(
    server: ImServer, msrp_listener: MsrpListener, tmp_path: Path
) -> None:
    await msrp_only_call(
        server, msrp_listener, tmp_path / "sipp", server_target(server), challenged=True
    )


async def test_msrp_only_invite_from_sipp_through_kamailio(
    msrp_listener: MsrpListener, tmp_path: Path
) -> None:
    """The same through Kamailio (im-frontend.cfg): it routes the m=message INVITE to
    the server and record-routes it; ACK and BYE follow the route through it."""
    async with server_behind_kamailio(tmp_path) as frontend:
        kamailio = frontend.kamailio
        trace = await msrp_only_call(
            frontend.server, msrp_listener, tmp_path / "sipp", kamailio.address, challenged=False
        )
        assert re.search(rf"^Record-Route: <sip:127\.0\.0\.1:{kamailio.port};", trace, re.M)
        server_port = frontend.server.sip.local_address("udp")[1]
        log = kamailio.log_text()
        assert f"INVITE to sip:bob@127.0.0.1 via sip:127.0.0.1:{server_port}" in log
        for method in ("ACK", "BYE"):
            assert re.search(rf"request {method} sip:pyim@127\.0\.0\.1:{server_port}", log)


@pytest.mark.parametrize(
    ("user", "mline", "expected"),
    [
        ("nobody", "m=message 2855 TCP/MSRP *", 404),  # not a user of the domain
        ("bob", "m=audio 6000 RTP/AVP 0", 488),  # no m=message: nothing to chat over
    ],
)
async def test_refused_invites_from_sipp(
    server: ImServer, tmp_path: Path, user: str, mline: str, expected: int
) -> None:
    sipp = Sipp(
        "uac_invite_refused.xml",
        tmp_path / "sipp",
        target=server_target(server),
        service=user,
        keys={"mline": mline},
        auth=SIPP_USER,
        extra_args=["-auth_uri", f"{user}@127.0.0.1"],
        timeout=15,
    )
    result = await run_sipp(sipp)
    assert result.ok, result.summary() + "\n" + result.messages()[-4000:]
    # challenged first (who is asking is checked before what is asked), then refused
    assert final_status(result) == [401, expected]
    assert len(server.legs) == 0
