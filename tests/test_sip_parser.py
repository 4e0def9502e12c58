"""SIP parser and stream framer: RFC 4475 torture tests, hostile input, framing, fuzzing."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sip_rfc4475 as torture
from pyim.sip.headers import HeaderError
from pyim.sip.message import SipRequest, SipResponse
from pyim.sip.parser import (
    PING,
    PONG,
    KeepAlive,
    SipLimits,
    SipParseError,
    StreamFramer,
    parse_message,
)


def _refused(data: bytes, limits: SipLimits | None = None) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data, limits)
    return info.value


def _msg(*lines: str, body: bytes = b"", length: bool = True) -> bytes:
    head = list(lines)
    if length:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _options(*extra: str, body: bytes = b"", length: bool = True) -> bytes:
    return _msg(
        "OPTIONS sip:bob@biloxi.example.com SIP/2.0",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        "Max-Forwards: 70",
        "To: <sip:bob@biloxi.example.com>",
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
        "CSeq: 63104 OPTIONS",
        *extra,
        body=body,
        length=length,
    )


# -- RFC 4475 §3.1.1: valid messages --------------------------------------------------------


def test_corpus_is_the_rfc_archive() -> None:
    for name, data in torture.VALID.items():
        assert hashlib.sha256(data).hexdigest() == torture.VALID_SHA256[name], name


@pytest.mark.parametrize("name", sorted(set(torture.VALID) - {"intmeth"}))
def test_valid_torture_messages_parse(name: str) -> None:
    msg = parse_message(torture.VALID[name])
    # every typed view of a valid message is readable
    msg.vias  # noqa: B018
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    msg.contacts  # noqa: B018
    msg.routes  # noqa: B018
    msg.record_routes  # noqa: B018
    msg.cseq  # noqa: B018
    msg.call_id  # noqa: B018


def test_wsinv() -> None:
    msg = parse_message(torture.WSINV)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert msg.uri.host == "chair-dnrc.example.com" and msg.uri.has_param("unknownparam")
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display == 'J Rosenberg \\"' and msg.from_.tag == "98asjd8"
    assert msg.max_forwards == 68
    assert msg.cseq.seq == 9 and msg.cseq.method == "INVITE"
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = msg.contacts
    assert contact.display == 'Quoted string ""' and contact.q == 0.33
    assert contact.param("newparam") == "newvalue" and contact.has_param("secondparam")
    (route,) = msg.routes
    assert route.uri.lr and route.uri.param("unknownwith") == "value"
    assert msg.content_length == 150 == len(msg.body)
    assert msg.encode() == torture.WSINV


def test_intmeth_is_refused_for_its_nul_but_parses_without_it() -> None:
    # Project policy: a NUL anywhere in the header block is refused with 400, even the
    # quoted one of RFC 4475 §3.1.1.2.  Everything else in that message is accepted.
    error = _refused(torture.INTMETH)
    assert error.status == 400 and "NUL" in error.reason
    assert error.partial is not None
    msg = parse_message(torture.INTMETH.replace(b" NUL:\\\x00", b""))
    assert isinstance(msg, SipRequest)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.cseq.method == msg.method
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display == "BEL:\x07 DEL:\x7f"
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert (
        msg.from_.param("fromParam''~+*_!.-%")
        == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_esc01_esc02_escnull() -> None:
    msg = parse_message(torture.ESC01)
    assert msg.to.uri.user == "%75se%72"
    assert msg.from_.uri.user == "I%20have%20spaces"
    assert msg.contacts[0].uri.lr
    assert msg.content_type == "application/sdp"
    msg = parse_message(torture.ESC02)
    assert isinstance(msg, SipRequest)
    assert msg.method == "RE%47IST%45R" and msg.cseq.method == "RE%47IST%45R"
    assert msg.to.display == "%Z%45"
    assert [c.uri.host for c in msg.contacts] == ["host1.example.com", "host3.example.com"]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    msg = parse_message(torture.ESCNULL)
    assert [c.uri.user for c in msg.contacts] == ["%00", "%00%00"]
    assert msg.to.uri.user == "null-%00-null"


def test_lwsdisp_longreq_semiuri_transports() -> None:
    assert parse_message(torture.LWSDISP).from_.display == "caller"
    msg = parse_message(torture.LONGREQ)
    assert len(msg.vias) == 34
    assert msg.vias[-1].received == "192.0.2.5"
    assert msg.from_.tag == "12" + "982" * 50 + "424"
    assert msg.to.uri.port == 6000
    msg = parse_message(torture.SEMIURI)
    assert isinstance(msg, SipRequest)
    assert msg.uri.user == "user;par=u%40example.net" and msg.uri.host == "example.com"
    assert len(msg.headers.values("Accept")) == 6
    msg = parse_message(torture.TRANSPORTS)
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_dblreq_keeps_only_the_first_request() -> None:
    msg = parse_message(torture.DBLREQ)
    assert isinstance(msg, SipRequest)
    assert msg.method == "REGISTER" and msg.body == b""
    assert msg.encode() == torture.DBLREQ[: torture.DBLREQ.index(b"\r\n\r\n") + 4]


def test_mpart01_binary_body() -> None:
    msg = parse_message(torture.MPART01)
    assert msg.mime_type == "multipart/mixed"
    assert len(msg.body) == 553 and torture.MPART01_DER in msg.body
    assert msg.encode() == torture.MPART01


def test_responses_unreason_noreason() -> None:
    msg = parse_message(torture.UNREASON)
    assert isinstance(msg, SipResponse)
    assert msg.status == 200
    assert msg.reason.startswith("= 2**3 * 5**2 \u043d\u043e")
    assert msg.encode() == torture.UNREASON
    msg = parse_message(torture.NOREASON)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (100, "")
    assert msg.encode() == torture.NOREASON


# -- RFC 4475 §3.1.2 and §3.3: what must be refused, and with which status ----------------

REFUSED = [
    # (message, status, whether the request can be answered)
    ("BADINV01", 400, True),  # extraneous separators in Via
    ("CLERR", 400, True),  # Content-Length larger than the datagram
    ("NCL", 400, True),  # negative Content-Length
    ("SCALAR02", 400, True),  # CSeq beyond 2**31, Max-Forwards 300
    ("QUOTBAL", 400, True),  # unterminated quoted display name in To
    ("LTGTRURI", 400, True),  # <> around the Request-URI
    ("LWSRURI", 400, True),  # LWS inside the Request-URI
    ("LWSSTART", 400, True),  # several SP in the request line
    ("TRWS", 400, True),  # SP after the SIP version
    ("ESCRURI", 400, True),  # headers in the Request-URI
    ("BADASPEC", 400, True),  # spaces inside <addr-spec>
    ("BADDN", 400, True),  # unquoted display name with a comma
    ("BADVERS", 505, True),  # SIP/7.0
    ("MISMATCH01", 400, True),  # CSeq method differs
    ("MISMATCH02", 400, True),  # unknown method, CSeq method differs
    ("INSUF", 400, True),  # no Call-ID, From, To
    ("UNKSCM", 416, True),  # unknown Request-URI scheme
    ("NOVELSC", 416, True),  # soap.beep Request-URI
    ("MULTI01", 400, True),  # two Call-ID, CSeq, To, From, Max-Forwards
    ("MCL01", 400, True),  # two Content-Length
    ("INV2543", 400, True),  # no Max-Forwards (accepted with require_max_forwards=False)
    ("SCALARLG", 400, False),  # a response: dropped
    ("BIGCODE", 400, False),  # a response with status 4294967301: dropped
]


@pytest.mark.parametrize(("name", "status", "answerable"), REFUSED)
def test_refused_torture_messages(name: str, status: int, answerable: bool) -> None:
    error = _refused(getattr(torture, name))
    assert error.status == status, error.reason
    assert error.close is False
    if not answerable:
        assert error.partial is None
        return
    partial = error.partial
    assert partial is not None
    response = partial.response(error.status)
    assert response.status == status
    assert response.headers.get_all("Via") == partial.headers.get_all("Via")
    assert response.encode().startswith(f"SIP/2.0 {status} ".encode())


def test_insuf_answer_carries_what_there_is() -> None:
    partial = _refused(torture.INSUF).partial
    assert partial is not None and partial.method == "INVITE"
    response = partial.response(400)
    assert response.headers.items() == [
        ("CSeq", "193942 INVITE"),
        ("Via", "SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf"),
    ]


def test_bad_request_uri_gets_a_placeholder_in_the_partial() -> None:
    partial = _refused(torture.LTGTRURI).partial
    assert partial is not None and str(partial.uri) == "sip:invalid.invalid"
    partial = _refused(torture.UNKSCM).partial
    assert partial is not None and partial.uri.scheme == "nobodyknowsthisscheme"


def test_inv2543_with_lenient_limits() -> None:
    msg = parse_message(torture.INV2543, SipLimits(require_max_forwards=False))
    assert isinstance(msg, SipRequest)
    assert msg.max_forwards is None and msg.branch is None
    assert msg.content_length is None and msg.body.startswith(b"v=0\r\n")
    assert msg.record_routes[0].uri.maddr == "ss1.example.com"
    assert msg.encode().count(b"Content-Length: ") == 1  # serialising adds it


ACCEPTED_SEMANTICS = [
    "BADBRANCH",
    "BADDATE",
    "BCAST",
    "BEXT01",
    "CPARAM01",
    "CPARAM02",
    "INVUT",
    "REGAUT01",
    "REGBADCT",
    "REGESCRT",
    "SDP01",
    "UNKSM2",
    "ZEROMF",
]


@pytest.mark.parametrize("name", ACCEPTED_SEMANTICS)
def test_semantically_odd_but_well_formed(name: str) -> None:
    parse_message(getattr(torture, name))


def test_semantic_details_for_the_upper_layers() -> None:
    assert parse_message(torture.BADBRANCH).branch == "z9hG4bK"
    assert parse_message(torture.ZEROMF).max_forwards == 0
    msg = parse_message(torture.BEXT01)
    assert msg.require == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert msg.proxy_require == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    assert parse_message(torture.INVUT).mime_type == "application/unknownformat"
    msg = parse_message(torture.UNKSM2)
    assert (msg.to.uri.scheme, msg.from_.uri.scheme) == ("isbn", "http")
    assert msg.contacts[0].uri.opaque == "John_Smith"
    with pytest.raises(HeaderError):
        parse_message(torture.REGBADCT).contacts  # noqa: B018 - the registrar answers 400
    msg = parse_message(torture.REGESCRT)
    assert msg.contacts[0].uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)
    msg = parse_message(torture.CPARAM01)
    assert msg.contacts[0].has_param("unknownparam")
    msg = parse_message(torture.BCAST)
    assert msg.vias[1].host == "255.255.255.255"


# -- hostile input ---------------------------------------------------------------------------


def test_header_injection_with_bare_lf() -> None:
    data = _options("X-Note: hello\nVia: SIP/2.0/UDP evil.example.com;branch=z9hG4bKevil")
    error = _refused(data)
    assert error.status == 400 and "bare" in error.reason
    assert error.partial is not None
    assert error.partial.headers.get_all("Via") == [
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds"
    ]
    assert "X-Note" not in error.partial.headers


def test_bare_cr_and_lf_only_messages() -> None:
    assert _refused(_options("X-Note: a\rb")).status == 400
    all_lf = _options().replace(b"\r\n", b"\n")
    error = _refused(all_lf)
    assert error.status == 400 and "LF" in error.reason
    assert _refused(_options().replace(b"\r\n", b"\n", 3)).status == 400


def test_nul_and_encoding() -> None:
    assert _refused(_options("Subject: a\x00b")).status == 400
    assert _refused(_options().replace(b"Alice", b"Al\xffce")).status == 400
    ok = parse_message(_options("Subject: caf\u00e9"))
    assert ok.headers.get("Subject") == "caf\u00e9"
    # NUL and any byte are fine in a body
    assert parse_message(_options(body=b"\x00\xff\r\n\n")).body == b"\x00\xff\r\n\n"


def test_folding_is_supported() -> None:
    msg = parse_message(
        _options("Subject: I know you're there,\r\n pick up the phone\r\n\tand talk to me!")
    )
    assert msg.headers.get("Subject") == ("I know you're there, pick up the phone\tand talk to me!")
    bad = _options().replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n Via")
    assert _refused(bad).status == 400


@pytest.mark.parametrize(
    "value",
    ["abc", "-1", "1.5", "", "0x10", "\u0661", "99999999999", "5 5"],
)
def test_bad_content_length(value: str) -> None:
    data = _options(f"Content-Length: {value}", length=False)
    assert _refused(data).status == 400


def test_content_length_larger_and_smaller_than_the_datagram() -> None:
    data = _options(body=b"hello")
    assert _refused(data[:-1]).status == 400  # the datagram ends early
    msg = parse_message(data + b"garbage after the body")  # RFC 3261 §18.3: discarded
    assert msg.body == b"hello" and msg.encode() == data
    no_length = _options(length=False)
    assert parse_message(no_length + b"body").body == b"body"  # UDP: the rest of the datagram


def test_missing_mandatory_headers() -> None:
    for name in ("Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards"):
        data = b"\r\n".join(
            line for line in _options().split(b"\r\n") if not line.startswith(name.encode() + b":")
        )
        error = _refused(data)
        assert error.status == 400 and "missing" in error.reason
        assert (error.partial is None) == (name == "Via")
    assert _refused(b"OPTIONS sip:a@b.example SIP/2.0\r\n\r\n").partial is None


def test_duplicate_single_headers() -> None:
    assert _refused(_options("CSeq: 63104 OPTIONS")).status == 400
    assert _refused(_options("i: other")).status == 400
    assert _refused(_options("l: 0")).status == 400


def test_versions() -> None:
    error = _refused(_options().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert (error.status, error.partial is not None) == (505, True)
    assert _refused(_options().replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1)).status == 400
    assert isinstance(
        parse_message(_options().replace(b"SIP/2.0\r\n", b"sip/2.0\r\n", 1)), SipRequest
    )
    response = _msg(
        "SIP/3.0 200 OK",
        "Via: SIP/2.0/UDP a.example;branch=z9hG4bK1",
        "From: <sip:a@a.example>;tag=1",
        "To: <sip:b@b.example>;tag=2",
        "Call-ID: c",
        "CSeq: 1 OPTIONS",
    )
    error = _refused(response)
    assert (error.status, error.partial) == (505, None)


@pytest.mark.parametrize(
    "start",
    [
        "OPTIONS sip:bob@biloxi.example.com",
        "OPTIONS  sip:bob@biloxi.example.com SIP/2.0",
        "OPT IONS sip:bob@biloxi.example.com SIP/2.0",
        "OPT\u00e9ONS sip:bob@biloxi.example.com SIP/2.0",
        "SIP/2.0 20 OK",
        "SIP/2.0 2000 OK",
        "SIP/2.0 099 Low",
        "SIP/2.0 700 High",
        "SIP/2.0",
        "",
    ],
)
def test_bad_start_lines(start: str) -> None:
    data = _options().replace(b"OPTIONS sip:bob@biloxi.example.com SIP/2.0", start.encode(), 1)
    assert _refused(data).status == 400


def test_header_line_without_colon_or_bad_name() -> None:
    assert _refused(_options("NoColonHere")).status == 400
    assert _refused(_options("Bad Name: x")).status == 400
    assert _refused(_options(": empty name")).status == 400


def test_bad_typed_values_needed_for_routing() -> None:
    assert _refused(_options().replace(b"CSeq: 63104", b"CSeq: x")).status == 400
    assert _refused(_options().replace(b"SIP/2.0/UDP pc33", b"SIP/2.0/UDP pc 33")).status == 400
    assert _refused(_options().replace(b"Call-ID: a84b", b"Call-ID: a 84b")).status == 400
    assert _refused(_options().replace(b"Max-Forwards: 70", b"Max-Forwards: 256")).status == 400
    assert _refused(_options().replace(b"Max-Forwards: 70", b"Max-Forwards: -1")).status == 400
    lazy = parse_message(_options("Contact: <sip:a@b.example>;;", "Route: <sip:r;lr"))
    for attr in ("contacts", "routes"):
        with pytest.raises(HeaderError):
            getattr(lazy, attr)


def test_limits() -> None:
    limits = SipLimits(max_message_size=600, max_header_count=10, max_line_length=200)
    error = _refused(_options(body=b"x" * 400), limits)
    assert error.status == 413 and error.partial is not None
    many = _options(*(f"X-H{i}: {i}" for i in range(5)))
    assert _refused(many, limits).status == 413
    long_line = _options("Subject: " + "x" * 300)
    assert _refused(long_line, limits).status == 413
    folded_long = _options("Subject: " + "x" * 150 + "\r\n " + "y" * 150)
    assert _refused(folded_long, limits).status == 413
    assert parse_message(_options("Subject: short"), limits)
    default = SipLimits()
    assert (default.max_message_size, default.max_header_count, default.max_line_length) == (
        65535,
        128,
        8192,
    )
    assert _refused(_options(body=b"x" * 70000)).status == 413


def test_oversized_response_is_not_answerable() -> None:
    response = _msg(
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP a.example;branch=z9hG4bK1",
        "From: <sip:a@a.example>;tag=1",
        "To: <sip:b@b.example>;tag=2",
        "Call-ID: c",
        "CSeq: 1 OPTIONS",
        body=b"x" * 1000,
    )
    error = _refused(response, SipLimits(max_message_size=500))
    assert (error.status, error.partial) == (413, None)


def test_unmodified_message_encodes_to_its_bytes() -> None:
    data = _options(body=b"abc")
    msg = parse_message(data)
    assert msg.encode() is data


# -- fuzzing: only SipParseError may escape; lazy views raise only HeaderError ------------------

_VALID_SAMPLES = [
    _options(body=b"hello"),
    torture.WSINV,
    torture.ESC01,
    torture.LONGREQ[:2000],
    torture.MPART01,
    torture.UNREASON,
]


def _read_everything(msg: SipRequest | SipResponse) -> None:
    for attr in (
        "call_id",
        "cseq",
        "from_",
        "to",
        "vias",
        "top_via",
        "branch",
        "max_forwards",
        "content_length",
        "expires",
        "contacts",
        "routes",
        "record_routes",
        "require",
        "supported",
        "allow",
        "is_star_contact",
        "mime_type",
    ):
        with contextlib.suppress(HeaderError):
            getattr(msg, attr)
    msg.encode()
    if isinstance(msg, SipRequest):
        msg.response(400, to_tag="x").encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    _read_everything(msg)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_VALID_SAMPLES),
    st.lists(
        st.tuples(st.integers(0, 3000), st.integers(0, 8), st.binary(max_size=6)),
        min_size=1,
        max_size=4,
    ),
)
def test_fuzz_mutated_messages(base: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    data = bytearray(base)
    for pos, cut, insert in edits:
        pos %= len(data) + 1
        data[pos : pos + cut] = insert
    try:
        msg = parse_message(bytes(data))
    except SipParseError as error:
        if error.partial is not None:
            error.partial.response(error.status).encode()
        return
    _read_everything(msg)


@settings(max_examples=200)
@given(st.text(alphabet=st.sampled_from(list(':;,<>"\\ \t\r\nabcSIP/2.0@')), max_size=80))
def test_fuzz_header_values(value: str) -> None:
    data = _options().replace(b"<sip:bob@biloxi.example.com>", value.encode(), 1)
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    _read_everything(msg)


# -- StreamFramer ------------------------------------------------------------------------------


def _stream_messages() -> list[bytes]:
    return [
        _options(body=b"one"),
        torture.WSINV,
        _options(),
        torture.MPART01,
        _options(body=b"\r\n\r\n" * 10),
    ]


def test_framer_splits_messages_and_keepalives() -> None:
    messages = _stream_messages()
    stream = b"\r\n\r\n" + messages[0] + b"\r\n" + messages[1] + b"".join(messages[2:])
    framer = StreamFramer()
    items = framer.feed(stream)
    assert items == [PING, messages[0], PONG, *messages[1:]]
    assert framer.buffered == 0
    for item in items:
        if isinstance(item, bytes):
            parse_message(item)


def test_framer_keepalives() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [PING]
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [PING, PING]
    assert framer.feed(b"\r\n" + _options()) == [PONG, _options()]
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [PONG]  # a pong is reported at once
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == []  # CR LF CR: a ping or a pong and a message?
    assert framer.feed(b"\n") == [PING]
    framer = StreamFramer()
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\nOPT") == [PONG]
    assert KeepAlive("ping") == PING


def test_framer_ping_split_in_two_reads() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [PONG]
    assert framer.feed(b"\r\n") == [PING]  # the second half: answered as a ping
    assert framer.feed(b"\r\n") == [PONG]


def test_framer_waits_for_the_body() -> None:
    message = _options(body=b"x" * 1000)
    framer = StreamFramer()
    assert framer.feed(message[:300]) == []
    assert framer.feed(message[300:-1]) == []
    assert framer.buffered == len(message) - 1
    assert framer.feed(message[-1:] + b"\r\n\r\n") == [message, PING]


@settings(max_examples=200)
@given(st.data())
def test_framer_random_splits(data: st.DataObject) -> None:
    messages = _stream_messages()
    order = data.draw(st.permutations(messages))
    stream = b"".join(order)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    framer = StreamFramer()
    got: list[bytes | KeepAlive] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        got += framer.feed(stream[last:cut])
        last = cut
    assert got == list(order)
    assert framer.buffered == 0


@settings(max_examples=100)
@given(st.data())
def test_framer_random_splits_with_keepalives(data: st.DataObject) -> None:
    messages = _stream_messages()
    parts = []
    for message in messages:
        parts.append(data.draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"])))
        parts.append(message)
    stream = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    framer = StreamFramer()
    got: list[bytes | KeepAlive] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        got += framer.feed(stream[last:cut])
        last = cut
    assert [item for item in got if isinstance(item, bytes)] == messages


@pytest.mark.parametrize(
    ("stream", "status"),
    [
        (_options(length=False), 400),  # no Content-Length on a stream
        (_options("Content-Length: abc", length=False), 400),
        (_options("Content-Length: -5", length=False), 400),
        (_options("Content-Length: 1", "l: 2", length=False), 400),
        (_options().replace(b"\r\n", b"\n"), 400),  # bare LF: no end of head in sight
        (_options("Content-Length: 99999999", length=False), 413),
    ],
)
def test_framer_fatal_errors(stream: bytes, status: int) -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(stream)
    assert info.value.close is True and info.value.status == status
    with pytest.raises(SipParseError):
        framer.feed(_options())  # the stream cannot be resynchronised


def test_framer_error_carries_a_partial() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(_options(length=False))
    partial = info.value.partial
    assert partial is not None and partial.response(400).status == 400


def test_framer_head_too_large() -> None:
    framer = StreamFramer(SipLimits(max_message_size=1000))
    assert framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 100) == []
    with pytest.raises(SipParseError) as info:
        framer.feed(b"X: y\r\n" * 100)
    assert info.value.close and info.value.status == 413


def test_framer_same_content_length_twice_is_fine() -> None:
    message = _options("Content-Length: 0", length=False) + b""
    message = message.replace(b"\r\n\r\n", b"\r\nl: 0\r\n\r\n")
    assert StreamFramer().feed(message) == [message]
    with pytest.raises(SipParseError):
        parse_message(message)  # but the message itself is refused (multi01-like)


def test_framer_compact_and_case_insensitive_content_length() -> None:
    message = _options("L:  3", length=False, body=b"abc")
    assert StreamFramer().feed(message + message) == [message, message]
