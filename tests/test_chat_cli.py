"""``pyim chat`` driven as a person would: two terminals (pexpect pseudo-terminals),
alice and bob registered through Kamailio, a chat session, a page, /quit."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from kamailio_presence import KamailioPresence

pytest_plugins = ["kamailio_presence"]

SRC = Path(__file__).resolve().parent.parent / "src"
TIMEOUT = 20


def spawn_chat(
    kamailio: KamailioPresence, user: str, log: Path, *extra: str, password: str | None = None
) -> pexpect.spawn:
    host, port = kamailio.address.rsplit(":", 1)
    argv = [
        "-m", "pyim", "chat",
        "--account", f"{user}@{kamailio.domain}",
        "--password", password if password is not None else kamailio.users[user],
        "--registrar", f"sip:{host}:{port}",
        "--proxy", f"sip:{host}:{port};lr",
        "--transport", "udp",
        "--log-file", str(log),
        *extra,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(SRC), PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
    child = pexpect.spawn(
        sys.executable, argv, env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 120)
    )
    child.logfile_read = open(log.with_suffix(".screen"), "w")  # noqa: SIM115
    return child


@pytest.fixture
def terminals(
    kamailio_presence: KamailioPresence, tmp_path: Path
) -> Iterator[tuple[pexpect.spawn, pexpect.spawn]]:
    bob = spawn_chat(kamailio_presence, "bob", tmp_path / "bob.log")
    alice: pexpect.spawn | None = None
    try:
        bob.expect("waiting for a chat")
        alice = spawn_chat(
            kamailio_presence,
            "alice",
            tmp_path / "alice.log",
            f"sip:bob@{kamailio_presence.domain}",
        )
        yield alice, bob
    finally:
        for child in (alice, bob):
            if child is not None and child.isalive():
                child.terminate(force=True)
            if child is not None and child.logfile_read is not None:
                child.logfile_read.close()


def test_two_people_chat_in_terminals(terminals: tuple[pexpect.spawn, pexpect.spawn]) -> None:
    alice, bob = terminals
    alice.expect("chat with .*bob.* open")
    bob.expect("chat with .*alice.* open")
    alice.sendline("hello bob")
    bob.expect(r"\] alice: hello bob")
    alice.expect(r"#1 delivered")
    bob.sendline("hi alice, all good")
    alice.expect(r"\] bob: hi alice, all good")
    bob.expect(r"#1 delivered")
    alice.sendline("/page a page-mode note")
    bob.expect(r"alice \(page\): a page-mode note")
    alice.expect(r"you \(page\): a page-mode note\s+\[delivered")
    alice.sendline("/frobnicate")
    alice.expect("unknown command /frobnicate")
    alice.sendline("/quit")
    alice.expect(pexpect.EOF)
    alice.wait()
    assert alice.exitstatus == 0, alice.before
    bob.expect("alice ended the chat")
    bob.sendline("/quit")
    bob.expect(pexpect.EOF)
    bob.wait()
    assert bob.exitstatus == 0, bob.before


def test_wrong_password_is_one_clear_line(
    kamailio_presence: KamailioPresence, tmp_path: Path
) -> None:
    child = spawn_chat(kamailio_presence, "alice", tmp_path / "bad.log", password="wrong")
    child.expect(pexpect.EOF)  # reads everything until it exits
    child.wait()
    assert child.exitstatus == 1
    assert child.before.count("pyim chat:") == 1 and "registration" in child.before, child.before
