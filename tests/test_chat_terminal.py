"""The pure parts of ``pyim chat``: command parsing and the lines it prints."""

from __future__ import annotations

import argparse

import pytest

from pyim.chat_terminal import (
    Command,
    add_arguments,
    config_from_args,
    delivery_line,
    incoming_line,
    parse_command,
    short_name,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hello", Command("say", "hello")),
        ("  spaced  ", Command("say", "spaced")),
        ("", Command("empty")),
        ("//not a command", Command("say", "/not a command")),
        ("/quit", Command("quit")),
        ("/EXIT", Command("quit")),
        ("/help", Command("help")),
        ("/page are you there?", Command("page", "are you there?")),
        ("/status away in a meeting", Command("status", "in a meeting", online=False)),
        ("/status away", Command("status", "away", online=False)),
        ("/status online", Command("status", "", online=True)),
    ],
)
def test_parse_command(line: str, expected: Command) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize("line", ["/page", "/status", "/status sideways", "/frobnicate"])
def test_bad_commands_explain_themselves(line: str) -> None:
    command = parse_command(line)
    assert command.kind == "unknown" and ("usage" in command.text or "unknown" in command.text)


def test_lines() -> None:
    assert incoming_line("bob", "hi", 0).endswith("bob: hi")
    assert "(page)" in incoming_line("bob", "hi", 0, page=True)
    assert delivery_line(3, "delivered") == "  #3 delivered"
    assert delivery_line(4, "failed", 408, "timeout") == "  #4 failed: 408 timeout"
    assert short_name("sip:bob@example.test") == "bob"
    assert short_name("<sip:carol@x>") == "carol"


def test_config_from_flags() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--account",
            "alice@example.test",
            "--password",
            "pw",
            "--transport",
            "tcp",
            "--stun",
            "127.0.0.1:3478",
            "bob@example.test",
        ]
    )
    config = config_from_args(args)
    assert config.account == "sip:alice@example.test" and config.password == "pw"
    assert config.transport == "tcp" and config.stun_servers == ["127.0.0.1:3478"]
