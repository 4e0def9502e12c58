"""MSRP URI parsing, formatting and comparison (RFC 4975 §6, §9)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyim.msrp.uri import (
    MAX_URI_LENGTH,
    MsrpUri,
    MsrpUriError,
    format_path,
    parse_path,
)

# -- RFC examples --------------------------------------------------------------


def test_rfc4975_example_uri() -> None:
    uri = MsrpUri.parse("msrp://atlanta.example.com:7654/jshA7weztas;tcp")
    assert uri == MsrpUri(host="atlanta.example.com", port=7654, session_id="jshA7weztas")
    assert uri.scheme == "msrp"
    assert uri.user is None
    assert uri.transport == "tcp"
    assert uri.params == ()
    assert not uri.is_secure
    assert str(uri) == "msrp://atlanta.example.com:7654/jshA7weztas;tcp"


def test_rfc4975_secure_uri() -> None:
    uri = MsrpUri.parse("msrps://alice.example.com:9892/98cjs;tcp")
    assert uri.is_secure
    assert (uri.host, uri.port, uri.session_id) == ("alice.example.com", 9892, "98cjs")
    assert str(uri) == "msrps://alice.example.com:9892/98cjs;tcp"


def test_ipv6_uri() -> None:
    uri = MsrpUri.parse("msrp://[2001:db8::1]:2855/s1;tcp")
    assert uri.host == "2001:db8::1"
    assert uri.port == 2855
    assert str(uri) == "msrp://[2001:db8::1]:2855/s1;tcp"


def test_ipv6_is_compressed_and_lower_cased() -> None:
    uri = MsrpUri.parse("msrp://[2001:DB8:0:0::1]:2855/s1;tcp")
    assert uri.host == "2001:db8::1"
    assert uri == MsrpUri.parse("msrp://[2001:db8::1]:2855/s1;tcp")


def test_ipv4_uri() -> None:
    uri = MsrpUri.parse("msrp://192.0.2.1:2855/abc;tcp")
    assert uri.host == "192.0.2.1"


def test_relay_uri_with_userinfo_and_no_session() -> None:
    # RFC 4976 relay URIs carry no session-id; userinfo may name an account.
    uri = MsrpUri.parse("msrps://alice@relay.example.com;tcp")
    assert uri.user == "alice"
    assert uri.session_id is None
    assert uri.port is None
    assert str(uri) == "msrps://alice@relay.example.com;tcp"


def test_params_and_transport() -> None:
    uri = MsrpUri.parse("msrp://h.example.com:1/a/b+c=;TCP;foo=bar;flag")
    assert uri.session_id == "a/b+c="
    assert uri.transport == "tcp"
    assert uri.params == (("foo", "bar"), ("flag", None))
    assert str(uri) == "msrp://h.example.com:1/a/b+c=;tcp;foo=bar;flag"


def test_other_transport() -> None:
    assert MsrpUri.parse("msrp://h;sctp").transport == "sctp"
    assert MsrpUri.parse("msrp://h;ws").transport == "ws"


def test_scheme_and_host_normalised() -> None:
    uri = MsrpUri.parse("MSRPS://Alice.Example.COM:9892/98cjs;TCP")
    assert (uri.scheme, uri.host, uri.transport) == ("msrps", "alice.example.com", "tcp")
    assert str(uri) == "msrps://alice.example.com:9892/98cjs;tcp"


def test_construction_normalises_and_validates() -> None:
    uri = MsrpUri(scheme="MSRP", host="EXAMPLE.com", transport="TCP", params=[("a", None)])  # type: ignore[arg-type]
    assert (uri.scheme, uri.host, uri.transport) == ("msrp", "example.com", "tcp")
    assert uri.params == (("a", None),)
    with pytest.raises(MsrpUriError):
        MsrpUri(host="[::1]")
    with pytest.raises(MsrpUriError):
        MsrpUri(host="h", port=70000)
    with pytest.raises(MsrpUriError):
        MsrpUri(host="h", session_id="a b")
    with pytest.raises(MsrpUriError):
        MsrpUri(host="h", session_id="x" * MAX_URI_LENGTH)


def test_with_session() -> None:
    relay = MsrpUri.parse("msrps://relay.example.com:2855;tcp")
    uri = relay.with_session("abc")
    assert str(uri) == "msrps://relay.example.com:2855/abc;tcp"
    assert uri.with_session(None) == relay
    with pytest.raises(MsrpUriError):
        relay.with_session("bad id")


# -- RFC 4975 §6.1 comparison ------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("msrp://a.example.com:7654/s1;tcp", "MSRP://A.EXAMPLE.COM:7654/s1;TCP"),
        ("msrp://user@a.example.com:7654/s1;tcp", "msrp://a.example.com:7654/s1;tcp"),
        ("msrp://a.example.com:7654/s1;tcp;x=1", "msrp://a.example.com:7654/s1;tcp;y"),
        ("msrp://[2001:db8::1]:1/s;tcp", "msrp://[2001:DB8:0::1]:1/s;tcp"),
    ],
)
def test_equivalent(a: str, b: str) -> None:
    ua, ub = MsrpUri.parse(a), MsrpUri.parse(b)
    assert ua == ub
    assert ua.matches(ub)
    assert hash(ua) == hash(ub)
    assert len({ua, ub}) == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # session-id is case-sensitive
        ("msrp://a.example.com:7654/jshA7weztas;tcp", "msrp://a.example.com:7654/JSHA7WEZTAS;tcp"),
        # scheme differs
        ("msrp://a.example.com:7654/s;tcp", "msrps://a.example.com:7654/s;tcp"),
        # explicit port never equals an absent one (there is no default port)
        ("msrp://a.example.com:2855/s;tcp", "msrp://a.example.com/s;tcp"),
        ("msrp://a.example.com:2855/s;tcp", "msrp://a.example.com:2856/s;tcp"),
        # with and without session-id
        ("msrp://a.example.com:2855;tcp", "msrp://a.example.com:2855/s;tcp"),
        # transport differs
        ("msrp://a.example.com:2855/s;tcp", "msrp://a.example.com:2855/s;sctp"),
        # different hosts, and a name against an address
        ("msrp://a.example.com:2855/s;tcp", "msrp://b.example.com:2855/s;tcp"),
        ("msrp://localhost:2855/s;tcp", "msrp://127.0.0.1:2855/s;tcp"),
    ],
)
def test_not_equivalent(a: str, b: str) -> None:
    ua, ub = MsrpUri.parse(a), MsrpUri.parse(b)
    assert ua != ub
    assert not ua.matches(ub)


# -- paths ---------------------------------------------------------------------


def test_parse_path() -> None:
    value = "msrps://relay.example.com:2855/r1;tcp msrps://bob.example.com:8888/9di4ea;tcp"
    path = parse_path(value)
    assert [uri.session_id for uri in path] == ["r1", "9di4ea"]
    assert format_path(path) == value


def test_parse_path_tolerates_extra_blanks() -> None:
    path = parse_path("  msrp://a;tcp \t msrp://b;tcp ")
    assert [uri.host for uri in path] == ["a", "b"]


@pytest.mark.parametrize("value", ["", "   ", "msrp://a;tcp,msrp://b;tcp", "msrp://a;tcp x"])
def test_parse_path_rejects(value: str) -> None:
    with pytest.raises(MsrpUriError):
        parse_path(value)


def test_format_path_rejects_empty() -> None:
    with pytest.raises(MsrpUriError):
        format_path([])


# -- malformed and hostile input -------------------------------------------------

BAD_URIS = [
    "",
    "msrp",
    "msrp:",
    "msrp://",
    "msrp://;tcp",
    "http://example.com/s;tcp",
    "sip:alice@example.com",
    "msrp:/example.com/s;tcp",
    "msrp://example.com/s",  # missing transport
    "msrp://example.com:2855/s",
    "msrp://example.com:2855",
    "msrp://example.com/s;",  # empty transport
    "msrp://example.com/s;tc-p",  # transport is ALPHANUM
    "msrp://example.com/s;a=b",  # first parameter is not a transport
    "msrp://example.com/;tcp",  # empty session-id
    "msrp://example.com/s s;tcp",
    "msrp://example.com/s?x;tcp",
    "msrp://example.com/s#x;tcp",
    "msrp://example.com/s%41;tcp",
    "msrp://example.com:/s;tcp",  # empty port
    "msrp://example.com:65536/s;tcp",
    "msrp://example.com:99999999999999999999/s;tcp",
    "msrp://example.com:-1/s;tcp",
    "msrp://example.com:+80/s;tcp",
    "msrp://example.com:0x50/s;tcp",
    "msrp://example.com:80:81/s;tcp",
    "msrp://example.com:\u0661\u0662/s;tcp",  # Arabic-Indic digits
    "msrp://exa mple.com/s;tcp",
    "msrp://exa\x00mple.com/s;tcp",
    "msrp://example.com/s\x00;tcp",
    "msrp://example.com/s;tcp\x00",
    "msrp://example.com/s;tcp\r\n",
    "msrp://exämple.com/s;tcp",
    "msrp://example.com/sé;tcp",
    "msrp://@example.com/s;tcp",  # empty userinfo
    "msrp://a@b@example.com/s;tcp",
    "msrp://a b@example.com/s;tcp",
    "msrp://example.com/s;tcp;",  # empty parameter
    "msrp://example.com/s;tcp;=x",
    "msrp://example.com/s;tcp;a=",
    "msrp://example.com/s;tcp;a=b=c",
    "msrp://example.com/s;tcp;a b",
    "msrp://[2001:db8::1/s;tcp",  # unterminated bracket
    "msrp://[2001:db8::zz]:1/s;tcp",
    "msrp://[example.com]:1/s;tcp",
    "msrp://[fe80::1%eth0]:1/s;tcp",  # zone identifiers are not allowed
    "msrp://[::1]x/s;tcp",
    "msrp://2001:db8::1/s;tcp",  # IPv6 without brackets
    "msrp://256.1.1.1/s;tcp",
    "msrp://1.2.3/s;tcp",
    "msrp://01.2.3.4/s;tcp",
    "msrp://a..b/s;tcp",
    "msrp://.a/s;tcp",
    "msrp://example.com/s;tcp" + "x" * MAX_URI_LENGTH,
    "msrp://" + "a" * 2000 + "/s;tcp",
]


@pytest.mark.parametrize("text", BAD_URIS)
def test_malformed(text: str) -> None:
    with pytest.raises(MsrpUriError):
        MsrpUri.parse(text)


def test_error_is_value_error() -> None:
    assert issubclass(MsrpUriError, ValueError)


def test_longest_uri_accepted() -> None:
    prefix = "msrp://h/"
    text = prefix + "s" * (MAX_URI_LENGTH - len(prefix) - len(";tcp")) + ";tcp"
    assert len(text) == MAX_URI_LENGTH
    assert str(MsrpUri.parse(text)) == text
    with pytest.raises(MsrpUriError):
        MsrpUri.parse(text[:-4] + "s;tcp")


FULL = "msrps://bob@[2001:db8::1]:2855/abc;tcp;x=y"


@pytest.mark.parametrize("cut", range(len(FULL)))
def test_every_truncation_is_handled(cut: int) -> None:
    text = FULL[:cut]
    try:
        uri = MsrpUri.parse(text)
    except MsrpUriError:
        return
    assert MsrpUri.parse(str(uri)) == uri


# -- properties ----------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TOKEN_CHARS = _ALNUM + "!#$%&'*+-.^_`{|}~"
_label = st.text(_ALNUM + "-_", min_size=1, max_size=12).filter(lambda s: not s.isdigit())
_hostnames = st.lists(_label, min_size=1, max_size=4).map(".".join)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(lambda a: a.compressed)
_tokens = st.text(_TOKEN_CHARS, min_size=1, max_size=10)

uris = st.builds(
    MsrpUri,
    scheme=st.sampled_from(["msrp", "msrps", "MSRP", "Msrps"]),
    user=st.none()
    | st.text(_ALNUM + "-._~!$&'()*+,;=:", min_size=1, max_size=10)
    | st.just("a%20b"),
    host=_hostnames | _ipv4 | _ipv6,
    port=st.none() | st.integers(0, 65535),
    session_id=st.none() | st.text(_ALNUM + "-._~+=/", min_size=1, max_size=40),
    transport=st.text(_ALNUM, min_size=1, max_size=6),
    params=st.lists(st.tuples(_tokens, st.none() | _tokens), max_size=3).map(tuple),
)


@given(uris)
def test_round_trip(uri: MsrpUri) -> None:
    parsed = MsrpUri.parse(str(uri))
    assert parsed == uri
    assert (parsed.user, parsed.params) == (uri.user, uri.params)
    assert str(parsed) == str(uri)
    assert hash(parsed) == hash(uri)


@given(uris)
def test_case_of_scheme_host_transport_is_irrelevant(uri: MsrpUri) -> None:
    host = f"[{uri.host.upper()}]" if ":" in uri.host else uri.host.upper()
    port = "" if uri.port is None else f":{uri.port}"
    session = "" if uri.session_id is None else f"/{uri.session_id}"
    shouted = f"{uri.scheme.upper()}://{host}{port}{session};{uri.transport.upper()}"
    assert MsrpUri.parse(shouted) == uri


@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_msrp_uri_error(text: str) -> None:
    try:
        uri = MsrpUri.parse(text)
    except MsrpUriError:
        return
    assert MsrpUri.parse(str(uri)) == uri


@given(st.text(alphabet="msrp:/[]@;=.%1aZ-", max_size=60))
def test_uri_shaped_text_raises_only_msrp_uri_error(text: str) -> None:
    try:
        uri = MsrpUri.parse("msrp://" + text)
    except MsrpUriError:
        return
    assert MsrpUri.parse(str(uri)) == uri


@given(st.lists(uris, min_size=1, max_size=4))
def test_path_round_trip(path: list[MsrpUri]) -> None:
    assert parse_path(format_path(path)) == path
