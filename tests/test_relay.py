"""The MSRP relay (RFC 4976) with pyim endpoints on both sides: AUTH, chat, files,
TLS, reports, interleaving, grant expiry."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from pyim.msrp.auth import RelayAuthError
from pyim.msrp.session import SessionConfig
from pyim.msrp.transport import EndpointConfig, MsrpEndpoint, Session
from pyim.relay import AuthSettings, Listener, Relay, RelayConfig
from relay_harness import REALM, USERS, RawClient, relay_config, running_relay, send_frame


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_config(tmp_path: Path, ca: trustme.CA, **limits: float) -> RelayConfig:
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    return replace(
        relay_config(**limits),
        listen=(Listener(scheme="msrps", port=0, cert=cert_file, key=key_file),),
    )


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def relayed_pair(
    relay: Relay,
    *,
    ssl_client: ssl.SSLContext | None = None,
    config: EndpointConfig | None = None,
    configs: tuple[EndpointConfig | None, EndpointConfig | None] = (None, None),
    users: tuple[str, str] = ("alice", "bob"),
) -> tuple[Session, Session]:
    """Two endpoints, each behind its own grant at ``relay``, joined by a session."""
    sessions = []
    for user, own in zip(users, configs, strict=True):
        endpoint = await MsrpEndpoint.create(config=own or config, ssl_client=ssl_client)
        grant = await endpoint.authenticate(relay.uris[0], user, USERS[user])
        assert grant.use_path[0].host == "127.0.0.1" and grant.use_path[0].session_id
        sessions.append(endpoint.new_session(relay=grant))
    a, b = sessions
    await asyncio.gather(a.start(b.path, active=True), b.start(a.path, active=True))
    return a, b


async def close_all(*sessions: Session) -> None:
    for session in sessions:
        await session.endpoint.close()


@pytest.fixture(params=["msrp", "msrps"])
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path, ca: trustme.CA
) -> AsyncIterator[tuple[Relay, Session, Session]]:
    tls = request.param == "msrps"
    config = tls_config(tmp_path, ca) if tls else relay_config()
    ctx = client_context(ca) if tls else None
    endpoint_config = EndpointConfig(session=SessionConfig(chunk_size=64 * 1024))
    async with running_relay(config) as relay:
        assert relay.uris[0].scheme == request.param
        a, b = await relayed_pair(relay, ssl_client=ctx, config=endpoint_config)
        yield relay, a, b
        await close_all(a, b)


async def test_text_and_a_large_message_through_the_relay(
    pair: tuple[Relay, Session, Session],
) -> None:
    relay, alice, bob = pair
    assert len(alice.path) == 2 and alice.path[0] != bob.path[0]
    result = await alice.send("text/plain", "héllo bob".encode(), success_report=True)
    assert result.status == "delivered"
    got = await asyncio.wait_for(bob.receive(), 5)
    assert got.body == "héllo bob".encode() and got.content_type == "text/plain"
    big = hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32)
    result = await asyncio.wait_for(
        bob.send("application/octet-stream", big, success_report=True), 30
    )
    assert result.status == "delivered", result
    got = await asyncio.wait_for(alice.receive(), 30)
    assert hashlib.sha256(got.body).digest() == hashlib.sha256(big).digest()
    assert relay.stats["body_bytes"] >= len(big)
    assert relay.auth.stats["grants"] == 2


async def test_session_frames_carry_the_relay_on_their_paths() -> None:
    """What bob's side sees: From-Path with the relay's two grants, then alice."""
    async with running_relay() as relay:
        endpoint = await MsrpEndpoint.create()
        grant = await endpoint.authenticate(relay.uris[0], "alice", USERS["alice"])
        alice = endpoint.new_session(relay=grant)
        bob = await RawClient.connect(relay.uris[0])
        bob_path = await bob.auth(relay.uris[0], "bob", USERS["bob"])
        await alice.start([*map(_uri, bob_path.split()), bob.uri], active=True)
        frame = await bob.read_frame()  # the empty SEND that binds the session
        assert frame.method == "SEND"
        assert frame.header("To-Path") == str(bob.uri)
        assert frame.header("From-Path") == f"{bob_path} {grant.use_path[0]} {alice.local_uri}"
        assert [name for name, _ in frame.headers][:2] == ["To-Path", "From-Path"]
        await bob.close()
        await endpoint.close()


def _uri(text: str):  # type: ignore[no-untyped-def]
    from pyim.msrp.uri import MsrpUri

    return MsrpUri.parse(text)


async def test_refused_message_becomes_a_failure_report() -> None:
    """Bob refuses the type (415) after the relay said 200 to alice: she learns it
    from the relay's failure REPORT, not from silence."""
    async with running_relay() as relay:
        picky = EndpointConfig(session=SessionConfig(accept_types=("text/plain",)))
        alice, bob = await relayed_pair(relay, configs=(None, picky))
        result = await asyncio.wait_for(
            alice.send("image/png", b"\x89PNG...", success_report=True), 10
        )
        assert result.status == "failed" and result.code == 415, result
        assert relay.stats["reports_sent"] == 1
        assert (await alice.send("text/plain", b"ok then")).ok
        assert (await asyncio.wait_for(bob.receive(), 5)).body == b"ok then"
        await close_all(alice, bob)


