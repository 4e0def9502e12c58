"""MSRP header value codecs (RFC 4975 §9, RFC 4976 §5)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyim.msrp.headers import (
    HEADER_NAMES,
    MAX_BYTE_COUNT,
    MAX_EXPIRES,
    AuthenticationInfo,
    Authorization,
    ByteRange,
    ContentType,
    FailureReport,
    HeaderError,
    HeaderName,
    ReportRequest,
    Status,
    SuccessReport,
    WwwAuthenticate,
    canonical_name,
    failure_report,
    is_ident,
    is_token,
    parse_expires,
    parse_message_id,
    quote,
    success_report,
)

# -- header names --------------------------------------------------------------


def test_header_names() -> None:
    assert str(HeaderName.TO_PATH) == "To-Path"
    assert f"{HeaderName.MESSAGE_ID}: x" == "Message-ID: x"
    assert "Byte-Range" in HEADER_NAMES
    assert "X-Unknown" not in HEADER_NAMES
    assert len(HEADER_NAMES) == len(HeaderName)


def test_canonical_name() -> None:
    assert canonical_name("to-path") == "To-Path"
    assert canonical_name("MESSAGE-ID") == "Message-ID"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("X-Custom") == "X-Custom"


# -- Byte-Range ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1-*/*", ByteRange(1, None, None)),
        ("1-25/25", ByteRange(1, 25, 25)),
        ("1-0/0", ByteRange(1, 0, 0)),
        ("26-50/*", ByteRange(26, 50, None)),
        ("26-*/100", ByteRange(26, None, 100)),
        ("101-*/100", ByteRange(101, None, 100)),
        ("1-2048/4096", ByteRange(1, 2048, 4096)),
    ],
)
def test_byte_range(text: str, expected: ByteRange) -> None:
    assert ByteRange.parse(text) == expected
    assert str(expected) == text


def test_byte_range_tolerates_blanks_and_leading_zeros() -> None:
    assert ByteRange.parse(" 01-25/25\t") == ByteRange(1, 25, 25)


def test_byte_range_limits() -> None:
    assert ByteRange.parse(f"1-{MAX_BYTE_COUNT}/{MAX_BYTE_COUNT}").total == MAX_BYTE_COUNT
    with pytest.raises(HeaderError):
        ByteRange.parse(f"1-*/{MAX_BYTE_COUNT + 1}")
    with pytest.raises(HeaderError):
        ByteRange(1, None, -1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1-",
        "1-25",
        "1-25/",
        "-1-25/25",
        "0-25/25",  # range-start is at least 1
        "10-8/20",  # end before start - 1
        "1-26/25",  # end beyond total
        "102-*/100",  # start beyond total + 1
        "1-*/-5",
        "*-25/25",
        "1-25/25/25",
        "1 - 25 / 25",
        "1-25/25x",
        "1-2\x005/25",
        "1-25/25\r\n",
        "\u0661-25/25",
        "1-" + "9" * 25 + "/*",
        "1-" + "9" * 5000 + "/*",
        "a-b/c",
    ],
)
def test_byte_range_rejects(text: str) -> None:
    with pytest.raises(HeaderError):
        ByteRange.parse(text)


byte_ranges = st.builds(
    lambda start, length, extra, end_known, total_known: ByteRange(
        start,
        start - 1 + length if end_known else None,
        start - 1 + length + extra if total_known else None,
    ),
    st.integers(1, 2**40),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.booleans(),
    st.booleans(),
)


@given(byte_ranges)
def test_byte_range_round_trip(byte_range: ByteRange) -> None:
    assert ByteRange.parse(str(byte_range)) == byte_range


# -- Status --------------------------------------------------------------------


def test_status() -> None:
    status = Status.parse("000 200 OK")
    assert status == Status(0, 200, "OK")
    assert str(status) == "000 200 OK"
    assert str(Status(0, 413)) == "000 413"
    assert Status.parse("000 481 Session does not exist ünïcode").comment == (
        "Session does not exist ünïcode"
    )
    assert Status.parse("000 200") == Status(0, 200, None)
    assert Status.parse("000 200 ").comment is None


@pytest.mark.parametrize(
    "text", ["", "000", "200 OK", "00 200", "000 20", "0000 200", "000 200OK", "000 200 a\r\nb"]
)
def test_status_rejects(text: str) -> None:
    with pytest.raises(HeaderError):
        Status.parse(text)


def test_status_construction_validates() -> None:
    with pytest.raises(HeaderError):
        Status(0, 1000)
    with pytest.raises(HeaderError):
        Status(-1, 200)
    with pytest.raises(HeaderError):
        Status(0, 200, "bad\x00comment")


# -- reports -------------------------------------------------------------------


def test_report_defaults() -> None:
    assert success_report(None) is False
    assert failure_report(None) is FailureReport.YES
    assert ReportRequest.parse() == ReportRequest(False, FailureReport.YES)
    assert ReportRequest().headers() == []


def test_report_values() -> None:
    assert success_report("yes") is True
    assert success_report("no") is False
    assert success_report(" YES ") is True
    assert failure_report("partial") is FailureReport.PARTIAL
    assert failure_report("no") is FailureReport.NO
    assert SuccessReport("yes") is SuccessReport.YES
    request = ReportRequest.parse("yes", "partial")
    assert request == ReportRequest(True, FailureReport.PARTIAL)
    assert request.headers() == [("Success-Report", "yes"), ("Failure-Report", "partial")]


@pytest.mark.parametrize("value", ["", "maybe", "partial", "y", "yes\x00", "true"])
def test_success_report_rejects(value: str) -> None:
    with pytest.raises(HeaderError):
        success_report(value)


@pytest.mark.parametrize("value", ["", "maybe", "partially", "1"])
def test_failure_report_rejects(value: str) -> None:
    with pytest.raises(HeaderError):
        failure_report(value)


# -- Message-ID, Expires -------------------------------------------------------


@pytest.mark.parametrize("value", ["12339sdqwer", "abcd", "a" * 32, "4Fd+%=.-x", "a.b.c"])
def test_message_id(value: str) -> None:
    assert is_ident(value)
    assert parse_message_id(f" {value} ") == value


@pytest.mark.parametrize(
    "value", ["", "abc", "a" * 33, ".abc", "ab cd", "abc_d", "abcé", "abcd\x00", "abcd\n"]
)
def test_message_id_rejects(value: str) -> None:
    assert not is_ident(value.strip(" \t"))
    with pytest.raises(HeaderError):
        parse_message_id(value)


def test_expires() -> None:
    assert parse_expires("0") == 0
    assert parse_expires(" 600 ") == 600
    assert parse_expires(str(MAX_EXPIRES)) == MAX_EXPIRES


@pytest.mark.parametrize(
    "value", ["", "-1", "+1", "1.5", "1e3", "10 s", str(MAX_EXPIRES + 1), "9" * 400, "\u0661"]
)
def test_expires_rejects(value: str) -> None:
    with pytest.raises(HeaderError):
        parse_expires(value)


# -- Content-Type --------------------------------------------------------------


def test_content_type() -> None:
    ct = ContentType.parse("text/plain")
    assert (ct.type, ct.subtype, ct.params) == ("text", "plain", ())
    assert ct.mime_type == "text/plain"
    assert str(ct) == "text/plain"


def test_content_type_params() -> None:
    ct = ContentType.parse('Message/CPIM; Charset="UTF-8" ;x-flag; name="a \\"b\\"; c"')
    assert ct.mime_type == "message/cpim"
    assert ct.params == (("charset", "UTF-8"), ("x-flag", None), ("name", 'a "b"; c'))
    assert ct.param("CHARSET") == "UTF-8"
    assert ct.param("missing") is None
    assert str(ct) == 'message/cpim;charset=UTF-8;x-flag;name="a \\"b\\"; c"'
    assert ContentType.parse(str(ct)) == ct


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (["*"], True),
        (["text/*"], True),
        (["TEXT/Plain"], True),
        (["message/cpim", "text/plain;charset=utf-8"], True),
        (["text/html"], False),
        (["image/*"], False),
        ([], False),
    ],
)
def test_content_type_matches(accept: list[str], expected: bool) -> None:
    assert ContentType.parse("text/plain;charset=utf-8").matches(accept) is expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "text",
        "text/",
        "/plain",
        "text/plain;",
        "text/plain;=x",
        "text/plain;a=",
        'text/plain;a="unterminated',
        'text/plain;a="x"junk',
        "text/plain a",
        "text plain",
        "téxt/plain",
        "text/plain;a=\x00",
        'text/plain;a="\r\n"',
    ],
)
def test_content_type_rejects(value: str) -> None:
    with pytest.raises(HeaderError):
        ContentType.parse(value)


# -- quoting -------------------------------------------------------------------


def test_quote_and_token() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert is_token("auth-int")
    assert not is_token("a b")
    assert not is_token("")
    with pytest.raises(HeaderError):
        quote("line\r\nbreak")


# -- digest authentication -------------------------------------------------------


def test_www_authenticate_parse() -> None:
    challenge = WwwAuthenticate.parse(
        'Digest realm="relay.example.net", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",'
        ' qop="auth,auth-int", algorithm=SHA-256, stale=TRUE, opaque="5ccc069c403e"'
    )
    assert challenge["realm"] == "relay.example.net"
    assert challenge.get("NONCE") == "dcd98b7102dd2f0e8b11d0f600bfb0c093"
    assert challenge.qop_options == ("auth", "auth-int")
    assert challenge.algorithm == "SHA-256"
    assert challenge.stale is True
    assert "opaque" in challenge
    assert "domain" not in challenge
    assert list(challenge.as_dict()) == ["realm", "nonce", "qop", "algorithm", "stale", "opaque"]


def test_www_authenticate_format() -> None:
    challenge = WwwAuthenticate.of(realm="example.com", nonce="abc", qop="auth", algorithm="MD5")
    assert str(challenge) == 'Digest realm="example.com", nonce="abc", qop="auth", algorithm=MD5'
    assert WwwAuthenticate.parse(str(challenge)) == challenge
    assert challenge.stale is False


def test_quoted_strings_with_escapes_and_commas() -> None:
    challenge = WwwAuthenticate.parse(
        'digest realm="a \\"quoted\\", realm",nonce = "n,1" ,  opaque="back\\\\slash"'
    )
    assert challenge["realm"] == 'a "quoted", realm'
    assert challenge["nonce"] == "n,1"
    assert challenge["opaque"] == "back\\slash"
    assert WwwAuthenticate.parse(str(challenge)) == challenge


def test_authorization_round_trip() -> None:
    credentials = Authorization.of(
        username="alice",
        realm="relay.example.net",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="msrps://relay.example.net:2855;tcp",
        response="6629fae49393a05397450978507c4ef1",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
        algorithm="MD5",
    )
    text = str(credentials)
    assert text == (
        'Digest username="alice", realm="relay.example.net",'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="msrps://relay.example.net:2855;tcp",'
        ' response="6629fae49393a05397450978507c4ef1", qop=auth, nc=00000001,'
        ' cnonce="0a4f113b", algorithm=MD5'
    )
    assert Authorization.parse(text) == credentials


def test_authorization_accepts_quoted_qop() -> None:
    credentials = Authorization.parse(
        'Digest username="a", realm="r", nonce="n", response="x", qop="auth", nc=00000001'
    )
    assert credentials["qop"] == "auth"
    assert "qop=auth," in str(credentials)


def test_authentication_info() -> None:
    info = AuthenticationInfo.parse('nextnonce="47364c23432d2e131a5fb210812c", qop=auth')
    assert info["nextnonce"] == "47364c23432d2e131a5fb210812c"
    assert str(info) == 'nextnonce="47364c23432d2e131a5fb210812c", qop=auth'
    info = AuthenticationInfo.of(rspauth="abc", cnonce="c", nc="00000001")
    assert str(info) == 'rspauth="abc", cnonce="c", nc=00000001'


def test_unknown_params_are_tokens_when_possible() -> None:
    challenge = WwwAuthenticate.of(realm="r", nonce="n", foo="bar", baz="two words")
    assert str(challenge).endswith('foo=bar, baz="two words"')


def test_get_and_getitem() -> None:
    challenge = WwwAuthenticate.of(realm="r", nonce="n")
    assert challenge.get("opaque") is None
    assert challenge.get("opaque", "d") == "d"
    assert challenge.algorithm == "MD5"
    with pytest.raises(KeyError):
        challenge["opaque"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        "Digest ",
        'Basic realm="r", nonce="n"',
        'Digestrealm="r", nonce="n"',
        'Digest realm="r"',  # nonce missing
        'Digest realm="r", nonce="unterminated',
        'Digest realm="r", nonce="n", ',  # trailing comma
        'Digest realm="r",, nonce="n"',
        'Digest realm="r" nonce="n"',  # missing comma
        'Digest realm="r", nonce=',
        'Digest realm="r", nonce',
        'Digest realm="r", =x, nonce="n"',
        'Digest realm="r", nonce="n", realm="again"',  # duplicate
        'Digest realm="r", REALM="r2", nonce="n"',  # duplicate, case-insensitively
        'Digest realm="r\x00", nonce="n"',
        'Digest realm="r\r\n", nonce="n"',
        'Digest realm="r", nonce="n\\',
        'Digest realm="r", nonce="n", x=a"b"',
        'Digest realm="r", nonce="n", x=é',
    ],
)
def test_www_authenticate_rejects(value: str) -> None:
    with pytest.raises(HeaderError):
        WwwAuthenticate.parse(value)


def test_authorization_requires_credentials() -> None:
    with pytest.raises(HeaderError):
        Authorization.parse('Digest username="a", realm="r", nonce="n"')  # no response
    with pytest.raises(HeaderError):
        Authorization.of(realm="r", nonce="n", response="x")


def test_authentication_info_rejects() -> None:
    for value in ["", 'Digest nextnonce="x"', 'nextnonce="x",', 'nextnonce="x']:
        with pytest.raises(HeaderError):
            AuthenticationInfo.parse(value)


def test_construction_rejects_bad_params() -> None:
    with pytest.raises(HeaderError):
        WwwAuthenticate((("realm", "r"), ("nonce", "n"), ("bad name", "x")))
    with pytest.raises(HeaderError):
        WwwAuthenticate((("realm", "r"), ("nonce", "n\n")))


# -- fuzzing: only HeaderError escapes ----------------------------------------

PARSERS: list[Callable[[str], object]] = [
    ByteRange.parse,
    Status.parse,
    ContentType.parse,
    WwwAuthenticate.parse,
    Authorization.parse,
    AuthenticationInfo.parse,
    parse_message_id,
    parse_expires,
    success_report,
    failure_report,
]


@pytest.mark.parametrize("parse", PARSERS)
@given(text=st.text(max_size=120))
def test_arbitrary_text_raises_only_header_error(parse: Callable[[str], object], text: str) -> None:
    with contextlib.suppress(HeaderError):
        parse(text)


@given(
    text=st.text(alphabet='Digest rlmnoc=",\\ \tauth', max_size=80),
    parse=st.sampled_from([WwwAuthenticate.parse, Authorization.parse, AuthenticationInfo.parse]),
)
def test_auth_shaped_text_round_trips_or_raises(
    text: str, parse: Callable[[str], WwwAuthenticate | Authorization | AuthenticationInfo]
) -> None:
    try:
        value = parse(text)
    except HeaderError:
        return
    assert parse(str(value)) == value


_values = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=20)


@given(
    realm=_values,
    nonce=_values,
    extra=st.dictionaries(st.sampled_from(["opaque", "qop", "algorithm", "x-ext"]), _values),
)
def test_www_authenticate_round_trip(realm: str, nonce: str, extra: dict[str, str]) -> None:
    challenge = WwwAuthenticate((("realm", realm), ("nonce", nonce), *extra.items()))
    assert WwwAuthenticate.parse(str(challenge)) == challenge
