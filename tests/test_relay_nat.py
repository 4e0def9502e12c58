"""Two MSRP clients behind two NATs chat through the relay (RFC 4976), in namespaces.

The topology (tests/netns.py): client a (10.1.0.2) behind nat1, client b (10.2.0.2)
behind nat2, the relay on the public segment (198.51.100.1). The tests show

* that a direct MSRP connection between the clients is impossible: a cannot open a TCP
  connection to b, neither at b's private address nor through nat2's public address;
* that through the relay it works: both clients AUTH, exchange their session paths
  (a file exchange stands in for SDP), a sends three texts and a 10 MiB message with
  Success-Reports, b checks every byte (SHA-256) and answers each text;
* that the relay saw the clients at their NATs' public addresses (its AUTH log lines).

Without root/CAP_NET_ADMIN, iproute2 or nftables the tests fail (never skip).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netns import PRIVILEGE_MESSAGE, NatTopology, check_privileges

pytestmark = pytest.mark.timeout(90)

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"
CLIENT = TESTS_DIR / "relay_nat_client.py"
ENV = {"PYTHONPATH": f"{SRC_DIR}:{TESTS_DIR}", "PYTHONUNBUFFERED": "1"}

RELAY_PORT = 2855
REALM = "nat.test"
USERS = {"alice": "alice-secret-5Jq", "bob": "bob-secret-x9W"}
BIG_SIZE = 10 * 1024 * 1024
TEXTS = 3
CLIENTS_TIMEOUT = 60.0

# Accepts connections until killed; prints LISTENING, then PEER <ip> for each one.
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("LISTENING", flush=True)
while True:
    conn, peer = s.accept()
    print("PEER", peer[0], peer[1], flush=True)
    conn.close()
"""

# One TCP connect bounded by argv[3] seconds: CONNECTED, or ERROR <exception> <errno>.
CONNECTOR = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
except OSError as exc:
    print("ERROR", type(exc).__name__, exc.errno, flush=True)
    sys.exit(1)
