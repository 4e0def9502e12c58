"""A corpus of MSRP byte streams, valid and broken, shared by the parser tests.

``CORPUS`` is a list of ``(name, bytes)``; ``LIMITS`` gives the
:class:`~pyim.msrp.parser.ParserLimits` of the cases that need other limits than the
defaults (``limits_for(name)``).

``RFC_EXAMPLES`` follows the wire examples of RFC 4975 (the SEND/200 exchange of the
protocol overview, the two chunks of the framing section, and the Examples section:
basic IM session, XHTML message, chunked message, system message, positive report)
and RFC 4976 (AUTH with digest, SEND through a relay), with CRLF line ends and the
long WWW-Authenticate/Authorization values on one line (the RFC folds them for
print).  They were written down without the RFC text at hand and checked against
MSRP implementations' test fixtures that quote them; the overview, framing, basic
session, positive report and AUTH frames match those quotes, the others keep the
RFC's shape (tids, headers, content types) but not necessarily its exact text.  The
parser does not look at header values or bodies, so this does not change what is
tested.

Every stream in ``RFC_EXAMPLES`` and ``VALID`` is a sequence of complete, well-formed
frames; the others end in the middle of a frame or hold a broken frame.
"""

from __future__ import annotations

import random

from pyim.msrp.parser import ParserLimits

CRLF = b"\r\n"


def frame(start: str, headers: list[str], body: bytes | None = None, flag: str = "$") -> bytes:
    """One frame on the wire: start line (without "MSRP "), header lines, body, flag."""
    tid = start.split(" ", 1)[0]
    out = [f"MSRP {start}".encode(), *(h.encode() for h in headers)]
    head = CRLF.join(out) + CRLF
    end = b"-------" + tid.encode() + flag.encode() + CRLF
    if body is None:
        return head + end
    return head + CRLF + body + CRLF + end


def lines(*items: str) -> bytes:
    """CRLF-terminated lines, as an RFC prints a frame."""
    return b"".join(item.encode() + CRLF for item in items)


# -- RFC 4975 ------------------------------------------------------------------------------

RFC4975_OVERVIEW = lines(
    "MSRP a786hjs2 SEND",
    "To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp",
    "From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp",
    "Message-ID: 87652491",
    "Byte-Range: 1-25/25",
    "Content-Type: text/plain",
    "",
    "Hey Bob, are you there?",
    "-------a786hjs2$",
    "MSRP a786hjs2 200 OK",
    "To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp",
    "From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp",
    "-------a786hjs2$",
)

RFC4975_FRAMING_CHUNKS = lines(
    "MSRP dkei38sd SEND",
    "Message-ID: 4564dpWd",
    "Byte-Range: 1-*/8",
    "Content-Type: text/plain",
    "",
    "abcd",
    "-------dkei38sd+",
    "MSRP dkei38ia SEND",
    "Message-ID: 4564dpWd",
    "Byte-Range: 5-8/8",
    "Content-Type: text/plain",
    "",
    "EFGH",
    "-------dkei38ia$",
)

RFC4975_BASIC_IM = lines(
    "MSRP d93kswow SEND",
    "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
    "Message-ID: 12339sdqwer",
    "Byte-Range: 1-16/16",
    "Content-Type: text/plain",
    "",
    "Hi, I'm Alice!",
    "-------d93kswow$",
    "MSRP d93kswow 200 OK",
    "To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
    "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "-------d93kswow$",
    "MSRP dkei38sd SEND",
    "To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
    "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "Message-ID: 456s9wlk3",
    "Byte-Range: 1-21/21",
    "Content-Type: text/plain",
    "",
    "Hi, Alice! I'm Bob!",
    "-------dkei38sd$",
    "MSRP dkei38sd 200 OK",
    "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
    "-------dkei38sd$",
)

RFC4975_XHTML = lines(
    "MSRP d93kswow SEND",
    "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
    "Message-ID: 12339sdqwer",
    "Byte-Range: 1-68/68",
    "Success-Report: yes",
    "Failure-Report: no",
    "Content-Type: application/xhtml+xml",
    "",
    '<html><body><p>Here is that <a href="http://example.com/foo">link</a></p>',
    "</body></html>",
    "-------d93kswow$",
)

