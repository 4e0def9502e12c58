"""The NAT test topology (tests/netns.py) does what the NAT tests rely on.

* a client behind a NAT reaches the relay on the public segment, and the relay sees the
  NAT's public address (masquerade);
* a client cannot reach the other client, neither at its private address nor through
  the other NAT's public address (stateful NAT: no unsolicited inbound);
* the namespaces are gone after the context exits, also after a failed build, and a
  topology left by a killed run is cleaned up without breaking a new one.

Only addresses inside the namespaces these tests create are used (TEST-NET-2 and 10.x).
Without root/CAP_NET_ADMIN, iproute2 or nftables the tests fail (never skip).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netns import (
    OWNER_DIR,
    NatTopology,
    NetnsError,
    binary,
    check_privileges,
    list_namespaces,
)

pytestmark = pytest.mark.timeout(30)

# Accepts one connection (bounded by argv[2] seconds), prints and sends back the peer.
LISTENER = """
import socket, sys
port, timeout = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(4)
print("LISTENING", flush=True)
s.settimeout(timeout)
conn, peer = s.accept()
print("PEER", peer[0], peer[1], flush=True)
conn.sendall(("%s %d\\n" % peer).encode())
conn.close()
"""

# Connects with a 2 s timeout; prints CONNECTED <local addr> <what the server saw> or
# ERROR <exception> <errno>; exit status 0 or 1.
CONNECTOR = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2.0)
    local = c.getsockname()
    seen = c.recv(200).decode().strip()
except OSError as exc:
    print("ERROR", type(exc).__name__, exc.errno, flush=True)
    sys.exit(1)
print("CONNECTED", local[0], local[1], seen, flush=True)
"""


def _require_netns() -> None:
    message = check_privileges()
    if message is not None:
        pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatTopology]:
    _require_netns()
    with NatTopology(tmp_path_factory.mktemp("netns")) as topology:
        yield topology


def _listen(topo: NatTopology, ns: str, port: int, name: str) -> subprocess.Popen[bytes]:
    proc = topo.popen(ns, [sys.executable, "-c", LISTENER, str(port), "8"], name=name)
    assert topo.wait_for_output(proc, "LISTENING", timeout=5), topo.report()
    return proc


def _connect(topo: NatTopology, ns: str, host: str, port: int) -> tuple[list[str], float]:
    started = time.monotonic()
    done = topo.run(ns, [sys.executable, "-c", CONNECTOR, host, str(port)], timeout=10)
    elapsed = time.monotonic() - started
    words = done.stdout.split()
    assert words, f"connector printed nothing: {done.stderr}\n{topo.report()}"
    assert (done.returncode == 0) == (words[0] == "CONNECTED"), done
    return words, elapsed


def _peer(topo: NatTopology, listener: subprocess.Popen[bytes]) -> list[str]:
    """The listener's PEER line, after it exited."""
    listener.wait(timeout=10)
    lines = [x for x in topo.record(listener).read_stdout().splitlines() if x.startswith("PEER")]
    assert len(lines) == 1, topo.report()
    return lines[0].split()[1:]


def _drop_counter(topo: NatTopology, ns: str, chain: str) -> int:
    done = topo.run(ns, [binary("nft"), "list", "chain", "ip", "pyim_nat", chain], timeout=5)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        if "counter packets" in line and "drop" in line:
            return int(line.split("counter packets", 1)[1].split()[0])
    raise AssertionError(f"no drop counter in {chain}: {done.stdout}")


@pytest.mark.parametrize("side", ["a", "b"])
def test_client_reaches_relay_through_its_nat_masqueraded(topo: NatTopology, side: str) -> None:
    client_ns, client_ip, public_ip, port = {
        "a": (topo.ns_a, topo.a_ip, topo.nat1_public_ip, 5061),
        "b": (topo.ns_b, topo.b_ip, topo.nat2_public_ip, 5062),
    }[side]
    listener = _listen(topo, topo.ns_pub, port, name=f"relay-listener-{side}")

    words, _ = _connect(topo, client_ns, topo.relay_ip, port)

    assert words[0] == "CONNECTED", f"{words}\n{topo.report()}"
    local_ip, local_port, seen_ip, seen_port = words[1:5]
    assert local_ip == client_ip  # the client only knows its private address...
    assert seen_ip == public_ip  # ...the relay sees the NAT's public one
    peer_ip, peer_port = _peer(topo, listener)
    assert (peer_ip, peer_port) == (seen_ip, seen_port)
    assert peer_ip == public_ip, topo.report()
    assert int(local_port) > 0 and int(peer_port) > 0


