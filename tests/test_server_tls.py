"""The application server over TLS: ``[sip] tls`` (a ``sips:`` listener) and ``[msrp]
tls = true`` (sessions over MSRP/TLS, ``msrps`` paths), with certificates of a
throw-away CA (trustme) and real handshakes on 127.0.0.1.

- two pyim.sip users register over SIP/TLS and chat through the server over msrps,
  both ways, with Success-Reports end to end; the server reaches them over TLS and
  checks their certificates against ``sip.ca`` (refused when not from that CA,
  accepted unverified without ``sip.ca``);
- a mixed pair (one over SIP/TLS, the other over SIP/TCP), with MSRP over TLS and
  over TCP; a plain-MSRP offer to an MSRP-over-TLS server gets 488 and a plain-MSRP
  device gets its messages by page mode;
- ``pyim server`` as a subprocess with TLS listeners in its TOML answers a REGISTER
  over TLS;
- hostile input at both TLS listeners (plain text, garbage, a stalled handshake);
- config errors (TLS without a certificate, unreadable or unusable files) are one
  line and exit 2;
- a pyim.ua (pjsua2) client registers over TLS and chats with a pyim.sip user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from prometheus_client import generate_latest

from peers import LOOPBACK, free_port
from pyim.msrp.transport import MsrpEndpoint
from pyim.server.app import ImServer
from pyim.server.config import ConfigError, MsrpSettings, ServerConfig, SipSettings, load_config
from pyim.sip.chat import ChatError
from pyim.sip.stack import SipStack, StackConfig
from pyim.sip.uri import SipUri
from pyim.ua.cpim import parse_cpim
from server_harness import DOMAIN, FAST, USERS, User, running_server, server_config, user_over
from server_process import ServerProcess, metric_value, pyim_command, server_env
from ua_peers import UaProcess

pytest_plugins = ["peers"]
pytestmark = pytest.mark.timeout(120)


# -- certificates ------------------------------------------------------------------------------


@dataclass
class Pki:
    """A throw-away CA, the server's certificate for 127.0.0.1 and their PEM files."""

    ca: trustme.CA
    cert: Path
    key: Path
    ca_file: Path

    def client(self) -> ssl.SSLContext:
        """A client context that trusts (only) this CA."""
        context = ssl.create_default_context(cafile=None)
        self.ca.configure_trust(context)
        return context

    def device(self, issuer: trustme.CA | None = None) -> ssl.SSLContext:
        """A device's listener context: a certificate for 127.0.0.1 from ``issuer``."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (issuer or self.ca).issue_cert("127.0.0.1").configure_cert(context)
        return context


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    pki = Pki(ca, folder / "server.pem", folder / "server.key", folder / "ca.pem")
    for blob in issued.cert_chain_pems:
        with pki.cert.open("ab") as out:
            out.write(blob.bytes())
    issued.private_key_pem.write_to_path(str(pki.key))
    ca.cert_pem.write_to_path(str(pki.ca_file))
    return pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "tls")


def tls_config(tmp: Path, pki: Pki, *, msrp_tls: bool = True, ca: bool = True) -> ServerConfig:
    """The harness's server with SIP on UDP, TCP and TLS and MSRP over TLS or TCP."""
    return replace(
        server_config(tmp),
        sip=SipSettings(
            udp=0, tcp=0, tls=0, cert=pki.cert, key=pki.key, ca=pki.ca_file if ca else None
        ),
        msrp=MsrpSettings(tls=msrp_tls),
    )


# -- users ------------------------------------------------------------------------------------


async def make_device(
    name: str,
    address: tuple[str, int],
    pki: Pki,
    *,
    transport: str = "tls",
    msrp_tls: bool = True,
    issuer: trustme.CA | None = None,
) -> User:
    """A pyim.sip user that registers at ``address`` over ``transport`` and listens on
    that transport only (TLS: a certificate from ``issuer``, default the CA); its MSRP
    endpoint is msrps with ``msrp_tls``.  MESSAGEs are answered 200 and kept."""
    device = pki.device(issuer)
    client = pki.client()
    sip = SipStack(StackConfig(timers=FAST), ssl_server=device, ssl_client=client)
    await sip.start(
        udp=0 if transport == "udp" else None,
        tcp=0 if transport == "tcp" else None,
        tls=0 if transport == "tls" else None,
    )
    host, port = address
    server_uri = SipUri(scheme="sip", host=host, port=port, params=(("transport", transport),))
    msrp = await MsrpEndpoint.create(
        ssl_server=device if msrp_tls else None, ssl_client=client if msrp_tls else None
    )
    return user_over(name, sip, msrp, server_uri)