RFC4975_CHUNKED = lines(
    "MSRP 7443hd SEND",
    "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
    "Message-ID: 12339sdqwer",
    "Byte-Range: 1-137/148",
    "Success-Report: yes",
    "Failure-Report: yes",
    "Content-Type: message/cpim",
    "",
    "To: Bob <sip:bob@example.com>",
    "From: Alice <sip:alice@example.com>",
    "DateTime: 2006-05-15T15:02:31-03:00",
    "Content-Type: text/plain",
    "",
    "ABCD",
    "-------7443hd+",
    "MSRP 7443hf SEND",
    "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
    "Message-ID: 12339sdqwer",
    "Byte-Range: 138-148/148",
    "Success-Report: yes",
    "Failure-Report: yes",
    "Content-Type: message/cpim",
    "",
    "1234567890",
    "-------7443hf$",
)

RFC4975_SYSTEM_MESSAGE = lines(
    "MSRP 5h37d SEND",
    "To-Path: msrp://alicepc.example.com:8888/9di4eae923wzd;tcp",
    "From-Path: msrp://example.com:7777/iau39soe2843z;tcp",
    "Message-ID: 9sdkls",
    "Byte-Range: 1-37/37",
    "Failure-Report: no",
    "Success-Report: no",
    "Content-Type: text/plain",
    "",
    "This conference will end in 5 minutes",
    "-------5h37d$",
)

RFC4975_POSITIVE_REPORT = lines(
    "MSRP dkei38sd REPORT",
    "To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
    "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "Message-ID: 12339sdqwer",
    "Byte-Range: 1-106/106",
    "Status: 000 200 OK",
    "-------dkei38sd$",
)

# -- RFC 4976 (relays) ---------------------------------------------------------------------

RFC4976_AUTH = lines(
    "MSRP 49fh AUTH",
    "To-Path: msrps://alice@intra.example.com;tcp",
    "From-Path: msrps://alice.example.com:9892/98cjs;tcp",
    "-------49fh$",
    "MSRP 49fh 401 Unauthorized",
    "To-Path: msrps://alice.example.com:9892/98cjs;tcp",
    "From-Path: msrps://alice@intra.example.com;tcp",
    'WWW-Authenticate: Digest realm="intra.example.com", qop="auth", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"',
    "-------49fh$",
    "MSRP 49fi AUTH",
    "To-Path: msrps://alice@intra.example.com;tcp",
    "From-Path: msrps://alice.example.com:9892/98cjs;tcp",
    'Authorization: Digest username="Alice", realm="intra.example.com", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop=auth, nc=00000001, '
    'cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1"',
    "-------49fi$",
    "MSRP 49fi 200 OK",
    "To-Path: msrps://alice.example.com:9892/98cjs;tcp",
    "From-Path: msrps://alice@intra.example.com;tcp",
    "Use-Path: msrps://relay.example.com:2855/hjdhfsd;tcp",
    "Expires: 900",
    "-------49fi$",
)

RFC4976_SEND_VIA_RELAY = lines(
    "MSRP 6aef SEND",
    "To-Path: msrps://relay.example.com:2855/hjdhfsd;tcp "
    "msrps://bob.example.com:8888/9di4eae923wzd;tcp",
    "From-Path: msrps://alice.example.com:9892/98cjs;tcp",
    "Message-ID: 87652",
    "Byte-Range: 1-14/14",
    "Content-Type: text/plain",
    "",
    "Hi, I'm Alice!",
    "-------6aef$",
    "MSRP 6aef 200 OK",
    "To-Path: msrps://alice.example.com:9892/98cjs;tcp",
    "From-Path: msrps://relay.example.com:2855/hjdhfsd;tcp",
    "-------6aef$",
)

