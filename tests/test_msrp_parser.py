"""Behaviour of the incremental MSRP frame parser, for both implementations.

The ``impl`` fixture makes ``pyim.msrp.FrameParser`` (and so ``pyim.msrp.parse_frames``)
the pure-Python reference or the compiled parser in turn.  The native one must be
built: without it the "native" tests fail, they do not skip.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

import pyim.msrp
from msrp_corpus import NEXT, RFC_EXAMPLES, VALID, case, frame, limits_for
from pyim.msrp import (
    BodyData,
    FrameEnd,
    FrameHead,
    ParseError,
    ParserLimits,
    frames_from_events,
    parse_frames,
)
from pyim.msrp.parser import FrameParser as PureFrameParser

Key = tuple[str, int | None, str | None, bool]


@pytest.fixture(params=["pure", "native"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if request.param == "pure":
        cls: Any = PureFrameParser
    else:
        try:
            from pyim.msrp._speedups import FrameParser as cls
        except ImportError as exc:
            pytest.fail(
                f"pyim.msrp._speedups is not built ({exc}); run `pip install -e .` "
                "(or scripts/build_pjsip.sh)",
                pytrace=False,
            )
    monkeypatch.setattr(pyim.msrp, "FrameParser", cls)
    yield cls


def drive(parser: Any, pieces: list[bytes]) -> list[Any]:
    """Events and error keys, going on with feed(b"") after recoverable errors and
    stopping at a fatal one."""
    out: list[Any] = []
    for piece in pieces:
        data = piece
        while True:
            try:
                out.extend(parser.feed(data))
            except ParseError as err:
                out.extend(err.events)
                out.append(err.key())
                if err.close:
                    return out
                data = b""
                continue
            break
    return out


def merged(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, BodyData) and out and isinstance(out[-1], BodyData):
            out[-1] = BodyData(item.tid, out[-1].data + item.data)
        else:
            out.append(item)
    return out


def heads(items: list[Any]) -> list[str]:
    return [x.tid for x in items if isinstance(x, FrameHead)]


def errors(items: list[Any]) -> list[Key]:
    return [x for x in items if isinstance(x, tuple)]


# -- well-formed input -------------------------------------------------------------------

NOT_CANONICAL = {  # parse fine, but Frame.encode() writes them in its own canonical form...
    "response_space_no_comment",
    # ...or refuses them: as a sender it keeps "-------" + tid out of the body
    "body_our_tid_bad_flag",
    "body_our_tid_prefix_extra",
    "header_spacing_and_names",
    "repeated_header_values",
}
ROUND_TRIP = [(n, d) for n, d in [*RFC_EXAMPLES, *VALID] if n not in NOT_CANONICAL]


@pytest.mark.parametrize(("name", "data"), ROUND_TRIP, ids=[n for n, _ in ROUND_TRIP])
def test_examples_parse_and_reencode_byte_exactly(impl: Any, name: str, data: bytes) -> None:
    frames = parse_frames(data, limits_for(name))
    assert frames
    assert b"".join(f.encode() for f in frames) == data


def test_rfc4975_basic_session_fields(impl: Any) -> None:
    frames = parse_frames(case("rfc4975_basic_im_session"))
    assert [(f.tid, f.method, f.code, f.comment, f.flag) for f in frames] == [
        ("d93kswow", "SEND", None, None, "$"),
        ("d93kswow", None, 200, "OK", "$"),
        ("dkei38sd", "SEND", None, None, "$"),
        ("dkei38sd", None, 200, "OK", "$"),
    ]
    send = frames[0]
    assert send.body == b"Hi, I'm Alice!"
    assert send.header("to-path") == "msrp://bob.example.com:8888/9di4eae923wzd;tcp"
    assert send.header("Byte-Range") == "1-16/16"
    assert frames[1].body is None


def test_rfc4976_auth_fields(impl: Any) -> None:
    frames = parse_frames(case("rfc4976_auth_digest"))
    assert [(f.method, f.code) for f in frames] == [
        ("AUTH", None),
        (None, 401),
        ("AUTH", None),
        (None, 200),
    ]
    assert frames[1].comment == "Unauthorized"
    assert frames[1].headers.get("WWW-Authenticate", "").startswith('Digest realm="intra.example')
    assert frames[3].header("Use-Path") == "msrps://relay.example.com:2855/hjdhfsd;tcp"
    assert frames[3].header("Expires") == "900"


def test_flags_and_unknown_method(impl: Any) -> None:
    frames = parse_frames(case("flags_plus_hash_dollar"))
    assert [f.flag for f in frames] == ["+", "#", "$", "+", "#"]
    [nick] = parse_frames(case("unknown_method_nickname"))
    assert nick.method == "NICKNAME"
    assert nick.header("Use-Nickname") == '"Alice"'


def test_response_comment_forms(impl: Any) -> None:
    [plain] = parse_frames(case("response_without_comment"))
    [spaced] = parse_frames(case("response_space_no_comment"))
    [commented] = parse_frames(case("response_with_comment"))
    [utf8] = parse_frames(case("response_utf8_comment"))
    assert (plain.code, plain.comment) == (200, None)
    assert (spaced.code, spaced.comment) == (200, None)
    assert (commented.code, commented.comment) == (403, "Not allowed here")
    assert utf8.comment == "Très bien ✓"


def test_empty_body_and_lookalike_end_lines(impl: Any) -> None:
    [empty] = parse_frames(case("empty_body"))
    assert empty.body == b""
    [look] = parse_frames(case("body_lookalike_other_tids"))
    assert look.body is not None and b"-------look0002$" in look.body
    [flagged] = parse_frames(case("body_our_tid_bad_flag"))
    assert flagged.body is not None and flagged.body.endswith(b"-------flag0001 $\r\nend")
    [prefixed] = parse_frames(case("body_our_tid_prefix_extra"))
    assert (
        prefixed.body == b"\r\n-------pref00012$\r\n\r\n-------pref0001x+\r\n-------pref0001-#\r\n"
    )


def test_header_values_are_trimmed_and_decoded(impl: Any) -> None:
    [f] = parse_frames(case("header_spacing_and_names"))
    assert f.headers.items()[2:] == [
        ("X-Empty", ""),
        ("X-Spaces", "padded value"),
        ("X-Tight", "tight"),
        ("x-lower_case.name!%*+`'~", "odd but token"),
        ("Subject", "héllo wörld ✓"),
        ("X-Colons", "a:b:c"),
        ("Content-Type", "text/plain"),
    ]


def test_repeated_header_values(impl: Any) -> None:
    frames = parse_frames(case("repeated_header_values"))
    assert [f.header("Content-Type") for f in frames] == [
        "text/plain",
        "text/plain",
        "text/plain",
        "tëxt/plain",
        "tëxt/plain",
        "text/plai",
        "text/plain",
        "",
        "",
        "text/plain",
    ]
    assert frames[1].headers.items()[:2] == [
        ("From-Path", "msrp://alicepc.example.com:7777/iau39soe2843z;tcp"),
        ("To-Path", "msrp://bob.example.com:8888/9di4eae923wzd;tcp"),
    ]
    assert frames[6].headers.items()[2] == ("content-type", "text/plain")


# -- streaming ---------------------------------------------------------------------------


def test_big_body_streams_with_bounded_buffering(impl: Any) -> None:
    body = random.Random(7).randbytes(10 * 1024 * 1024)
    data = frame("stream01 SEND", ["Content-Type: application/octet-stream"], body)
    parser = impl()
    got: list[bytes] = []
    ends = 0
    most = 0
    for i in range(0, len(data), 4096):
        for ev in parser.feed(data[i : i + 4096]):
            if isinstance(ev, BodyData):
                got.append(ev.data)
            elif isinstance(ev, FrameEnd):
                ends += 1
        most = max(most, parser.buffered)
        if i + 4096 < len(data) - 100:
            # the body is handed out as it arrives: all but the held-back tail
            assert sum(map(len, got)) >= i + 4096 - 128 - 200
    assert b"".join(got) == body
    assert ends == 1
    assert parser.buffered == 0
    assert most <= 128


@pytest.mark.parametrize("cut", range(1, 30))
def test_end_line_split_across_reads(impl: Any, cut: int) -> None:
    data = frame("splt0001 SEND", ["Content-Type: text/plain"], b"payload\r\n") + NEXT
    end_at = data.index(b"\r\n-------splt0001$")
    at = end_at - 5 + cut
    parser = impl()
    events = parser.feed(data[:at]) + parser.feed(data[at:])
    frames = frames_from_events(events)
    assert [f.tid for f in frames] == ["splt0001", "next0001", "next0002"]
    assert frames[0].body == b"payload\r\n"
    assert parser.buffered == 0


def test_one_byte_per_feed(impl: Any) -> None:
    """A slowloris-shaped stream: everything parses and little is ever held back."""
    text = b"".join(d for _, d in RFC_EXAMPLES) + case("flags_plus_hash_dollar")
    data = text + case("body_64k")
    longest_line = max(len(line) for line in text.split(b"\r\n"))
    parser = impl()
    events = []
    most = 0
    for i in range(len(data)):
        events.extend(parser.feed(data[i : i + 1]))
        most = max(most, parser.buffered)
    assert frames_from_events(events) == parse_frames(data)
    assert parser.buffered == 0
    assert most <= max(longest_line + 2, 48)


def test_buffer_types(impl: Any) -> None:
    data = case("rfc4975_basic_im_session")
    want = frames_from_events(impl().feed(data))
    assert frames_from_events(impl().feed(bytearray(data))) == want
    assert frames_from_events(impl().feed(memoryview(data))) == want
    parser = impl()
    events = []
    view = memoryview(data)
    for i in range(0, len(data), 7):
        events.extend(parser.feed(view[i : i + 7]))
    assert frames_from_events(events) == want


def test_events_before_an_error_are_kept(impl: Any) -> None:
    data = case("rfc4975_positive_report") + b"MSRP abcd1234 send\r\n"
    with pytest.raises(ParseError) as info:
        impl().feed(data)
    assert info.value.key() == ("bad method", 400, "abcd1234", False)
    assert [type(e) for e in info.value.events] == [FrameHead, FrameEnd]


# -- broken input ------------------------------------------------------------------------

# name -> the errors met, in order (after each recoverable one the parser goes on)
EXPECTED: dict[str, list[Key]] = {
    "wrong_tid_in_end_line_no_body": [("malformed header", 400, "wrng0003", False)],
    "bare_lf_in_start_line": [("bare LF", None, None, True)],
    "bare_lf_in_header": [("bare LF", None, "blf00002", True)],
    "bare_lf_first_byte_of_header": [("bare LF", None, "blf00003", True)],
    "oversized_header_block": [("header block too large", None, "big00001", True)],
    "oversized_header_block_default_limits": [("header block too large", None, "big00002", True)],
    "too_many_headers": [("too many headers", None, "many0001", True)],
    "line_too_long_header": [("line too long", None, "long0001", True)],
    "line_too_long_start_line": [("line too long", None, None, True)],
    "line_one_over_limit": [("line too long", None, "long0004", True)],
    "oversized_chunk_recovers": [("chunk too large", 413, "chnk1001", False)],
    "oversized_chunk_frame_too_large": [
        ("chunk too large", 413, "chnk1002", False),
        ("frame too large", None, "chnk1002", True),
    ],
    "bad_method_lowercase": [("bad method", 400, "meth0001", False)],
    "bad_method_lowercase_no_body": [("bad method", 400, "meth0002", False)],
    "bad_method_missing": [("bad method", 400, "meth0003", False)],
    "bad_method_status_too_short": [("bad method", 400, "meth0004", False)],
    "bad_method_status_too_long": [("bad method", 400, "meth0005", False)],
    "bad_status_comment_utf8": [("bad status comment", 400, "meth0006", False)],
    "bad_tid_too_short": [("bad transaction id", None, None, True)],
    "bad_tid_too_long": [("bad transaction id", None, None, True)],
    "bad_tid_first_char": [("bad transaction id", None, None, True)],
    "bad_tid_char": [("bad transaction id", None, None, True)],
    "start_line_without_method": [("bad start line", None, None, True)],
    "start_line_double_space": [("bad transaction id", None, None, True)],
    "garbage_http_request": [("bad start line", None, None, True)],
    "garbage_lowercase_msrp": [("bad start line", None, None, True)],
    "garbage_crlf_between_frames": [("bad start line", None, None, True)],
    "non_utf8_header_value": [("header is not UTF-8", 400, "utf80001", False)],
    "non_utf8_header_bad_continuation": [("header is not UTF-8", 400, "utf80002", False)],
    "header_without_colon": [("malformed header", 400, "colo0001", False)],
    "header_without_colon_last": [("malformed header", 400, "colo0002", False)],
    "header_empty_name": [("malformed header", 400, "colo0003", False)],
    "header_name_with_space": [("malformed header", 400, "colo0004", False)],
    "header_value_with_cr": [("malformed header", 400, "colo0005", False)],
    "non_utf8_and_cr_in_value": [("header is not UTF-8", 400, "colo0006", False)],
    "broken_frame_skip_too_large": [
        ("bad method", 400, "skip0001", False),
        ("frame too large", None, "skip0001", True),
    ],
    "two_recoverable_errors_in_a_row": [
        ("bad method", 400, "twoe0001", False),
        ("malformed header", 400, "twoe0002", False),
    ],
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_malformed_input(impl: Any, name: str) -> None:
    data = case(name)
    limits = limits_for(name)
    whole = drive(impl(limits), [data])
    assert errors(whole) == EXPECTED[name]
    if not EXPECTED[name][-1][3] and data.endswith(NEXT):
        # recoverable: the frames after the broken one still parse
        assert heads(whole)[-2:] == ["next0001", "next0002"]
        assert isinstance(whole[-1], FrameEnd)
    # the same, whatever the split
    slow = drive(impl(limits), [data[i : i + 1] for i in range(len(data))])
    assert errors(slow) == EXPECTED[name]
    assert heads(slow) == heads(whole)


def test_truncated_input_is_held_not_reported(impl: Any) -> None:
    for name in ("truncated_no_end_line", "truncated_in_headers", "truncated_in_start_line"):
        parser = impl()
        parser.feed(case(name))
        with pytest.raises(ParseError) as info:
            parse_frames(case(name))
        assert info.value.key() == ("incomplete frame", None, None, True)
    parser = impl()
    events = parser.feed(case("truncated_in_headers"))
    assert events == []
    assert parser.buffered > 0


def test_wrong_tid_in_end_line_swallows_what_follows(impl: Any) -> None:
    """A body runs to its own end-line: another tid's end-line is part of it (RFC 4975
    §7.1.1), and so is what follows until this frame's end-line shows up."""
    events = impl().feed(case("wrong_tid_in_end_line_body"))
    assert heads(events) == ["wrng0001"]
    assert not any(isinstance(e, FrameEnd) for e in events)
    body = b"".join(e.data for e in events if isinstance(e, BodyData))
    assert body.startswith(b"hello\r\n-------wrng0002$\r\nMSRP next0001 SEND")


