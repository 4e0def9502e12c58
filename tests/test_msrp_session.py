"""The sans-IO session engine: two endpoints wired back to back, time passed in."""

from __future__ import annotations

import itertools

import pytest

from pyim.msrp import Frame, parse_frames
from pyim.msrp import session as engine_module
from pyim.msrp.connection import MsrpConnection
from pyim.msrp.session import MsrpSession, SessionConfig
from pyim.msrp.session_events import (
    MessageAborted,
    MessageDelivered,
    MessageFailed,
    MessageReceived,
    MessageSent,
)
from pyim.msrp.uri import MsrpUri

A_URI = MsrpUri.parse("msrp://127.0.0.1:2855/alice1;tcp")
B_URI = MsrpUri.parse("msrp://127.0.0.1:2856/bobbob;tcp")


def counter_ids(prefix: str):  # deterministic ids make failures readable
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers):06d}"


class Pair:
    """Alice and Bob, each with one session on one connection, joined in memory."""

    def __init__(
        self, a_config: SessionConfig | None = None, b_config: SessionConfig | None = None
    ):
        self.now = 1000.0
        self.a = MsrpSession(A_URI, [B_URI], a_config, id_factory=counter_ids("a"))
        self.b = MsrpSession(B_URI, [A_URI], b_config, id_factory=counter_ids("b"))
        self.ca, self.cb = MsrpConnection(), MsrpConnection()
        self.ca.attach(self.a)
        self.cb.attach(self.b)
        self.wire: list[bytes] = []

    def run(self, max_frames: int = 100_000, drop_b_responses: bool = False) -> None:
        """Move frames both ways until both sides are quiet (bounded)."""
        for _ in range(max_frames):
            moved = False
            data = self.ca.data_to_send(self.now)
            if data is not None:
                self.wire.append(data)
                self.cb.receive_data(data, self.now)
                moved = True
            data = self.cb.data_to_send(self.now)
            if data is not None:
                if not drop_b_responses:
                    self.ca.receive_data(data, self.now)
                moved = True
            if not moved:
                return
        raise AssertionError("exchange did not settle")


def test_short_text_with_success_report() -> None:
    p = Pair()
    mid = p.a.send_message("text/plain", b"Hello Bob", success_report=True)
    p.run()
    (received,) = p.b.events()
    assert isinstance(received, MessageReceived)
    assert (received.message_id, received.body, received.content_type) == (
        mid,
        b"Hello Bob",
        "text/plain",
    )
    assert [type(e) for e in p.a.events()] == [MessageSent, MessageDelivered]
    frames = parse_frames(p.wire[0])
    assert frames[0].method == "SEND"
    names = [name for name, _ in frames[0].headers]
    assert names[:2] == ["To-Path", "From-Path"]


def test_stats_read_like_a_dict() -> None:
    p = Pair()
    p.a.send_message("text/plain", b"Hello Bob")
    p.run()
    stats = p.a.stats
    assert set(stats) == {
        "frames_in",
        "frames_out",
        "messages_in",
        "messages_out",
        "errors_sent",
        "responses_ignored",
    }
    assert stats["messages_out"] == 1 and dict(stats)["frames_out"] == stats.frames_out >= 1
    assert p.b.stats == {**dict(p.b.stats), "messages_in": 1}
    stats["errors_sent"] += 2
    assert stats.errors_sent == 2
    with pytest.raises(KeyError):
        stats["frames"]
    assert not hasattr(stats, "__dict__") and not hasattr(p.a, "__dict__")


def test_an_idle_session_holds_no_tables_or_queues() -> None:
    p = Pair(b_config=SessionConfig(hold_completion=True))
    assert p.a._outgoing is engine_module._EMPTY and p.a._control is None
    mid = p.a.send_message("text/plain", b"x" * 40_000, success_report=True)
    p.run()
    assert p.b.confirm(mid) and p.b.report(mid)
    p.run()
    assert [type(e) for e in p.a.events()] == [MessageSent, MessageDelivered]
    for side in (p.a, p.b):
        assert side._control is None and side._queue is None
        assert side._refused is None and side._reportable is None
        for table in (side._outgoing, side._transactions, side._incoming, side._held):
            assert table is engine_module._EMPTY
    assert list(p.b._completed) == [mid]
    assert engine_module._EMPTY == {}  # shared: never written


