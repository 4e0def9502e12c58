"""Self-check of the interop test infrastructure, against the real peers only.

Kamailio with deploy/kamailio/proxy-registrar.cfg and the sipp scenarios of tests/sipp/
are checked against each other (and against sipp's built-in UAS), without pyim, so
that a failing SIP-core interop test later points at pyim and not at its test peers.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

import peers
from peers import (
    KAMAILIO_CFG,
    SIPP_MISSING,
    USERS_FILE,
    Kamailio,
    SippFactory,
    Transport,
    find_binary,
    free_port,
    kamailio_binary,
    read_users,
    sip_options,
)

pytest_plugins = ["peers"]

USERS = read_users(USERS_FILE)


# --- Kamailio alone -------------------------------------------------------------------


def test_users_file_has_the_test_users() -> None:
    assert {"alice", "bob", "carol"} <= USERS.keys()
    assert all(USERS.values())


def test_a_missing_peer_binary_fails_the_test_with_the_install_hint() -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install sip-tester"):
        find_binary("sipp-that-is-not-installed", SIPP_MISSING)


def test_free_port_is_free_for_udp_and_tcp() -> None:
    port = free_port("both")
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", port))


def test_kamailio_config_check_passes() -> None:
    check = subprocess.run(
        [kamailio_binary(), "-c", "-f", str(KAMAILIO_CFG), "-A", "SIP_PORT=5999"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "config file ok" in check.stdout + check.stderr


def test_kamailio_answers_options_over_udp_and_tcp(kamailio: Kamailio) -> None:
    for transport in ("udp", "tcp"):
        answer = sip_options(kamailio.host, kamailio.port, transport, timeout=2.0)
        assert answer is not None, f"no answer over {transport}"
        assert answer.status == 200, answer.text
    assert kamailio.rpc("core.version")  # the control socket answers too
    assert kamailio.contacts("alice") == []


def test_two_kamailio_instances_run_side_by_side(tmp_path: Path) -> None:
    with Kamailio(tmp_path / "k1") as first, Kamailio(tmp_path / "k2") as second:
        assert first.port != second.port
        assert first.run_dir != second.run_dir
        for proxy in (first, second):
            answer = sip_options(proxy.host, proxy.port, "udp", timeout=2.0)
            assert answer is not None and answer.status == 200
    # stopped by PID: the ports are free again and the processes are gone
    for proxy in (first, second):
        assert proxy.returncode is not None
        assert sip_options(proxy.host, proxy.port, "udp", timeout=0.3) is None


def test_kamailio_retries_when_it_loses_the_race_for_its_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first port offered is taken (as by a parallel test run): Kamailio fails to
    bind, gets new ports, comes up, and is still stopped at the end."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        offers = iter([taken])
        real_free_port = peers.free_port
        monkeypatch.setattr(
            peers, "free_port", lambda kind="both": next(offers, None) or real_free_port(kind)
        )
        with Kamailio(tmp_path / "k") as proxy:
            assert proxy.port != taken
            assert proxy.log_text().count("### ") == 2
            pid = proxy.pid
            assert pid is not None
        assert proxy.returncode == 0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_sipp_retries_when_it_loses_the_race_for_a_port(
    sipp: SippFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        offers = iter([taken])
        real_free_port = peers.free_port
        monkeypatch.setattr(
            peers, "free_port", lambda kind="both": next(offers, None) or real_free_port(kind)
        )
        uas = sipp.start("uas_message.xml")  # its first port is the taken one
        assert uas.port != taken
    uac = sipp.run("uac_message.xml", target=f"127.0.0.1:{uas.port}", service="bob")
    assert uac.ok, uac.summary()
    assert uas.wait().ok


def test_kamailio_extra_users(tmp_path: Path, sipp: SippFactory) -> None:
    with Kamailio(tmp_path / "k", extra_users={"dave": "dave:secret"}) as proxy:
        result = sipp.register("dave", "dave:secret", proxy)
        assert result.ok, result.summary()
        assert len(proxy.contacts("dave")) == 1


# --- registration ---------------------------------------------------------------------


def test_register_with_the_right_password(kamailio: Kamailio, sipp: SippFactory) -> None:
    contact_port = free_port("both")
    result = sipp.register("alice", USERS["alice"], kamailio, contact_port=contact_port)
    assert result.ok, result.summary()
    assert (result.successful, result.failed) == (1, 0)
    assert kamailio.contacts("alice") == [f"sip:alice@127.0.0.1:{contact_port};transport=UDP"]
    assert "WWW-Authenticate: Digest" in result.messages()


def test_register_with_a_wrong_password_fails(kamailio: Kamailio, sipp: SippFactory) -> None:
    result = sipp.register("bob", "not-" + USERS["bob"], kamailio)
    assert result.returncode == 1, result.summary()
    assert (result.successful, result.failed) == (0, 1)
    assert kamailio.contacts("bob") == []


def test_register_an_unknown_user_fails(kamailio: Kamailio, sipp: SippFactory) -> None:
    result = sipp.register("mallory", "whatever", kamailio)
    assert result.returncode == 1, result.summary()
    assert kamailio.contacts("mallory") == []


# --- calls and messages through Kamailio ------------------------------------------------


@pytest.mark.parametrize("uac_transport", ["udp", "tcp"])
def test_msrp_session_through_kamailio(
    kamailio: Kamailio, sipp: SippFactory, uac_transport: Transport
) -> None:
    uas = sipp.start("uas_msrp.xml")
    registered = sipp.register("bob", USERS["bob"], kamailio, contact_port=uas.port)
    assert registered.ok, registered.summary()

    uac = sipp.run(
        "uac_msrp_invite.xml",
        target=kamailio.address,
        service="bob",
        transport=uac_transport,
    )
    assert uac.ok, uac.summary()
    assert (uac.successful, uac.failed) == (1, 0)
    answered = uas.wait()
    assert answered.ok, answered.summary()
    # the dialog went through the proxy: Record-Route on the way in, Route on the way back
    messages = uac.messages()
    assert "Record-Route:" in messages
    assert "Route: <sip:127.0.0.1" in messages
    assert "m=message 2856 TCP/MSRP *" in messages


def test_message_through_kamailio(kamailio: Kamailio, sipp: SippFactory) -> None:
    uas = sipp.start("uas_message.xml", calls=2)
    registered = sipp.register("carol", USERS["carol"], kamailio, contact_port=uas.port)
    assert registered.ok, registered.summary()

    uac = sipp.run("uac_message.xml", target=kamailio.address, service="carol", calls=2)
    assert uac.ok, uac.summary()
    assert (uac.successful, uac.failed) == (2, 0)
    received = uas.wait()
    assert received.ok, received.summary()
    assert "Hello from sipp, message" in received.messages()


def test_message_to_an_unknown_user_gets_404(kamailio: Kamailio, sipp: SippFactory) -> None:
    uac = sipp.run("uac_message.xml", target=kamailio.address, service="nobody", timeout=5.0)
    assert uac.returncode == 1, uac.summary()
    assert "SIP/2.0 404 Not Found" in uac.messages()


def test_kamailio_relays_to_a_loopback_peer_as_outbound_proxy(
    kamailio: Kamailio, sipp: SippFactory
) -> None:
    """A request for another 127.0.0.1 port (no registration) is relayed as it is."""
    uas = sipp.start("uas_message.xml")
    uac = sipp.run(
        "uac_message.xml",
        target=f"127.0.0.1:{uas.port}",
        service="app",
        extra_args=["-rsa", kamailio.address],  # send everything to the proxy
    )
    assert uac.ok, uac.summary()
    received = uas.wait()
    assert received.ok, received.summary()
    assert f"SIP/2.0/UDP 127.0.0.1:{kamailio.port};branch=" in received.messages()


def test_invite_retransmissions_through_kamailio(kamailio: Kamailio, sipp: SippFactory) -> None:
    uas = sipp.start("uas_msrp.xml")
    assert sipp.register("alice", USERS["alice"], kamailio, contact_port=uas.port).ok
    uac = sipp.run("uac_invite_retrans.xml", target=kamailio.address, service="alice")
    assert uac.ok, uac.summary()
    assert uas.wait().ok


def test_cancel_through_kamailio(kamailio: Kamailio, sipp: SippFactory) -> None:
    uas = sipp.start("uas_cancel.xml")
    assert sipp.register("alice", USERS["alice"], kamailio, contact_port=uas.port).ok
    uac = sipp.run("uac_cancel.xml", target=kamailio.address, service="alice")
    assert uac.ok, uac.summary()
    cancelled = uas.wait()
    assert cancelled.ok, cancelled.summary()
    assert "SIP/2.0 487 Request Terminated" in uac.messages()


# --- UAC and UAS directly ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_msrp_session_direct(sipp: SippFactory, transport: Transport) -> None:
    uas = sipp.start("uas_msrp.xml", transport=transport)
    target = f"127.0.0.1:{uas.port}"
    uac = sipp.run("uac_msrp_invite.xml", target=target, service="bob", transport=transport)
    assert uac.ok, uac.summary()
    assert uas.wait().ok


def test_invite_retransmissions_direct(sipp: SippFactory) -> None:
    uas = sipp.start("uas_msrp.xml")
    uac = sipp.run("uac_invite_retrans.xml", target=f"127.0.0.1:{uas.port}", service="bob")
    assert uac.ok, uac.summary()
    assert uas.wait().ok
    # three copies of the INVITE and two of the BYE went out, all with the same branch
    sent = uac.messages()
    assert sent.count("INVITE sip:bob@") == 3
    assert sent.count("BYE sip:") == 2


def test_invite_retransmissions_catch_a_uas_without_rfc6026(sipp: SippFactory) -> None:
    """sipp's built-in UAS takes the INVITE copy after the ACK for something new and
    aborts the call: the scenario must notice (it is a negative control)."""
    uas = sipp.start("-sn uas", timeout=8.0)
    uac = sipp.run(
        "uac_invite_retrans.xml", target=f"127.0.0.1:{uas.port}", service="bob", timeout=8.0
    )
    assert uac.returncode == 1, uac.summary()
    uas.wait()


def test_cancel_direct(sipp: SippFactory) -> None:
    uas = sipp.start("uas_cancel.xml")
    uac = sipp.run("uac_cancel.xml", target=f"127.0.0.1:{uas.port}", service="bob")
    assert uac.ok, uac.summary()
    assert uas.wait().ok


def test_message_direct(sipp: SippFactory) -> None:
    uas = sipp.start("uas_message.xml")
    uac = sipp.run("uac_message.xml", target=f"127.0.0.1:{uas.port}", service="bob")
    assert uac.ok, uac.summary()
    assert uas.wait().ok


def test_msrp_invite_against_an_audio_only_uas_fails(sipp: SippFactory) -> None:
    """The m=message check in uac_msrp_invite.xml bites: sipp's built-in UAS answers
    with m=audio."""
    uas = sipp.start("-sn uas", timeout=8.0)
    uac = sipp.run(
        "uac_msrp_invite.xml", target=f"127.0.0.1:{uas.port}", service="bob", timeout=8.0
    )
    assert uac.returncode == 1, uac.summary()
    assert "m=message" in uac.errors
    uas.stop()