RFC_EXAMPLES: list[tuple[str, bytes]] = [
    ("rfc4975_overview_send_200", RFC4975_OVERVIEW),
    ("rfc4975_framing_chunks", RFC4975_FRAMING_CHUNKS),
    ("rfc4975_basic_im_session", RFC4975_BASIC_IM),
    ("rfc4975_xhtml_message", RFC4975_XHTML),
    ("rfc4975_chunked_message", RFC4975_CHUNKED),
    ("rfc4975_system_message", RFC4975_SYSTEM_MESSAGE),
    ("rfc4975_positive_report", RFC4975_POSITIVE_REPORT),
    ("rfc4976_auth_digest", RFC4976_AUTH),
    ("rfc4976_send_via_relay", RFC4976_SEND_VIA_RELAY),
]

# -- more valid streams --------------------------------------------------------------------

PATHS = [
    "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
]
SEND_HEADERS = [*PATHS, "Message-ID: m1", "Byte-Range: 1-*/*", "Content-Type: text/plain"]


def _random_body(size: int, seed: int, tid: bytes) -> bytes:
    """Deterministic bytes with plenty of CR, LF and dashes, free of tid's end-line."""
    rng = random.Random(seed)
    alphabet = b"\r\n-" + bytes(range(256))
    body = bytes(rng.choice(alphabet) for _ in range(size))
    assert b"-------" + tid not in body
    return body


BODY_64K = _random_body(64 * 1024, 4975, b"big64k01")

VALID: list[tuple[str, bytes]] = [
    ("response_without_comment", frame("abcd1234 200", PATHS)),
    ("response_with_comment", frame("abcd1234 403 Not allowed here", PATHS)),
    ("response_utf8_comment", frame("abcd1234 200 Très bien ✓", PATHS)),
    ("response_space_no_comment", frame("abcd1234 200 ", PATHS)),
    ("report_failure", frame("rep0rt42 REPORT", [*PATHS, "Message-ID: m1", "Status: 000 413"])),
    ("unknown_method_nickname", frame("nick0001 NICKNAME", [*PATHS, 'Use-Nickname: "Alice"'])),
    ("empty_body", frame("empty001 SEND", SEND_HEADERS, b"")),
    ("no_headers_at_all", frame("bare0001 SEND", [])),
    (
        "body_lookalike_other_tids",
        frame(
            "look0001 SEND",
            SEND_HEADERS,
            b"a\r\n-------look0002$\r\nb\r\n-------look$\r\n-------xlook0001$\r\nc",
        ),
    ),
    (
        "body_our_tid_bad_flag",
        frame(
            "flag0001 SEND",
            SEND_HEADERS,
            b"x\r\n-------flag0001!\r\ny\r\n-------flag0001\r\n-------flag0001$X\r\n"
            b"-------flag0001$\rz\r\n-------flag0001 $\r\nend",
        ),
    ),
    (
        "body_our_tid_prefix_extra",
        frame(
            "pref0001 SEND",
            SEND_HEADERS,
            b"\r\n-------pref00012$\r\n\r\n-------pref0001x+\r\n-------pref0001-#\r\n",
        ),
    ),
    ("crlf_heavy_body", frame("crlf0001 SEND", SEND_HEADERS, b"\r\n" * 40 + b"\r\r\n\n\r" * 9)),
    ("body_is_crlf", frame("crlf0002 SEND", SEND_HEADERS, b"\r\n")),
    ("body_ends_with_cr", frame("crlf0003 SEND", SEND_HEADERS, b"abc\r")),
    ("body_bare_lf", frame("lf000001 SEND", SEND_HEADERS, b"one\ntwo\n\nthree")),
    (
        "flags_plus_hash_dollar",
        frame("chnk0001 SEND", SEND_HEADERS, b"first part", "+")
        + frame("chnk0002 SEND", SEND_HEADERS, b"abandoned", "#")
        + frame("chnk0003 SEND", SEND_HEADERS, b"last part", "$")
        + frame("chnk0004 200", PATHS, None, "+")
        + frame("chnk0005 SEND", PATHS, None, "#"),
    ),
    ("body_64k", frame("big64k01 SEND", SEND_HEADERS, BODY_64K)),
    ("line_exactly_at_limit", frame("long0003 SEND", [*PATHS, "X-Fit: " + "F" * 57])),
    (
        "repeated_header_values",
        frame("rept0001 SEND", [*PATHS, "Content-Type: text/plain"], b"1")
        + frame("rept0002 SEND", [PATHS[1], PATHS[0], "Content-Type: text/plain"], b"2")
        + frame("rept0003 SEND", [*PATHS, "Content-Type: text/plain "], b"3")
        + frame("rept0004 SEND", [*PATHS, "Content-Type: tëxt/plain"], b"4")
        + frame("rept0005 SEND", [*PATHS, "Content-Type: tëxt/plain"], b"5")
        + frame("rept0006 SEND", [*PATHS, "Content-Type: text/plai"], b"6")
        + frame("rept0007 SEND", [*PATHS, "content-type: text/plain"], b"7")
        + frame("rept0008 SEND", [*PATHS, "Content-Type:"], b"8")
        + frame("rept0009 SEND", [*PATHS, "Content-Type: "], b"9")
        + frame("rept0010 SEND", [*PATHS, "Content-Type: text/plain"], b"10"),
    ),
    (
        "tid_chars_and_lengths",
        frame("A.-+%=Z9 SEND", SEND_HEADERS, b"x")
        + frame("a" * 32 + " 200 OK", PATHS)
        + frame("0abc SEND", SEND_HEADERS, b"y"),
    ),
    (
        "header_spacing_and_names",
        frame(
            "hdrs0001 SEND",
            [
                *PATHS,
                "X-Empty:",
                "X-Spaces: \t  padded value \t ",
                "X-Tight:tight",
                "x-lower_case.name!%*+`'~: odd but token",
                "Subject: héllo wörld ✓",
                "X-Colons: a:b:c",
                "Content-Type: text/plain",
            ],
            b"body",
        ),
    ),
]

