"""``pyim server`` as a daemon: TOML config, ready line, users in the store (``pyim
users add`` and SIGHUP), Prometheus metrics, graceful SIGTERM (BYE to every session),
one-line errors for bad configs, and the run with no config at all."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from peers import LOOPBACK, free_port, sip_options, stop_process
from pyim.digest import DigestClient
from pyim.sip.registration import Registration, RegistrationError
from pyim.sip.uri import SipUri
from server_process import (
    READY,
    ServerProcess,
    make_user_at,
    metric_value,
    pyim_command,
    server_env,
)

pytest_plugins = ["peers"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "server") as running:
        yield running


async def test_chat_metrics_and_graceful_sigterm(server: ServerProcess) -> None:
    before = server.metrics()
    assert "pyim_sessions" in before and "pyim_listener_errors_total" in before
    assert metric_value(before, "pyim_messages_stored_total") == 0
    alice = await make_user_at("alice", server.sip_port)
    bob = await make_user_at("bob", server.sip_port)
    try:
        await alice.register()
        await bob.register()
        session = await alice.call("bob")
        sending = asyncio.ensure_future(session.send("hello bob", success_report=True))
        bob_side = await asyncio.wait_for(bob.chat.accept(), 10)
        assert (await asyncio.wait_for(bob_side.receive(), 10)).body == b"hello bob"
        assert (await asyncio.wait_for(sending, 10)).status == "delivered"

        after = await asyncio.to_thread(server.metrics)
        assert metric_value(after, "pyim_messages_in_total", 'mode="session"') == 1
        assert metric_value(after, "pyim_messages_stored_total") == 1
        assert metric_value(after, "pyim_messages_delivered_total") == 1
        assert metric_value(after, "pyim_messages_out_total", 'mode="session"') == 1
        assert metric_value(after, "pyim_sessions") == 2  # alice's leg and bob's
        assert metric_value(after, "pyim_registered_contacts") == 2

        # SIGTERM: every session gets a BYE, the process exits 0
        code = await asyncio.to_thread(server.terminate)
        assert code == 0, server.logs()
        await asyncio.wait_for(session.closed.wait(), 5)
        await asyncio.wait_for(bob_side.closed.wait(), 5)
        assert "Traceback" not in server.logs()
    finally:
        await alice.close()
        await bob.close()


async def test_queue_depth_is_read_from_the_store(server: ServerProcess) -> None:
    """pyim_queue_depth counts what waits in the store (bob offline), not a per-process
    tally: after a restart it still shows the queued messages."""
    alice = await make_user_at("alice", server.sip_port)
    try:
        await alice.register()
        session = await alice.call("bob")
        for i in range(3):
            await asyncio.wait_for(session.send(f"m{i}", success_report=False), 10)
        await session.close()
    finally:
        await alice.close()

    async def depth() -> float:
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            value = metric_value(await asyncio.to_thread(server.metrics), "pyim_queue_depth")
            if value == 3 or asyncio.get_running_loop().time() > deadline:
                return value
            await asyncio.sleep(0.5)

    assert await depth() == 3
    assert await asyncio.to_thread(server.terminate) == 0, server.logs()
    server.start()
    assert await depth() == 3  # read from the store, not counted since start


async def _register(port: int, name: str, password: str) -> None:
    user = await make_user_at(name, port)
    try:
        registration = Registration(
            user.sip,
            registrar=user.server_uri,
            aor=SipUri(scheme="sip", user=name, host=LOOPBACK),
            auth=DigestClient(name, password),
            expires=60,
        )
        await asyncio.wait_for(registration.register(), 5)
    finally:
        await user.close()


def _users(
    server: ServerProcess, *args: str, password: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pyim_command("users", *args, "-c", str(server.config_path)),
        input=password + "\n",
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=30,
    )


async def test_users_add_then_sighup_or_restart(server: ServerProcess) -> None:
    with pytest.raises(RegistrationError) as info:
        await _register(server.sip_port, "dave", "dave-secret")
    assert info.value.response.status in (401, 403)

    added = await asyncio.to_thread(_users, server, "add", "dave", password="dave-secret")
    assert added.returncode == 0, added.stderr
    listed = await asyncio.to_thread(_users, server, "list")
    assert "dave\t127.0.0.1" in listed.stdout

    server.signal(signal.SIGHUP)  # reload the users from the store
    for _ in range(50):
        try:
            await _register(server.sip_port, "dave", "dave-secret")
            break
        except RegistrationError:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("dave cannot register after SIGHUP")
    with pytest.raises(RegistrationError):
        await _register(server.sip_port, "dave", "wrong")

    # a restart loads them too; a removed user is gone after the next reload
    assert await asyncio.to_thread(server.terminate) == 0
    await asyncio.to_thread(server.start)
    await _register(server.sip_port, "dave", "dave-secret")
    removed = await asyncio.to_thread(_users, server, "remove", "dave")
    assert removed.returncode == 0, removed.stderr
    server.signal(signal.SIGHUP)
    for _ in range(50):
        try:
            await _register(server.sip_port, "dave", "dave-secret")
        except RegistrationError:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("dave can still register after remove + SIGHUP")
    assert server.running()


BAD_CONFIGS = {
    "unknown_key": ("[server]\nfoo = 1\n", "server.foo: unknown key"),
    "bad_type": ("[sip]\nudp = 'x'\n", "sip.udp: expected int"),
    "unknown_section": ("[nope]\n", "unknown section(s): nope"),
    "syntax": ("[server\n", "server.toml"),
    "bad_store": ('[server]\nstore = "mysql://x"\n', "unknown store URL"),
    "negative_limit": ("[limits]\nmax_message_size = 0\n", "limits.max_message_size"),
    "bad_level": ('[server]\nlog_level = "loud"\n', "not a log level"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CONFIGS[case]
    path = tmp_path / "server.toml"
    path.write_text(text)
    result = subprocess.run(
        pyim_command("server", "-c", str(path)),
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pyim server: bad configuration:") and expected in lines[0]
    assert result.stdout == ""


def test_missing_config_file(tmp_path: Path) -> None:
    result = subprocess.run(
        pyim_command("server", "-c", str(tmp_path / "absent.toml")),
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=30,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "absent.toml" in result.stderr


def test_bad_port_flag(tmp_path: Path) -> None:
    result = subprocess.run(
        pyim_command("server", "--sip-port", "70000"),
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "--sip-port 70000" in result.stderr


def test_store_that_cannot_open_is_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f'[server]\nstore = "sqlite://{tmp_path}/no/such/dir/x.db"\n')
    result = subprocess.run(
        pyim_command("server", "-c", str(path), "--sip-port", "0", "--metrics-port", "0"),
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=30,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyim server: store unavailable:"), lines


async def test_no_config_runs_on_loopback_with_demo_users(tmp_path: Path) -> None:
    """No file at all: 127.0.0.1, demo users alice/bob, a store in the current folder.
    Only the ports are given (5060 may be taken where the tests run)."""
    sip_port, metrics_port = free_port("both"), free_port("tcp")
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            pyim_command(
                "server",
                "--json-logs",
                "--sip-port",
                str(sip_port),
                "--msrp-port",
                "0",
                "--metrics-port",
                str(metrics_port),
            ),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env=server_env(),
            start_new_session=True,
        )
    try:
        for _ in range(500):
            if READY in out.read_text() or proc.poll() is not None:
                break
            await asyncio.sleep(0.02)
        ready = out.read_text()
        assert READY in ready, err.read_text()
        assert f"sip:127.0.0.1:{sip_port};transport=udp" in ready
        response = await asyncio.to_thread(sip_options, LOOPBACK, sip_port, "udp", 2.0)
        assert response is not None and response.status == 200
        await _register(sip_port, "alice", "alice")  # a demo user
        assert (tmp_path / "pyim.db").exists()
    finally:
        code = await asyncio.to_thread(stop_process, proc)
    assert code == 0
    records = [json.loads(line) for line in err.read_text().splitlines() if line.strip()]
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert any("demo users" in r["msg"] for r in records)
