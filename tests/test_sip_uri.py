"""SIP/SIPS/TEL URIs and name-addr values (RFC 3261 §19.1, §20.10; RFC 3966)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyim.sip.uri import NameAddr, SipUri, SipUriError, check_name_addr

# -- SipUri: parsing ------------------------------------------------------------------------


def test_basic_sip_uri() -> None:
    uri = SipUri.parse("sip:alice@atlanta.com")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sip",
        "alice",
        None,
        "atlanta.com",
        None,
    )
    assert uri.params == () and uri.headers == () and uri.opaque is None
    assert uri.is_sip
    assert str(uri) == "sip:alice@atlanta.com"


def test_rfc3261_19_1_3_examples() -> None:
    uri = SipUri.parse("sip:alice:secretword@atlanta.com;transport=tcp")
    assert (uri.user, uri.password, uri.transport) == ("alice", "secretword", "tcp")
    uri = SipUri.parse("sips:alice@atlanta.com?subject=project%20x&priority=urgent")
    assert uri.scheme == "sips"
    assert uri.headers == (("subject", "project%20x"), ("priority", "urgent"))
    uri = SipUri.parse("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert (uri.user, uri.password, uri.param("user")) == ("+1-212-555-1212", "1234", "phone")
    uri = SipUri.parse("sips:1212@gateway.com")
    assert uri.host_port == ("gateway.com", 5061)
    uri = SipUri.parse("sip:alice@192.0.2.4")
    assert uri.host == "192.0.2.4"
    uri = SipUri.parse("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com")
    assert uri.user is None
    assert uri.param("method") == "REGISTER"
    assert uri.headers == (("to", "alice%40atlanta.com"),)
    uri = SipUri.parse("sip:alice;day=tuesday@atlanta.com")
    assert (uri.user, uri.host) == ("alice;day=tuesday", "atlanta.com")


def test_scheme_and_host_are_lower_cased_text_is_kept() -> None:
    uri = SipUri.parse("SIP:Alice@AtLanTa.CoM;Transport=TCP")
    assert uri.scheme == "sip"
    assert uri.host == "atlanta.com"
    assert uri.user == "Alice"
    assert uri.transport == "tcp"
    assert str(uri) == "SIP:Alice@AtLanTa.CoM;Transport=TCP"


def test_ipv6_host() -> None:
    uri = SipUri.parse("sip:bob@[2001:DB8::10]:5070;transport=tcp")
    assert (uri.host, uri.port) == ("2001:db8::10", 5070)
    assert uri.host_port == ("2001:db8::10", 5070)
    built = SipUri(user="bob", host="2001:db8::10", port=5070)
    assert str(built) == "sip:bob@[2001:db8::10]:5070"


def test_port_and_transport_defaults() -> None:
    assert SipUri.parse("sip:h.example.com").host_port == ("h.example.com", 5060)
    assert SipUri.parse("sip:h.example.com").transport == "udp"
    assert SipUri.parse("sips:h.example.com").transport == "tls"
    assert SipUri.parse("sip:h.example.com;transport=TLS").host_port == ("h.example.com", 5061)
    assert SipUri.parse("sip:h.example.com:5080").host_port == ("h.example.com", 5080)


def test_params_flag_and_values() -> None:
    uri = SipUri.parse("sip:proxy.example.com;lr;maddr=239.255.255.1;ttl=15")
    assert uri.lr
    assert uri.maddr == "239.255.255.1"
    assert uri.param("lr") is None
    assert uri.param("ttl") == "15"
    assert uri.param("absent") is None
    sentinel = object()
    assert uri.param("absent", sentinel) is sentinel
    assert uri.param("lr", sentinel) is None
    assert uri.has_param("LR") and not uri.has_param("absent")
    assert not SipUri.parse("sip:proxy.example.com").lr


def test_escaped_parts_are_kept_as_written() -> None:
    # RFC 4475 esc01
    uri = SipUri.parse("sip:sips%3Auser%40example.com@example.net")
    assert (uri.user, uri.host) == ("sips%3Auser%40example.com", "example.net")
    uri = SipUri.parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.lr  # %6C%72 is "lr"
    assert uri.param("name") == "v%61lue%25%34%31"


def test_unusual_but_legal_user_and_password() -> None:
    # RFC 4475 intmeth
    text = (
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com"
    )
    uri = SipUri.parse(text)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"


def test_tel_uri() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert uri.param("phone-context") == "example.com"
    assert not uri.is_sip
    assert str(SipUri(scheme="tel", user="+358-555-1234567")) == "tel:+358-555-1234567"


def test_other_schemes_are_opaque() -> None:
    # RFC 4475 unksm2: such URIs may appear in From, To, Contact
    for text, scheme, opaque in [
        ("isbn:2983792873", "isbn", "2983792873"),
        ("http://www.example.com", "http", "//www.example.com"),
        ("name:John_Smith", "name", "John_Smith"),
    ]:
        uri = SipUri.parse(text)
        assert (uri.scheme, uri.opaque, uri.host) == (scheme, opaque, "")
        assert not uri.is_sip
        assert str(uri) == text
        assert str(SipUri(scheme=scheme, opaque=opaque)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sip:@example.com",
        "sip:alice@",
        "sip:alice@exa mple.com",
        "<sip:alice@example.com>",
        " sip:alice@example.com",
        "sip:alice@example.com:99999",
        "sip:alice@example.com:port",
        "sip:alice@[2001:db8::zz]",
        "sip:al ice@example.com",
        "sip:alice%zz@example.com",
        "sip:alice@example.com;lr?",
        "sip:alice@example.com?nohvalue",
        "sip:alice@example.com;a b=c",
        "tel:not-a-number!",
        "1nvalid:x",
        "isbn:has space",
        "nocolon",
    ],
)
def test_invalid_uris(text: str) -> None:
    with pytest.raises(SipUriError):
        SipUri.parse(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": ""},
        {"host": "bad host"},
        {"host": "example.com", "port": 70000},
        {"host": "example.com", "user": "a b"},
        {"host": "example.com", "params": (("bad name", None),)},
        {"scheme": "tel", "user": "letters"},
        {"scheme": "isbn"},
        {"scheme": "sip", "host": "example.com", "opaque": "x"},
    ],
)
def test_constructor_checks(kwargs: dict[str, object]) -> None:
    with pytest.raises(SipUriError):
        SipUri(**kwargs)  # type: ignore[arg-type]


def test_constructor_normalises() -> None:
    uri = SipUri(scheme="SIPS", user="bob", host="Biloxi.Example.COM", params=[("lr", None)])  # type: ignore[arg-type]
    assert uri.scheme == "sips" and uri.host == "biloxi.example.com"
    assert uri.params == (("lr", None),)
    assert str(uri) == "sips:bob@biloxi.example.com;lr"


def test_with_and_params_edit() -> None:
    uri = SipUri.parse("sip:bob@biloxi.com;transport=udp")
    moved = uri.with_(port=5070)
    assert str(moved) == "sip:bob@biloxi.com:5070;transport=udp"
    assert str(uri) == "sip:bob@biloxi.com;transport=udp"
    assert str(uri.with_param("transport", "tcp")) == "sip:bob@biloxi.com;transport=tcp"
    assert str(uri.with_param("lr")) == "sip:bob@biloxi.com;transport=udp;lr"
    assert str(uri.without_param("Transport")) == "sip:bob@biloxi.com"


def test_parse_is_cached_and_values_immutable() -> None:
    a = SipUri.parse("sip:cache@example.com")
    assert SipUri.parse("sip:cache@example.com") is a
    with pytest.raises(AttributeError):
        a.host = "x"  # type: ignore[misc]


def test_equality_and_hash_are_structural() -> None:
    a = SipUri.parse("sip:bob@biloxi.com")
    b = SipUri(user="bob", host="biloxi.com")
    assert a == b and hash(a) == hash(b)
    assert a != SipUri(user="bob", host="biloxi.com", port=5060)


# -- RFC 3261 §19.1.4 comparison ------------------------------------------------------------

EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    ("sip:bob@[2001:db8::1]", "sip:bob@[2001:DB8:0:0::1]"),
    ("tel:+1-201-555-0123", "tel:+12015550123"),
]
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice:pw@atlanta.com", "sip:alice@atlanta.com"),
    ("isbn:1", "isbn:2"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent(a: str, b: str) -> None:
    ua, ub = SipUri.parse(a), SipUri.parse(b)
    assert ua.equivalent(ub) and ub.equivalent(ua)


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_not_equivalent(a: str, b: str) -> None:
    ua, ub = SipUri.parse(a), SipUri.parse(b)
    assert not ua.equivalent(ub) and not ub.equivalent(ua)


# -- round trips --------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,8}[a-z0-9])?", fullmatch=True)
_hosts = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: a.compressed),
)
_users = st.from_regex(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]{1,20}", fullmatch=True)
_pnames = st.from_regex(r"[A-Za-z0-9\-_.!~*'()]{1,10}", fullmatch=True)
_pvalues = st.none() | st.from_regex(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]{1,10}", fullmatch=True)


@given(
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | _users,
    host=_hosts,
    port=st.none() | st.integers(0, 65535),
    params=st.lists(st.tuples(_pnames, _pvalues), max_size=4),
)
def test_round_trip(
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    params: list[tuple[str, str | None]],
) -> None:
    uri = SipUri(scheme=scheme, user=user, host=host, port=port, params=tuple(params))
    parsed = SipUri.parse(str(uri))
    assert parsed == uri
    assert parsed.equivalent(uri)


@given(st.text(max_size=60))
def test_parse_garbage_raises_only_uri_error(text: str) -> None:
    try:
        uri = SipUri.parse(text)
    except SipUriError:
        return
    assert SipUri.parse(str(uri)) == uri


# -- NameAddr -------------------------------------------------------------------------------


def test_name_addr_quoted_display() -> None:
    value = NameAddr.parse('"Alice" <sip:alice@atlanta.com>;tag=1928301774')
    assert value.display == "Alice"
    assert value.uri == SipUri.parse("sip:alice@atlanta.com")
    assert value.tag == "1928301774"
    assert str(value) == '"Alice" <sip:alice@atlanta.com>;tag=1928301774'


def test_name_addr_token_display_and_no_display() -> None:
    assert NameAddr.parse("Bob <sip:bob@biloxi.com>").display == "Bob"
    assert NameAddr.parse("token1~` token2'+_ <sip:m@example.com>").display == "token1~` token2'+_"
    value = NameAddr.parse("<sip:carol@chicago.com>")
    assert value.display is None and value.tag is None
    assert NameAddr.parse("caller<sip:caller@example.com>;tag=323").display == "caller"


def test_name_addr_addr_spec_params_belong_to_the_header() -> None:
    # RFC 3261 §20.10
    value = NameAddr.parse("sip:+12125551212@server.phone2net.com;tag=887s")
    assert value.uri.params == ()
    assert value.tag == "887s"
    value = NameAddr.parse("sip:+19725552222@gw1.example.net;unknownparam")  # RFC 4475 cparam01
    assert value.params == (("unknownparam", None),)
    value = NameAddr.parse("<sip:+19725552222@gw1.example.net;unknownparam>")  # cparam02
    assert value.params == () and value.uri.has_param("unknownparam")


def test_name_addr_escapes_and_lws() -> None:
    # RFC 4475 wsinv
    value = NameAddr.parse(
        '"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8'
    )
    assert value.display == 'J Rosenberg \\"'
    assert value.tag == "98asjd8"
    assert NameAddr.parse(str(value)) == value
    value = NameAddr.parse('"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue'
                           ' ;'
                           "  secondparam ; q = 0.33")  # fmt: skip
    assert value.display == 'Quoted string ""'
    assert value.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert value.q == 0.33


def test_contact_params() -> None:
    value = NameAddr.parse(
        "<sip:alice@192.0.2.4;ob>;expires=3600;q=0.7;reg-id=1;"
        '+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    )
    assert value.expires == 3600
    assert value.q == 0.7
    assert value.sip_instance == "urn:uuid:00000000-0000-1000-8000-000A95A0E128"
    assert value.param("+sip.instance") == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    assert value.param("reg-id") == "1"
    assert value.uri.has_param("ob")
    plain = NameAddr.parse("<sip:a@b.example>;expires=soon;q=2")
    assert plain.expires is None and plain.q is None and plain.sip_instance is None


def test_with_tag_and_params() -> None:
    value = NameAddr.parse("Bob <sip:bob@biloxi.com>")
    tagged = value.with_tag("a6c85cf")
    assert tagged.tag == "a6c85cf"
    assert str(tagged) == '"Bob" <sip:bob@biloxi.com>;tag=a6c85cf'
    assert value.tag is None
    assert tagged.with_tag("x").params == (("tag", "x"),)
    assert str(value.with_param("expires", "0")) == '"Bob" <sip:bob@biloxi.com>;expires=0'
    assert tagged.without_param("TAG").params == ()
    assert NameAddr(SipUri(user="a", host="b.example")).display is None


def test_display_name_quoting_round_trip() -> None:
    value = NameAddr(SipUri(user="a", host="b.example"), display='Mr "Q" \\ Smith')
    assert NameAddr.parse(str(value)) == value


def test_unicode_display_name() -> None:
    value = NameAddr.parse('"\u0440\u0430\u0431\u043e\u0442\u0430" <sip:u@example.com>')
    assert value.display == "\u0440\u0430\u0431\u043e\u0442\u0430"


def test_unknown_scheme_in_name_addr() -> None:
    # RFC 4475 unksm2
    assert NameAddr.parse("isbn:2983792873").uri.opaque == "2983792873"
    value = NameAddr.parse("<http://www.example.com>;tag=3234233")
    assert (value.uri.scheme, value.tag) == ("http", "3234233")
    assert NameAddr.parse("<name:John_Smith>").uri.scheme == "name"


BAD_NAME_ADDRS = [
    "",
    "   ",
    '"Mr. J. User <sip:j.user@example.com>',  # quotbal
    "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # baddn
    '"Watson, Thomas" < sip:t.watson@example.org >',  # badaspec
    "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # regbadct
    '"Joe" <sip:joe@example.org>;;;;',  # badinv01
    "<sip:joe@example.org",
    '"x" sip:joe@example.org',
    "<sip:joe@example.org>;tag=a b",
    "<not a uri>",
    "sip:a@b.example, sip:c@d.example",
]


@pytest.mark.parametrize("text", BAD_NAME_ADDRS)
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(SipUriError):
        NameAddr.parse(text)
    with pytest.raises(SipUriError):
        check_name_addr(text)


GOOD_NAME_ADDRS = [
    '"Alice" <sip:alice@atlanta.com>;tag=1928301774',
    "<sip:bob@biloxi.com>",
    "sip:bob@biloxi.com;tag=1",
    "Bob <sip:bob@[2001:db8::1]:5060;transport=tcp>;tag=x;expires=60",
    '"A \\"B\\"" <sip:a@b.example>',
    '<sip:a@b.example>;+sip.instance="<urn:uuid:1>";q=0.5',
    "<sip:a@b.example> ; tag = 1 ",
    "tel:+1-555-0100;tag=99",
]


@pytest.mark.parametrize("text", GOOD_NAME_ADDRS)
def test_check_name_addr_accepts_what_parse_accepts(text: str) -> None:
    NameAddr.parse(text)
    check_name_addr(text)


@given(st.text(alphabet=st.sampled_from('ab"<>;=:@ \t\\,sip.x1'), max_size=40))
def test_check_name_addr_agrees_with_parse(text: str) -> None:
    try:
        NameAddr.parse(text)
        parsed = True
    except SipUriError:
        parsed = False
    try:
        check_name_addr(text)
        checked = True
    except SipUriError:
        checked = False
    assert parsed == checked