# -- broken streams ------------------------------------------------------------------------

NEXT = frame("next0001 SEND", SEND_HEADERS, b"after the broken frame") + frame(
    "next0002 200", PATHS
)
"""Well-formed frames that follow a broken one, to see that parsing goes on."""

BROKEN: list[tuple[str, bytes]] = [
    ("truncated_no_end_line", frame("trnc0001 SEND", SEND_HEADERS, b"no end")[:-20]),
    ("truncated_in_headers", frame("trnc0002 SEND", SEND_HEADERS, b"x")[:60]),
    ("truncated_in_start_line", b"MSRP trnc0003 SE"),
    (
        "wrong_tid_in_end_line_body",
        frame("wrng0001 SEND", SEND_HEADERS, b"hello")[: -len("-------wrng0001$\r\n")]
        + b"-------wrng0002$\r\n"
        + NEXT,
    ),
    (
        "wrong_tid_in_end_line_no_body",
        lines("MSRP wrng0003 SEND", *PATHS, "-------wrng0004$", "-------wrng0003$") + NEXT,
    ),
    ("bare_lf_in_start_line", b"MSRP blf00001 SEND\n" + lines(*PATHS, "-------blf00001$")),
    ("bare_lf_in_header", lines("MSRP blf00002 SEND") + b"To-Path: msrp://a/b;tcp\n"),
    ("bare_lf_first_byte_of_header", lines("MSRP blf00003 SEND") + b"\nTo-Path: x\r\n"),
    (
        "oversized_header_block",
        frame("big00001 SEND", [*PATHS, *[f"X-{i}: {'v' * 60}" for i in range(8)]]),
    ),
    (
        "oversized_header_block_default_limits",
        frame("big00002 SEND", [*PATHS, *[f"X-{i}: {'v' * 4000}" for i in range(5)]]) + NEXT,
    ),
    ("too_many_headers", frame("many0001 SEND", [*PATHS, *[f"X-{i}: v" for i in range(70)]])),
    ("line_too_long_header", frame("long0001 SEND", [*PATHS, "X-Long: " + "L" * 5000])),
    ("line_too_long_start_line", b"MSRP long0002 " + b"X" * 5000 + b"\r\n"),
    ("line_one_over_limit", frame("long0004 SEND", [*PATHS, "X-Fit: " + "F" * 58]) + NEXT),
    (
        "oversized_chunk_recovers",
        frame("chnk1001 SEND", SEND_HEADERS, b"B" * 150) + NEXT,
    ),
    (
        "oversized_chunk_frame_too_large",
        frame("chnk1002 SEND", SEND_HEADERS, b"C" * 250) + NEXT,
    ),
    ("bad_method_lowercase", frame("meth0001 send", SEND_HEADERS, b"lower") + NEXT),
    ("bad_method_lowercase_no_body", frame("meth0002 send", PATHS) + NEXT),
    ("bad_method_missing", lines("MSRP meth0003 ", *PATHS, "-------meth0003$") + NEXT),
    ("bad_method_status_too_short", frame("meth0004 20 OK", PATHS) + NEXT),
    ("bad_method_status_too_long", frame("meth0005 2000", PATHS) + NEXT),
    ("bad_status_comment_utf8", frame("meth0006 200 ok", PATHS).replace(b"ok", b"\xffk") + NEXT),
    ("bad_tid_too_short", frame("abc SEND", PATHS) + NEXT),
    ("bad_tid_too_long", frame("a" * 33 + " SEND", PATHS) + NEXT),
    ("bad_tid_first_char", frame("-abcd SEND", PATHS) + NEXT),
    ("bad_tid_char", frame("ab/cd SEND", PATHS) + NEXT),
    ("start_line_without_method", b"MSRP abcd1234\r\n" + NEXT),
    ("start_line_double_space", b"MSRP  abcd1234 SEND\r\n" + NEXT),
    ("garbage_http_request", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    ("garbage_lowercase_msrp", b"msrp abcd1234 SEND\r\n"),
    ("garbage_crlf_between_frames", NEXT + CRLF + NEXT),
    (
        "non_utf8_header_value",
        frame("utf80001 SEND", [*PATHS, "Subject: X"], b"body").replace(b": X", b": \xff\xfe")
        + NEXT,
    ),
    (
        "non_utf8_header_bad_continuation",
        frame("utf80002 SEND", [*PATHS, "Subject: X"]).replace(b": X", b": \xc3(") + NEXT,
    ),
    (
        "header_without_colon",
        frame("colo0001 SEND", [*PATHS, "No-Colon-Here", "Content-Type: text/plain"], b"b") + NEXT,
    ),
    ("header_without_colon_last", frame("colo0002 SEND", [*PATHS, "No-Colon-Here"]) + NEXT),
    ("header_empty_name", frame("colo0003 SEND", [*PATHS, ": value"], b"b") + NEXT),
    ("header_name_with_space", frame("colo0004 SEND", [*PATHS, "To Path: x"]) + NEXT),
    ("header_value_with_cr", frame("colo0005 SEND", [*PATHS, "X-Cr: a\rb"], b"b") + NEXT),
    (
        "non_utf8_and_cr_in_value",
        frame("colo0006 SEND", [*PATHS, "X-Cr: a\rbX"], b"b").replace(b"bX", b"\xff") + NEXT,
    ),
    (
        "broken_frame_skip_too_large",
        frame("skip0001 send", SEND_HEADERS, b"S" * 300) + NEXT,
    ),
    (
        "two_recoverable_errors_in_a_row",
        frame("twoe0001 send", PATHS) + frame("twoe0002 SEND", ["Bad Header"]) + NEXT,
    ),
]

LIMITS: dict[str, ParserLimits] = {
    "oversized_header_block": ParserLimits(max_header_bytes=300),
    "line_exactly_at_limit": ParserLimits(max_line_length=64),
    "line_one_over_limit": ParserLimits(max_line_length=64),
    "oversized_chunk_recovers": ParserLimits(max_chunk_size=100),
    "oversized_chunk_frame_too_large": ParserLimits(max_chunk_size=100),
    "broken_frame_skip_too_large": ParserLimits(max_chunk_size=100),
}

CORPUS: list[tuple[str, bytes]] = [*RFC_EXAMPLES, *VALID, *BROKEN]

WELL_FORMED = {name for name, _ in [*RFC_EXAMPLES, *VALID]}


def limits_for(name: str) -> ParserLimits:
    return LIMITS.get(name, ParserLimits())


def case(name: str) -> bytes:
    for key, data in CORPUS:
        if key == name:
            return data
    raise KeyError(name)


assert len({name for name, _ in CORPUS}) == len(CORPUS), "corpus names must be unique"