async def test_no_response_downstream_becomes_a_408_report() -> None:
    async with running_relay(relay_config(transaction_timeout=0.5)) as relay:
        endpoint = await MsrpEndpoint.create()
        grant = await endpoint.authenticate(relay.uris[0], "alice", USERS["alice"])
        alice = endpoint.new_session(relay=grant)
        mute = await RawClient.connect(relay.uris[0])  # authenticates, never answers
        mute_path = await mute.auth(relay.uris[0], "bob", USERS["bob"])
        await alice.start([_uri(mute_path), mute.uri], active=True)
        result = await asyncio.wait_for(
            alice.send("text/plain", b"anyone?", success_report=True), 10
        )
        assert result.status == "failed" and result.code == 408, result
        assert relay.stats["downstream_timeouts"] >= 1
        await mute.close()
        await endpoint.close()


async def test_a_long_chunk_yields_to_other_sessions() -> None:
    """Alice sends 8 MiB as ONE chunk to bob; carol's short messages to bob's other
    session on the same connection overtake it: the relay interrupts the chunk
    (RFC 4975 §7.1) and every message arrives whole."""
    one_chunk = EndpointConfig(session=SessionConfig(chunk_size=16 * 1024 * 1024))
    async with running_relay(relay_config(interrupt_after=32 * 1024)) as relay:
        uri = relay.uris[0]
        endpoints = {}
        grants = {}
        for user in ("alice", "bob", "mallory"):
            endpoints[user] = await MsrpEndpoint.create(config=one_chunk)
            grants[user] = await endpoints[user].authenticate(uri, user, USERS[user])
        alice = endpoints["alice"].new_session(relay=grants["alice"])
        carol = endpoints["mallory"].new_session(relay=grants["mallory"])
        bob_a = endpoints["bob"].new_session(relay=grants["bob"])
        bob_c = endpoints["bob"].new_session(relay=grants["bob"])
        await asyncio.gather(
            alice.start(bob_a.path, active=True),
            bob_a.start(alice.path, active=True),
            carol.start(bob_c.path, active=True),
            bob_c.start(carol.path, active=True),
        )
        big = bytes(range(256)) * (8 * 1024 * 1024 // 256)
        order: list[str] = []

        async def collect(session: Session, name: str, count: int) -> None:
            for _ in range(count):
                message = await session.receive()
                order.append(name)
                assert message.body == big if name == "big" else message.body.startswith(b"small")

        receivers = asyncio.gather(collect(bob_a, "big", 1), collect(bob_c, "small", 5))
        sending = asyncio.ensure_future(alice.send("application/octet-stream", big))
        await asyncio.sleep(0.005)
        for i in range(5):
            await carol.send("text/plain", f"small {i}".encode())
        await asyncio.wait_for(receivers, 30)
        assert (await asyncio.wait_for(sending, 10)).ok
        assert relay.stats["chunks_split"] >= 1
        assert order[0] == "small", order
        for endpoint in endpoints.values():
            await endpoint.close()


async def test_grant_expires() -> None:
    config = replace(
        relay_config(), auth=AuthSettings(min_expires=1, default_expires=1, max_expires=5)
    )
    async with running_relay(config) as relay:
        alice = await RawClient.connect(relay.uris[0])
        path = await alice.auth(relay.uris[0], "alice", USERS["alice"])
        await asyncio.sleep(1.2)
        await alice.send(send_frame(f"{path} msrp://127.0.0.1:9/x;tcp", str(alice.uri)))
        answer = await alice.read_frame()
        assert answer.code == 481
        await alice.close()


async def test_reauth_refreshes_the_same_path() -> None:
    async with running_relay() as relay:
        endpoint = await MsrpEndpoint.create()
        first = await endpoint.authenticate(relay.uris[0], "alice", USERS["alice"], expires=100)
        assert first.expires == 100
        # the client's From-Path changes per AUTH here, so a new path is granted
        again = await endpoint.authenticate(relay.uris[0], "alice", USERS["alice"], expires=200)
        assert again.expires == 200
        await endpoint.close()


async def test_client_auth_errors() -> None:
    async with running_relay() as relay:
        endpoint = await MsrpEndpoint.create()
        with pytest.raises(RelayAuthError) as info:
            await endpoint.authenticate(relay.uris[0], "alice", "wrong")
        assert info.value.code in (401, 403)
        with pytest.raises(RelayAuthError):
            await endpoint.authenticate(relay.uris[0], "nobody", "x")
        grant = await endpoint.authenticate(
            relay.uris[0], "bob", USERS["bob"], expires=10_000_000
        )  # 423 Max-Expires, retried within bounds
        assert grant.expires == relay.config.auth.max_expires
        await endpoint.close()


async def test_relay_realm_is_the_configured_one() -> None:
    async with running_relay() as relay:
        client = await RawClient.connect(relay.uris[0])
        from relay_harness import auth_frame

        await client.send(auth_frame(relay.uris[0], client.uri))
        challenge = await client.read_frame()
        values = challenge.headers.get_all("WWW-Authenticate")
        assert challenge.code == 401 and len(values) == 2
        assert all(f'realm="{REALM}"' in v and 'qop="auth"' in v for v in values)
        assert any("SHA-256" in v for v in values) and any("MD5" in v for v in values)
        await client.close()


@pytest.mark.parametrize("between", ["msrp", "msrps"])
async def test_two_pyim_relays_in_a_row(tmp_path: Path, ca: trustme.CA, between: str) -> None:
    """alice -> relay 1 -> relay 2 -> bob and back; relay 1 opens the connection to
    relay 2 itself, over TLS when relay 2's path says msrps."""
    ctx = client_context(ca)
    second = tls_config(tmp_path, ca) if between == "msrps" else relay_config()
    async with running_relay(ssl_client=ctx) as one, running_relay(second, ssl_client=ctx) as two:
        ep_a = await MsrpEndpoint.create(ssl_client=ctx)
        ep_b = await MsrpEndpoint.create(ssl_client=ctx)
        alice = ep_a.new_session(
            relay=await ep_a.authenticate(one.uris[0], "alice", "alice-secret")
        )
        bob = ep_b.new_session(relay=await ep_b.authenticate(two.uris[0], "bob", "bob-secret"))
        await asyncio.gather(alice.start(bob.path, active=True), bob.start(alice.path, active=True))
        assert (await alice.send("text/plain", b"over two relays", success_report=True)).ok
        got = await asyncio.wait_for(bob.receive(), 5)
        assert got.body == b"over two relays"
        big = os.urandom(2 * 1024 * 1024)
        result = await asyncio.wait_for(
            bob.send("application/octet-stream", big, success_report=True), 20
        )
        assert result.status == "delivered"
        assert (await asyncio.wait_for(alice.receive(), 20)).body == big
        assert one.stats["connections_opened"] + two.stats["connections_opened"] >= 1
        await ep_a.close()
        await ep_b.close()


async def test_stalled_tls_handshakes_are_closed_and_counted(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """A client that starts a TLS handshake and stops holds a socket only until
    ``limits.tls_handshake_timeout``; the failure is counted, others are served."""
    partial_hello = bytes.fromhex("1603010200010001fc0303") + b"\x00" * 8
    async with running_relay(tls_config(tmp_path, ca, tls_handshake_timeout=1.0)) as relay:
        uri = relay.uris[0]
        assert uri.port is not None
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        writer.write(partial_hello)
        alice, bob = await relayed_pair(relay, ssl_client=client_context(ca))  # served meanwhile
        await alice.send("text/plain", b"still served")
        assert (await asyncio.wait_for(bob.receive(), 5)).body == b"still served"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the relay
        writer.close()
        for _ in range(30):
            if relay.stats["tls_handshake_failures"] == 1:
                break
            await asyncio.sleep(0.1)
        assert relay.stats["tls_handshake_failures"] == 1
        assert len(relay.handshakes) == 0
        await close_all(alice, bob)
