"""SDP model (RFC 8866) and MSRP offer/answer (RFC 3264, RFC 4975 §8, RFC 6135)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyim.msrp.sdp import Setup
from pyim.msrp.uri import MsrpUri
from pyim.sip.sdp import (
    DEFAULT_ACCEPT_TYPES,
    AnswerRejected,
    Bandwidth,
    ConnectionData,
    Direction,
    MediaDescription,
    MsrpAnswer,
    OfferRejected,
    Origin,
    SdpLimits,
    SdpParseError,
    SessionDescription,
    Timing,
    answer_msrp_offer,
    build_msrp_offer,
    parse,
    parse_msrp_answer,
)


def crlf(*lines: str) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()


# RFC 4975 §4: Alice's offer and Bob's answer.
RFC4975_OFFER = crlf(
    "v=0",
    "o=alice 2890844557 2890844559 IN IP4 alicepc.example.com",
    "s= -",
    "c=IN IP4 alicepc.example.com",
    "t=0 0",
    "m=message 7777 TCP/MSRP *",
    "a=accept-types:text/plain",
    "a=path:msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
)
RFC4975_ANSWER = crlf(
    "v=0",
    "o=bob 2890844612 2890844616 IN IP4 bob.example.com",
    "s= -",
    "c=IN IP4 bob.example.com",
    "t=0 0",
    "m=message 8888 TCP/MSRP *",
    "a=accept-types:text/plain",
    "a=path:msrp://bob.example.com:8888/9di4eae923wzd;tcp",
)

# RFC 4975 §8.6-style offer with wrapped types, a relay in the path and max-size.
RELAYED_OFFER = crlf(
    "v=0",
    "o=alice 2890844526 2890844527 IN IP4 alice.example.com",
    "s=-",
    "c=IN IP4 relay.example.com",
    "t=0 0",
    "m=message 7394 TCP/TLS/MSRP *",
    "a=accept-types:message/cpim text/plain text/html",
    "a=accept-wrapped-types:text/plain image/*",
    "a=max-size:131072",
    "a=path:msrps://relay.example.com:7394/2s93i93idj;tcp "
    "msrps://alice.example.com:9000/jshA7we;tcp",
)

PJSUA_AUDIO = [
    "m=audio 4000 RTP/AVP 96 0 8 101",
    "c=IN IP4 192.0.2.10",
    "b=TIAS:64000",
    "a=rtcp:4001 IN IP4 192.0.2.10",
    "a=sendrecv",
    "a=rtpmap:96 speex/16000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
]
PJSUA_MESSAGE = [
    "m=message 2855 TCP/MSRP *",
    "c=IN IP4 192.0.2.10",
    "a=accept-types:text/plain message/cpim",
    "a=path:msrp://192.0.2.10:2855/pjs8a0d;tcp",
    "a=setup:actpass",
]
PJSUA_HEAD = [
    "v=0",
    "o=- 3912345678 3912345679 IN IP4 192.0.2.10",
    "s=pjmedia",
    "b=AS:84",
    "t=0 0",
    "a=X-nat:0",
]
PJSUA_OFFER = crlf(*PJSUA_HEAD, *PJSUA_AUDIO, *PJSUA_MESSAGE)
PJSUA_OFFER_REVERSED = crlf(*PJSUA_HEAD, *PJSUA_MESSAGE, *PJSUA_AUDIO)

OUR_PATH = [MsrpUri.parse("msrp://198.51.100.7:2856/srv42;tcp")]
OUR_TLS_PATH = [MsrpUri.parse("msrps://198.51.100.7:2857/srv42;tcp")]


def answer(
    offer: bytes,
    *,
    accept_types: Sequence[str] = DEFAULT_ACCEPT_TYPES,
    tls_supported: bool = False,
    tls_path: Sequence[MsrpUri] | None = None,
    local_path: Sequence[MsrpUri] = OUR_PATH,
) -> MsrpAnswer:
    return answer_msrp_offer(
        parse(offer),
        local_path=local_path,
        address="198.51.100.7",
        accept_types=accept_types,
        tls_supported=tls_supported,
        tls_path=tls_path,
        session_id=7,
    )


# ---------------------------------------------------------------------------
# Model, parser, encoder


@pytest.mark.parametrize(
    "data", [RFC4975_OFFER, RFC4975_ANSWER, RELAYED_OFFER, PJSUA_OFFER, PJSUA_OFFER_REVERSED]
)
def test_round_trip_is_exact(data: bytes) -> None:
    assert parse(data).encode() == data
    assert SessionDescription.parse(data.decode()).encode() == data


def test_parse_fields() -> None:
    sdp = parse(RFC4975_OFFER)
    assert sdp.version == 0
    assert sdp.origin == Origin("alice", 2890844557, 2890844559, "IN", "IP4", "alicepc.example.com")
    assert sdp.name == " -"
    assert sdp.connection == ConnectionData("IN", "IP4", "alicepc.example.com")
    assert sdp.timing == [Timing(0, 0)]
    (media,) = sdp.media
    assert (media.media, media.port, media.proto, media.formats) == (
        "message",
        7777,
        "TCP/MSRP",
        ["*"],
    )
    assert media.attributes == [
        ("accept-types", "text/plain"),
        ("path", "msrp://alicepc.example.com:7777/iau39soe2843z;tcp"),
    ]


def test_full_grammar_round_trip() -> None:
    data = crlf(
        "v=0",
        "o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1",
        "s=Call to John Smith",
        "i=SDP Offer #1",
        "u=http://www.jdoe.example.com/home.html",
        "e=Jane Doe <jane@jdoe.example.com>",
        "p=+1 617 555-6011",
        "c=IN IP4 198.51.100.1",
        "b=CT:128",
        "t=2873397496 2873404696",
        "r=604800 3600 0 90000",
        "t=0 0",
        "z=2882844526 -1h 2898848070 0",
        "k=prompt",
        "a=recvonly",
        "m=audio 49170/2 RTP/AVP 0",
        "i=voice",
        "c=IN IP6 2001:db8::1",
        "b=AS:64",
        "k=prompt",
        "a=rtpmap:0 PCMU/8000",
        "a=empty:",
        "m=video 51372 RTP/AVP 99",
        "a=rtpmap:99 h263-1998/90000",
    )
    sdp = parse(data)
    assert sdp.encode() == data
    assert sdp.timing[0].repeats == ("604800 3600 0 90000",)
    assert sdp.media[0].port_count == 2
    assert sdp.media[0].bandwidths == [Bandwidth("AS", 64)]
    assert sdp.media[0].get_attribute("empty") == ""
    assert sdp.direction is Direction.RECVONLY
    assert sdp.direction_of(sdp.media[1]) is Direction.RECVONLY


def test_bare_lf_blank_lines_and_loose_order_are_accepted() -> None:
    text = RFC4975_OFFER.decode().replace("\r\n", "\n")
    assert parse(text.encode()) == parse(RFC4975_OFFER)
    assert parse(text + "\n\n") == parse(RFC4975_OFFER)
    # session-level lines out of RFC 8866 order: accepted, re-encoded in order
    shuffled = crlf(
        "v=0",
        "s=-",
        "t=0 0",
        "a=tool:x",
        "c=IN IP4 192.0.2.1",
        "o=- 1 1 IN IP4 192.0.2.1",
        "m=message 9 TCP/MSRP *",
    )
    assert parse(shuffled).encode() == crlf(
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "a=tool:x",
        "m=message 9 TCP/MSRP *",
    )


def test_attribute_helpers() -> None:
    media = MediaDescription("message", 9, "TCP/MSRP", ["*"])
    media.add_attribute("path", "msrp://a.example:9/x;tcp")
    media.add_attribute("sendonly")
    media.add_attribute("X-Foo", "1")
    media.add_attribute("x-foo", "2")
    assert media.has_attribute("PATH")
    assert media.get_attribute("x-foo") == "1"
    assert media.get_attributes("X-FOO") == ["1", "2"]
    assert media.get_attribute("missing") is None
    media.set_attribute("x-foo", "3")
    assert media.attributes[-1] == ("x-foo", "3")
    assert media.get_attributes("x-foo") == ["3"]
    assert media.direction is Direction.SENDONLY
    media.direction = Direction.INACTIVE
    assert media.attributes[1] == ("inactive", None)
    media.direction = None
    assert media.direction is None
    assert media.remove_attribute("x-foo") == 1
    media.set_attribute("setup", "active")
    assert media.attributes == [("path", "msrp://a.example:9/x;tcp"), ("setup", "active")]
    assert Direction.SENDONLY.reverse() is Direction.RECVONLY
    assert Direction.INACTIVE.reverse() is Direction.INACTIVE


@pytest.mark.parametrize(
    "change",
    [
        lambda sd: setattr(sd, "name", "x\r\na=injected"),
        lambda sd: sd.media[0].add_attribute("bad name", "1"),
        lambda sd: sd.media[0].add_attribute("ok", "1\n"),
        lambda sd: setattr(sd.media[0], "port", 70000),
        lambda sd: setattr(sd.media[0], "formats", []),
        lambda sd: setattr(sd, "timing", []),
    ],
)
def test_encode_refuses_invalid_fields(change: Callable[[SessionDescription], None]) -> None:
    sdp = parse(RFC4975_OFFER)
    change(sdp)
    with pytest.raises(ValueError):
        sdp.encode()


def test_value_objects_validate() -> None:
    with pytest.raises(ValueError):
        Origin("has space", 1, 1)
    with pytest.raises(ValueError):
        ConnectionData("IN", "IP4", "")
    with pytest.raises(ValueError):
        Bandwidth("AS", -1)
    assert ConnectionData.for_address("2001:db8::1").addrtype == "IP6"


GOOD = RFC4975_OFFER.decode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        GOOD.replace("v=0\r\n", "").encode(),  # missing v=
        GOOD.replace("v=0", "v=1").encode(),
        ("o=x 1 1 IN IP4 h\r\n" + GOOD).encode(),  # v= not first
        GOOD.replace("o=alice 2890844557 2890844559 IN IP4 alicepc.example.com\r\n", "").encode(),
        GOOD.replace("s= -\r\n", "").encode(),
        GOOD.replace("t=0 0\r\n", "").encode(),
        (GOOD + "garbage\r\n").encode(),
        (GOOD + "x=unknown\r\n").encode(),
        (GOOD + "a =spaced\r\n").encode(),
        (GOOD + "=\r\n").encode(),
        (GOOD + "a=\r\n").encode(),  # empty attribute name
        (GOOD + "a=bad name:1\r\n").encode(),
        (GOOD + "t=0 0\r\n").encode(),  # t= inside a media section
        (GOOD + "o=x 1 1 IN IP4 h\r\n").encode(),
        GOOD.replace("s= -", "s= -\r\ns=again").encode(),  # duplicate s=
        GOOD.replace("t=0 0", "r=1 2 3\r\nt=0 0").encode(),  # r= before t=
        GOOD.replace("t=0 0", "t=0").encode(),
        GOOD.replace("t=0 0", "t=now 0").encode(),
        GOOD.replace("2890844557", "-1").encode(),
        GOOD.replace("2890844557", "1" * 30).encode(),
        GOOD.replace("IN IP4 alicepc.example.com\r\ns", "IN IP4\r\ns").encode(),
        GOOD.replace("c=IN IP4 alicepc.example.com", "c=IN IP4").encode(),
        (GOOD + "b=AS\r\n").encode(),
        (GOOD + "b=AS:fast\r\n").encode(),
        (GOOD + "c=IN IP4 a\r\nc=IN IP4 b\r\n").encode(),  # two c= in one media
        GOOD.replace("7777 TCP", "70000 TCP").encode(),
        GOOD.replace("7777 TCP", "-1 TCP").encode(),
        GOOD.replace("7777 TCP", "99999999999999999999999 TCP").encode(),
        GOOD.replace("7777 TCP", "7777/0 TCP").encode(),
        GOOD.replace("7777 TCP", "7777/x TCP").encode(),
        GOOD.replace("7777 TCP", "\u0667\u0667 TCP").encode(),  # Arabic-Indic digits
        GOOD.replace("7777 TCP", "1e3 TCP").encode(),
        GOOD.replace("m=message 7777 TCP/MSRP *", "m=message 7777 TCP/MSRP").encode(),
        GOOD.replace("TCP/MSRP", "TCP//MSRP").encode(),
        GOOD.encode() + b"a=caf\xe9\r\n",  # Latin-1, not UTF-8
        GOOD.encode() + b"a=x:\xff\xfe\r\n",
        GOOD.encode() + b"a=x:\x00\r\n",  # NUL
        GOOD.replace("s= -", "s= -\rx").encode(),  # bare CR
        "\ufeff".encode() + GOOD.encode(),  # BOM makes the first line garbage
    ],
)
def test_malformed_sdp_raises_parse_error(data: bytes) -> None:
    with pytest.raises(SdpParseError):
        parse(data)


def test_surrogates_in_text_input() -> None:
    with pytest.raises(SdpParseError):
        parse(GOOD + "a=x:\udcff\r\n")


def test_limits() -> None:
    huge = GOOD + "a=x:" + "y" * (64 * 1024) + "\r\n"
    with pytest.raises(SdpParseError, match="larger"):
        parse(huge.encode())
    with pytest.raises(SdpParseError, match="larger"):
        parse(huge)
    # multi-byte characters count as bytes
    wide = GOOD + "a=x:" + "\u00e9" * (33 * 1024) + "\r\n"
    with pytest.raises(SdpParseError, match="larger"):
        parse(wide)
    many_media = GOOD + "m=video 0 RTP/AVP 31\r\n" * 64
    with pytest.raises(SdpParseError, match="media"):
        parse(many_media.encode())
    parse((GOOD + "m=video 0 RTP/AVP 31\r\n" * 63).encode())
    many_lines = GOOD + "a=x\r\n" * 1020
    with pytest.raises(SdpParseError, match="lines"):
        parse(many_lines.encode())
    parse(GOOD + "a=x\r\n" * 1016)  # 1024 lines exactly
    with pytest.raises(SdpParseError):
        parse(GOOD, SdpLimits(max_size=100))


# ---------------------------------------------------------------------------
# Answering (we are the answerer)


def test_answer_rfc4975_offer() -> None:
    result = answer(RFC4975_OFFER)
    sdp = result.sdp
    assert result.message_index == 0
    assert not result.tls
    # no a=setup in the offer: the offerer is active (RFC 4975), we are passive
    assert result.local.setup is Setup.PASSIVE
    assert result.active is False
    assert result.remote.path == (
        MsrpUri.parse("msrp://alicepc.example.com:7777/iau39soe2843z;tcp"),
    )
    assert sdp.encode() == crlf(
        "v=0",
        "o=pyim 7 7 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        "m=message 2856 TCP/MSRP *",
        "a=accept-types:message/cpim text/plain",
        "a=path:msrp://198.51.100.7:2856/srv42;tcp",
        "a=setup:passive",
    )
    assert parse(sdp.encode()) == sdp


@pytest.mark.parametrize(
    ("offered", "ours", "active"),
    [
        ("active", Setup.PASSIVE, False),
        ("passive", Setup.ACTIVE, True),
        ("actpass", Setup.ACTIVE, True),
        ("holdconn", Setup.HOLDCONN, False),
    ],
)
def test_answer_respects_setup(offered: str, ours: Setup, active: bool) -> None:
    offer = RFC4975_OFFER + f"a=setup:{offered}\r\n".encode()
    result = answer(offer)
    assert result.local.setup is ours
    assert result.sdp.media[0].get_attribute("setup") == ours.value
    assert result.active is active


@pytest.mark.parametrize("data", [PJSUA_OFFER, PJSUA_OFFER_REVERSED])
def test_answer_pjsua_offer(data: bytes) -> None:
    offer = parse(data)
    result = answer(data)
    sdp = result.sdp
    assert len(sdp.media) == 2
    kinds = [media.media for media in offer.media]
    assert [media.media for media in sdp.media] == kinds
    audio = sdp.media[kinds.index("audio")]
    message = sdp.media[kinds.index("message")]
    assert result.message_index == kinds.index("message")
    assert audio.port != 0
    assert audio.proto == "RTP/AVP"
    assert audio.formats == ["96"]
    assert audio.attributes == [("rtpmap", "96 speex/16000"), ("inactive", None)]
    assert message.port == 2856
    assert message.get_attribute("setup") == "active"
    assert result.active is True
    assert len(sdp.encode()) < 1024
    assert parse(sdp.encode()) == sdp


def test_answer_rejects_video_with_port_zero_keeping_the_line() -> None:
    offer = RFC4975_OFFER + crlf("m=video 51372 RTP/AVP 99 100", "a=rtpmap:99 h263/90000")
    sdp = answer(offer).sdp
    assert len(sdp.media) == 2
    video = sdp.media[1]
    assert (video.media, video.port, video.proto, video.formats) == (
        "video",
        0,
        "RTP/AVP",
        ["99", "100"],
    )
    assert video.attributes == []


def test_answer_rejects_streams_after_the_first_msrp_one_and_disabled_ones() -> None:
    offer = crlf(
        *RFC4975_OFFER.decode().splitlines()[:5],
        "m=message 0 TCP/MSRP *",  # disabled by the offerer
        "m=message 7777 TCP/MSRP *",
        "a=accept-types:text/plain",
        "a=path:msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
        "m=message 7778 TCP/MSRP *",
        "a=accept-types:text/plain",
        "a=path:msrp://alicepc.example.com:7778/second;tcp",
        "m=audio 49170 RTP/SAVP 0",
        "m=audio 49172 RTP/AVP 0",
        "m=audio 49174 RTP/AVP 8",
    )
    result = answer(offer)
    assert result.message_index == 1
    assert [media.port for media in result.sdp.media] == [0, 2856, 0, 0, 9, 0]


def test_answer_tls_in_kind() -> None:
    result = answer(RELAYED_OFFER, tls_supported=True, tls_path=OUR_TLS_PATH)
    assert result.tls
    media = result.sdp.media[0]
    assert media.proto == "TCP/TLS/MSRP"
    assert media.port == 2857
    assert media.get_attribute("path") == "msrps://198.51.100.7:2857/srv42;tcp"
    assert len(result.remote.path) == 2
    assert result.remote.max_size == 131072
    with pytest.raises(OfferRejected) as info:
        answer(RELAYED_OFFER)
    assert info.value.status == 488
    assert "TLS" in info.value.reason
    # a plain path cannot answer a TLS stream: a configuration error
    with pytest.raises(ValueError):
        answer(RELAYED_OFFER, tls_supported=True)


def test_answer_picks_plain_stream_when_tls_is_not_supported() -> None:
    msrps = RELAYED_OFFER.decode().splitlines()[5:]
    offer = RFC4975_OFFER + crlf(*msrps)
    assert [m.port for m in answer(offer).sdp.media] == [2856, 0]
    tls_first = crlf(*RFC4975_OFFER.decode().splitlines()[:5], *msrps) + crlf(
        *RFC4975_OFFER.decode().splitlines()[5:]
    )
    result = answer(tls_first)
    assert [m.port for m in result.sdp.media] == [0, 2856]
    assert result.message_index == 1


def test_answer_from_a_tls_only_endpoint_refuses_plain_msrp() -> None:
    """An endpoint whose path is msrps cannot take a TCP/MSRP stream: 488 (not a
    ValueError), and a TLS stream in the same offer is taken instead."""
    with pytest.raises(OfferRejected) as info:
        answer(RFC4975_OFFER, local_path=OUR_TLS_PATH, tls_supported=True)
    assert info.value.status == 488 and "TLS" in info.value.reason
    msrps = RELAYED_OFFER.decode().splitlines()[5:]
    result = answer(RFC4975_OFFER + crlf(*msrps), local_path=OUR_TLS_PATH, tls_supported=True)
    assert result.tls and [m.port for m in result.sdp.media] == [0, 2857]


def test_answer_mirrors_direction() -> None:
    result = answer(RFC4975_OFFER + b"a=sendonly\r\n")
    assert result.sdp.media[0].direction is Direction.RECVONLY
    result = answer(RFC4975_OFFER.replace(b"t=0 0\r\n", b"t=0 0\r\na=recvonly\r\n"))
    assert result.sdp.media[0].direction is Direction.SENDONLY


def test_answer_accepts_wildcards_and_keeps_offer_timing() -> None:
    offer = RFC4975_OFFER.replace(b"accept-types:text/plain", b"accept-types:*")
    assert answer(offer, accept_types=["application/im-iscomposing+xml"]).sdp.media[0].port
    offer = RFC4975_OFFER.replace(b"accept-types:text/plain", b"accept-types:text/*")
    assert answer(offer, accept_types=["text/html"]).sdp.media[0].port
    offer = RFC4975_OFFER.replace(b"t=0 0", b"t=3000000000 3000003600")
    assert answer(offer).sdp.timing == [Timing(3000000000, 3000003600)]


@pytest.mark.parametrize(
    ("offer", "kwargs", "reason"),
    [
        (RFC4975_OFFER.replace(b"m=message", b"m=audio"), {}, "no MSRP"),
        (crlf(*RFC4975_OFFER.decode().splitlines()[:5]), {}, "no MSRP"),
        (RFC4975_OFFER.replace(b"TCP/MSRP", b"UDP/MSRP"), {}, "no MSRP"),
        (RFC4975_OFFER.replace(b"7777 TCP", b"0 TCP"), {}, "no MSRP"),
        (RFC4975_OFFER.replace(b"a=path", b"a=pathx"), {}, "a=path"),
        (RFC4975_OFFER.replace(b"msrp://alicepc", b"http://alicepc"), {}, "path"),
        (RFC4975_OFFER.replace(b";tcp", b""), {}, "path"),
        (RFC4975_OFFER + b"a=path:msrp://x.example:1/a;tcp\r\n", {}, "duplicate"),
        (RFC4975_OFFER.replace(b"a=accept-types:text/plain\r\n", b""), {}, "accept-types"),
        (RFC4975_OFFER.replace(b"text/plain", b"bogus"), {}, "accept-types"),
        (RFC4975_OFFER, {"accept_types": ["image/png"]}, "content type"),
        (RFC4975_OFFER + b"a=setup:sideways\r\n", {}, "setup"),
        (RFC4975_OFFER + b"a=max-size:-5\r\n", {}, "max-size"),
    ],
)
def test_answer_488(offer: bytes, kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(OfferRejected) as info:
        answer(offer, **kwargs)
    assert info.value.status == 488
    assert reason in info.value.reason


# ---------------------------------------------------------------------------
# Offering (we are the offerer)


def test_build_offer() -> None:
    offer = build_msrp_offer(
        local_path=OUR_PATH, address="198.51.100.7", session_id=42, max_size=65536
    )
    assert offer.encode() == crlf(
        "v=0",
        "o=pyim 42 42 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        "m=message 2856 TCP/MSRP *",
        "a=accept-types:message/cpim text/plain",
        "a=max-size:65536",
        "a=path:msrp://198.51.100.7:2856/srv42;tcp",
        "a=setup:actpass",
    )
    tls = build_msrp_offer(local_path=OUR_TLS_PATH, address="2001:db8::7", tls=True, setup=None)
    assert tls.media[0].proto == "TCP/TLS/MSRP"
    assert tls.connection == ConnectionData("IN", "IP6", "2001:db8::7")
    assert not tls.media[0].has_attribute("setup")
    assert 0 <= tls.origin.sess_id < 2**31
    with pytest.raises(ValueError):
        build_msrp_offer(local_path=OUR_PATH, address="198.51.100.7", tls=True)
    with pytest.raises(ValueError):
        build_msrp_offer(local_path=[], address="198.51.100.7")


def test_pjsua_dialect_offer_is_small() -> None:
    path = [
        MsrpUri.parse(
            "msrp://[2001:db8:ffff:ffff:ffff:ffff:ffff:fff1]:65535/a1b2c3d4e5f6g7h8i9j0;tcp"
        )
    ]
    offer = build_msrp_offer(
        local_path=path,
        address="2001:db8:ffff:ffff:ffff:ffff:ffff:fff1",
        accept_types=("message/cpim", "text/plain", "application/im-iscomposing+xml"),
        accept_wrapped_types=("text/plain", "image/*"),
        max_size=2**31,
        pjsua_dialect=True,
        session_id=2**31 - 1,
        username="pyim-client-with-a-long-name",
    )
    data = offer.encode()
    assert len(data) < 1024 // 2
    assert [m.media for m in offer.media] == ["audio", "message"]
    audio = offer.media[0]
    assert (audio.port, audio.proto, audio.formats) == (9, "RTP/AVP", ["0"])
    assert audio.attributes == [("rtpmap", "0 PCMU/8000"), ("inactive", None)]
    assert parse(data).encode() == data


def test_offer_answer_both_sides_agree() -> None:
    offer = build_msrp_offer(
        local_path=OUR_PATH, address="198.51.100.7", session_id=1, pjsua_dialect=True
    )
    peer_path = [MsrpUri.parse("msrp://192.0.2.10:2855/peer1;tcp")]
    result = answer_msrp_offer(
        parse(offer.encode()), local_path=peer_path, address="192.0.2.10", session_id=2
    )
    negotiated = parse_msrp_answer(offer, parse(result.sdp.encode()))
    assert negotiated.message_index == result.message_index == 1
    assert negotiated.active is not result.active
    assert result.active  # answerer takes active facing actpass
    assert negotiated.remote.path == tuple(peer_path)
    assert negotiated.local.path == tuple(OUR_PATH)
    assert result.remote == negotiated.local


def test_parse_answer_from_rfc4975_peer() -> None:
    offer = parse(RFC4975_OFFER)
    negotiated = parse_msrp_answer(offer, parse(RFC4975_ANSWER))
    assert negotiated.active  # no a=setup anywhere: the offerer connects
    assert negotiated.remote.path[0].port == 8888
    assert not negotiated.tls


@pytest.mark.parametrize(
    ("answer_text", "reason"),
    [
        (RFC4975_ANSWER.replace(b"8888 TCP", b"0 TCP"), "refused"),
        (RFC4975_ANSWER.replace(b"TCP/MSRP", b"TCP/TLS/MSRP"), "offered"),
        (RFC4975_ANSWER + b"m=video 0 RTP/AVP 31\r\n", "m-lines"),
        (RFC4975_ANSWER.replace(b"a=path", b"a=pat"), "a=path"),
        (RFC4975_ANSWER.replace(b";tcp", b""), "bad MSRP"),
        (RFC4975_ANSWER.replace(b"text/plain", b"image/png"), "content type"),
        (RFC4975_ANSWER + b"a=setup:actpass\r\n", "actpass"),
        (RFC4975_ANSWER + b"a=setup:active\r\n", "incompatible"),
    ],
)
def test_parse_answer_rejections(answer_text: bytes, reason: str) -> None:
    offer = parse(RFC4975_OFFER + b"a=setup:active\r\n")
    with pytest.raises(AnswerRejected) as info:
        parse_msrp_answer(offer, parse(answer_text))
    assert reason in info.value.reason


def test_parse_answer_needs_an_msrp_offer() -> None:
    with pytest.raises(ValueError):
        parse_msrp_answer(parse(RFC4975_OFFER.replace(b"7777", b"0")), parse(RFC4975_ANSWER))


# ---------------------------------------------------------------------------
# Property tests

_token = st.text("abcXYZ019-.!+*_", min_size=1, max_size=8)
_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00\r\n"), max_size=12
)
_nonws = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8)
_num = st.integers(0, 10**20 - 1)
_attr = st.tuples(_token, st.none() | _text)
_connection = st.builds(ConnectionData, _token, _token, _nonws)
_bandwidth = st.builds(Bandwidth, _token, _num)
_media = st.builds(
    MediaDescription,
    media=_token,
    port=st.integers(0, 65535),
    proto=st.lists(_token, min_size=1, max_size=3).map("/".join),
    formats=st.lists(_nonws, min_size=1, max_size=4),
    port_count=st.none() | st.integers(1, 65535),
    info=st.none() | _text,
    connection=st.none() | _connection,
    bandwidths=st.lists(_bandwidth, max_size=2),
    key=st.none() | _text,
    attributes=st.lists(_attr, max_size=4),
)
_session = st.builds(
    SessionDescription,
    origin=st.builds(Origin, _nonws, _num, _num, _token, _token, _nonws),
    name=_text,
    info=st.none() | _text,
    uri=st.none() | _text,
    emails=st.lists(_text, max_size=2),
    phones=st.lists(_text, max_size=2),
    connection=st.none() | _connection,
    bandwidths=st.lists(_bandwidth, max_size=2),
    timing=st.lists(
        st.builds(Timing, _num, _num, st.lists(_text, max_size=2).map(tuple)),
        min_size=1,
        max_size=2,
    ),
    time_zones=st.none() | _text,
    key=st.none() | _text,
    attributes=st.lists(_attr, max_size=4),
    media=st.lists(_media, max_size=4),
)


@given(_session)
def test_model_round_trip(sdp: SessionDescription) -> None:
    data = sdp.encode()
    assert parse(data) == sdp
    assert parse(data).encode() == data
    assert parse(data.replace(b"\r\n", b"\n")) == sdp


_line = st.one_of(
    st.sampled_from(
        [*GOOD.splitlines(), *RELAYED_OFFER.decode().splitlines(), *PJSUA_AUDIO, *PJSUA_MESSAGE]
    ),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from("vosiuepcbtrzkamxV "), _text),
    _text,
)


@settings(max_examples=300)
@given(st.booleans(), st.lists(_line, max_size=20), st.sampled_from(["\r\n", "\n"]))
def test_arbitrary_lines_raise_only_parse_errors(head: bool, lines: list[str], eol: str) -> None:
    if head:  # a valid session part, so that media-level junk gets looked at
        lines = GOOD.splitlines()[:5] + lines
    data = "".join(line + eol for line in lines).encode()
    try:
        sdp = parse(data)
    except SdpParseError:
        return
    assert parse(sdp.encode()) == sdp
    try:
        answer_msrp_offer(sdp, local_path=OUR_PATH, address="198.51.100.7")
    except OfferRejected as exc:
        assert exc.status == 488


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_parse_errors(data: bytes) -> None:
    with contextlib.suppress(SdpParseError):
        parse(data)


_media_line = st.sampled_from(
    [
        *RFC4975_OFFER.decode().splitlines()[5:],
        *RELAYED_OFFER.decode().splitlines()[5:],
        *(line for line in PJSUA_AUDIO + PJSUA_MESSAGE if not line.startswith("c=")),
        "m=video 51372 RTP/AVP 99",
        "m=message 0 TCP/MSRP *",
        "a=setup:active",
        "a=setup:passive",
        "a=setup:holdconn",
        "a=setup:bogus",
        "a=accept-types:*",
        "a=accept-types:image/png",
        "a=max-size:x",
        "a=path:msrp://nope",
        "a=sendonly",
        "a=inactive",
    ]
)


@settings(max_examples=300)
@given(st.lists(_media_line, max_size=12))
def test_answer_to_arbitrary_media_is_an_answer_or_a_488(lines: list[str]) -> None:
    while lines and not lines[0].startswith("m="):
        lines = lines[1:]
    offer = parse(crlf(*GOOD.splitlines()[:5], *lines))
    try:
        result = answer_msrp_offer(offer, local_path=OUR_PATH, address="198.51.100.7")
    except OfferRejected as exc:
        assert exc.status == 488
        return
    sdp = parse(result.sdp.encode())
    assert [m.media for m in sdp.media] == [m.media for m in offer.media]
    assert [m.port != 0 for m in sdp.media].count(True) in (1, 2)
    assert sdp.media[result.message_index].port == 2856
    negotiated = parse_msrp_answer(offer, sdp)
    assert negotiated.remote == result.local
    assert negotiated.active is not result.active or result.local.setup is Setup.HOLDCONN
