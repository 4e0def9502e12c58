"""SDP attributes for m=message (RFC 4975 §8, RFC 4145, RFC 6135, RFC 5547)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyim.msrp.headers import ContentType
from pyim.msrp.sdp import (
    Connection,
    FileDate,
    FileHash,
    FileRange,
    FileSelector,
    MsrpMediaAttributes,
    SdpError,
    Setup,
    active_side,
    default_setup,
    negotiate_setup,
)
from pyim.msrp.uri import MsrpUri

SHA1_HEX = "72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E"

# RFC 4975 §8.7 style offer, media part.
CHAT_OFFER = [
    "m=message 7394 TCP/MSRP *",
    "c=IN IP4 alicepc.example.com",
    "a=accept-types:message/cpim text/plain text/html",
    "a=accept-wrapped-types:text/plain image/*",
    "a=path:msrp://alicepc.example.com:7394/2s93i93idj;tcp",
    "a=max-size:131072",
    "a=sendrecv",
]

# RFC 5547 §9 style file-transfer offer, media part.
FILE_OFFER = [
    "a=accept-types:message/cpim",
    "a=accept-wrapped-types:*",
    "a=path:msrp://alicepc.example.com:7654/jshA7weztas;tcp",
    "a=sendonly",
    f'a=file-selector:name:"My cool picture.jpg" type:image/jpeg size:32349 hash:sha-1:{SHA1_HEX}',
    "a=file-transfer-id:vBnG916bdberum2fFEABR2FFsX8vYt",
    "a=file-disposition:render",
    'a=file-date:creation:"Mon, 10 Jul 2006 10:00:00 +0200" '
    'modification:"Wed, 12 Jul 2006 09:30:00 -0500"',
    "a=file-icon:cid:id2@alicepc.example.com",
    "a=file-range:1-32349",
]


def test_chat_offer() -> None:
    attrs = MsrpMediaAttributes.from_lines(CHAT_OFFER)
    assert attrs.accept_types == ("message/cpim", "text/plain", "text/html")
    assert attrs.accept_wrapped_types == ("text/plain", "image/*")
    assert attrs.path == (MsrpUri.parse("msrp://alicepc.example.com:7394/2s93i93idj;tcp"),)
    assert attrs.max_size == 131072
    assert attrs.setup is None
    assert attrs.file_selector is None
    assert attrs.to_lines() == [
        "a=accept-types:message/cpim text/plain text/html",
        "a=accept-wrapped-types:text/plain image/*",
        "a=max-size:131072",
        "a=path:msrp://alicepc.example.com:7394/2s93i93idj;tcp",
    ]


def test_file_offer() -> None:
    attrs = MsrpMediaAttributes.from_lines(FILE_OFFER)
    selector = attrs.file_selector
    assert selector is not None
    assert selector.name == "My cool picture.jpg"
    assert selector.type == ContentType("image", "jpeg")
    assert selector.size == 32349
    assert selector.hashes == (FileHash("sha-1", bytes.fromhex(SHA1_HEX.replace(":", ""))),)
    assert attrs.file_transfer_id == "vBnG916bdberum2fFEABR2FFsX8vYt"
    assert attrs.file_disposition == "render"
    assert attrs.file_date == FileDate(
        creation=datetime(2006, 7, 10, 10, 0, tzinfo=timezone(timedelta(hours=2))),
        modification=datetime(2006, 7, 12, 9, 30, tzinfo=timezone(timedelta(hours=-5))),
    )
    assert attrs.file_icon == "cid:id2@alicepc.example.com"
    assert attrs.file_range == FileRange(1, 32349)
    assert sorted(attrs.to_lines()) == sorted(line for line in FILE_OFFER if line != "a=sendonly")
    assert MsrpMediaAttributes.from_lines(attrs.to_lines()) == attrs


def test_lines_without_prefix_and_with_crlf() -> None:
    attrs = MsrpMediaAttributes.from_lines(
        ["path:msrp://a.example.com:1/s;tcp\r\n", "setup:ACTPASS", "a=connection:new\r\n"]
    )
    assert attrs.path[0].host == "a.example.com"
    assert attrs.setup is Setup.ACTPASS
    assert attrs.connection is Connection.NEW


def test_unknown_attributes_ignored() -> None:
    attrs = MsrpMediaAttributes.from_lines(
        ["a=sendrecv", "a=fingerprint:SHA-1 AB:CD", "a=x-unknown:1", "", "a=", "v=0", "o=- 1 1"]
    )
    assert attrs == MsrpMediaAttributes()
    assert attrs.to_lines() == []


def test_connection_model_attributes() -> None:
    attrs = MsrpMediaAttributes(
        path=[MsrpUri.parse("msrp://192.0.2.1:9/abc;tcp")],  # type: ignore[arg-type]
        accept_types=("message/cpim",),
        setup=Setup.ACTIVE,
        connection=Connection.EXISTING,
        msrp_cema=True,
    )
    assert isinstance(attrs.path, tuple)
    lines = attrs.to_lines()
    assert lines == [
        "a=accept-types:message/cpim",
        "a=path:msrp://192.0.2.1:9/abc;tcp",
        "a=setup:active",
        "a=connection:existing",
        "a=msrp-cema",
    ]
    assert MsrpMediaAttributes.from_lines(lines) == attrs


def test_relay_path_with_several_uris() -> None:
    line = "a=path:msrps://relay.example.com:2855/r1;tcp msrps://bob.example.com:8888/9di4ea;tcp"
    attrs = MsrpMediaAttributes.from_lines([line])
    assert [uri.session_id for uri in attrs.path] == ["r1", "9di4ea"]
    assert attrs.to_lines() == [line]


# -- setup negotiation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        (Setup.ACTIVE, Setup.PASSIVE),
        (Setup.PASSIVE, Setup.ACTIVE),
        (Setup.ACTPASS, Setup.ACTIVE),
        (Setup.HOLDCONN, Setup.HOLDCONN),
        (None, Setup.PASSIVE),  # RFC 4975: the offerer connects
    ],
)
def test_negotiate_setup(offer: Setup | None, answer: Setup) -> None:
    assert negotiate_setup(offer) is answer


def test_default_setup() -> None:
    assert default_setup(offer=True) is Setup.ACTIVE
    assert default_setup(offer=False) is Setup.PASSIVE


@pytest.mark.parametrize(
    ("local", "remote", "active"),
    [
        (Setup.ACTIVE, Setup.PASSIVE, True),
        (Setup.ACTIVE, Setup.ACTPASS, True),
        (Setup.PASSIVE, Setup.ACTIVE, False),
        (Setup.PASSIVE, Setup.ACTPASS, False),
        (Setup.ACTPASS, Setup.ACTIVE, False),
        (Setup.ACTPASS, Setup.PASSIVE, True),
        (Setup.HOLDCONN, Setup.ACTIVE, False),
        (Setup.PASSIVE, Setup.HOLDCONN, False),
    ],
)
def test_active_side(local: Setup, remote: Setup, active: bool) -> None:
    assert active_side(local, remote) is active


@pytest.mark.parametrize("role", [Setup.ACTIVE, Setup.PASSIVE, Setup.ACTPASS])
def test_active_side_rejects_same_roles(role: Setup) -> None:
    with pytest.raises(SdpError):
        active_side(role, role)


def test_legacy_endpoints_offerer_connects() -> None:
    # Neither side sends a=setup: RFC 4975 §5.4, the offerer opens the connection.
    offerer, answerer = default_setup(offer=True), default_setup(offer=False)
    assert active_side(offerer, answerer) is True
    assert active_side(answerer, offerer) is False


@pytest.mark.parametrize("offer", [*Setup, None])
def test_negotiated_roles_are_consistent(offer: Setup | None) -> None:
    answer = negotiate_setup(offer)
    offered = default_setup(offer=True) if offer is None else offer
    if answer is Setup.HOLDCONN:
        return
    assert active_side(offered, answer) is not active_side(answer, offered)


# -- RFC 5547 pieces -------------------------------------------------------------


def test_file_selector_percent_encoding() -> None:
    selector = FileSelector(name='100% "real" naïve\tname.txt')
    text = str(selector)
    assert text == 'name:"100%25 %22real%22 naïve%09name.txt"'
    assert FileSelector.parse(text) == selector


def test_file_selector_decodes_utf8_percent_encoding() -> None:
    assert FileSelector.parse('name:"caf%C3%A9.txt"').name == "café.txt"


def test_file_selector_type_params_are_quoted() -> None:
    selector = FileSelector.parse('type:text/plain;charset="UTF-8" size:10')
    assert selector.type == ContentType("text", "plain", (("charset", "UTF-8"),))
    assert str(selector) == 'type:text/plain;charset="UTF-8" size:10'


def test_file_selector_partial_and_empty() -> None:
    assert FileSelector.parse("") == FileSelector()
    assert FileSelector.parse("size:0").size == 0
    assert FileSelector.parse("x-ext:1 size:5") == FileSelector(size=5)
    attrs = MsrpMediaAttributes.from_lines(["a=file-selector"])
    assert attrs.file_selector == FileSelector()


def test_file_selector_several_hashes() -> None:
    selector = FileSelector.parse("hash:sha-1:AA:BB hash:SHA-256:cc:dd:ee")
    assert selector.hashes == (
        FileHash("sha-1", b"\xaa\xbb"),
        FileHash("sha-256", b"\xcc\xdd\xee"),
    )
    assert str(selector) == "hash:sha-1:AA:BB hash:sha-256:CC:DD:EE"


def test_file_date_formats_numeric_zones() -> None:
    date = FileDate(read=datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC))
    assert str(date) == 'read:"Thu, 29 Feb 2024 23:59:59 +0000"'
    assert FileDate.parse(str(date)) == date


def test_file_range() -> None:
    assert FileRange.parse("1-*") == FileRange(1, None)
    assert str(FileRange(10, None)) == "10-*"
    assert str(FileRange(10, 2000)) == "10-2000"


@pytest.mark.parametrize(
    "line",
    [
        "a=path:",
        "a=path:http://example.com/;tcp",
        "a=path:msrp://a.example.com/s",
        "a=accept-types:",
        "a=accept-types:text",
        "a=accept-types:text/plain,text/html",
        "a=accept-types:téxt/plain",
        "a=max-size:",
        "a=max-size:-1",
        "a=max-size:1k",
        "a=max-size:" + "9" * 40,
        "a=setup:both",
        "a=setup:",
        "a=connection:old",
        "a=file-selector:name:unquoted",
        'a=file-selector:name:"unterminated',
        'a=file-selector:name:""',
        'a=file-selector:name:"bad%zzescape"',
        'a=file-selector:name:"bad%"',
        'a=file-selector:name:"not-utf8-%FF"',
        'a=file-selector:name:"a" name:"b"',
        "a=file-selector:size:-5",
        "a=file-selector:size:5 size:6",
        "a=file-selector:size:99999999999999999999999",
        "a=file-selector:type:image",
        "a=file-selector:type:image/jpeg;x=",
        "a=file-selector:hash:sha-1",
        "a=file-selector:hash:sha-1:ABC",
        "a=file-selector:hash:sha-1:AB:",
        "a=file-selector:hash::AB",
        "a=file-selector:hash:sha-1:ZZ",
        "a=file-selector:nocolon",
        "a=file-transfer-id:",
        "a=file-transfer-id:two words",
        "a=file-disposition:a/b",
        "a=file-date:creation:Mon",
        'a=file-date:creation:"not a date"',
        'a=file-date:creation:"Mon, 10 Jul 2006 10:00:00 +0200" creation:"Mon, 10 Jul 2006"',
        'a=file-date:read:"Mon, 99 Jul 2006 10:00:00 +0200"',
        'a=file-date:read:"Mon, 10 Jul 99999 10:00:00 +0200"',
        "a=file-icon:http://example.com/icon.png",
        "a=file-icon:cid:",
        "a=file-range:0-10",
        "a=file-range:10-5",
        "a=file-range:1-",
        "a=file-range:-5",
        "a=file-range:*-*",
        "a=file-range:1-2-3",
    ],
)
def test_malformed_attributes(line: str) -> None:
    with pytest.raises(SdpError):
        MsrpMediaAttributes.from_lines([line])


def test_duplicate_attributes_rejected() -> None:
    with pytest.raises(SdpError):
        MsrpMediaAttributes.from_lines(["a=setup:active", "a=setup:passive"])
    with pytest.raises(SdpError):
        MsrpMediaAttributes.from_lines(["a=path:msrp://a;tcp", "a=path:msrp://b;tcp"])


def test_construction_validates() -> None:
    with pytest.raises(SdpError):
        MsrpMediaAttributes(accept_types=("text/plain\r\na=evil",))
    with pytest.raises(SdpError):
        MsrpMediaAttributes(file_transfer_id="a b")
    with pytest.raises(SdpError):
        MsrpMediaAttributes(file_icon="http://x")
    with pytest.raises(SdpError):
        MsrpMediaAttributes(max_size=-1)
    with pytest.raises(SdpError):
        FileRange(0)
    with pytest.raises(SdpError):
        FileHash("sha-1", b"")


def test_error_is_value_error() -> None:
    assert issubclass(SdpError, ValueError)


# -- fuzzing ---------------------------------------------------------------------

_ATTRIBUTE_NAMES = [
    "path",
    "accept-types",
    "accept-wrapped-types",
    "max-size",
    "setup",
    "connection",
    "file-selector",
    "file-transfer-id",
    "file-disposition",
    "file-date",
    "file-icon",
    "file-range",
]


@given(name=st.sampled_from(_ATTRIBUTE_NAMES), value=st.text(max_size=120))
def test_arbitrary_values_raise_only_sdp_error(name: str, value: str) -> None:
    try:
        attrs = MsrpMediaAttributes.from_lines([f"a={name}:{value}"])
    except SdpError:
        return
    assert MsrpMediaAttributes.from_lines(attrs.to_lines()) == attrs


@given(
    name=st.sampled_from(["file-selector", "file-date"]),
    value=st.text(alphabet='namesizetypehash:"% /;=-,0123456789AF', max_size=80),
)
def test_selector_shaped_values_raise_only_sdp_error(name: str, value: str) -> None:
    try:
        attrs = MsrpMediaAttributes.from_lines([f"a={name}:{value}"])
    except SdpError:
        return
    assert MsrpMediaAttributes.from_lines(attrs.to_lines()) == attrs


@given(
    name=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40),
    size=st.none() | st.integers(0, 2**63),
    digest=st.binary(min_size=1, max_size=32),
)
def test_file_selector_round_trip(name: str, size: int | None, digest: bytes) -> None:
    selector = FileSelector(name=name, size=size, hashes=(FileHash("sha-1", digest),))
    assert FileSelector.parse(str(selector)) == selector
