"""Two relays in a row: Kamailio 5.6.3's msrp module and the pyim relay (RFC 4976).

alice AUTHs to Kamailio, bob AUTHs to the pyim relay (so pyim endpoints AUTH to both
kinds of relay); each puts its relay's Use-Path in front of its own URI, and the
session runs::

    alice -> Kamailio -> pyim relay -> bob      (To-Path: kam bob-relay bob)
    bob -> pyim relay -> Kamailio -> alice      (To-Path: pyim kam-relay alice)

over TCP and over TLS (Kamailio's throw-away certificate, the pyim relay's from
trustme).  Short text both ways with success reports, then 3 MiB both ways in 10 KiB
chunks (Kamailio 5.6.3 does not route frames of about 11 KB or more), every byte
checked.

How the two relays meet (docs/kamailio-msrp-notes.md): Kamailio never answers a SEND
itself and routes responses by their To-Path, so a response to a frame the pyim relay
forwarded to Kamailio comes back over a connection Kamailio opens to the pyim relay's
listener, not over the one the frame went out on; the pyim relay matches it by
transaction id (``Relay.waiting``).  The pyim relay answers 200 hop by hop, which
Kamailio passes on to alice like any response.

Everything runs on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import trustme

from kamailio_msrp import KamailioMsrpRelay
from pyim.msrp.frame import Frame
from pyim.msrp.session import SessionConfig
from pyim.msrp.transport import DeliveryResult, EndpointConfig, MsrpEndpoint, Session
from pyim.msrp.uri import MsrpUri, parse_path
from pyim.relay import Listener, Relay, RelayConfig
from relay_harness import USERS, RawClient, relay_config, running_relay

pytest_plugins = ["kamailio_msrp"]

CHUNK = 10 * 1024  # Kamailio 5.6.3 routes frames up to about 11 KB only
BIG = 3 * 1024 * 1024
SHORT_TIMEOUT = 10.0
BIG_TIMEOUT = 60.0
HELLO = "héllo bob, from behind Kamailio".encode()
REPLY = "héllo alice, from behind the pyim relay".encode()


@dataclass
class Interop:
    """The two relays and alice's and bob's sessions joined across them."""

    kamailio: KamailioMsrpRelay
    relay: Relay
    alice: Session
    bob: Session


def endpoint_config() -> EndpointConfig:
    return EndpointConfig(session=SessionConfig(chunk_size=CHUNK))


def tls_relay_config(tmp_path: Path, ca: trustme.CA) -> RelayConfig:
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "pyim-relay.pem", tmp_path / "pyim-relay.key"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    return replace(
        relay_config(),
        listen=(Listener(scheme="msrps", port=0, cert=cert_file, key=key_file),),
    )


def trust_both(kamailio: KamailioMsrpRelay, ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts Kamailio's self-signed certificate and trustme's CA."""
    context = kamailio.client_ssl_context()
    ca.configure_trust(context)
    return context


@contextlib.asynccontextmanager
async def joined(
    kamailio: KamailioMsrpRelay,
    relay: Relay,
    *,
    ssl_client: ssl.SSLContext | None,
) -> AsyncIterator[Interop]:
    """alice behind Kamailio, bob behind the pyim relay, a session between them."""
    kam_uri = MsrpUri.parse(kamailio.uri)
    pyim_uri = relay.uris[0]
    alice_ep = await MsrpEndpoint.create(config=endpoint_config(), ssl_client=ssl_client)
    bob_ep = await MsrpEndpoint.create(config=endpoint_config(), ssl_client=ssl_client)
    try:
        # no Expires to Kamailio 5.6.3 (it answers 423 or worse)
        alice_grant = await asyncio.wait_for(
            alice_ep.authenticate(kam_uri, "alice", kamailio.users["alice"], expires=None),
            SHORT_TIMEOUT,
        )
        bob_grant = await asyncio.wait_for(
            bob_ep.authenticate(pyim_uri, "bob", USERS["bob"]), SHORT_TIMEOUT
        )
        assert len(alice_grant.use_path) == 1 and len(bob_grant.use_path) == 1
        assert (alice_grant.use_path[0].host, alice_grant.use_path[0].port) == (
            kamailio.host,
            kamailio.port,
        )
        assert alice_grant.use_path[0].scheme == kam_uri.scheme
        assert (bob_grant.use_path[0].host, bob_grant.use_path[0].port) == (
            pyim_uri.host,
            pyim_uri.port,
        )
        alice = alice_ep.new_session(relay=alice_grant)
        bob = bob_ep.new_session(relay=bob_grant)
        assert alice.path == [alice_grant.use_path[0], alice.local_uri]
        assert bob.path == [bob_grant.use_path[0], bob.local_uri]
        await asyncio.wait_for(
            asyncio.gather(alice.start(bob.path, active=True), bob.start(alice.path, active=True)),
            SHORT_TIMEOUT,
        )
        yield Interop(kamailio, relay, alice, bob)
    finally:
        for endpoint in (alice_ep, bob_ep):
            await asyncio.wait_for(endpoint.close(), SHORT_TIMEOUT)