@contextlib.asynccontextmanager
async def devices(server: ImServer, pki: Pki, *specs: dict[str, Any]) -> AsyncIterator[list[User]]:
    """Registered users at ``server``: ``{"name": ..., "transport": ..., ...}`` each."""
    made: list[User] = []
    try:
        for spec in specs:
            spec = dict(spec)
            transport = spec.setdefault("transport", "tls")
            user = await make_device(
                spec.pop("name"), server.sip.local_address(transport), pki, **spec
            )
            made.append(user)
            await user.register()
        yield made
    finally:
        for user in made:
            await user.close()


def binding_uri(server: ImServer, name: str) -> SipUri:
    aor = SipUri(scheme="sip", user=name, host=DOMAIN)
    (binding,) = server.registrar.lookup(aor, server.sip.loop.time())
    return binding.contact.uri


async def chat_both_ways(caller: User, callee: User) -> None:
    """``caller`` calls ``callee`` through the server; a message each way, both
    Success-Reports end to end."""
    session = await caller.call(callee.name)
    sending = asyncio.ensure_future(session.send(f"hello {callee.name}", success_report=True))
    other_side = await asyncio.wait_for(callee.chat.accept(), 10)  # the server, for caller
    assert other_side.dialog.remote.uri.user == caller.name
    got = await asyncio.wait_for(other_side.receive(), 10)
    assert got.body == f"hello {callee.name}".encode()
    assert (await asyncio.wait_for(sending, 10)).status == "delivered"
    reply = await asyncio.wait_for(other_side.send(f"hi {caller.name}", success_report=True), 10)
    assert reply.status == "delivered"
    assert (await asyncio.wait_for(session.receive(), 10)).body == f"hi {caller.name}".encode()
    await session.close()
    await other_side.close()


# -- (a) everything over TLS --------------------------------------------------------------------


async def test_tls_users_chat_through_the_server_over_msrps(tmp_path: Path, pki: Pki) -> None:
    async with running_server(tls_config(tmp_path, pki)) as server:
        assert server.msrp is not None and server.msrp.scheme == "msrps"
        async with devices(server, pki, {"name": "alice"}, {"name": "bob"}) as (alice, bob):
            for name in ("alice", "bob"):  # registered over TLS: sips contacts
                assert binding_uri(server, name).scheme == "sips"
            session = await alice.call("bob")
            assert session.destination.transport == "tls"
            assert session.msrp.local_uri.scheme == "msrps"
            assert b"TCP/TLS/MSRP" in session.local_sdp.encode()
            sending = asyncio.ensure_future(session.send("hello bob", success_report=True))
            bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
            # the server INVITEd bob over a TLS connection of its own (bob's certificate
            # checked against sip.ca), offering MSRP over TLS
            assert bob_side.destination.transport == "tls"
            assert b"TCP/TLS/MSRP" in bob_side.local_sdp.encode()  # bob's answer
            assert bob_side.msrp.local_uri.scheme == "msrps"
            assert (await asyncio.wait_for(bob_side.receive(), 10)).body == b"hello bob"
            assert (await asyncio.wait_for(sending, 10)).status == "delivered"
            for text in ("hi alice", "how are you"):
                result = await asyncio.wait_for(bob_side.send(text, success_report=True), 10)
                assert result.status == "delivered"
                assert (await asyncio.wait_for(session.receive(), 10)).body == text.encode()
            result = await asyncio.wait_for(session.send("fine", success_report=True), 10)
            assert result.status == "delivered"
            assert (await asyncio.wait_for(bob_side.receive(), 10)).body == b"fine"
            await session.close()
            await bob_side.close()
        history = await server.store.history(f"sip:alice@{DOMAIN}", f"sip:bob@{DOMAIN}")
        assert [h.body for h in reversed(history)] == [
            b"hello bob",
            b"hi alice",
            b"how are you",
            b"fine",
        ]
        assert server.sip.transport.stats["send_failures"] == 0


