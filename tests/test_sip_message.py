"""SIP message model: headers, typed header values, requests, responses, serialisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyim.sip.headers import (
    COMPACT_FORMS,
    CSeq,
    HeaderError,
    Via,
    canonical,
    header_key,
    is_star,
    parse_name_addr_list,
    parse_token_list,
    parse_via_list,
    split_header_list,
)
from pyim.sip.message import (
    REASON_PHRASES,
    Method,
    SipHeaders,
    SipRequest,
    SipResponse,
    reason_phrase,
    unpack_message,
)
from pyim.sip.parser import parse_message
from pyim.sip.uri import NameAddr, SipUri

# -- RFC 3261 §24.2: the Alice/Bob call through two proxies (F1 as sent by Alice) ---------

# (the SDP of RFC 3261 §24.2 with the Content-Length that matches it)
SDP_ALICE = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.com\r\n"
    b"s=Session SDP\r\n"
    b"c=IN IP4 pc33.atlanta.com\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

INVITE_F1 = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n" % len(SDP_ALICE)
) + SDP_ALICE

# F11 as Alice receives it: the 200 OK with the proxies' Record-Route
OK_F11 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1\r\n"
    b"Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>\r\n"
    b"To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:bob@192.0.2.4>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 130\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=bob 2890844527 2890844527 IN IP4 biloxi.com\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.4\r\n"
    b"t=0 0\r\n"
    b"m=audio 3456 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

ACK_F12 = (
    b"ACK sip:bob@192.0.2.4 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds9\r\n"
    b"Route: <sip:ss1.atlanta.example.com;lr>, <sip:ss2.biloxi.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

BYE_F13 = (
    b"BYE sip:alice@pc33.atlanta.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds10\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n"
    b"To: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 231 BYE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def _request(extra: list[tuple[str, str]] | None = None) -> SipRequest:
    headers = SipHeaders(
        [
            ("Via", "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8"),
            ("Max-Forwards", "70"),
            ("To", "Bob <sip:bob@biloxi.com>"),
            ("From", "Alice <sip:alice@atlanta.com>;tag=1928301774"),
            ("Call-ID", "a84b4c76e66710"),
            ("CSeq", "314159 INVITE"),
            *(extra or []),
        ]
    )
    return SipRequest("INVITE", SipUri.parse("sip:bob@biloxi.com"), headers)


# -- the RFC 3261 §24.2 flow -----------------------------------------------------------------


def test_rfc3261_invite() -> None:
    msg = parse_message(INVITE_F1)
    assert isinstance(msg, SipRequest)
    assert msg.method == Method.INVITE == "INVITE"
    assert msg.uri == SipUri.parse("sip:bob@biloxi.com")
    assert msg.branch == "z9hG4bKnashds8"
    assert msg.top_via.sent_by == ("pc33.atlanta.com", 5060)
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.call_id == "a84b4c76e66710"
    assert msg.from_.tag == "1928301774" and msg.from_.display == "Alice"
    assert msg.to.tag is None and msg.to.uri.user == "bob"
    assert msg.max_forwards == 70
    assert msg.contacts == [NameAddr.parse("<sip:alice@pc33.atlanta.com>")]
    assert msg.content_type == "application/sdp" and msg.mime_type == "application/sdp"
    assert msg.content_length == len(SDP_ALICE) == len(msg.body)
    assert msg.body == SDP_ALICE
    assert msg.encode() == INVITE_F1


def test_rfc3261_ok_ack_bye() -> None:
    ok = parse_message(OK_F11)
    assert isinstance(ok, SipResponse)
    assert (ok.status, ok.reason) == (200, "OK")
    assert ok.top_via.received == "192.0.2.1"
    assert ok.to.tag == "a6c85cf"
    assert [str(r.uri) for r in ok.record_routes] == [
        "sip:ss2.biloxi.example.com;lr",
        "sip:ss1.atlanta.example.com;lr",
    ]
    assert all(r.uri.lr for r in ok.record_routes)
    ack = parse_message(ACK_F12)
    assert isinstance(ack, SipRequest)
    assert ack.cseq.method == "ACK" and ack.body == b""
    assert [r.uri.host for r in ack.routes] == ["ss1.atlanta.example.com", "ss2.biloxi.example.com"]
    bye = parse_message(BYE_F13)
    assert isinstance(bye, SipRequest)
    assert (bye.from_.tag, bye.to.tag) == ("a6c85cf", "1928301774")
    for data in (OK_F11, ACK_F12, BYE_F13):
        assert parse_message(data).encode() == data


def test_build_and_encode_sets_content_length() -> None:
    msg = _request([("Content-Type", "text/plain"), ("Content-Length", "999")])
    msg.body = b"hello"
    data = msg.encode()
    assert b"Content-Length: 5\r\n" in data and b"999" not in data
    assert data.endswith(b"\r\n\r\nhello")
    assert msg.headers.get("Content-Length") == "999"  # encode() does not modify the headers
    again = parse_message(data)
    assert again.body == b"hello" and again.content_length == 5
    bare = _request()
    assert bare.encode().endswith(b"Content-Length: 0\r\n\r\n")


def test_encode_after_modification_reserialises() -> None:
    msg = parse_message(INVITE_F1)
    msg.headers.insert(0, "Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy1")
    data = msg.encode()
    assert data.startswith(
        b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy1\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n"
    )
    assert [v.host for v in parse_message(data).vias] == ["proxy.example.com", "pc33.atlanta.com"]
    assert msg.encode() is data or msg.encode() == data  # remembered until the next change
    assert isinstance(msg, SipRequest)
    msg.uri = SipUri.parse("sip:bob@192.0.2.4")
    assert msg.encode().startswith(b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n")
    msg.body = b""
    assert b"Content-Length: 0\r\n" in msg.encode()


def test_typed_values_follow_header_changes() -> None:
    msg = _request()
    assert msg.cseq.seq == 314159
    msg.headers.set("CSeq", "314160 INVITE")
    assert msg.cseq.seq == 314160
    assert msg.branch == "z9hG4bKnashds8"
    msg.headers.set("Via", "SIP/2.0/TCP client.example.com;branch=z9hG4bKother")
    assert msg.branch == "z9hG4bKother" and msg.top_via.transport == "TCP"
    msg.headers.set("To", "<sip:carol@chicago.com>")
    assert msg.to.uri.user == "carol"


def test_missing_and_bad_headers_raise_header_error() -> None:
    msg = SipRequest("OPTIONS", SipUri.parse("sip:a@b.example"))
    for attr in ("call_id", "cseq", "from_", "to", "vias", "top_via", "branch"):
        with pytest.raises(HeaderError):
            getattr(msg, attr)
    assert msg.max_forwards is None and msg.content_type is None and msg.expires is None
    assert msg.contacts == [] and msg.routes == [] and msg.require == []
    msg.headers.add("CSeq", "x OPTIONS")
    msg.headers.add("Via", "SIP/2.0/UDP host;;")
    msg.headers.add("From", "Bell, Alexander <sip:a@b.example>")
    msg.headers.add("Max-Forwards", "256")
    msg.headers.add("Expires", "soon")
    msg.headers.add("Contact", "<sip:a@b.example>;;")
    msg.headers.add("Require", "a b")
    msg.headers.add("Call-ID", "")
    for attr in (
        "cseq",
        "vias",
        "top_via",
        "from_",
        "max_forwards",
        "expires",
        "contacts",
        "require",
        "call_id",
    ):
        with pytest.raises(HeaderError):
            getattr(msg, attr)


def test_list_headers() -> None:
    msg = _request(
        [
            (
                "Contact",
                '"Mr. Watson" <sip:watson@worcester.bell-telephone.com>;q=0.7;expires=3600',
            ),
            ("m", '"Mr, Watson" <mailto:watson@bell-telephone.com> ;q=0.1'),
            ("Supported", "replaces, timer"),
            ("k", "path"),
            ("Require", "100rel"),
            ("Proxy-Require", "foo"),
            ("Allow", "INVITE, ACK, BYE"),
            ("Expires", "7200"),
        ]
    )
    assert [c.q for c in msg.contacts] == [0.7, 0.1]
    assert msg.contacts[0].expires == 3600
    assert msg.contacts[1].display == "Mr, Watson"
    assert msg.supported == ["replaces", "timer", "path"]
    assert msg.require == ["100rel"] and msg.proxy_require == ["foo"]
    assert msg.allow == ["INVITE", "ACK", "BYE"]
    assert msg.expires == 7200
    assert not msg.is_star_contact


def test_star_contact() -> None:
    msg = _request([("Contact", "*"), ("Expires", "0")])
    assert msg.is_star_contact and msg.contacts == []
    msg.headers.add("Contact", "<sip:a@b.example>")
    assert not msg.is_star_contact
    with pytest.raises(HeaderError):
        msg.contacts  # noqa: B018


def test_remove_top_via() -> None:
    msg = parse_message(
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1,"
        b" SIP/2.0/UDP a.example.com;branch=z9hG4bK2\r\n"
        b"Via: SIP/2.0/TCP b.example.com;branch=z9hG4bK3\r\n"
        b"From: <sip:a@a.example.com>;tag=1\r\nTo: <sip:b@b.example.com>;tag=2\r\n"
        b"Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert [v.host for v in msg.vias] == ["proxy.example.com", "a.example.com", "b.example.com"]
    assert msg.remove_top_via().host == "proxy.example.com"
    assert [v.host for v in msg.vias] == ["a.example.com", "b.example.com"]
    assert msg.remove_top_via().branch == "z9hG4bK2"
    assert msg.headers.get_all("Via") == ["SIP/2.0/TCP b.example.com;branch=z9hG4bK3"]
    msg.remove_top_via()
    with pytest.raises(HeaderError):
        msg.remove_top_via()


# -- SipRequest.response (RFC 3261 §8.2.6.2) ---------------------------------------------------


def test_response_copies_the_right_headers() -> None:
    req = parse_message(
        b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1;received=192.0.2.9\r\n"
        b"v: SIP/2.0/UDP a.example.com;branch=z9hG4bKa1,"
        b" SIP/2.0/TCP b.example.com;branch=z9hG4bKb\r\n"
        b"Max-Forwards: 69\r\n"
        b"t: Bob <sip:bob@biloxi.com>\r\n"
        b"f: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
        b"i: a84b4c76e66710\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
        b"Timestamp: 54\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(req, SipRequest)
    resp = req.response(180, to_tag="a6c85cf")
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert resp.headers.items() == [
        ("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1;received=192.0.2.9"),
        (
            "Via",
            "SIP/2.0/UDP a.example.com;branch=z9hG4bKa1, SIP/2.0/TCP b.example.com;branch=z9hG4bKb",
        ),
        ("To", "Bob <sip:bob@biloxi.com>;tag=a6c85cf"),
        ("From", "Alice <sip:alice@atlanta.com>;tag=1928301774"),
        ("Call-ID", "a84b4c76e66710"),
        ("CSeq", "314159 INVITE"),
    ]
    assert resp.to.tag == "a6c85cf" and resp.branch == "z9hG4bKp1"
    trying = req.response(100)
    assert trying.headers.get("Timestamp") == "54"
    assert trying.to.tag is None
    data = resp.encode()
    assert data.startswith(b"SIP/2.0 180 Ringing\r\nVia: ")
    again = parse_message(data)
    assert again.headers.items() == [*resp.headers.items(), ("Content-Length", "0")]


def test_response_keeps_an_existing_to_tag_and_adds_headers() -> None:
    req = parse_message(BYE_F13)
    assert isinstance(req, SipRequest)
    resp = req.response(200, to_tag="other", headers=[("Server", "pyim"), ("Allow", "BYE")])
    assert resp.to.tag == "1928301774"
    assert resp.headers.get("Server") == "pyim" and resp.allow == ["BYE"]
    assert req.response(486, "Busy Now").reason == "Busy Now"
    assert req.response(299).reason == "Success"
    assert req.response(699).reason == "Global Failure"


def test_response_to_addr_spec_to() -> None:
    req = _request()
    req.headers.set("To", "sip:bob@biloxi.com")
    assert req.response(200, to_tag="t1").headers.get("To") == "sip:bob@biloxi.com;tag=t1"


def test_response_with_unparseable_to_still_works() -> None:
    req = _request()
    req.headers.set("To", "Bell, Alexander <sip:bob@biloxi.com>")
    assert req.response(400, to_tag="t").headers.get("To") == (
        "Bell, Alexander <sip:bob@biloxi.com>;tag=t"
    )
    req.headers.set("To", "Bell, Alexander <sip:bob@biloxi.com>;tag=x")
    assert req.response(400, to_tag="t").headers.get("To") == (
        "Bell, Alexander <sip:bob@biloxi.com>;tag=x"
    )


def test_reason_phrases() -> None:
    assert REASON_PHRASES[481] == "Call/Transaction Does Not Exist"
    assert reason_phrase(404) == "Not Found"
    assert reason_phrase(199) == "Early Dialog Terminated"
    assert reason_phrase(477) == "Client Error"


# -- SipHeaders ---------------------------------------------------------------------------------


def test_headers_lookup_is_case_insensitive_and_compact_aware() -> None:
    h = SipHeaders([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("call-id", "x")])
    assert h.get("Via") == "SIP/2.0/UDP a"
    assert h.get_all("via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert h.get("i") == "x" and h.get("Call-ID") == "x"
    assert "CALL-ID" in h and "Route" not in h and 5 not in h
    assert h.get("Route") is None and h.get("Route", "dflt") == "dflt"
    assert h.count("Via") == 2
    assert len(h) == 3
    assert list(h) == [("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("call-id", "x")]


def test_headers_values_split_at_top_level_commas() -> None:
    h = SipHeaders(
        [
            ("Contact", '"Doe, John" <sip:a@b.example;x=1,2>, <sip:c@d.example>'),
            ("Contact", "<sip:e@f.example>"),
        ]
    )
    assert h.values("Contact") == [
        '"Doe, John" <sip:a@b.example;x=1,2>',
        "<sip:c@d.example>",
        "<sip:e@f.example>",
    ]
    assert h.get_all("Contact")[0].count(",") == 3


def test_headers_editing() -> None:
    h = SipHeaders([("A", "1"), ("Via", "v1"), ("B", "2"), ("via", "v2")])
    h.set("Via", "new")
    assert h.items() == [("A", "1"), ("Via", "new"), ("B", "2")]
    h.set("Route", "<sip:r>")
    assert h.items()[-1] == ("Route", "<sip:r>")
    h.insert(0, "Via", "top")
    assert h.get("Via") == "top"
    h.add("Via", " bottom \t")
    assert h.get_all("Via") == ["top", "new", "bottom"]
    assert h.remove_first("Via") == "top"
    assert h.remove_first("Max-Forwards") is None
    assert h.remove("v") == 2 and "Via" not in h
    assert h.remove("Via") == 0
    copy = h.copy()
    copy.add("C", "3")
    assert "C" not in h and copy != h
    assert SipHeaders(h.items()) == h
    assert repr(h).startswith("SipHeaders(")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nVia: SIP/2.0/UDP evil.example.com"),
        ("X-Evil", "a\nb"),
        ("X-Evil", "a\rb"),
        ("X-Evil", "a\x00b"),
        ("Bad Name", "x"),
        ("Bad:Name", "x"),
        ("", "x"),
    ],
)
def test_headers_refuse_injection(name: str, value: str) -> None:
    h = SipHeaders()
    with pytest.raises(HeaderError):
        h.add(name, value)
    with pytest.raises(HeaderError):
        h.set(name, value)
    with pytest.raises(HeaderError):
        h.insert(0, name, value)
    assert len(h) == 0


def test_canonical_names_and_compact_forms() -> None:
    assert COMPACT_FORMS["v"] == "Via" and COMPACT_FORMS["i"] == "Call-ID"
    for short, full in COMPACT_FORMS.items():
        assert header_key(short) == header_key(full) == full.lower()
        assert canonical(short) == full
    assert canonical("call-id") == "Call-ID"
    assert canonical("CSEQ") == "CSeq"
    assert canonical("www-authenticate") == "WWW-Authenticate"
    assert canonical("X-Custom") == "X-Custom"
    with pytest.raises(HeaderError):
        header_key("no spaces")


# -- Via -------------------------------------------------------------------------------------


def test_via_fields() -> None:
    via = Via.parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1")
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "UDP",
        "pc33.atlanta.com",
        5066,
    )
    assert via.branch == "z9hG4bK776asdhds" and via.received == "192.0.2.1"
    assert via.rport is None and via.maddr is None
    assert via.param("received") == "192.0.2.1"
    assert (
        str(via) == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1"
    )


def test_via_rport_rfc3581() -> None:
    via = Via.parse("SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bK1")
    assert via.rport is True
    filled = via.with_param("received", "203.0.113.9").with_param("rport", "61000")
    assert filled.rport == 61000 and filled.received == "203.0.113.9"
    assert str(filled) == "SIP/2.0/UDP 192.0.2.1;rport=61000;branch=z9hG4bK1;received=203.0.113.9"
    assert Via.parse(str(filled)) == filled
    assert filled.without_param("rport").rport is None
    with pytest.raises(HeaderError):
        Via.parse("SIP/2.0/UDP 192.0.2.1;rport=abc")
    with pytest.raises(HeaderError):
        Via.parse("SIP/2.0/UDP 192.0.2.1;RPORT=99999")
    odd = Via(host="a.example", params=(("rport", "x1"),))
    with pytest.raises(HeaderError):
        odd.rport  # noqa: B018


def test_via_lws_and_case() -> None:
    # RFC 4475 wsinv (unfolded)
    via = Via.parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw")
    assert (via.transport, via.host, via.branch) == ("UDP", "192.0.2.2", "390skdjuw")
    via = Via.parse("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  ")
    assert (via.transport, via.host, via.branch) == ("TCP", "spindle.example.com", "z9hG4bK9ikj8")
    via = Via.parse("sip/2.0/tls Host.Example.COM : 5061 ; Branch=z9hG4bKx")
    assert (via.protocol, via.transport, via.host, via.port, via.branch) == (
        "SIP/2.0",
        "TLS",
        "host.example.com",
        5061,
        "z9hG4bKx",
    )
    assert Via.parse("SIP/2.0/TLS a.example").sent_by == ("a.example", 5061)


def test_via_ipv6_and_other_transports() -> None:
    via = Via.parse("SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKv6")
    assert (via.host, via.port) == ("2001:db8::9", 5070)
    assert str(via) == "SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKv6"
    for transport in ("SCTP", "UNKNOWN", "WS", "WSS"):
        assert Via.parse(f"SIP/2.0/{transport} t.example.com").transport == transport
    assert Via.parse("SIP/7.0/UDP c.example.com").protocol == "SIP/7.0"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host;branch",
        "SIP/2.0/UDP [2001:db8::zz]",
        "SIP/2.0/UDP host garbage",
    ],
)
def test_bad_vias(value: str) -> None:
    with pytest.raises(HeaderError):
        parse_via_list(value)


def test_via_list() -> None:
    vias = parse_via_list(
        "SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  ,"
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239"
    )
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    with pytest.raises(HeaderError):
        parse_via_list("SIP/2.0/UDP a.example,,SIP/2.0/UDP b.example")
    with pytest.raises(HeaderError):
        Via(host="")
    with pytest.raises(HeaderError):
        Via(host="a", port=-1)
    assert Via(transport="tcp", host="a").transport == "TCP"


# -- CSeq, lists ------------------------------------------------------------------------------


def test_cseq() -> None:
    assert CSeq.parse("4711 INVITE") == CSeq(4711, "INVITE")
    assert CSeq.parse("0009  INVITE") == CSeq(9, "INVITE")  # wsinv, unfolded
    assert CSeq.parse("\t1 NEWMETHOD ") == CSeq(1, "NEWMETHOD")
    assert CSeq.parse("2147483647 ACK").seq == 2**31 - 1
    assert str(CSeq(1, "BYE")) == "1 BYE"
    for bad in ("", "INVITE", "1", "-1 INVITE", "2147483648 INVITE", "1 IN VITE", "x INVITE"):
        with pytest.raises(HeaderError):
            CSeq.parse(bad)
    with pytest.raises(HeaderError):
        CSeq(2**31, "INVITE")
    with pytest.raises(HeaderError):
        CSeq(1, "BAD METHOD")


def test_split_and_token_lists() -> None:
    assert split_header_list(" a , b,,c ") == ["a", "b", "c"]
    assert split_header_list('"x,y" <sip:a,b>, z') == ['"x,y" <sip:a,b>', "z"]
    assert split_header_list('"a \\" ,b", c') == ['"a \\" ,b"', "c"]
    assert parse_token_list("INVITE, ACK ,BYE") == ["INVITE", "ACK", "BYE"]
    with pytest.raises(HeaderError):
        parse_token_list("a b")
    with pytest.raises(HeaderError):
        split_header_list('"unterminated, x')


def test_name_addr_lists() -> None:
    values = parse_name_addr_list('"Doe, John" <sip:a@b.example>;q=1, sip:c@d.example;expires=5')
    assert [str(v.uri) for v in values] == ["sip:a@b.example", "sip:c@d.example"]
    assert values[1].expires == 5
    assert is_star(" * ") and parse_name_addr_list("*") == []
    for bad in ("<sip:a@b.example>,", "<sip:a@b.example>;;", "Bell, Alexander <sip:a@b.example>"):
        with pytest.raises(HeaderError):
            parse_name_addr_list(bad)


def test_method_enum() -> None:
    assert Method("MESSAGE") is Method.MESSAGE
    assert Method.INVITE == "INVITE"
    assert {m.value for m in Method} >= {"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "REFER"}


# -- properties of the model -------------------------------------------------------------------

_tokens = st.from_regex(r"[A-Za-z][A-Za-z0-9\-]{0,12}", fullmatch=True)
_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30
).map(str.strip)


@given(
    st.lists(st.tuples(_tokens, _values), max_size=10),
    st.binary(max_size=64),
)
def test_encoded_requests_parse_back(extra: list[tuple[str, str]], body: bytes) -> None:
    extra = [(n, v) for n, v in extra if n.lower() not in _RESERVED]
    msg = _request(extra)
    msg.body = body
    parsed = parse_message(msg.encode())
    assert isinstance(parsed, SipRequest)
    assert parsed.body == body
    assert parsed.headers.items()[: 6 + len(extra)] == msg.headers.items()
    assert parsed.encode() == msg.encode()


_RESERVED = {
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "max-forwards",
    "content-length",
    "l",
}


_PACKED_INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKpk1;rport\r\n"
    b"Max-Forwards:   70\r\n"
    b"From: <sip:alice@example.com>;tag=a1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: pk1@10.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_a_message_as_parsed_is_packed_as_its_bytes_alone() -> None:
    invite = parse_message(_PACKED_INVITE)
    assert isinstance(invite, SipRequest)
    packed = invite.pack()
    assert packed == (True, _PACKED_INVITE)
    again = unpack_message(packed, invite.uri)
    assert again == invite and again.uri is invite.uri
    assert again.encode() == _PACKED_INVITE and again.headers.items() == invite.headers.items()
    response = parse_message(invite.response(200, to_tag="b1").encode())
    assert isinstance(response, SipResponse)
    assert unpack_message(response.pack()) == response


def test_a_changed_message_is_packed_in_pieces_without_its_stale_bytes() -> None:
    invite = parse_message(_PACKED_INVITE)
    assert isinstance(invite, SipRequest)
    invite.headers.set("Max-Forwards", "69")
    packed = invite.pack()
    assert len(packed) == 8 and packed[5] is None  # the received bytes are not it any more
    again = unpack_message(packed, invite.uri)
    assert again == invite and again.encode() == invite.encode()
    built = invite.response(200, to_tag="b1")
    built.headers.add("Contact", "<sip:bob@10.0.0.2>")
    data = built.encode()
    packed = built.pack()
    assert len(packed) == 8 and packed[5] is data  # what encode() gives is kept
    again = unpack_message(packed)
    assert again == built and again.encode() is data
