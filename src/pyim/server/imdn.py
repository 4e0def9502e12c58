"""Instant Message Disposition Notifications (RFC 5438), the parts the server uses:
whether a CPIM message asks for a delivery notification, and the notification."""

from __future__ import annotations

import datetime as _dt
from xml.sax.saxutils import escape

from ..msrp.frame import new_tid
from ..ua.cpim import CPIM_TYPE, CpimError, parse_cpim

IMDN_TYPE = "message/imdn+xml"
IMDN_NS = "urn:ietf:params:xml:ns:imdn"


def wants_delivery_notice(content_type: str, body: bytes) -> bool:
    """A CPIM message with ``imdn.Disposition-Notification: positive-delivery`` (§7.1.1)."""
    if content_type.split(";")[0].strip().lower() != CPIM_TYPE:
        return False
    try:
        message = parse_cpim(body)
    except CpimError:
        return False
    for name, value in message.headers:
        if name.lower().endswith("disposition-notification"):
            return "positive-delivery" in value.lower()
    return False


def imdn_document(message_id: str, recipient: str, status: str, when: float) -> str:
    """The ``message/imdn+xml`` body of a delivery notification (§7.2.1.1)."""
    stamp = _dt.datetime.fromtimestamp(when, _dt.UTC).isoformat(timespec="seconds")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<imdn xmlns="{IMDN_NS}">\n'
        f"  <message-id>{escape(message_id)}</message-id>\n"
        f"  <datetime>{stamp}</datetime>\n"
        f"  <recipient-uri>{escape(recipient)}</recipient-uri>\n"
        f"  <original-recipient-uri>{escape(recipient)}</original-recipient-uri>\n"
        f"  <delivery-notification><status><{status}/></status></delivery-notification>\n"
        "</imdn>\n"
    )


def imdn_message(
    *, server: str, to: str, recipient: str, message_id: str, status: str, when: float
) -> str:
    """A CPIM message carrying the notification, as page-mode MESSAGE body (§7.2)."""
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return (
        f"From: <{server}>\r\nTo: <{to}>\r\nDateTime: {stamp}\r\n"
        "NS: imdn <urn:ietf:params:imdn>\r\n"
        f"imdn.Message-ID: {new_tid(16)}\r\n\r\n"
        f"Content-Type: {IMDN_TYPE}\r\nContent-Disposition: notification\r\n\r\n"
        + imdn_document(message_id, recipient, status, when)
    )
