"""The relay's configuration, HA1 file and daemon: good files load, bad ones are named,
``pyim relay`` starts, serves AUTH from HA1 hashes over TLS, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from pyim.digest import Algorithm, ha1
from pyim.msrp.transport import MsrpEndpoint
from pyim.msrp.uri import MsrpUri
from pyim.relay import ConfigError, RelayConfig, load_config
from pyim.relay.config import config_from_dict
from pyim.relay.credentials import credential_lookup, ha1_lines, parse_ha1_file
from relay_harness import RawClient

SRC = Path(__file__).resolve().parent.parent / "src"


def test_defaults_need_credentials() -> None:
    with pytest.raises(ConfigError, match="no credentials"):
        RelayConfig().validate()
    assert RelayConfig(users={"a": "b"}).validate().listen[0].port == 2855


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[relay]\nrealm = 5\n", "relay.realm"),
        ("[relay]\nbogus = 1\n", "relay.bogus: unknown key"),
        ("[nope]\n", "unknown section"),
        ("[users]\na='x'\n[limits]\nmax_connections = -1\n", "limits.max_connections"),
        ("[users]\na='x'\n[limits]\nidle_timeout = 'soon'\n", "limits.idle_timeout"),
        ("[users]\na='x'\n[[listen]]\nscheme = 'http'\n", "listen[0].scheme"),
        ("[users]\na='x'\n[[listen]]\nscheme = 'msrps'\n", "needs cert and key"),
        ("[users]\na='x'\n[[listen]]\nhost = '0.0.0.0'\n", "needs advertise"),
        ("[users]\na='x'\n[auth]\nmin_expires = 100\nmax_expires = 10\n", "min_expires"),
        ("[users]\na='x'\n[auth]\nalgorithms = ['SHA-1']\n", "auth.algorithms"),
        ("[relay]\nlog_level = 'loud'\n[users]\na='x'\n", "log_level"),
        ("this is not toml", "relay.toml"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_full_config_loads(tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "relay": {"realm": "r.test", "ha1_file": str(tmp_path / "x.ha1")},
            "listen": [
                {"scheme": "msrp", "host": "0.0.0.0", "port": 1, "advertise": "r.test"},
                {"scheme": "msrps", "port": 2, "cert": "c.pem", "key": "k.pem"},
            ],
            "auth": {"default_expires": 120, "algorithms": ["MD5"]},
            "limits": {"idle_timeout": 5, "max_queued_bytes": 4096},
        }
    )
    assert config.listen[0].public_host == "r.test" and config.listen[1].cert == Path("c.pem")
    assert config.auth.algorithms == ("MD5",) and config.limits.idle_timeout == 5.0


def test_ha1_file_round_trip_and_errors() -> None:
    lines = ha1_lines("alice", "r.test", "pw", ("SHA-256", "MD5"))
    table = parse_ha1_file("# users\n" + "\n".join(lines) + "\n\n")
    lookup = credential_lookup(table, {})
    assert lookup("alice", "r.test", Algorithm.MD5) == ha1("alice", "r.test", "pw")
    assert lookup("alice", "r.test", Algorithm.SHA_256) == ha1(
        "alice", "r.test", "pw", Algorithm.SHA_256
    )
    assert lookup("bob", "r.test", Algorithm.MD5) is None
    for bad in ("alice:r.test:MD5", "alice:r.test:MD5:xyz", "a:r:SHA-1:" + "0" * 32):
        with pytest.raises(ConfigError, match="<ha1>:1"):
            parse_ha1_file(bad)


def _start_daemon(config: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.Popen(
        [sys.executable, "-m", "pyim", "relay", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_daemon_rejects_bad_config_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text("[limits]\nfoo = 1\n")
    proc = _start_daemon(path)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "limits.foo: unknown key" in err


async def test_daemon_serves_tls_with_ha1_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "relay.pem")
    cert.private_key_pem.write_to_path(tmp_path / "relay.key")
    hashed = subprocess.run(
        [sys.executable, "-m", "pyim", "relay", "--hash-password", "carol", "--realm", "d.test"],
        input="carol-secret\n",
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        timeout=20,
        check=True,
    ).stdout
    assert "carol-secret" not in hashed and hashed.count("carol:d.test:") == 2
    (tmp_path / "relay.ha1").write_text(hashed)
    (tmp_path / "relay.toml").write_text(
        '[relay]\nrealm = "d.test"\nha1_file = "relay.ha1"\n'
        '[[listen]]\nscheme = "msrps"\nport = 0\ncert = "relay.pem"\nkey = "relay.key"\n'
    )
    proc = _start_daemon(tmp_path / "relay.toml")  # relative paths: from the file's folder
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.startswith("pyim relay ready: msrps://127.0.0.1:"), line
        uri = MsrpUri.parse(line.split()[-1])
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        endpoint = await MsrpEndpoint.create(ssl_client=client_ctx)
        grant = await endpoint.authenticate(uri, "carol", "carol-secret")
        assert grant.use_path[0].scheme == "msrps"
        await endpoint.close()
        raw = await RawClient.connect(uri, ssl_context=client_ctx)
        await raw.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 10) == 0
        assert "stopping; stats" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