async def send_and_receive(
    sender: Session, receiver: Session, content_type: str, body: bytes, timeout: float
) -> DeliveryResult:
    """``sender`` sends ``body`` with a success report; ``receiver`` gets it whole,
    through both relays: its From-Path is the receiver's relay, the sender's relay,
    the sender."""
    sending = asyncio.ensure_future(sender.send(content_type, body, success_report=True))
    try:
        message = await asyncio.wait_for(receiver.receive(), timeout)
        result = await asyncio.wait_for(sending, timeout)
    finally:
        sending.cancel()
    assert message.content_type == content_type
    from_path = parse_path(message.headers.get("From-Path") or "")
    assert from_path == [*receiver.path[:-1], *sender.path], from_path
    assert len(message.body) == len(body)
    assert hashlib.sha256(message.body).hexdigest() == hashlib.sha256(body).hexdigest()
    return result


async def exchange(pair: Interop) -> None:
    alice, bob = pair.alice, pair.bob
    # Short text both ways.  "delivered" is the strongest outcome there is: bob's
    # (alice's) success REPORT came back across both relays.  It works because both
    # ends put the whole From-Path of the request into the REPORT's To-Path, which
    # Kamailio routes like a request and the pyim relay forwards on its grant.
    result = await send_and_receive(alice, bob, "text/plain", HELLO, SHORT_TIMEOUT)
    assert result.status == "delivered", result
    result = await send_and_receive(bob, alice, "text/plain", REPLY, SHORT_TIMEOUT)
    assert result.status == "delivered", result

    # 3 MiB both ways in 10 KiB chunks (300+ frames through both relays each way)
    big_a = b"".join(hashlib.sha256(b"a%d" % i).digest() for i in range(BIG // 32))
    big_b = b"".join(hashlib.sha256(b"b%d" % i).digest() for i in range(BIG // 32))
    result = await send_and_receive(alice, bob, "application/octet-stream", big_a, BIG_TIMEOUT)
    assert result.status == "delivered", result
    result = await send_and_receive(bob, alice, "application/octet-stream", big_b, BIG_TIMEOUT)
    assert result.status == "delivered", result

    # both at once
    results = await asyncio.wait_for(
        asyncio.gather(
            send_and_receive(alice, bob, "application/octet-stream", big_b, BIG_TIMEOUT),
            send_and_receive(bob, alice, "application/octet-stream", big_a, BIG_TIMEOUT),
        ),
        BIG_TIMEOUT,
    )
    assert [r.status for r in results] == ["delivered", "delivered"], results


async def check_relay_stats(relay: Relay) -> None:
    """Every frame forwarded, none refused or failed, every response matched."""
    # the last responses may still be on their way (bob's REPORT can overtake alice's
    # 200 through Kamailio): wait, bounded, until no forwarded frame awaits one
    async with asyncio.timeout(SHORT_TIMEOUT):
        while relay.waiting:
            await asyncio.sleep(0.01)
    stats = relay.stats
    chunks = -(-BIG // CHUNK)
    # each way: the binding SEND, the text, two big messages and three success REPORTs
    # (no chunk is split: 10 KiB is far below interrupt_after)
    assert stats["frames_forwarded"] == 2 * (1 + 1 + 2 * chunks + 3), stats
    # + bob's two AUTHs (the first one is challenged)
    assert stats["requests_in"] == stats["frames_forwarded"] + 2, stats
    assert stats["body_bytes"] == 4 * BIG + len(HELLO) + len(REPLY), stats
    # bob, and Kamailio's one connection for everything it sends to the pyim relay
    # (requests and responses alike); the pyim relay's one connection to Kamailio
    assert stats["connections_accepted"] == 2, stats
    assert stats["connections_opened"] == 1, stats
    refusals = {k: v for k, v in stats.items() if k.startswith(("refused", "answered_"))}
    assert refusals == {}, stats
    for key in (
        "injection_refused",
        "responses_unmatched",
        "downstream_failures",
        "downstream_timeouts",
        "reports_sent",
        "connect_failures",
        "parse_errors",
        "truncated_frames",
        "closed_bad_input",
        "closed_auth_timeout",
        "closed_stalled",
        "failures_unreported",
    ):
        assert stats[key] == 0, (key, stats)
    assert relay.auth.stats["grants"] == 1


def check_kamailio_log(kamailio: KamailioMsrpRelay) -> None:
    log = kamailio.log_text()
    assert "To-Path and From-Path must be defined before any header" not in log
    assert kamailio.is_running()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_kamailio_and_pyim_relay_in_a_row_over_tcp(
    kamailio_msrp: KamailioMsrpRelay,
) -> None:
    async with running_relay() as relay:
        async with joined(kamailio_msrp, relay, ssl_client=None) as pair:
            await exchange(pair)
        await check_relay_stats(relay)
    check_kamailio_log(kamailio_msrp)


async def test_kamailio_and_pyim_relay_in_a_row_over_tls(
    kamailio_msrp_tls: KamailioMsrpRelay, tmp_path: Path, ca: trustme.CA
) -> None:
    config = tls_relay_config(tmp_path, ca)
    async with running_relay(config, ssl_client=kamailio_msrp_tls.client_ssl_context()) as relay:
        assert relay.uris[0].scheme == "msrps"
        ssl_client = trust_both(kamailio_msrp_tls, ca)
        async with joined(kamailio_msrp_tls, relay, ssl_client=ssl_client) as pair:
            assert pair.alice.path[0].scheme == "msrps" and pair.bob.path[0].scheme == "msrps"
            await exchange(pair)
        await check_relay_stats(relay)
    check_kamailio_log(kamailio_msrp_tls)


async def test_kamailio_connection_carrying_only_responses_stays_open(
    kamailio_msrp: KamailioMsrpRelay,
) -> None:
    """alice behind Kamailio only answers (a raw client, no binding SEND of its own): the
    connection Kamailio opens to the pyim relay for her responses carries nothing else.
    Those responses match transactions the pyim relay forwarded, so the connection is
    a legitimate next hop and must outlive ``auth_timeout`` (regression: it used to be
    closed as "no AUTH in time", losing any response in flight, whose sender then got
    a 408 failure REPORT for a delivered message, and making Kamailio reconnect)."""
    kam_uri = MsrpUri.parse(kamailio_msrp.uri)
    async with running_relay(relay_config(auth_timeout=1.0)) as relay:
        alice = await RawClient.connect(kam_uri)
        endpoint = await MsrpEndpoint.create(config=endpoint_config())
        try:
            use_path = await asyncio.wait_for(
                alice.auth(kam_uri, "alice", kamailio_msrp.users["alice"]), SHORT_TIMEOUT
            )
            grant = await asyncio.wait_for(
                endpoint.authenticate(relay.uris[0], "bob", USERS["bob"]), SHORT_TIMEOUT
            )
            bob = endpoint.new_session(relay=grant)
            await asyncio.wait_for(
                bob.start([MsrpUri.parse(use_path), alice.uri], active=True), SHORT_TIMEOUT
            )

            async def answer() -> bytes:
                frame = await alice.read_frame(SHORT_TIMEOUT)
                assert frame.method == "SEND", frame
                response = Frame(frame.tid, code=200, comment="OK")
                response.headers.add("To-Path", frame.header("From-Path") or "")
                response.headers.add("From-Path", str(alice.uri))
                await alice.send(response)
                return frame.body or b""

            assert await answer() == b""  # bob's binding SEND
            for i in range(3):
                sending = asyncio.ensure_future(bob.send("text/plain", b"hi %d" % i))
                assert await answer() == b"hi %d" % i
                assert (await asyncio.wait_for(sending, SHORT_TIMEOUT)).status == "sent"
                async with asyncio.timeout(SHORT_TIMEOUT):
                    while relay.waiting:  # alice's 200 is back at the pyim relay
                        await asyncio.sleep(0.01)
                await asyncio.sleep(2.2)  # > auth_timeout + the relay's 1 s timer tick
            assert relay.stats["responses_unmatched"] == 0, relay.stats
            assert relay.stats["closed_auth_timeout"] == 0, relay.stats
            assert relay.stats["connections_accepted"] == 2, relay.stats  # bob, Kamailio
        finally:
            await alice.close()
            await asyncio.wait_for(endpoint.close(), SHORT_TIMEOUT)