print("CONNECTED", *c.getsockname(), flush=True)
"""


def _require_netns() -> None:
    message = check_privileges()
    if message is not None:
        pytest.fail(message or PRIVILEGE_MESSAGE, pytrace=False)


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatTopology]:
    _require_netns()
    with NatTopology(tmp_path_factory.mktemp("relay-nat")) as topology:
        yield topology


def _connect(topo: NatTopology, ns: str, host: str, port: int, timeout: float) -> list[str]:
    done = topo.run(ns, [sys.executable, "-c", CONNECTOR, host, str(port), str(timeout)], 10)
    words = done.stdout.split()
    assert words, f"connector printed nothing: {done.stderr}\n{topo.report()}"
    return words


def test_direct_connection_between_the_clients_is_impossible(topo: NatTopology) -> None:
    port = RELAY_PORT  # an MSRP port on b, as if b listened for a direct session
    listener = topo.popen(
        topo.ns_b, [sys.executable, "-c", LISTENER, topo.b_ip, str(port)], name="b-listener"
    )
    assert topo.wait_for_output(listener, "LISTENING", timeout=5), topo.report()

    # b's private address: not routed outside nat2's LAN (ICMP unreachable from nat1).
    started = time.monotonic()
    words = _connect(topo, topo.ns_a, topo.b_ip, port, timeout=2.0)
    elapsed = time.monotonic() - started
    assert words[0] == "ERROR", f"a reached b at {topo.b_ip}: {words}\n{topo.report()}"
    assert elapsed < 5.0, elapsed

    # nat2's public address: the unsolicited inbound connection is dropped (time-out).
    words = _connect(topo, topo.ns_a, topo.nat2_public_ip, port, timeout=2.0)
    assert words[0] == "ERROR", f"a reached b via nat2: {words}\n{topo.report()}"
    assert words[1] == "TimeoutError", f"{words}\n{topo.report()}"

    # Control: the listener is up and reachable from b's own namespace.
    words = _connect(topo, topo.ns_b, topo.b_ip, port, timeout=2.0)
    assert words[0] == "CONNECTED", f"{words}\n{topo.report()}"
    assert topo.wait_for_output(listener, f"PEER {topo.b_ip}", timeout=5), topo.report()
    peers = [x for x in topo.record(listener).read_stdout().splitlines() if x.startswith("PEER")]
    assert peers == [f"PEER {topo.b_ip} {peers[0].split()[2]}"], topo.report()  # only b's own
    topo.stop(listener)


def _write_config(path: Path, host: str) -> None:
    users = "\n".join(f'{user} = "{password}"' for user, password in USERS.items())
    path.write_text(
        f'[relay]\nrealm = "{REALM}"\nlog_level = "info"\n\n'
        f"[users]\n{users}\n\n"
        f'[[listen]]\nscheme = "msrp"\nhost = "{host}"\nport = {RELAY_PORT}\n',
        encoding="utf-8",
    )


def _results(stdout: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _wait_all(procs: list[subprocess.Popen[Any]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def test_clients_behind_nats_chat_through_the_relay(topo: NatTopology, tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    _write_config(config, topo.relay_ip)
    relay = topo.popen(
        topo.ns_pub,
        [sys.executable, "-m", "pyim", "relay", "-c", str(config)],
        name="relay",
        env=ENV,
    )
    ready = f"pyim relay ready: msrp://{topo.relay_ip}:{RELAY_PORT};tcp"
    assert topo.wait_for_output(relay, ready, timeout=10), topo.report()
    relay_uri = ready.split(": ", 1)[1]

    exchange = tmp_path / "exchange"
    exchange.mkdir()
    clients: dict[str, subprocess.Popen[Any]] = {}
    started = time.monotonic()
    for role, ns, host, user in (
        ("a", topo.ns_a, topo.a_ip, "alice"),
        ("b", topo.ns_b, topo.b_ip, "bob"),
    ):
        argv = [
            sys.executable,
            str(CLIENT),
            *("--relay", relay_uri, "--user", user, "--password", USERS[user]),
            *("--host", host, "--workdir", str(exchange), "--role", role),
        ]
        clients[role] = topo.popen(ns, argv, name=f"client-{role}", env=ENV)

    finished = _wait_all(list(clients.values()), CLIENTS_TIMEOUT)
    elapsed = time.monotonic() - started
    assert finished, f"clients still running after {CLIENTS_TIMEOUT:.0f} s\n{topo.report()}"

    events = {role: _results(topo.record(p).read_stdout()) for role, p in clients.items()}
    results = {role: [e for e in ev if e.get("event") == "result"] for role, ev in events.items()}
    for role, proc in clients.items():
        assert proc.returncode == 0 and len(results[role]) == 1 and results[role][0]["ok"], (
            f"client {role} failed (exit {proc.returncode}): {results[role]}\n{topo.report()}"
        )
    a, b = results["a"][0], results["b"][0]
    assert a["texts_sent"] == TEXTS and a["replies"] == TEXTS, a
    assert a["big_bytes_sent"] == BIG_SIZE, a
    assert b["texts_received"] == TEXTS and b["replies_sent"] == TEXTS, b
    assert b["big_bytes_checked"] == BIG_SIZE, b  # every byte hashed and compared
    assert a["big_sha256"] == b["big_sha256"], (a, b)
    delivered = [e for e in events["a"] if e.get("event") == "sent"]
    assert [e["status"] for e in delivered] == ["delivered"] * (TEXTS + 1), delivered
    assert [e["status"] for e in events["b"] if e.get("event") == "sent"] == ["delivered"] * 3

    # Each client's path goes through the relay: the Use-Path precedes its own URI.
    for role, ip in (("a", topo.a_ip), ("b", topo.b_ip)):
        (path_event,) = [e for e in events[role] if e.get("event") == "path"]
        hops = path_event["path"].split()
        assert len(hops) == 2, path_event
        assert hops[0].startswith(f"msrp://{topo.relay_ip}:{RELAY_PORT}/"), path_event
        assert hops[1].startswith(f"msrp://{ip}:"), path_event

    # The relay saw the clients at their NATs' public addresses (masquerade).
    log = topo.record(relay).read_stderr()
    auth = dict(re.findall(r"AUTH (\w+) from ([0-9.]+)", log))
    assert auth == {"alice": topo.nat1_public_ip, "bob": topo.nat2_public_ip}, (
        f"{auth}\n{topo.report()}"
    )

    assert topo.stop(relay) == 0, topo.report()
    print(
        f"relayed session: clients done in {elapsed:.2f} s, "
        f"10 MiB in {a['big_seconds']:.2f} s, a {a['seconds']:.2f} s, b {b['seconds']:.2f} s"
    )
