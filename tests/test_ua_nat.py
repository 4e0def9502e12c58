"""pyim.ua accounts and NAT settings end to end: STUN, TLS, re-registration,
keep-alives and ICE/TURN, each pjsua2 client in a process of its own
(``tests/ua_driver.py``) against pyim.sip and coturn on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import trustme

from coturn import Coturn
from pyim.msrp.transport import MsrpEndpoint
from pyim.sip.message import SipRequest, SipResponse
from pyim.sip.registrar import Registrar, RegistrarConfig
from pyim.sip.stack import SipStack, StackConfig
from pyim.sip.uri import SipUri
from pyim.ua import ClientConfig, UaError
from pyim.ua.config import MIN_REG_TIMEOUT
from ua_peers import SipPeer, UaProcess, run_ua

pytest_plugins = ["coturn"]
pytestmark = pytest.mark.timeout(120)

ALICE = SipUri.parse("sip:alice@127.0.0.1")


class CountingRegistrar(Registrar):
    """The registrar, keeping every REGISTER it processed (after digest) and its answer."""

    def __init__(self, config: RegistrarConfig) -> None:
        super().__init__(config)
        self.seen: list[tuple[SipRequest, SipResponse]] = []

    def register(
        self, request: SipRequest, now: float, *, user: str | None = None, source: object = None
    ) -> SipResponse:
        response = super().register(request, now, user=user, source=source)
        self.seen.append((request, response))
        return response

    def contacts(self) -> list[str]:
        return [str(b.contact.uri) for b in self.lookup(ALICE, asyncio.get_running_loop().time())]


async def make_peer(sip: SipStack, tls: int | None = None) -> SipPeer:
    await sip.start(udp=0, tcp=0, tls=tls)
    msrp = await MsrpEndpoint.create("127.0.0.1")
    return SipPeer(sip, msrp, CountingRegistrar(RegistrarConfig(min_expires=1)))


@pytest.fixture
async def peer() -> AsyncIterator[SipPeer]:
    peer = await make_peer(SipStack(StackConfig(host="127.0.0.1")))
    yield peer
    await peer.close()


def registrar_of(peer: SipPeer) -> CountingRegistrar:
    assert isinstance(peer.registrar, CountingRegistrar)
    return peer.registrar


def alice(peer: SipPeer, transport: str = "udp", **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "account": "sip:alice@127.0.0.1",
        "password": "secret",
        "registrar": peer.registrar_uri(transport),
        "transport": transport,
        "register_wait": 5,
        "log_level": 4,
    }
    config.update(extra)
    return config


async def expect_exit(proc: UaProcess, status: int = 0) -> None:
    code = await proc.finish()
    assert code == status, f"exit {code}, records {proc.records}\n{await proc.tail()}"


# -- STUN ---------------------------------------------------------------------------------------


def hostport(address: tuple[Any, ...]) -> str:
    return f"{address[0]}:{address[1]}"


class StunNat(asyncio.DatagramProtocol):
    """A NAT for STUN only, in front of coturn: each client socket that sends here gets
    an upstream socket of its own, through which its requests go to coturn and its
    answers come back. coturn sees (and maps) the upstream socket, as a NAT's
    external port; the test knows which one belongs to which client."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.upstreams: dict[tuple[str, int], socket.socket] = {}
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        upstream = self.upstreams.get(addr)
        if upstream is None:
            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            upstream.bind(("127.0.0.1", 0))
            upstream.setblocking(False)
            self.upstreams[addr] = upstream
            self.loop.add_reader(upstream.fileno(), self._answer, upstream, addr)
        with contextlib.suppress(OSError):
            upstream.sendto(data, self.server)

    def _answer(self, upstream: socket.socket, client: tuple[str, int]) -> None:
        try:
            data = upstream.recv(4096)
        except OSError:
            return
        if self.transport is not None:
            self.transport.sendto(data, client)

    def external(self, client: str) -> str:
        """The address coturn saw for the client socket ``host:port``."""
        host, port = client.rsplit(":", 1)
        upstream = self.upstreams[(host, int(port))]
        return hostport(upstream.getsockname())

    @property
    def address(self) -> str:
        assert self.transport is not None
        return hostport(self.transport.get_extra_info("sockname"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        for upstream in self.upstreams.values():
            self.loop.remove_reader(upstream.fileno())
            upstream.close()


async def test_stun_mapped_address_from_coturn(peer: SipPeer, coturn: Coturn) -> None:
    config = alice(peer, stun_servers=[coturn.stun_address])
    proc = await UaProcess(config, [{"op": "start"}, {"op": "readline"}]).start()
    try:
        started = await proc.record("start")
        # pjsua resolved coturn and asked it for the SIP socket's public address; on
        # loopback there is no NAT: the mapped address is the socket's own
        assert started["stun_server"] == coturn.stun_address, started
        assert started["mapped"] == started["bound"] == started["local"], started
        assert started["mapped"].startswith("127.0.0.1:")
        assert registrar_of(peer).contacts() == [f"sip:alice@{started['mapped']}"]
        proc.send_line()
        await expect_exit(proc)
    finally:
        await proc.kill()
    log = await proc.tail(400)
    assert f"SIP UDP socket reachable at {started['mapped']}" in log
    assert "Error contacting STUN server" not in log  # the SIP socket's own Binding


@pytest.mark.parametrize("rewrite", [False, True])
async def test_stun_mapped_address_is_the_contact(
    peer: SipPeer, coturn: Coturn, rewrite: bool
) -> None:
    """Through a NAT for STUN, coturn maps the SIP socket to another port: pjsua
    publishes that address (``Client.mapped_address``) in the Contact it REGISTERs."""
    loop = asyncio.get_running_loop()
    _, nat = await loop.create_datagram_endpoint(
        lambda: StunNat((coturn.host, coturn.port)), local_addr=("127.0.0.1", 0)
    )
    registrar = registrar_of(peer)
    try:
        config = alice(peer, stun_servers=[nat.address], contact_rewrite=rewrite)
        script: list[dict[str, Any]] = [
            {"op": "start"},
            {"op": "sleep", "seconds": 1.0},
            {"op": "readline"},
        ]
        proc = await UaProcess(config, script).start()
        try:
            started = await proc.record("start")
            mapped = nat.external(started["bound"])
            assert started["stun_server"] == nat.address, started
            assert started["mapped"] == started["local"] == mapped != started["bound"], started
            first = registrar.seen[0][0]  # after the digest challenge
            assert str(first.contacts[0].uri) == f"sip:alice@{mapped}"
            sent_by = hostport(first.vias[0].sent_by)
            # viaRewriteUse (on with contact_rewrite) takes the 401's received/rport
            assert sent_by == (started["bound"] if rewrite else mapped), first.vias[0]
            await proc.record("sleep")
            # the Contact stays the STUN one either way: pjsua's contact rewrite skips a
            # change of port alone when the received address is private (pjsip #864;
            # 127.0.0.1 counts as private), which on loopback is all a NAT can change
            assert registrar.contacts() == [f"sip:alice@{mapped}"]
            assert len(registrar.seen) == 1
            proc.send_line()
            await expect_exit(proc)
        finally:
            await proc.kill()
    finally:
        nat.close()
    assert registrar.contacts() == []


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_peer(ca: trustme.CA) -> AsyncIterator[SipPeer]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context(cafile=None)
    ca.configure_trust(client)
    sip = SipStack(StackConfig(host="127.0.0.1"), ssl_server=server, ssl_client=client)
    peer = await make_peer(sip, tls=0)
    yield peer
    await peer.close()


async def test_tls_register_and_page(tls_peer: SipPeer, ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    bob = tls_peer.uri("bob", "tls")
    script = [{"op": "start"}, {"op": "page", "to": bob, "text": "over tls"}, {"op": "readline"}]
    proc = await UaProcess(alice(tls_peer, "tls", tls_ca_file=str(ca_file)), script).start()
    try:
        started = await proc.record("start")
        assert started["registered"] is True, started
        (binding,) = tls_peer.registrar.lookup(ALICE, asyncio.get_running_loop().time())
        assert binding.contact.uri.transport == "tls", binding
        page = await proc.record("page")
        assert page["code"] == 200, page
        (message,) = tls_peer.pages
        assert message.body == b"over tls"
        assert message.vias[0].transport == "TLS"
        proc.send_line()
        await expect_exit(proc)
    finally:
        await proc.kill()
    assert tls_peer.registrar.lookup(ALICE, asyncio.get_running_loop().time()) == []


async def test_tls_refused_certificate_is_a_clear_error(tls_peer: SipPeer, tmp_path: Path) -> None:
    """The registrar's certificate is not from the CA we trust: pjsua refuses the TLS
    connection; ``start()`` says so in one line and the process exits 1, no abort."""
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    config = alice(tls_peer, "tls", tls_ca_file=str(other_ca))
    status, proc = await run_ua(config, [{"op": "start"}])
    assert status == 1, f"{proc.records}\n{await proc.tail()}"
    (start,) = proc.by_op("start")
    assert start["ok"] is False and start["error_type"] == "RegistrationError", start
    # pjsua: 503 "SSL certificate verification error (PJSIP_TLS_ECERTVERIF)"
    assert start["error"].startswith("registration refused: 503"), start
    assert "certificate verification" in start["error"], start
    assert proc.by_op("exit")[0]["status"] == 1
    assert "Assertion" not in await proc.tail(400)
    assert registrar_of(tls_peer).seen == []


async def test_tls_without_verification_accepts_any_certificate(
    tls_peer: SipPeer, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    config = alice(tls_peer, "tls", tls_ca_file=str(other_ca), tls_verify_server=False)
    status, proc = await run_ua(config, [{"op": "start"}])
    assert status == 0, f"{proc.records}\n{await proc.tail()}"
    assert proc.by_op("start")[0]["registered"] is True


# -- re-registration ----------------------------------------------------------------------------


def test_reg_timeout_below_pjsua_refresh_is_refused() -> None:
    with pytest.raises(UaError, match="too short"):
        ClientConfig(account="sip:alice@127.0.0.1", reg_timeout=MIN_REG_TIMEOUT - 1)


async def test_reregistration_keeps_the_binding(peer: SipPeer) -> None:
    """An 8 s registration: pjsua refreshes it 5 s after each success (its earliest,
    ``delayBeforeRefreshSec``), so the binding outlives the first expiry."""
    script = [{"op": "start"}, {"op": "wait_reg"}, {"op": "wait_reg"}, {"op": "readline"}]
    proc = await UaProcess(alice(peer, reg_timeout=8), script).start()
    registrar = registrar_of(peer)
    loop = asyncio.get_running_loop()
    try:
        await proc.record("start")
        registered_at = loop.time()
        first = await proc.record("wait_reg")
        assert (first["code"], first["active"]) == (200, True), first
        contact = registrar.contacts()
        assert len(contact) == 1
        refresh = await proc.record("wait_reg", 12)
        assert (refresh["code"], refresh["active"]) == (200, True), refresh
        assert 4 <= loop.time() - registered_at < 7.5
        await asyncio.sleep(max(0.0, registered_at + 8.5 - loop.time()))
        assert registrar.contacts() == contact  # past the first expiry: still bound
        granted = [(r.headers.get("Expires"), s.status) for r, s in registrar.seen]
        assert granted == [("8", 200), ("8", 200)], granted
        proc.send_line()
        await expect_exit(proc)
    finally:
        await proc.kill()
    assert registrar.contacts() == []  # unregistered on stop
    assert registrar.seen[-1][0].headers.get("Expires") == "0"


async def test_unregister_and_register_again(peer: SipPeer) -> None:
    script: list[dict[str, Any]] = [
        {"op": "start"},
        {"op": "register", "on": False},
        {"op": "wait_reg"},
        {"op": "wait_reg"},
        {"op": "readline"},
        {"op": "register", "on": True},
        {"op": "wait_reg"},
        {"op": "readline"},
    ]
    proc = await UaProcess(alice(peer), script).start()
    registrar = registrar_of(peer)
    try:
        await proc.record("start")
        assert len(registrar.contacts()) == 1
        await proc.record("wait_reg")  # the first registration's own event
        off = await proc.record("wait_reg")
        assert off["active"] is False and off["code"] == 200, off
        assert registrar.contacts() == []
        proc.send_line()
        on = await proc.record("wait_reg")
        assert on["active"] is True and on["code"] == 200, on
        assert len(registrar.contacts()) == 1
        proc.send_line()
        await expect_exit(proc)
    finally:
        await proc.kill()
    assert registrar.contacts() == []


# -- keep-alives --------------------------------------------------------------------------------


def test_keepalive_of_one_second_is_refused() -> None:
    """At 1 s pjsua2 2.15.1 sent CRLF keep-alives in a busy loop (~200,000/s)."""
    with pytest.raises(UaError, match="keepalive_seconds"):
        ClientConfig(account="sip:alice@127.0.0.1", keepalive_seconds=1)
    assert ClientConfig(account="sip:alice@127.0.0.1", keepalive_seconds=0).keepalive_seconds == 0


async def test_udp_keepalives_reach_the_registrar(peer: SipPeer) -> None:
    """Over UDP pjsua sends a CRLF (``udpKaData``) to the registrar's address every
    ``keepalive_seconds`` (a little less: 2 s came out as 1.x s), which pyim.sip counts.
    With ``outbound`` over UDP pjsua only adds ``;ob`` to the Contact: no reg-id,
    no +sip.instance, no ``Supported: outbound`` (it does those over TCP/TLS)."""
    stats = peer.sip.transport.stats
    config = alice(peer, outbound=True, keepalive_seconds=2)
    proc = await UaProcess(config, [{"op": "start"}, {"op": "readline"}]).start()
    try:
        await proc.record("start")
        before = stats["keepalives_in"]
        await asyncio.sleep(4.5)
        during = stats["keepalives_in"] - before
        assert 2 <= during <= 6, stats
        proc.send_line()
        await expect_exit(proc)
    finally:
        await proc.kill()
    (register, _), *_ = registrar_of(peer).seen
    (contact,) = register.contacts
    assert contact.uri.has_param("ob") and contact.param("reg-id") is None, contact
    assert "outbound" not in (register.headers.get("Supported") or "")


async def test_tcp_outbound_register_and_no_udp_keepalives(peer: SipPeer) -> None:
    """Over TCP ``outbound`` is RFC 5626 in the REGISTER (``Supported: outbound``,
    ``reg-id`` and ``+sip.instance`` on the Contact; pyim.sip's registrar keeps the
    instance). pyim.sip answers without ``Require: outbound``, so pjsua logs that
    outbound is "not active". ``keepalive_seconds`` is UDP only: over TCP pjsip's
    transport sends its CRLFCRLF ping after 90 s idle (PJSIP_TCP_KEEP_ALIVE_INTERVAL,
    ``pjsip_cfg()->tcp.keep_alive_interval``), which pjsua2 does not expose: no
    keep-alive arrives within the test's seconds."""
    stats = peer.sip.transport.stats
    config = alice(peer, "tcp", outbound=True, keepalive_seconds=2)
    proc = await UaProcess(config, [{"op": "start"}, {"op": "readline"}]).start()
    try:
        await proc.record("start")
        (binding,) = peer.registrar.lookup(ALICE, asyncio.get_running_loop().time())
        assert binding.instance is not None and binding.instance.startswith('"<urn:uuid:')
        await asyncio.sleep(3.0)
        assert stats["keepalives_in"] == 0, stats
        proc.send_line()
        await expect_exit(proc)
    finally:
        await proc.kill()
    (register, _), *_ = registrar_of(peer).seen
    (contact,) = register.contacts
    assert contact.param("reg-id") == "1" and contact.uri.has_param("ob"), contact
    assert "outbound" in (register.headers.get("Supported") or "")
    assert "SIP outbound status for acc 0 is not active" in await proc.tail(400)


# -- ICE and TURN -------------------------------------------------------------------------------


async def test_chat_with_ice_and_turn(peer: SipPeer, coturn: Coturn) -> None:
    """ICE with TURN for the audio line: before the INVITE pjsua allocates a relay on
    coturn for RTP and RTCP of both audio lines it makes (the second becomes
    m=message): 4 allocations, and the offer's m=audio carries the relay candidate
    (typ relay, in coturn's relay ports; pjsua gathered no host candidate here).
    pyim.sip answers without ICE, so pjsua stops ICE ("Remote answer doesn't support
    ICE") and releases the relays (REFRESH with lifetime 0); the chat itself (MSRP
    over TCP, outside ICE) works as ever."""
    config = alice(
        peer,
        ice=True,
        turn_server=coturn.stun_address,
        turn_user=coturn.turn_user,
        turn_password=coturn.turn_password,
    )
    script: list[dict[str, Any]] = [
        {"op": "start"},
        {"op": "chat", "to": peer.uri("bob")},
        {"op": "send", "index": 0, "text": "through ice"},
        {"op": "receive", "index": 0},
        {"op": "close_chat", "index": 0},
    ]
    status, proc = await run_ua(config, script)
    assert status == 0, f"{proc.records}\n{await proc.tail()}"
    assert [r["text"] for r in proc.by_op("receive")] == ["through ice"]
    assert peer.received == [b"through ice"]
    log = await proc.tail(5000)
    relays = [
        int(port)
        for port in re.findall(r"TURN allocation .* relay address is 127\.0\.0\.1:(\d+)", log)
    ]
    assert len(relays) == 4, log
    assert all(coturn.min_port <= port <= coturn.max_port for port in relays), relays
    offered = re.findall(r"a=candidate:\S+ 1 UDP \d+ 127\.0\.0\.1 (\d+) typ (\w+)", log)
    assert offered and all(kind == "relay" and int(port) in relays for port, kind in offered)
    assert "Remote answer doesn't support ICE" in log
    user = f"user <{coturn.turn_user}>"
    turn_log = ""
    for _ in range(50):  # coturn writes its log on its own time
        turn_log = coturn.log_text()
        if turn_log.count("REFRESH processed, success") >= 4:
            break
        await asyncio.sleep(0.1)
    allocated = [line for line in turn_log.splitlines() if "ALLOCATE processed, success" in line]
    assert len(allocated) == 4 and all(user in line for line in allocated), turn_log
    released = [line for line in turn_log.splitlines() if "lifetime=0" in line]
    assert len(released) == 4, turn_log
