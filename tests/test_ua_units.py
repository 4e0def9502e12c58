"""Pure parts of pyim.ua: CPIM (RFC 3862), the pjsua dialect SDP rewrite, the config."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pyim.msrp.uri import MsrpUri
from pyim.sip.sdp import Direction, SessionDescription, parse_msrp_answer
from pyim.ua.config import ClientConfig
from pyim.ua.cpim import CpimError, encode_cpim, parse_cpim, strip_uri
from pyim.ua.dialect import (
    PJSUA_SDP_LIMIT,
    DialectError,
    dialect_answer,
    dialect_offer,
    message_media,
    msrp_index,
    sip_body,
)
from pyim.ua.errors import UaError

# -- CPIM ----------------------------------------------------------------------------------------


def test_cpim_round_trip() -> None:
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    body = encode_cpim(
        sender="Alice <sip:alice@example.test>",
        recipient="sip:bob@example.test",
        text="héllo\r\n\r\nsecond paragraph",
        when=when,
        headers=[("Subject", "hi")],
    )
    assert body.startswith("From: Alice <sip:alice@example.test>\r\nTo: <sip:bob@example.test>\r\n")
    assert "DateTime: 2024-05-01T12:00:00+00:00\r\n" in body
    message = parse_cpim(body)
    assert message.body == "héllo\r\n\r\nsecond paragraph"  # empty lines in the content survive
    assert message.sender == "Alice <sip:alice@example.test>"
    assert strip_uri(message.sender or "") == "sip:alice@example.test"
    assert message.header("subject") == "hi"
    assert message.content_type == "text/plain;charset=utf-8"
    assert parse_cpim(body.encode()) == message


def test_cpim_parse_lf_and_folding_and_namespaces() -> None:
    text = (
        "From: <sip:a@x>\nTo: <sip:b@x>\nNS: imdn <urn:ietf:params:imdn>\n"
        "imdn.Message-ID: 34jk324j\nSubject: long\n  folded\n\n"
        "Content-Type: text/plain\nContent-ID: <1234@x>\n\nbody text"
    )
    message = parse_cpim(text)
    assert message.header("imdn.Message-ID") == "34jk324j"
    assert message.header("Subject") == "long folded"
    assert message.body == "body text"
    assert dict(message.content_headers)["Content-ID"] == "<1234@x>"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "just text, no headers",
        "From: <sip:a@x>\r\n\r\nno content headers block",
        "From: <sip:a@x>\r\n\r\nContent-ID: 1\r\n\r\nno content type",
        "bad header line\r\n\r\nContent-Type: text/plain\r\n\r\nx",
    ],
)
def test_cpim_rejects_what_is_not_cpim(text: str) -> None:
    with pytest.raises(CpimError):
        parse_cpim(text)


def test_cpim_refuses_header_injection() -> None:
    with pytest.raises(CpimError):
        encode_cpim(sender="sip:a@x", recipient="sip:b@x", text="", headers=[("X", "a\r\nTo: b")])


# -- the pjsua dialect ---------------------------------------------------------------------------

PJSUA_OFFER = (
    "v=0\r\no=- 3912345 3912345 IN IP4 127.0.0.1\r\ns=pjmedia\r\nb=AS:84\r\nt=0 0\r\n"
    "a=X-nat:0\r\nm=audio 4000 RTP/AVP 0 120\r\nc=IN IP4 127.0.0.1\r\nb=TIAS:64000\r\n"
    "a=rtcp:4001 IN IP4 127.0.0.1\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:120 telephone-event/8000\r\na=fmtp:120 0-16\r\n"
    "m=audio 4002 RTP/AVP 0 120\r\nc=IN IP4 127.0.0.1\r\na=sendrecv\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:120 telephone-event/8000\r\na=fmtp:120 0-16\r\n"
)
PYIM_OFFER = (
    "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\n"
    "m=message 39871 TCP/MSRP *\r\na=accept-types:message/cpim text/plain *\r\n"
    "a=path:msrp://127.0.0.1:39871/peer;tcp\r\na=setup:actpass\r\n"
)
PJSUA_ANSWER = (
    "v=0\r\no=- 4004487497 4004487497 IN IP4 127.0.0.1\r\ns=pjmedia\r\nb=AS:84\r\nt=0 0\r\n"
    "a=X-nat:0\r\nm=audio 4000 RTP/AVP 0 120\r\nc=IN IP4 127.0.0.1\r\nb=TIAS:64000\r\n"
    "a=rtcp:4001 IN IP4 127.0.0.1\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:120 telephone-event/8000\r\na=fmtp:120 0-16\r\n"
    "m=message 0 TCP/MSRP *\r\nc=IN IP4 127.0.0.1\r\n"
)


def test_dialect_offer_keeps_inactive_pcmu_and_puts_message_second() -> None:
    media = message_media([MsrpUri.parse("msrp://127.0.0.1:2855/abcd;tcp")], "127.0.0.1")
    offer = dialect_offer(PJSUA_OFFER, media)
    sdp = SessionDescription.parse(offer)
    assert [m.media for m in sdp.media] == ["audio", "message"]
    audio, message = sdp.media
    assert audio.formats == ["0"] and audio.port == 4000
    assert sdp.direction_of(audio) is Direction.INACTIVE
    assert "telephone-event" not in offer and "fmtp" not in offer
    assert message.connection is not None  # pjsua validates c= per media
    assert message.get_attribute("path") == "msrp://127.0.0.1:2855/abcd;tcp"
    assert message.get_attribute("setup") == "actpass"
    assert len(offer.encode()) < PJSUA_SDP_LIMIT
    assert dialect_offer(offer + "", media) == offer  # idempotent
    assert dialect_offer(dialect_offer(PJSUA_OFFER, media), media) == offer


def test_dialect_offer_refuses_what_would_make_pjsua_assert() -> None:
    media = message_media([MsrpUri.parse("msrp://127.0.0.1:2855/abcd;tcp")], "127.0.0.1")
    one_line = PJSUA_OFFER[: PJSUA_OFFER.index("m=audio 4002")]
    with pytest.raises(DialectError, match="2 are needed"):
        dialect_offer(one_line, media)
    with pytest.raises(DialectError):
        dialect_offer(PJSUA_OFFER.replace("RTP/AVP 0 120", "RTP/AVP 8 120"), media)
    with pytest.raises(DialectError):
        dialect_offer("not an sdp", media)
    too_big = PJSUA_OFFER.replace(
        "a=sendrecv\r\n", "a=sendrecv\r\n" + "a=x-pad:" + "p" * 900 + "\r\n", 1
    )
    with pytest.raises(DialectError, match="1024"):
        dialect_offer(too_big, media)


def test_dialect_answer_fills_the_message_line_and_pyim_accepts_it() -> None:
    offer = SessionDescription.parse(PYIM_OFFER)
    index = msrp_index(offer)
    assert index == 1
    media = message_media([MsrpUri.parse("msrp://127.0.0.1:2855/abcd;tcp")], "127.0.0.1")
    media.set_attribute("setup", "active")
    answer = dialect_answer(PJSUA_ANSWER, media, index)
    assert dialect_answer(answer, media, index) == answer  # idempotent
    sdp = SessionDescription.parse(answer)
    assert sdp.direction_of(sdp.media[0]) is Direction.INACTIVE
    negotiated = parse_msrp_answer(offer, sdp)
    assert negotiated.remote.path[-1] == MsrpUri.parse("msrp://127.0.0.1:2855/abcd;tcp")
    assert negotiated.active is False  # we said active: the offerer waits
    with pytest.raises(DialectError):
        dialect_answer(PJSUA_ANSWER, media, 5)


def test_sip_body() -> None:
    assert sip_body("SIP/2.0 200 OK\r\nA: b\r\n\r\nv=0\r\n") == "v=0\r\n"
    assert sip_body("SIP/2.0 200 OK\nA: b\n\nv=0\n") == "v=0\n"
    assert sip_body("SIP/2.0 200 OK\r\nA: b\r\n") == ""


def test_msrp_index_none_for_audio_only() -> None:
    audio_only = PYIM_OFFER[: PYIM_OFFER.index("m=message")]
    assert msrp_index(SessionDescription.parse(audio_only)) is None


# -- configuration -------------------------------------------------------------------------------


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    config = ClientConfig(account="sip:alice@example.test:5070")
    assert config.username == "alice"
    assert config.registrar == "sip:example.test:5070"
    assert config.msrp_host == "127.0.0.1"
    with pytest.raises(UaError, match="transport"):
        ClientConfig(account="sip:alice@x", transport="sctp")
    with pytest.raises(UaError, match="no user part"):
        ClientConfig(account="sip:example.test")
    with pytest.raises(UaError, match="unknown client setting"):
        ClientConfig.from_dict({"account": "sip:a@x", "pasword": "typo"})
    path = tmp_path / "client.toml"
    path.write_text('[client]\naccount = "sip:bob@example.test"\ntransport = "TCP"\n')
    loaded = ClientConfig.from_toml(path)
    assert (loaded.account, loaded.transport) == ("sip:bob@example.test", "tcp")
    with pytest.raises(UaError, match="cannot read"):
        ClientConfig.from_toml(tmp_path / "missing.toml")
