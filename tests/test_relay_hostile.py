"""The relay under malformed and hostile input: every case gets the RFC's answer (or a
clean close), is counted, and the relay goes on serving everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from pyim.digest import DigestClient
from pyim.msrp import Frame
from pyim.msrp.frame import new_tid
from pyim.msrp.session import SessionConfig
from pyim.msrp.transport import EndpointConfig, MsrpEndpoint
from pyim.msrp.uri import MsrpUri
from pyim.relay import AuthSettings, Relay
from relay_harness import (
    USERS,
    RawClient,
    auth_frame,
    relay_config,
    running_relay,
    send_frame,
)

BLACKHOLE = "msrp://127.0.0.1:{port}/blackhole;tcp"


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    async with running_relay() as relay:
        yield relay


async def authed(relay: Relay, user: str) -> tuple[RawClient, str]:
    client = await RawClient.connect(relay.uris[0])
    return client, await client.auth(relay.uris[0], user, USERS[user])


async def assert_still_serving(relay: Relay) -> None:
    """A fresh pair of clients can still chat through the relay."""
    ep_a, ep_b = await MsrpEndpoint.create(), await MsrpEndpoint.create()
    try:
        a = ep_a.new_session(relay=await ep_a.authenticate(relay.uris[0], "bob", USERS["bob"]))
        b = ep_b.new_session(relay=await ep_b.authenticate(relay.uris[0], "bob", USERS["bob"]))
        await asyncio.gather(a.start(b.path, active=True), b.start(a.path, active=True))
        assert (await asyncio.wait_for(a.send("text/plain", b"still here"), 5)).ok
        assert (await asyncio.wait_for(b.receive(), 5)).body == b"still here"
    finally:
        await ep_a.close()
        await ep_b.close()


async def answer_or_report(client: RawClient) -> int:
    """The failure a sender learns: an error response, or 200 then a failure REPORT."""
    first = await client.read_frame()
    if first.code != 200:
        assert first.code is not None
        return first.code
    report = await client.read_frame(10)
    assert report.method == "REPORT", report
    status = report.header("Status") or ""
    return int(status.split()[1])


# -- AUTH ------------------------------------------------------------------------------


async def test_wrong_passwords_end_in_403_for_the_connection_and_the_address(
    relay: Relay,
) -> None:
    client = await RawClient.connect(relay.uris[0])
    digest = DigestClient("alice", "not-her-password")
    codes = []
    challenge = None
    for _ in range(4):
        authorization = None
        if challenge is not None:
            authorization = DigestClient("alice", "not-her-password").authorize(
                digest.choose(challenge.headers.get_all("WWW-Authenticate")),
                method="AUTH",
                uri=str(relay.uris[0]),
            )
        await client.send(auth_frame(relay.uris[0], client.uri, authorization=authorization))
        challenge = await client.read_frame()
        codes.append(challenge.code)
    assert codes == [401, 401, 401, 403]
    # the right password no longer helps on this connection...
    await client.send(auth_frame(relay.uris[0], client.uri, authorization='Digest username="x"'))
    assert (await client.read_frame()).code == 403
    # ...nor from the same address for a while
    other = await RawClient.connect(relay.uris[0])
    await other.send(auth_frame(relay.uris[0], other.uri))
    assert (await other.read_frame()).code == 403
    assert relay.auth.stats["auth_forbidden"] >= 1
    await client.close()
    await other.close()


async def test_replayed_nonce_and_foreign_realm_are_refused(relay: Relay) -> None:
    client = await RawClient.connect(relay.uris[0])
    await client.send(auth_frame(relay.uris[0], client.uri))
    challenge = await client.read_frame()
    values = challenge.headers.get_all("WWW-Authenticate")
    digest = DigestClient("alice", USERS["alice"])
    good = digest.authorize(digest.choose(values), method="AUTH", uri=str(relay.uris[0]))
    await client.send(auth_frame(relay.uris[0], client.uri, authorization=good))
    assert (await client.read_frame()).code == 200
    replay = await RawClient.connect(relay.uris[0])
    await replay.send(auth_frame(relay.uris[0], replay.uri, authorization=good))
    assert (await replay.read_frame()).code == 401  # same nonce, same nc: a replay
    foreign = [v.replace('realm="relay.test"', 'realm="elsewhere"') for v in values]
    other = DigestClient("alice", USERS["alice"])
    forged = other.authorize(other.choose(foreign), method="AUTH", uri=str(relay.uris[0]))
    await replay.send(auth_frame(relay.uris[0], replay.uri, authorization=forged))
    assert (await replay.read_frame()).code in (401, 403)
    await replay.send(auth_frame(relay.uris[0], replay.uri, authorization="Digest ,,,=\x7f"))
    assert (await replay.read_frame()).code in (401, 403)
    await client.close()
    await replay.close()


async def test_stale_nonce_is_challenged_again_with_stale_true() -> None:
    config = replace(relay_config(), auth=AuthSettings(nonce_lifetime=0.2))
    async with running_relay(config) as relay:
        client = await RawClient.connect(relay.uris[0])
        await client.send(auth_frame(relay.uris[0], client.uri))
        challenge = await client.read_frame()
        await asyncio.sleep(0.4)
        digest = DigestClient("alice", USERS["alice"])
        late = digest.authorize(
            digest.choose(challenge.headers.get_all("WWW-Authenticate")),
            method="AUTH",
            uri=str(relay.uris[0]),
        )
        await client.send(auth_frame(relay.uris[0], client.uri, authorization=late))
        again = await client.read_frame()
        assert again.code == 401
        assert all("stale=true" in v for v in again.headers.get_all("WWW-Authenticate"))
        await client.close()


@pytest.mark.parametrize(("expires", "header"), [(5, "Min-Expires"), (10**6, "Max-Expires")])
async def test_expires_out_of_bounds_is_423(relay: Relay, expires: int, header: str) -> None:
    client = await RawClient.connect(relay.uris[0])
    await client.send(auth_frame(relay.uris[0], client.uri, expires=expires))
    challenge = await client.read_frame()
    digest = DigestClient("alice", USERS["alice"])
    value = digest.authorize(
        digest.choose(challenge.headers.get_all("WWW-Authenticate")),
        method="AUTH",
        uri=str(relay.uris[0]),
    )
    await client.send(auth_frame(relay.uris[0], client.uri, authorization=value, expires=expires))
    answer = await client.read_frame()
    assert answer.code == 423 and answer.header(header) is not None
    await client.close()


# -- paths -------------------------------------------------------------------------------


async def test_send_into_someone_elses_path_is_refused(relay: Relay) -> None:
    alice, alice_path = await authed(relay, "alice")
    mallory, _ = await authed(relay, "mallory")
    anonymous = await RawClient.connect(relay.uris[0])
    onward = f"{alice_path} msrp://127.0.0.1:9/victim;tcp msrp://127.0.0.1:9/v2;tcp"
    elsewhere = f"{alice_path} msrp://127.0.0.2:2855/victim;tcp"  # not alice's client
    for intruder in (mallory, anonymous):
        for to_path in (onward, elsewhere):
            await intruder.send(send_frame(to_path, str(intruder.uri), b"I am alice"))
            assert (await intruder.read_frame()).code == 403
    assert relay.stats["injection_refused"] == 4
    # delivering TO alice (her path as the last hop) is what her path is for
    await anonymous.send(send_frame(f"{alice_path} {alice.uri}", "msrp://x.test:1/y;tcp"))
    assert (await anonymous.read_frame()).code == 200
    assert (await alice.read_frame()).body == b"hello"
    for client in (alice, mallory, anonymous):
        await client.close()
    await assert_still_serving(relay)


async def test_to_path_not_this_relay_and_loops(relay: Relay) -> None:
    alice, path = await authed(relay, "alice")
    elsewhere = "msrp://127.0.0.2:2855/abc;tcp msrp://127.0.0.1:9/x;tcp"
    await alice.send(send_frame(elsewhere, str(alice.uri)))
    assert (await alice.read_frame()).code == 481
    await alice.send(send_frame(f"{path} {path} msrp://127.0.0.1:9/x;tcp", str(alice.uri)))
    assert (await alice.read_frame()).code == 400
    await alice.send(send_frame(f"{path} msrp://127.0.0.1:9/x;tcp", f"{path} {alice.uri}"))
    assert (await alice.read_frame()).code == 400
    unknown = path.rsplit("/", 1)[0] + "/nosuchgrant;tcp"
    await alice.send(send_frame(f"{unknown} {alice.uri}", str(alice.uri)))
    assert (await alice.read_frame()).code == 481
    no_paths = Frame(new_tid(), "SEND")
    no_paths.headers.add("Message-ID", "abcd")
    await alice.send(no_paths)
    assert (await alice.read_frame()).code == 400
    await alice.close()


async def test_unreachable_next_hop_is_reported(relay: Relay) -> None:
    alice, path = await authed(relay, "alice")
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connection refused
        await alice.send(send_frame(f"{path} {BLACKHOLE.format(port=port)}", str(alice.uri)))
        assert await answer_or_report(alice) == 481
    assert relay.stats["connect_failures"] == 1
    await alice.close()


async def test_next_hop_that_never_reads_stops_the_sender_not_the_relay() -> None:
    limits = {"max_queued_bytes": 256 * 1024, "write_high_water": 128 * 1024}
    async with running_relay(relay_config(**limits)) as relay:
        accepted: list[asyncio.StreamWriter] = []

        async def never_read(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)

        server = await asyncio.start_server(never_read, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        endpoint = await MsrpEndpoint.create(
            config=EndpointConfig(session=SessionConfig(chunk_size=64 * 1024))
        )
        grant = await endpoint.authenticate(relay.uris[0], "alice", USERS["alice"])
        alice = endpoint.new_session(relay=grant)
        await alice.start([MsrpUri.parse(BLACKHOLE.format(port=port))], active=True)
        sending = asyncio.ensure_future(
            alice.send("application/octet-stream", os.urandom(64 << 20))
        )
        await asyncio.sleep(1.5)
        assert not sending.done()
        outbound = [c for c in relay.connections if c.target is not None]
        assert len(outbound) == 1
        held = outbound[0].queued
        assert held <= relay.config.limits.max_queued_bytes + 256 * 1024, held
        assert relay.stats["read_pauses"] >= 1
        await assert_still_serving(relay)  # everyone else is unaffected
        for writer in accepted:
            writer.transport.abort()
        result = await asyncio.wait_for(sending, 40)
        assert result.status == "failed"
        server.close()
        await endpoint.close()


async def test_sender_disconnecting_mid_chunk_aborts_it_downstream(relay: Relay) -> None:
    endpoint = await MsrpEndpoint.create()
    grant = await endpoint.authenticate(relay.uris[0], "bob", USERS["bob"])
    bob = endpoint.new_session(relay=grant)
    alice, alice_path = await authed(relay, "alice")
    await bob.start([MsrpUri.parse(alice_path), alice.uri], active=True)
    assert (await alice.read_frame()).method == "SEND"  # bob's binding SEND
    body = os.urandom(10_000)
    frame = send_frame(f"{alice_path} {bob.path[0]} {bob.local_uri}", str(alice.uri), body)
    wire = frame.encode()
    await alice.send(wire[: len(wire) - 5_000])
    await asyncio.sleep(0.2)
    await alice.close()
    for _ in range(50):
        if bob.aborted:
            break
        await asyncio.sleep(0.05)
    assert bob.aborted and bob.aborted[0].received < len(body)
    assert relay.stats["truncated_frames"] == 1
    await endpoint.close()
    await assert_still_serving(relay)


# -- bad bytes and limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"MSRP a SEND\r\n" + b"X" * 10_000 + b"\r\n",
        b"\x00\xff" * 500,
        b"MSRP " + b"t" * 100 + b" SEND\r\n",
    ],
)
async def test_garbage_closes_the_connection(relay: Relay, garbage: bytes) -> None:
    client = await RawClient.connect(relay.uris[0])
    await client.send(garbage)
    await client.read_until_closed(5)
    assert relay.stats["closed_bad_input"] == 1
    await assert_still_serving(relay)


async def test_chunk_over_the_limit_is_413_and_aborted_downstream() -> None:
    async with running_relay(relay_config(max_chunk_size=4096)) as relay:
        bob, bob_path = await authed(relay, "bob")
        alice, alice_path = await authed(relay, "alice")
        big = send_frame(f"{alice_path} {bob_path} {bob.uri}", str(alice.uri), b"x" * 6000)
        await alice.send(big)
        assert (await alice.read_frame()).code == 413
        got = await bob.read_frame()
        assert got.flag == "#"
        await alice.close()
        await bob.close()


async def test_connection_limits() -> None:
    config = relay_config(max_connections_per_ip=3, auth_timeout=0.5)
    async with running_relay(config) as relay:
        clients = [await RawClient.connect(relay.uris[0]) for _ in range(4)]
        await clients[3].read_until_closed(3)  # the fourth is over the limit
        assert relay.stats["refused_per_ip"] == 1
        for client in clients[:3]:  # none authenticates: closed after auth_timeout
            await client.read_until_closed(4)
        assert relay.stats["closed_auth_timeout"] == 3
        fresh = await RawClient.connect(relay.uris[0])
        await fresh.auth(relay.uris[0], "alice", USERS["alice"])
        await asyncio.sleep(1.5)  # authenticated: not closed
        await fresh.send(auth_frame(relay.uris[0], fresh.uri))
        assert (await fresh.read_frame()).code == 401
        await fresh.close()


async def test_unmatched_responses_are_counted_and_ignored(relay: Relay) -> None:
    alice, _ = await authed(relay, "alice")
    await alice.send(Frame("nosuchtid1", code=200, comment="OK"))
    await alice.send(auth_frame(relay.uris[0], alice.uri))
    assert (await alice.read_frame()).code == 401
    assert relay.stats["responses_unmatched"] == 1
    await alice.close()


async def test_stalled_frame_closes_the_connection() -> None:
    async with running_relay(relay_config(frame_timeout=0.5)) as relay:
        alice, path = await authed(relay, "alice")
        await alice.send(b"MSRP abcd SEND\r\nTo-Path: " + path.encode())
        await alice.read_until_closed(4)
        assert relay.stats["closed_stalled"] == 1


async def test_sender_that_never_reads_its_answers_is_not_read_either() -> None:
    """Alice floods requests that the relay answers itself (481: not this relay) and
    never reads the answers: the relay stops reading her once its buffer to her is
    full, instead of queueing answers without bound."""
    async with running_relay(relay_config(write_high_water=16 * 1024)) as relay:
        alice, _ = await authed(relay, "alice")
        elsewhere = "msrp://127.0.0.2:2855/x;tcp msrp://127.0.0.2:2855/y;tcp"
        frame = send_frame(elsewhere, str(alice.uri), b"x" * 100).encode()
        alice.writer.transport.set_write_buffer_limits(high=64 * 1024 * 1024)
        for _ in range(20):  # 80,000 requests in all, bounded; alice never reads
            alice.writer.write(frame * 4000)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        conn = next(c for c in relay.connections if c.auth.grants)
        assert conn._read_paused and relay.stats["read_pauses"] >= 1
        assert len(conn._queue) < 2_000, len(conn._queue)
        assert relay.stats["requests_in"] < 40_000, relay.stats["requests_in"]
        await alice.close()
        await assert_still_serving(relay)


async def test_limits_on_connections_grants_and_idle_peers() -> None:
    config = relay_config(
        max_connections=4, max_unauthenticated_per_ip=2, max_grants=2, idle_timeout=0.5
    )
    async with running_relay(config) as relay:
        uri = relay.uris[0]
        first, second = await RawClient.connect(uri), await RawClient.connect(uri)
        third = await RawClient.connect(uri)  # a third one not yet authenticated
        await third.read_until_closed(3)
        assert relay.stats["refused_unauthenticated"] == 1
        await first.auth(uri, "alice", USERS["alice"])  # now it counts as authenticated
        await second.auth(uri, "bob", USERS["bob"])
        fourth = await RawClient.connect(uri)
        await fourth.send(auth_frame(uri, fourth.uri))
        challenge = await fourth.read_frame()
        assert challenge.code == 401
        # a third grant is over max_grants
        digest = DigestClient("mallory", USERS["mallory"])
        value = digest.authorize(
            digest.choose(challenge.headers.get_all("WWW-Authenticate")),
            method="AUTH",
            uri=str(uri),
        )
        await fourth.send(auth_frame(uri, fourth.uri, authorization=value))
        assert (await fourth.read_frame()).code == 403
        assert relay.auth.stats["grants_refused"] == 1
        # a peer that relayed a frame (trusted) but holds no path is closed when idle
        alice_path = next(iter(relay.auth.grants.values())).uri_text
        alice_client = next(iter(relay.auth.grants.values())).client
        courier = await RawClient.connect(uri)
        await courier.send(send_frame(f"{alice_path} {alice_client}", "msrp://c.test:1/c;tcp"))
        assert (await courier.read_frame()).code == 200
        await courier.read_until_closed(4)
        assert relay.stats["closed_idle"] >= 1
        for client in (first, second, fourth):
            await client.close()


async def test_too_many_headers_is_refused() -> None:
    async with running_relay(relay_config(max_headers=8)) as relay:
        alice, path = await authed(relay, "alice")
        frame = send_frame(f"{path} msrp://127.0.0.1:9/x;tcp", str(alice.uri))
        for i in range(10):
            frame.headers.add(f"X-Extra-{i}", "1")
        await alice.send(frame)
        try:
            answer = await alice.read_frame()
        except ConnectionError:
            assert relay.stats["closed_bad_input"] == 1
        else:
            assert answer.code == 400
        assert relay.stats["parse_errors"] == 1