@pytest.mark.parametrize("server_ca", [True, False], ids=["ca", "no-ca"])
async def test_devices_are_verified_against_sip_ca(
    tmp_path: Path, pki: Pki, server_ca: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """bob's TLS certificate is not from the CA in ``sip.ca``: the server does not
    INVITE him (the message waits in the store).  Without ``sip.ca`` the server's TLS
    connections are encrypted, not verified, and bob gets it."""
    caplog.set_level(logging.INFO, logger="pyim.sip.transport")
    stranger = trustme.CA()
    async with (
        running_server(tls_config(tmp_path, pki, ca=server_ca)) as server,
        devices(server, pki, {"name": "alice"}, {"name": "bob", "issuer": stranger}) as (
            alice,
            bob,
        ),
    ):
        session = await alice.call("bob")
        sending = asyncio.ensure_future(session.send("hello bob", success_report=True))
        if server_ca:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(bob.chat.accept(), 2)
            assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
            assert not sending.done()
            assert await server.store.depth(f"sip:bob@{DOMAIN}") == 1
            sending.cancel()
        else:
            bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
            assert (await asyncio.wait_for(bob_side.receive(), 10)).body == b"hello bob"
            assert (await asyncio.wait_for(sending, 10)).status == "delivered"
        await session.close()


# -- (b) mixed transports -----------------------------------------------------------------------


@pytest.mark.parametrize("msrp_tls", [True, False], ids=["msrps", "msrp"])
async def test_mixed_pair_one_over_tls_one_over_tcp(
    tmp_path: Path, pki: Pki, msrp_tls: bool
) -> None:
    async with running_server(tls_config(tmp_path, pki, msrp_tls=msrp_tls)) as server:
        specs = ({"name": "alice", "transport": "tls"}, {"name": "bob", "transport": "tcp"})
        async with devices(server, pki, *(dict(s, msrp_tls=msrp_tls) for s in specs)) as users:
            alice, bob = users
            assert binding_uri(server, "alice").scheme == "sips"
            assert binding_uri(server, "bob").transport == "tcp"
            await chat_both_ways(alice, bob)  # alice (TLS) calls bob (TCP)
            await chat_both_ways(bob, alice)  # and the other way round (names swap)


async def test_plain_msrp_against_a_tls_only_msrp_server(tmp_path: Path, pki: Pki) -> None:
    """``msrp.tls = true`` is MSRP over TLS only: a TCP/MSRP offer gets 488 (not a hang);
    a device that only does TCP/MSRP refuses the server's TCP/TLS/MSRP offers and gets
    its messages by page mode instead."""
    bob_spec = {"name": "bob", "transport": "tcp", "msrp_tls": False}
    async with (
        running_server(tls_config(tmp_path, pki)) as server,
        devices(server, pki, {"name": "alice"}, bob_spec) as (alice, bob),
    ):
        with pytest.raises(ChatError) as refused:
            await bob.call("alice")
        assert refused.value.status == 488
        session = await alice.call("bob")
        result = await asyncio.wait_for(session.send("by page", success_report=True), 20)
        assert result.status == "delivered"
        page = await asyncio.wait_for(bob.pages.get(), 5)
        assert parse_cpim(page.body).body == "by page"
        assert server.page_only(f"sip:bob@{DOMAIN}", f"sip:alice@{DOMAIN}")
        await session.close()


# -- (c) the daemon --------------------------------------------------------------------------


class TlsServerProcess(ServerProcess):
    """``pyim server`` with SIP over TLS and MSRP over TLS; the certificate files sit
    next to the config and are named by relative paths."""

    def __init__(self, workdir: Path, pki: Pki) -> None:
        super().__init__(workdir)
        self.tls_port = free_port("tcp")
        (workdir / "tls").mkdir(exist_ok=True)
        for path in (pki.cert, pki.key, pki.ca_file):
            shutil.copy(path, workdir / "tls" / path.name)
        text = self.config_path.read_text()
        sip_lines = f"tcp = {self.sip_port}\n"
        msrp_lines = f"port = {self.msrp_port}\n"
        assert sip_lines in text and msrp_lines in text
        text = text.replace(
            sip_lines,
            sip_lines
            + f'tls = {self.tls_port}\ncert = "tls/server.pem"\nkey = "tls/server.key"\n'
            + 'ca = "tls/ca.pem"\n',
        )
        text = text.replace(msrp_lines, msrp_lines + "tls = true\n", 1)
        self.config_path.write_text(text)


@pytest.fixture
def tls_daemon(tmp_path: Path, pki: Pki) -> Iterator[TlsServerProcess]:
    server = TlsServerProcess(tmp_path / "server", pki)
    with server:
        yield server


async def test_daemon_with_tls_listeners_answers_register_over_tls(
    tls_daemon: TlsServerProcess, pki: Pki
) -> None:
    ready = tls_daemon.ready_line
    assert f"sips:127.0.0.1:{tls_daemon.tls_port}" in ready, ready
    assert f"sip:127.0.0.1:{tls_daemon.sip_port};transport=tcp" in ready, ready
    assert f"msrps://127.0.0.1:{tls_daemon.msrp_port}" in ready, ready
    address = (LOOPBACK, tls_daemon.tls_port)
    alice = await make_device("alice", address, pki)
    bob = await make_device("bob", address, pki)
    try:
        await alice.register()
        await bob.register()
        await chat_both_ways(alice, bob)  # msrps through the daemon, its cert from tls/
    finally:
        await alice.close()
        await bob.close()
    metrics = await asyncio.to_thread(tls_daemon.metrics)
    assert metric_value(metrics, "pyim_messages_delivered_total") == 2
    assert await asyncio.to_thread(tls_daemon.terminate) == 0
    assert "Traceback" not in tls_daemon.logs()


# -- (d) hostile input ---------------------------------------------------------------------------

#: The first bytes of a TLS ClientHello whose record says 512 bytes follow.
PARTIAL_HELLO = bytes.fromhex("16030102000100 01fc0303".replace(" ", "")) + b"\x00" * 8


async def closed_by_server(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Connect (plain TCP), send ``data``, read until the server closes; what it sent."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    got = b""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(4096):
                got += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return got


def listener_errors(server: ImServer, listener: str, kind: str) -> float:
    text = generate_latest(server.metrics.registry).decode()
    return metric_value(text, "pyim_listener_errors_total", f'kind="{kind}",listener="{listener}"')


async def test_hostile_input_at_the_tls_listeners(tmp_path: Path, pki: Pki) -> None:
    # the listeners drop a TLS handshake that has not finished after this long (10 s
    # by default): shortened so that the test sees it
    config = tls_config(tmp_path, pki)
    config = replace(config, limits=replace(config.limits, tls_handshake_timeout=1.0))
    async with running_server(config) as server:
        assert server.msrp is not None
        sip_port = server.sip.local_address("tls")[1]
        msrp_port = server.msrp.port
        options = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1\r\n\r\n"
        send = b"MSRP t1 SEND\r\nTo-Path: msrp://x/y;tcp\r\n-------t1$\r\n"
        garbage = bytes(range(256)) * 8
        for port, text in ((sip_port, options), (msrp_port, send)):
            for data in (text, garbage):  # no handshake at all: closed, nothing else
                await closed_by_server(port, data)

        # clients that stop mid-handshake hold no one up ...
        stalled = []
        for port in (sip_port, msrp_port):
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.write(PARTIAL_HELLO)
            stalled.append((reader, writer))
        async with devices(server, pki, {"name": "alice"}, {"name": "bob"}) as (alice, bob):
            await chat_both_ways(alice, bob)
        # ... and are dropped when the handshake times out
        for reader, writer in stalled:
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
        for stats in (server.sip.transport.stats, server.msrp.stats):
            for _ in range(30):  # counted once their time is up
                if stats["tls_handshake_failures"] >= 3:  # 2 garbage, 1 stalled
                    break
                await asyncio.sleep(0.1)
            assert stats["tls_handshake_failures"] == 3

        # after a good handshake, bad input is the listeners' own business: counted
        before = listener_errors(server, "sip", "stream_errors")
        for port, data in (
            (sip_port, b"\x00" * 70000),  # no SIP head fits in that: closed (413)
            (msrp_port, send.replace(b"SEND", b"SE\x00ND") + garbage),
        ):
            reader, writer = await asyncio.open_connection(
                LOOPBACK, port, ssl=pki.client(), server_hostname="127.0.0.1"
            )
            writer.write(data)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
            writer.close()
        assert listener_errors(server, "sip", "stream_errors") == before + 1
        assert listener_errors(server, "msrp", "closed_bad_input") == 1

        # and the server still serves: a REGISTER and a chat over TLS
        async with devices(server, pki, {"name": "alice"}, {"name": "bob"}) as (alice, bob):
            await chat_both_ways(alice, bob)
        assert server.sip.transport.connection_count <= 2  # the devices' last ones, closing


# -- (e) configuration errors -------------------------------------------------------------------


def run_server(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pyim_command("server", *args),
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=30,
        cwd=cwd,
    )


def encrypted_key(pki: Pki, path: Path) -> Path:
    key = serialization.load_pem_private_key(pki.key.read_bytes(), None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


BAD_TLS = {
    "tls_without_cert": ("[sip]\ntls = 0\n", "sip.tls needs sip.cert and sip.key"),
    "msrps_without_cert": ("[msrp]\ntls = true\n", "msrp.tls needs msrp.cert and msrp.key"),
    "missing_key": (
        '[sip]\ntls = 0\ncert = "tls/server.pem"\nkey = "tls/absent.key"\n',
        "sip.key: cannot read {dir}/tls/absent.key: No such file or directory",
    ),
    "unreadable_key": (  # a folder: unreadable even for root
        '[sip]\ntls = 0\ncert = "tls/server.pem"\nkey = "tls"\n',
        "sip.key: cannot read {dir}/tls: Is a directory",
    ),
    "not_a_cert": (
        '[sip]\ntls = 0\ncert = "tls/server.key"\nkey = "tls/server.key"\n',
        "sip.cert: no PEM certificate in {dir}/tls/server.key",
    ),
    "wrong_key": (
        '[sip]\ntls = 0\ncert = "tls/server.pem"\nkey = "tls/other.key"\n',
        "sip.key: {dir}/tls/other.key is not the key of sip.cert",
    ),
    "encrypted_key": (
        '[sip]\ntls = 0\ncert = "tls/server.pem"\nkey = "tls/encrypted.key"\n',
        "sip.key: {dir}/tls/encrypted.key is encrypted",
    ),
    "msrp_key": (
        '[sip]\ncert = "tls/server.pem"\nkey = "tls/server.key"\n'
        '[msrp]\ntls = true\nkey = "tls/absent.key"\n',
        "msrp.key: cannot read {dir}/tls/absent.key",
    ),
    "bad_ca": (
        '[sip]\ntls = 0\ncert = "tls/server.pem"\nkey = "tls/server.key"\nca = "tls/server.key"\n',
        "sip.ca: no PEM certificate in {dir}/tls/server.key",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TLS))
def test_bad_tls_config_is_one_line_and_exit_2(tmp_path: Path, pki: Pki, case: str) -> None:
    text, expected = BAD_TLS[case]
    other = trustme.CA().issue_cert("127.0.0.1")  # a key that is not the certificate's
    other.private_key_pem.write_to_path(str(pki.key.parent / "other.key"))
    encrypted_key(pki, pki.key.parent / "encrypted.key")
    folder = tmp_path / "etc"  # the config's folder: its relative paths start there
    folder.mkdir()
    (folder / "tls").symlink_to(pki.key.parent)
    (folder / "server.toml").write_text(text)
    result = run_server(tmp_path, "-c", str(folder / "server.toml"))  # cwd: not etc/
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pyim server: bad configuration:"), lines
    assert expected.format(dir=folder) in lines[0], lines
    assert result.stdout == ""


def test_tls_port_flag_needs_a_certificate(tmp_path: Path) -> None:
    result = run_server(tmp_path, "--sip-tls-port", "0")
    assert result.returncode == 2
    assert "sip.tls needs sip.cert and sip.key" in result.stderr
    result = run_server(tmp_path, "--sip-tls-port", "70000")
    assert result.returncode == 2 and "--sip-tls-port 70000" in result.stderr


def test_tls_files_are_relative_to_the_config_and_checked_by_the_server(
    tmp_path: Path, pki: Pki
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "server.toml").write_text(
        '[sip]\ntls = 5061\ncert = "../tls/server.pem"\nkey = "../tls/server.key"\n'
        'ca = "../tls/ca.pem"\n[msrp]\ntls = true\n'
    )
    config = load_config(folder / "server.toml")
    assert config.sip.cert == folder / "../tls/server.pem"
    assert config.msrp_tls_files == (config.sip.cert, config.sip.key)
    contexts = config.tls()
    assert contexts.sip_server is not None and contexts.msrp_server is not None
    assert contexts.sip_client.verify_mode == ssl.CERT_REQUIRED
    assert contexts.sip_client.check_hostname
    unverified = replace(config, sip=replace(config.sip, ca=None)).tls()
    assert unverified.sip_client.verify_mode == ssl.CERT_NONE
    broken = replace(config, sip=replace(config.sip, key=tmp_path / "absent.key"))
    with pytest.raises(ConfigError, match=r"^sip\.key: cannot read"):
        ImServer(broken)


# -- a pyim.ua (pjsua2) client over TLS -------------------------------------------------------


async def test_ua_client_registers_over_tls_and_chats_with_a_sip_user(
    tmp_path: Path, pki: Pki
) -> None:
    """pjsua2 registers over SIP/TLS (the server's certificate checked against the CA
    file) and chats with a pyim.sip user over TCP.  pyim.ua's MSRP is plain TCP, so
    this server keeps ``msrp.tls = false``."""
    pytest.importorskip("pjsua2")
    async with running_server(tls_config(tmp_path, pki, msrp_tls=False)) as server:
        host, port = server.sip.local_address("tls")
        address = f"sip:{host}:{port};transport=tls"
        config = {
            "account": f"sip:alice@{DOMAIN}",
            "password": USERS["alice"],
            "registrar": address,
            "proxy": address,
            "transport": "tls",
            "tls_ca_file": str(pki.ca_file),
            "register_wait": 10,
            "log_level": 3,
        }
        script = [
            {"op": "start"},
            {"op": "chat", "to": f"sip:carol@{DOMAIN}"},
            {"op": "send", "index": 0, "text": "hello carol"},
            {"op": "receive", "index": 0},
            {"op": "close_chat", "index": 0},
        ]
        carol_spec = {"name": "carol", "transport": "tcp", "msrp_tls": False}
        async with devices(server, pki, carol_spec) as (carol,):
            alice = await UaProcess(config, script, step_timeout=20).start()
            try:
                started = await alice.record("start", 30)
                assert started["ok"] and started["registered"], started
                binding = binding_uri(server, "alice")
                assert binding.transport == "tls", binding  # pjsua: ;transport=TLS
                carol_side = await asyncio.wait_for(carol.chat.accept(), 30)
                assert carol_side.dialog.remote.uri.user == "alice"
                got = await asyncio.wait_for(carol_side.receive(), 20)
                assert got.body == b"hello carol"
                reply = await asyncio.wait_for(carol_side.send("hi alice", success_report=True), 20)
                assert reply.status == "delivered"
                code = await alice.finish(60)
                assert code == 0, f"{alice.records}\n{await alice.tail()}"
            finally:
                await alice.kill()
    sent = [r for r in alice.records if r["op"] == "send"]
    assert [r["status"] for r in sent] == ["delivered"], alice.records
    received = [r for r in alice.records if r["op"] == "receive"]
    assert [r["text"] for r in received] == ["hi alice"], alice.records
