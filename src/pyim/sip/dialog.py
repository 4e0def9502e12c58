"""SIP dialogs (RFC 3261 §12), sans-IO.

A :class:`Dialog` holds what §12 says a dialog holds: its id (Call-ID and both
tags), the local and remote URIs, the remote target, the route set, both CSeq
counters and whether it is secure.  It builds in-dialog requests (§12.2.1.1,
including the 2xx ACK of §13.2.2.4) and checks and learns from in-dialog requests
and responses (§12.2.2: CSeq order, remote target refresh by re-INVITE and UPDATE).
Via headers are the stack's business: it knows the transport that sends.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

from .headers import CSeq
from .message import SipHeaders, SipRequest, SipResponse
from .uri import NameAddr, SipUri

MAX_CSEQ = 2**31 - 1


def new_tag() -> str:
    """A From/To tag with 64 bits of randomness (RFC 3261 §19.3 asks for 32 at least)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogError(Exception):
    """An in-dialog request that the dialog refuses; ``status`` is the answer (§12.2.2)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Dialog:
    """One dialog, seen from this side."""

    id: DialogId
    local: NameAddr
    remote: NameAddr
    remote_target: SipUri
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.CONFIRMED
    local_contact: NameAddr | None = None

    # -- creation --------------------------------------------------------------------

    @classmethod
    def as_uas(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a UAS creates when it answers ``request`` with ``response`` (§12.1.1)."""
        contact = request.contacts
        if not contact:
            raise DialogError(400, "dialog-creating request without Contact")
        to = response.to
        if to.tag is None:
            raise DialogError(500, "the response creating a dialog needs a To tag")
        state = DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        return cls(
            id=DialogId(request.call_id, to.tag, request.from_.tag or ""),
            local=to,
            remote=request.from_,
            remote_target=contact[0].uri,
            route_set=list(request.record_routes),
            local_seq=0,
            remote_seq=request.cseq.seq,
            secure=request.uri.scheme == "sips",
            state=state,
            local_contact=response.contacts[0] if response.contacts else None,
        )

    @classmethod
    def as_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a UAC creates from a 1xx-with-tag or 2xx to ``request`` (§12.1.2)."""
        to = response.to
        if to.tag is None:
            raise DialogError(400, "response without To tag cannot create a dialog")
        contacts = response.contacts
        target = contacts[0].uri if contacts else request.uri
        state = DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        return cls(
            id=DialogId(request.call_id, request.from_.tag or "", to.tag),
            local=request.from_,
            remote=to,
            remote_target=target,
            route_set=list(reversed(response.record_routes)),
            local_seq=request.cseq.seq,
            remote_seq=None,
            secure=request.uri.scheme == "sips",
            state=state,
            local_contact=request.contacts[0] if request.contacts else None,
        )

    # -- requests we send --------------------------------------------------------------

    def request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        cseq: int | None = None,
    ) -> SipRequest:
        """A request inside the dialog (§12.2.1.1), without Via (the stack adds it).

        CSeq grows by one, except for ACK and CANCEL whose number the caller gives
        (the INVITE's).
        """
        if cseq is None:
            if self.local_seq >= MAX_CSEQ:
                raise DialogError(500, "CSeq space exhausted")
            self.local_seq += 1
            cseq = self.local_seq
        uri, routes = self._target_and_routes()
        h = SipHeaders()
        for route in routes:
            h.add("Route", str(route))
        h.add("Max-Forwards", "70")
        h.add("From", str(self.local))
        h.add("To", str(self.remote))
        h.add("Call-ID", self.id.call_id)
        h.add("CSeq", str(CSeq(cseq, method)))
        if self.local_contact is not None and method in ("INVITE", "UPDATE", "SUBSCRIBE"):
            h.add("Contact", str(self.local_contact))
        for name, value in headers or ():
            h.add(name, value)
        if content_type is not None:
            h.add("Content-Type", content_type)
        return SipRequest(method, uri, h, body)

    def ack(self, invite: SipRequest) -> SipRequest:
        """The ACK of a 2xx to ``invite`` (§13.2.2.4): the INVITE's CSeq number."""
        return self.request("ACK", cseq=invite.cseq.seq)

    def _target_and_routes(self) -> tuple[SipUri, list[NameAddr]]:
        """Request-URI and Route headers per §12.2.1.1 (loose and strict routing)."""
        if not self.route_set or self.route_set[0].uri.lr:
            return self.remote_target, list(self.route_set)
        # strict router: it goes into the Request-URI, the remote target last in Route
        first, rest = self.route_set[0], self.route_set[1:]
        return first.uri, [*rest, NameAddr(uri=self.remote_target)]

    # -- what we receive ---------------------------------------------------------------

    def receive_request(self, request: SipRequest) -> None:
        """Check an in-dialog request and learn from it (§12.2.2).

        Raises :class:`DialogError` (500 for a CSeq out of order) when it must be refused.
        """
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and seq <= self.remote_seq:
                raise DialogError(500, "CSeq out of order")
            self.remote_seq = seq
        if request.method in ("INVITE", "UPDATE") and request.contacts:
            self.remote_target = request.contacts[0].uri
        if request.method == "BYE":
            self.state = DialogState.TERMINATED

    def receive_response(self, request: SipRequest, response: SipResponse) -> None:
        """A response to an in-dialog request: 2xx to re-INVITE/UPDATE refreshes the target."""
        if self.state is DialogState.EARLY and 200 <= response.status < 300:
            self.state = DialogState.CONFIRMED
            self.route_set = list(reversed(response.record_routes))
        if (
            200 <= response.status < 300
            and request.method in ("INVITE", "UPDATE")
            and response.contacts
        ):
            self.remote_target = response.contacts[0].uri
        if response.status in (408, 481) and request.method != "BYE":
            self.state = DialogState.TERMINATED  # §12.2.1.2

    def matches(self, message: SipRequest | SipResponse, *, incoming: bool) -> bool:
        """Whether ``message`` belongs to this dialog (tags and Call-ID)."""
        if message.call_id != self.id.call_id:
            return False
        if incoming and isinstance(message, SipRequest):
            return (message.from_.tag, message.to.tag) == (self.id.remote_tag, self.id.local_tag)
        return (message.from_.tag, message.to.tag) == (self.id.local_tag, self.id.remote_tag)