def test_recoverable_error_then_feed_empty(impl: Any) -> None:
    parser = impl()
    data = frame("brok0001 SEND", ["Broken"], b"body") + NEXT
    with pytest.raises(ParseError) as info:
        parser.feed(data)
    err = info.value
    assert (err.status, err.tid, err.close) == (400, "brok0001", False)
    assert err.events == []
    assert parser.buffered > 0
    events = parser.feed(b"")
    assert heads(events) == ["next0001", "next0002"]
    assert parser.buffered == 0


def test_fatal_error_makes_later_feeds_raise(impl: Any) -> None:
    parser = impl()
    with pytest.raises(ParseError) as info:
        parser.feed(case("rfc4975_overview_send_200") + b"GET / HTTP/1.1\r\n\r\n")
    assert info.value.key() == ("bad start line", None, None, True)
    assert len(info.value.events) == 5
    assert parser.buffered == 0
    for more in (b"", case("rfc4975_overview_send_200")):
        with pytest.raises(ParseError) as again:
            parser.feed(more)
        assert again.value.key() == ("bad start line", None, None, True)
        assert again.value.events == []
        assert parser.buffered == 0


def test_oversized_chunk_in_one_read_recovers(impl: Any) -> None:
    """A 413 for a chunk that came in one big read; the skip is counted from the limit,
    so a chunk up to twice the limit is skipped and the session goes on."""
    mib = 1024 * 1024
    limits = ParserLimits(max_chunk_size=mib)
    data = frame("huge0001 SEND", ["Content-Type: x/y"], b"z" * (mib + mib // 2)) + NEXT
    parser = impl(limits)
    with pytest.raises(ParseError) as info:
        parser.feed(data)
    assert info.value.key() == ("chunk too large", 413, "huge0001", False)
    assert parser.buffered > mib
    assert heads(parser.feed(b"")) == ["next0001", "next0002"]
    assert parser.buffered == 0
    # twice the limit and more: the frame is too large and the connection must go
    data = frame("huge0002 SEND", ["Content-Type: x/y"], b"z" * (2 * mib + 1)) + NEXT
    parser = impl(limits)
    assert errors(drive(parser, [data])) == [
        ("chunk too large", 413, "huge0002", False),
        ("frame too large", None, "huge0002", True),
    ]


def test_limits(impl: Any) -> None:
    limits = ParserLimits(max_line_length=30)
    parser = impl(limits)
    assert parser.limits is limits
    assert impl().limits == ParserLimits()
    with pytest.raises(ParseError) as info:
        parser.feed(b"MSRP abcd SEND\r\nTo-Path: " + b"x" * 30 + b"\r\n")
    assert info.value.key() == ("line too long", None, "abcd", True)
