"""The "pjsua dialect" of an MSRP chat SDP, pure functions (no pjsua2 here).

pjsua refuses media-less offers and cannot send one, so a chat carries an extra
``m=audio ... a=inactive`` line (PCMU only) beside the ``m=message`` line. pjsua
builds its own SDP; ``onCallSdpCreated`` hands it over and these functions rewrite
it, idempotently, every time it is created (offer or answer):

- offer (we call): pjsua was told to provision two audio lines; the first stays
  (inactive, PCMU), our ``m=message`` takes the place of the second — pjsua asserts
  when its offer has more m-lines than it provisioned, so never more than it made;
- answer (we are called): pjsua's answer keeps the offer's m-line count; the
  ``m=message`` position gets our line, the first live audio line goes inactive.

The result must stay under 1024 bytes (pjsua2 hands longer SDPs over as ""), and
every ``m=message`` line gets its own ``c=`` (pjsua puts ``c=`` per media; without it
pjmedia's SDP validation asserts).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..msrp.uri import MsrpUri
from ..sip.sdp import (
    Direction,
    MediaDescription,
    SessionDescription,
    build_msrp_offer,
)

PJSUA_SDP_LIMIT = 1024
PCMU = "0"
PT_ATTRIBUTES = ("rtpmap", "fmtp", "rtcp-fb")
ACCEPT_TYPES = ("text/plain", "message/cpim")


class DialectError(ValueError):
    """pjsua's SDP cannot be rewritten (the caller leaves it alone and reports)."""


def sip_body(message: str) -> str:
    """The body of a whole SIP message as pjsua2 gives it (``wholeMsg``)."""
    _, sep, body = message.partition("\r\n\r\n")
    if not sep:
        _, sep, body = message.partition("\n\n")
    return body if sep else ""


def message_media(
    path: Sequence[MsrpUri],
    address: str,
    accept_types: Sequence[str] = ACCEPT_TYPES,
    *,
    tls: bool = False,
) -> MediaDescription:
    """Our ``m=message`` line for an offer (a=path, accept-types, setup:actpass, c=)."""
    offer = build_msrp_offer(local_path=path, address=address, accept_types=accept_types, tls=tls)
    (media,) = offer.media
    media.connection = offer.connection
    return media


def with_connection(media: MediaDescription, sdp: SessionDescription) -> MediaDescription:
    """``media`` with a ``c=`` line of its own (from ``sdp``'s session level if needed)."""
    if media.connection is None:
        connection = sdp.connection
        if connection is None:
            raise DialectError("no c= line for the m=message line")
        media.connection = connection
    return media


def _inactive_pcmu(audio: MediaDescription) -> None:
    if PCMU not in audio.formats:
        raise DialectError(f"PCMU is not in pjsua's m=audio formats {audio.formats}")
    audio.formats = [PCMU]
    audio.attributes = [
        (name, value)
        for name, value in audio.attributes
        if name.lower() not in PT_ATTRIBUTES or (value or "").split(" ")[0] == PCMU
    ]
    if audio.get_attribute("rtpmap") is None:
        audio.add_attribute("rtpmap", "0 PCMU/8000")
    audio.direction = Direction.INACTIVE


def _parse(sdp_text: str) -> SessionDescription:
    try:
        return SessionDescription.parse(sdp_text)
    except ValueError as exc:
        raise DialectError(f"pjsua's SDP does not parse: {exc}") from None


def _encode(sdp: SessionDescription) -> str:
    text = sdp.encode().decode()
    if len(text.encode()) >= PJSUA_SDP_LIMIT:
        raise DialectError(f"the dialect SDP is {len(text)} bytes, over pjsua2's 1024")
    return text


def dialect_offer(sdp_text: str, media: MediaDescription) -> str:
    """pjsua's offer (two audio lines) rewritten to ``m=audio`` inactive + ``media``."""
    sdp = _parse(sdp_text)
    if len(sdp.media) < 2:
        raise DialectError(f"pjsua provisioned {len(sdp.media)} m-line(s), 2 are needed")
    audio = sdp.media[0]
    if audio.media.lower() != "audio":
        raise DialectError(f"pjsua's first m-line is m={audio.media}")
    _inactive_pcmu(audio)
    sdp.direction = None
    sdp.media = [audio, media, *sdp.media[2:]]
    return _encode(sdp)


def dialect_answer(sdp_text: str, media: MediaDescription, index: int) -> str:
    """pjsua's answer with ``media`` at the offer's ``m=message`` position ``index``."""
    sdp = _parse(sdp_text)
    if not 0 <= index < len(sdp.media):
        raise DialectError(f"pjsua's answer has {len(sdp.media)} m-lines, no #{index}")
    audio_done = False
    for position, line in enumerate(sdp.media):
        if position == index:
            sdp.media[position] = media
        elif not audio_done and line.media.lower() == "audio" and line.port != 0:
            _inactive_pcmu(line)
            audio_done = True
    sdp.direction = None
    return _encode(sdp)


def msrp_index(offer: SessionDescription) -> int | None:
    """Position of the first usable ``m=message`` line of an offer."""
    for index, line in enumerate(offer.media):
        if line.media.lower() == "message" and line.port != 0 and "MSRP" in line.proto.upper():
            return index
    return None