def test_large_message_is_chunked_and_reassembled() -> None:
    body = bytes(range(256)) * 4000  # ~1 MB
    p = Pair(SessionConfig(chunk_size=10_000))
    mid = p.a.send_message("application/octet-stream", body, success_report=True)
    p.run()
    received = [e for e in p.b.events() if isinstance(e, MessageReceived)]
    assert len(received) == 1 and received[0].body == body and received[0].message_id == mid
    sends = [f for d in p.wire for f in parse_frames(d)]
    assert len(sends) == -(-len(body) // 10_000)
    assert all(f.flag == "+" for f in sends[:-1]) and sends[-1].flag == "$"
    assert sends[1].header("Byte-Range") == f"10001-20000/{len(body)}"
    assert isinstance(p.a.events()[-1], MessageDelivered)


def test_two_messages_are_interleaved() -> None:
    p = Pair(SessionConfig(chunk_size=100))
    m1 = p.a.send_message("text/plain", b"1" * 1000)
    m2 = p.a.send_message("text/plain", b"2" * 1000)
    p.run()
    order = [parse_frames(d)[0].header("Message-ID") for d in p.wire]
    assert order[:4] == [m1, m2, m1, m2]
    bodies = {e.message_id: e.body for e in p.b.events() if isinstance(e, MessageReceived)}
    assert bodies == {m1: b"1" * 1000, m2: b"2" * 1000}
    assert {e.message_id for e in p.a.events() if isinstance(e, MessageSent)} == {m1, m2}


def test_abort_midway() -> None:
    p = Pair(SessionConfig(chunk_size=100))
    mid = p.a.send_message("text/plain", b"x" * 1000)
    for _ in range(3):
        data = p.ca.data_to_send(p.now)
        assert data is not None
        p.cb.receive_data(data, p.now)
    p.a.abort_message(mid)
    p.run()
    assert parse_frames(p.wire[-1])[0].flag == "#"
    events = p.b.events()
    assert events == [MessageAborted(mid, 300)]
    assert any(isinstance(e, MessageFailed) and e.message_id == mid for e in p.a.events())


def test_refused_midway_with_413_stops_the_sender() -> None:
    p = Pair(SessionConfig(chunk_size=100, max_pending_chunks=1))
    mid = p.a.send_message("text/plain", b"y" * 1000)
    for _ in range(2):  # two chunks go through and are answered
        p.cb.receive_data(p.ca.data_to_send(p.now) or b"", p.now)
        p.ca.receive_data(p.cb.data_to_send(p.now) or b"", p.now)
    p.b.refuse_message(mid)
    p.run()
    failed = [e for e in p.a.events() if isinstance(e, MessageFailed)]
    assert failed == [MessageFailed(mid, 413, "Message Too Large")]
    assert len(p.wire) == 1  # after the refusal one chunk went out (and got 413), no more
    assert not [e for e in p.b.events() if isinstance(e, MessageReceived)]


def test_max_size_gives_413() -> None:
    p = Pair(b_config=SessionConfig(max_message_size=500))
    mid = p.a.send_message("text/plain", b"z" * 501)
    p.run()
    assert p.a.events() == [MessageFailed(mid, 413, "Message Too Large")]


def test_unacceptable_content_type_gives_415() -> None:
    p = Pair(b_config=SessionConfig(accept_types=("text/plain", "message/cpim")))
    mid = p.a.send_message("image/png", b"\x89PNG")
    p.run()
    assert p.a.events() == [MessageFailed(mid, 415, "Unsupported Media Type")]


def test_transaction_timeout_is_a_delivery_failure() -> None:
    p = Pair(SessionConfig(transaction_timeout=30))
    mid = p.a.send_message("text/plain", b"lost?")
    p.run(drop_b_responses=True)
    assert p.a.next_timeout() == pytest.approx(p.now + 30)
    p.a.handle_timeout(p.now + 29.9)
    assert p.a.events() == []
    p.a.handle_timeout(p.now + 30)
    assert p.a.events() == [MessageFailed(mid, 408, "transaction timed out")]
    assert p.a.next_timeout() is None


def test_failure_report_no_needs_no_response() -> None:
    p = Pair()
    mid = p.a.send_message("text/plain", b"fire and forget", failure_report="no")
    p.run()
    assert p.a.events() == [MessageSent(mid)]
    assert p.cb.data_to_send(p.now) is None
    assert len([e for e in p.b.events() if isinstance(e, MessageReceived)]) == 1


def raw_send(tid: str, to: MsrpUri, frm: MsrpUri, mid: str, br: str, body: bytes, flag="$"):
    frame = Frame(tid, "SEND", body=body, flag=flag)
    for name, value in (
        ("To-Path", str(to)),
        ("From-Path", str(frm)),
        ("Message-ID", mid),
        ("Byte-Range", br),
        ("Content-Type", "text/plain"),
    ):
        frame.headers.add(name, value)
    return frame.encode()


def responses(conn: MsrpConnection, now: float = 0.0) -> list[Frame]:
    out = []
    while (data := conn.data_to_send(now)) is not None:
        out.extend(parse_frames(data))
    return out


def test_out_of_order_duplicate_and_gap_chunks() -> None:
    b = MsrpSession(B_URI, [A_URI])
    conn = MsrpConnection()
    conn.attach(b)
    pieces = [(1, b"Hello "), (13, b"!"), (7, b"world "), (7, b"world ")]
    for i, (start, data) in enumerate(pieces[:2]):
        end = start + len(data) - 1
        flag = "$" if start == 13 else "+"
        conn.receive_data(
            raw_send(f"t{i}xx", B_URI, A_URI, "m1", f"{start}-{end}/13", data, flag), 0
        )
    assert b.events() == []  # a gap: bytes 7-12 are missing
    for i, (start, data) in enumerate(pieces[2:]):
        conn.receive_data(raw_send(f"u{i}xx", B_URI, A_URI, "m1", f"{start}-12/13", data, "+"), 0)
    (msg,) = [e for e in b.events() if isinstance(e, MessageReceived)]
    assert msg.body == b"Hello world !"
    assert [f.code for f in responses(conn)] == [200, 200, 200, 200]
    assert not b._incoming  # the late duplicate of a delivered message is not kept


@pytest.mark.parametrize(
    ("to", "frm", "code"),
    [
        (MsrpUri.parse("msrp://127.0.0.1:2856/other;tcp"), A_URI, 481),
        (MsrpUri.parse("msrp://10.0.0.9:2856/bobbob;tcp"), A_URI, 481),
        (B_URI, MsrpUri.parse("msrp://127.0.0.1:2855/mallory;tcp"), 403),
    ],
)
def test_to_path_and_from_path_checks(to: MsrpUri, frm: MsrpUri, code: int) -> None:
    b = MsrpSession(B_URI, [A_URI])
    conn = MsrpConnection()
    conn.attach(b)
    conn.receive_data(raw_send("tid1", to, frm, "m1", "1-2/2", b"hi"), 0)
    (answer,) = responses(conn)
    assert (answer.tid, answer.code) == ("tid1", code)
    assert answer.header("To-Path") == str(frm)
    assert b.events() == []


def test_unknown_method_gets_501_and_keepalive_gets_200() -> None:
    b = MsrpSession(B_URI, [A_URI])
    conn = MsrpConnection()
    conn.attach(b)
    nick = Frame("nick1", "NICKNAME")
    nick.headers.add("To-Path", str(B_URI))
    nick.headers.add("From-Path", str(A_URI))
    nick.headers.add("Use-Nickname", '"bob"')
    conn.receive_data(nick.encode(), 0)
    keep = Frame("keep1", "SEND")
    for name, value in (("To-Path", str(B_URI)), ("From-Path", str(A_URI))):
        keep.headers.add(name, value)
    keep.headers.add("Message-ID", "k1")
    keep.headers.add("Byte-Range", "1-0/0")
    conn.receive_data(keep.encode(), 0)
    assert [(f.tid, f.code) for f in responses(conn)] == [("nick1", 501), ("keep1", 200)]
    assert b.events() == []


def test_failure_report_from_relay_fails_the_message() -> None:
    p = Pair()
    mid = p.a.send_message("text/plain", b"to nowhere", success_report=True)
    p.run()
    p.a.events()
    report = Frame("rep1", "REPORT")
    for name, value in (
        ("To-Path", str(A_URI)),
        ("From-Path", str(B_URI)),
        ("Message-ID", mid),
        ("Byte-Range", "1-10/10"),
        ("Status", "000 200 OK"),
    ):
        report.headers.add(name, value)
    # the report above was already received once: a second one changes nothing
    p.ca.receive_data(report.encode(), p.now)
    assert p.a.events() == []
    assert responses(p.ca) == []  # REPORTs are never answered


def test_bad_byte_range_gets_400() -> None:
    b = MsrpSession(B_URI, [A_URI])
    conn = MsrpConnection()
    conn.attach(b)
    conn.receive_data(raw_send("tid9", B_URI, A_URI, "m1", "5-2/1", b"hi"), 0)
    (answer,) = responses(conn)
    assert answer.code == 400


def test_announced_size_does_not_allocate_and_gaps_are_bounded() -> None:
    b = MsrpSession(B_URI, [A_URI], SessionConfig(max_incoming_bytes=1_000_000))
    conn = MsrpConnection()
    conn.attach(b)
    conn.receive_data(raw_send("big1", B_URI, A_URI, "m1", "1-2/200000000", b"hi", "+"), 0)
    assert b._buffered == 2  # a huge Byte-Range total reserves nothing
    far = raw_send("far1", B_URI, A_URI, "m1", "150000000-150000001/200000000", b"xx", "+")
    conn.receive_data(far, 0)
    assert [(f.tid, f.code) for f in responses(conn)] == [("big1", 200), ("far1", 413)]
    assert b._buffered == 0 and not b._incoming
    conn.receive_data(raw_send("late", B_URI, A_URI, "m1", "3-4/200000000", b"!!", "+"), 0)
    assert [f.code for f in responses(conn)] == [413]  # the refused message stays refused