def test_clients_cannot_reach_each_other(topo: NatTopology) -> None:
    port = 6000
    listener = _listen(topo, topo.ns_b, port, name="b-listener")
    forward_drops = _drop_counter(topo, topo.ns_nat2, "forward")
    input_drops = _drop_counter(topo, topo.ns_nat2, "input")

    # b's private address is not routed on the public segment: nat1 answers with ICMP
    # unreachable at once.
    words, elapsed = _connect(topo, topo.ns_a, topo.b_ip, port)
    assert words[0] == "ERROR", f"a reached b's private address: {words}\n{topo.report()}"
    assert elapsed < 2.0, words  # an ICMP error, not a time-out

    # Through nat2's public address: nothing forwards it to b, the new inbound connection
    # is dropped by nat2 (a time-out, bounded by the connector's 2 s).
    words, _ = _connect(topo, topo.ns_a, topo.nat2_public_ip, port)
    assert words[0] == "ERROR", f"a reached b via nat2's public IP: {words}\n{topo.report()}"
    assert words[1] == "TimeoutError", words
    assert _drop_counter(topo, topo.ns_nat2, "input") > input_drops

    # Same from the relay's segment, straight at b's address via nat2 (a host on the
    # public segment routing 10.2.0.0/24 to nat2): the forward filter drops it.
    topo.run(topo.ns_pub, [binary("ip"), "route", "add", "10.2.0.0/24", "via", topo.nat2_public_ip])
    try:
        words, _ = _connect(topo, topo.ns_pub, topo.b_ip, port)
    finally:
        topo.run(topo.ns_pub, [binary("ip"), "route", "del", "10.2.0.0/24"])
    assert words[0] == "ERROR", f"pub reached b's private address: {words}\n{topo.report()}"
    assert _drop_counter(topo, topo.ns_nat2, "forward") > forward_drops

    # Control: b's listener was up all along and only its own LAN reaches it.
    words, _ = _connect(topo, topo.ns_nat2, topo.b_ip, port)
    assert words[0] == "CONNECTED", f"{words}\n{topo.report()}"
    assert _peer(topo, listener)[0] == "10.2.0.1"

    # And the other way round: b cannot reach a's private address either.
    words, _ = _connect(topo, topo.ns_b, topo.a_ip, port)
    assert words[0] == "ERROR", f"b reached a's private address: {words}\n{topo.report()}"


def test_namespaces_and_processes_gone_after_exit(tmp_path: Path) -> None:
    _require_netns()
    with NatTopology(tmp_path) as topology:
        names = topology.namespaces
        assert set(names) <= set(list_namespaces())
        assert all(len(name) <= 15 for name in names)
        sleeper = topology.popen(
            topology.ns_b,
            [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
            name="sleeper",
            env={"PYIM_MARK": "1"},
        )
        assert topology.wait_for_output(sleeper, "up", timeout=5), topology.report()
        assert (OWNER_DIR / topology.prefix).exists()
    assert sleeper.returncode is not None  # stopped and reaped by teardown
    assert not set(names) & set(list_namespaces())
    assert not any(Path("/run/netns", name).exists() for name in names)
    assert not (OWNER_DIR / topology.prefix).exists()
    assert (tmp_path / "sleeper.stdout.log").read_text() == "up\n"
    topology.close()  # idempotent
    topology.__exit__(None, None, None)


def test_failed_build_tears_down_what_it_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_netns()
    monkeypatch.setattr(NatTopology, "_nat_rules", lambda self: "this is not nft\n")
    topology = NatTopology(tmp_path)
    with pytest.raises(NetnsError, match="nft"), topology:
        pass
    assert not [n for n in list_namespaces() if n.startswith(topology.prefix + "-")]


def test_stale_topology_of_a_dead_run_does_not_break_a_new_one(tmp_path: Path) -> None:
    _require_netns()
    # A topology whose owner died (SIGKILL): its namespaces and its owner record stay.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale_prefix = "pyim" + os.urandom(2).hex()
    while any(n.startswith(stale_prefix + "-") for n in list_namespaces()):
        stale_prefix = "pyim" + os.urandom(2).hex()
    stale = f"{stale_prefix}-pub"
    subprocess.run([binary("ip"), "netns", "add", stale], check=True, timeout=10)
    try:
        OWNER_DIR.mkdir(parents=True, exist_ok=True)
        (OWNER_DIR / stale_prefix).write_text(f"{dead.stdout.strip()} 0\n")
        with NatTopology(tmp_path) as topology:
            assert topology.prefix != stale_prefix
            assert stale not in list_namespaces()  # removed as stale on build
            words, _ = _connect(topology, topology.ns_a, topology.relay_ip, 9)
            assert words[0] == "ERROR" and words[1] == "ConnectionRefusedError", words
    finally:
        subprocess.run([binary("ip"), "netns", "delete", stale], capture_output=True, timeout=10)
        (OWNER_DIR / stale_prefix).unlink(missing_ok=True)
