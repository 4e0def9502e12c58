"""The relay's whole-frame fast lane and the helpers it uses.

* ``local_hop_head``, ``ok_response`` and ``relay_fields`` of ``pyim.msrp._speedups``
  return what the pure references of ``pyim.relay.forward`` return, or raise the same
  error, for hand-written and random (hypothesis) input;
* a request that arrives whole goes out byte for byte as one that arrives in pieces
  (the streaming path), is answered and reported on failure the same way, and a route
  remembered for it does not outlive the grants it relied on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyim.msrp import Frame
from pyim.msrp.frame import new_tid
from pyim.relay import Relay, forward
from pyim.relay.server import RelayConnection
from relay_harness import USERS, RawClient, running_relay, send_frame

try:
    from pyim.msrp import _speedups
except ImportError as exc:  # the tests must fail, not skip, without the native module
    _speedups = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

R1 = "msrp://relay.example.com:2855/r1;tcp"
R2 = "msrp://relay.example.com:2855/r2;tcp"
BOB = "msrp://bob.example.com:8888/9di4eae923wzd;tcp"
ALICE = "msrp://alicepc.example.com:7777/iau39soe2843z;tcp"


def native(name: str) -> Callable[..., Any]:
    if _speedups is None:
        pytest.fail(f"pyim.msrp._speedups is not built ({_IMPORT_ERROR})", pytrace=False)
    return getattr(_speedups, name)  # type: ignore[no-any-return]


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """The result (and its type) or the error (type and message)."""
    try:
        result = fn(*args)
    except Exception as exc:
        return ("error", type(exc), str(exc))
    return ("ok", result, type(result))


def assert_same(name: str, *args: Any) -> None:
    assert outcome(native(name), *args) == outcome(getattr(forward, name), *args), args


# -- parity: hand cases ------------------------------------------------------------------

HEAD = (
    f"MSRP t1 SEND\r\nTo-Path: {R2} {BOB}\r\nFrom-Path: {R1} {ALICE}\r\n"
    "Message-ID: m1\r\nByte-Range: 1-5/5\r\n"
).encode()

LOCAL_HOP_CASES: list[tuple[Any, Any]] = [
    (HEAD, R2),
    (HEAD.replace(b"\r\nMessage-ID: m1\r\nByte-Range: 1-5/5\r\n", b"\r\n"), R2),  # no others
    (b"MSRP t SEND\r\nTo-Path: a \t b \x0b\r\nFrom-Path: x\r\n", "n"),  # trailing space
    (b"MSRP t SEND\r\nTo-Path: a\rb\nc\r\nFrom-Path: xyz\r\nrest", "n"),  # lone CR, LF
    (b"a\r\r\nb c\r\n\r\n", "n"),  # a CR before CRLF; an empty From-Path line
    (b"a\r\n\r\nF\r\n", "n"),  # a blank To-Path line: IndexError
    (b"a\r\n   \r\nF\r\n", "n"),
    (b"a\r\nb\r\nc", "n"),  # three lines: ValueError
    (b"", "n"),
    (b"a\r\nb c\r\nFrom-Path: \xc3\xa9\r\n", "n"),  # non-ASCII bytes are kept
    (HEAD, "msrp://h\xe9/x;tcp"),  # a non-ASCII next hop: the reference
    (HEAD, "\ud800"),  # UnicodeEncodeError from both
    (bytearray(HEAD), R2),  # not bytes: the reference
    (HEAD, None),
]

OK_CASES: list[tuple[Any, Any, Any]] = [
    ("t1", f"{R1} {ALICE}", R2),
    ("", "", ""),
    ("t\xe9", ALICE, R1),
    ("t", "\ud800", R1),
    ("t", ALICE, b"bytes"),
    (None, ALICE, R1),
]

FIELDS_CASES: list[Any] = [
    [],
    [("Message-ID", "m1"), ("Byte-Range", "1-5/5"), ("Failure-Report", " Partial ")],
    [("message-id", "a"), ("MESSAGE-ID", "b"), ("byte-RANGE", "x"), ("failure-report", "NO")],
    [("Message-Id\u0130", "x"), ("X-\xe9", "y"), ("\u212a", "k")],  # non-ASCII names
    [("Failure-Report", "\u3000yes\x85")],  # Unicode whitespace stripped, as str.strip()
    [("To-Path", R1), ("From-Path", ALICE)],
    [("Message-ID", "m", "extra")],  # not a pair: the reference's ValueError
    [("Message-ID", b"m")],  # bytes value: the reference
    [["Message-ID", "m"]],
    ("not", "a list"),
    None,
]


@pytest.mark.parametrize("case", range(len(LOCAL_HOP_CASES)))
def test_local_hop_head_matches_reference(case: int) -> None:
    assert_same("local_hop_head", *LOCAL_HOP_CASES[case])


@pytest.mark.parametrize("case", range(len(OK_CASES)))
def test_ok_response_matches_reference(case: int) -> None:
    assert_same("ok_response", *OK_CASES[case])


@pytest.mark.parametrize("case", range(len(FIELDS_CASES)))
def test_relay_fields_matches_reference(case: int) -> None:
    assert_same("relay_fields", FIELDS_CASES[case])


def test_reference_exact_values() -> None:
    assert (
        forward.local_hop_head(HEAD, R2)
        == (
            f"MSRP t1 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {R2} {R1} {ALICE}\r\n"
            "Message-ID: m1\r\nByte-Range: 1-5/5\r\n"
        ).encode()
    )
    assert forward.ok_response("t1", ALICE, R1) == (
        f"MSRP t1 200 OK\r\nTo-Path: {ALICE}\r\nFrom-Path: {R1}\r\n-------t1$\r\n".encode()
    )
    assert forward.relay_fields([("Failure-Report", " Partial ")]) == (None, None, "partial")
    assert forward.relay_fields([]) == (None, None, "yes")


def test_local_hop_head_after_rewrite_head() -> None:
    """Both hops popped: the head the relay sends between two of its own clients."""
    headers = [("To-Path", f"{R1} {R2} {BOB}"), ("From-Path", ALICE), ("Message-ID", "m")]
    _, next_hop, hops, head, _ = forward.rewrite_head("t", "SEND", headers)
    assert (next_hop, hops) == (R2, 2)
    expected = f"MSRP t SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {R2} {R1} {ALICE}\r\nMessage-ID: m\r\n"
    assert native("local_hop_head")(head, next_hop) == expected.encode()


# -- parity: random input ------------------------------------------------------------------

WHITESPACE = " \t\r\n\x0b\x0c\x1c\x85\xa0\u3000"
TEXT = st.text(alphabet="ab:/;.-" + "\xe9\u4e2d" + WHITESPACE, max_size=16)
ASCII_TEXT = st.text(alphabet="ab:/;.-0 \t", max_size=16)
NAMES = ["Message-ID", "message-id", "BYTE-RANGE", "Byte-Range", "Failure-Report", "X", "\u212a"]
LINES = st.lists(
    st.one_of(st.binary(max_size=12), st.sampled_from([b"To-Path: a b", b"From-Path: x y"])),
    max_size=6,
)


@settings(max_examples=1500, deadline=None)
@given(lines=LINES, sep=st.sampled_from([b"\r\n", b"\n", b"\r", b" \r\n"]), hop=TEXT)
def test_random_local_hop_heads(lines: list[bytes], sep: bytes, hop: str) -> None:
    assert_same("local_hop_head", sep.join(lines), hop)


@settings(max_examples=500, deadline=None)
@given(args=st.tuples(st.one_of(TEXT, ASCII_TEXT), st.one_of(TEXT, ASCII_TEXT), ASCII_TEXT))
def test_random_ok_responses(args: tuple[str, str, str]) -> None:
    assert_same("ok_response", *args)


@settings(max_examples=1500, deadline=None)
@given(
    headers=st.lists(
        st.tuples(st.one_of(st.sampled_from(NAMES), TEXT), st.one_of(TEXT, ASCII_TEXT)),
        max_size=6,
    )
)
def test_random_relay_fields(headers: list[tuple[str, str]]) -> None:
    assert_same("relay_fields", headers)


# -- the fast lane at work -------------------------------------------------------------


async def two_clients(relay: Relay) -> tuple[RawClient, RawClient, str]:
    """alice and bob on one relay; the To-Path from alice to bob."""
    alice = await RawClient.connect(relay.uris[0])
    bob = await RawClient.connect(relay.uris[0])
    alice_path = await alice.auth(relay.uris[0], "alice", USERS["alice"])
    bob_path = await bob.auth(relay.uris[0], "bob", USERS["bob"])
    return alice, bob, f"{alice_path} {bob_path} {bob.uri}"


def with_tid(frame: Frame, tid: str) -> bytes:
    frame.tid = tid
    return frame.encode()


async def test_whole_and_streamed_requests_go_out_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    lanes: list[str] = []
    original = RelayConnection._relay_whole
    monkeypatch.setattr(
        RelayConnection,
        "_relay_whole",
        lambda self, head, *rest: lanes.append(head.tid) or original(self, head, *rest),
    )
    async with running_relay() as relay:
        alice, bob, to_path = await two_clients(relay)
        frame = send_frame(to_path, str(alice.uri), b"x" * 3000, message_id="m1")
        data = with_tid(frame, "whole")
        await alice.send(data)  # one write: the fast lane
        assert (await alice.read_frame()).code == 200
        whole = await bob.read_frame()
        data = with_tid(frame, "piece")
        cut = data.index(b"\r\n\r\n") + 100
        await alice.send(data[:cut])  # head and some body first: the streaming path
        await asyncio.sleep(0.05)
        await alice.send(data[cut:])
        assert (await alice.read_frame()).code == 200
        streamed = await bob.read_frame()
        assert whole.encode().replace(b"whole", b"piece") == streamed.encode()
        assert lanes == ["whole"]  # the second one took the streaming path
        assert whole.header("From-Path") == f"{to_path.split()[1]} {to_path.split()[0]} {alice.uri}"
        await alice.close()
        await bob.close()


async def test_many_requests_in_one_read_all_arrive_in_order() -> None:
    async with running_relay() as relay:
        alice, bob, to_path = await two_clients(relay)
        frames = [send_frame(to_path, str(alice.uri), f"m{i}".encode()) for i in range(150)]
        await alice.send(b"".join(f.encode() for f in frames))
        answers = [await alice.read_frame() for _ in frames]
        assert [a.tid for a in answers] == [f.tid for f in frames]
        assert all(a.code == 200 for a in answers)
        got = [await bob.read_frame() for _ in frames]
        assert [g.body for g in got] == [f.body for f in frames]
        assert relay.stats["frames_forwarded"] == 150
        assert relay.stats["body_bytes"] == sum(len(f.body) for f in frames)
        await alice.close()
        await bob.close()


async def test_a_remembered_route_does_not_outlive_its_grant() -> None:
    async with running_relay() as relay:
        alice, bob, to_path = await two_clients(relay)
        await alice.send(send_frame(to_path, str(alice.uri)))
        assert (await alice.read_frame()).code == 200
        await bob.read_frame()
        bob_grant = to_path.split()[1].rsplit("/", 1)[1].split(";")[0]
        relay.auth.grants[bob_grant].expires_at = 0.0  # expired
        await alice.send(send_frame(to_path, str(alice.uri)))
        assert (await alice.read_frame()).code == 481
        await alice.close()
        await bob.close()


async def test_a_remembered_route_does_not_outlive_the_next_hop() -> None:
    async with running_relay() as relay:
        alice, bob, to_path = await two_clients(relay)
        await alice.send(send_frame(to_path, str(alice.uri)))
        assert (await alice.read_frame()).code == 200
        await bob.read_frame()
        await bob.close()  # without answering: alice learns it from a REPORT
        report = await alice.read_frame()
        assert report.method == "REPORT"
        assert report.header("Status") == "000 408 next hop lost: connection lost"
        await alice.send(send_frame(to_path, str(alice.uri)))
        assert (await alice.read_frame()).code == 481  # bob's path went with him
        await alice.close()


async def test_an_error_from_the_next_hop_becomes_a_report_for_a_whole_request() -> None:
    async with running_relay() as relay:
        alice, bob, to_path = await two_clients(relay)
        await alice.send(send_frame(to_path, str(alice.uri), message_id="lost"))
        assert (await alice.read_frame()).code == 200
        got = await bob.read_frame()
        error = Frame(got.tid, code=415, comment="Unsupported Media Type")
        error.headers.add("To-Path", got.header("From-Path") or "")
        error.headers.add("From-Path", str(bob.uri))
        await bob.send(error)
        report = await alice.read_frame()
        assert report.method == "REPORT"
        assert report.header("Message-ID") == "lost"
        assert (report.header("Status") or "").split()[1] == "415"
        assert not relay.waiting
        await alice.close()
        await bob.close()


async def test_failure_report_no_gets_no_answer_and_no_transaction() -> None:
    async with running_relay() as relay:
        alice, bob, to_path = await two_clients(relay)
        await alice.send(send_frame(to_path, str(alice.uri), failure_report="no"))
        await bob.read_frame()
        assert not relay.waiting
        with pytest.raises(TimeoutError):
            await alice.read_frame(0.3)
        tid = new_tid()
        await alice.send(with_tid(send_frame(to_path, str(alice.uri)), tid))
        assert (await alice.read_frame()).tid == tid
        await alice.close()
        await bob.close()
