"""A SIP registrar with an in-memory location service (RFC 3261 §10.3), sans-IO.

The embedded default for running without Kamailio: REGISTER adds, refreshes and
removes bindings (several contacts per address-of-record), expiry is enforced
with ``Min-Expires`` (423) and a ceiling, and ``lookup`` returns the live
contacts of an AOR, best ``q`` first.  Authentication happens before (the stack
challenges); the registrar only checks that the authenticated user owns the AOR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .headers import HeaderError
from .message import SipRequest, SipResponse
from .uri import NameAddr, SipUri


def aor_key(uri: SipUri) -> str:
    """The canonical address-of-record of a URI: ``sip:user@host`` (§10.3 step 5)."""
    scheme = "sip" if uri.scheme in ("sip", "sips") else uri.scheme
    return f"{scheme}:{uri.user or ''}@{uri.host}".lower()


@dataclass(slots=True)
class Binding:
    """One contact of an AOR, with where it came from (for NAT: the flow to reuse)."""

    contact: NameAddr
    expires_at: float
    call_id: str
    cseq: int
    q: float = 1.0
    instance: str | None = None
    source: object | None = None  # the transport peer the REGISTER came from

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


@dataclass(slots=True)
class RegistrarConfig:
    domains: tuple[str, ...] = ("127.0.0.1", "localhost")
    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 86400
    max_contacts_per_aor: int = 16


@dataclass(slots=True)
class Registrar:
    """REGISTER processing over an in-memory location service."""

    config: RegistrarConfig = field(default_factory=RegistrarConfig)
    bindings: dict[str, list[Binding]] = field(default_factory=dict)

    def register(
        self,
        request: SipRequest,
        now: float,
        *,
        user: str | None = None,
        source: object | None = None,
    ) -> SipResponse:
        """Process a REGISTER; ``user`` is the authenticated username, if any."""
        try:
            return self._register(request, now, user, source)
        except HeaderError as exc:
            return request.response(400, f"Bad Request ({exc})")

    def _register(
        self, request: SipRequest, now: float, user: str | None, source: object | None
    ) -> SipResponse:
        if request.uri.host.lower() not in self.config.domains:
            return request.response(404, "Not Found (domain not served here)")
        aor_uri = request.to.uri
        if aor_uri.host.lower() not in self.config.domains:
            return request.response(404, "Not Found (domain not served here)")
        if user is not None and (aor_uri.user or "").lower() != user.lower():
            return request.response(403, "Forbidden (not your address-of-record)")
        aor = aor_key(aor_uri)
        current = [b for b in self.bindings.get(aor, []) if b.expires_at > now]
        header_expires = request.headers.get("Expires")
        default = self.config.default_expires
        if header_expires is not None:
            if not header_expires.strip().isdigit():
                return request.response(400, "Bad Request (Expires)")
            default = int(header_expires)
        contact_values = request.headers.values("Contact")
        if [v.strip() for v in contact_values] == ["*"]:
            if default != 0:
                return request.response(400, "Bad Request (* needs Expires: 0)")
            self._store(aor, [])
            return self._ok(request, [], now)
        if "*" in (v.strip() for v in contact_values):
            return request.response(400, "Bad Request (* with other contacts)")
        call_id, seq = request.call_id, request.cseq.seq
        for contact in request.contacts:
            expires = default
            param = contact.param("expires")
            if param is not None:
                if not param.isdigit():
                    return request.response(400, "Bad Request (contact expires)")
                expires = int(param)
            if 0 < expires < self.config.min_expires:
                response = request.response(423)
                response.headers.add("Min-Expires", str(self.config.min_expires))
                return response
            expires = min(expires, self.config.max_expires)
            key = str(contact.uri)
            existing = next((b for b in current if str(b.contact.uri) == key), None)
            if existing is not None and existing.call_id == call_id and seq <= existing.cseq:
                return request.response(500, "Server Internal Error (CSeq out of order)")
            current = [b for b in current if str(b.contact.uri) != key]
            if expires == 0:
                continue
            q = _q_value(contact.param("q"))
            current.append(
                Binding(
                    NameAddr(uri=contact.uri),
                    now + expires,
                    call_id,
                    seq,
                    q,
                    contact.param("+sip.instance"),
                    source,
                )
            )
        if len(current) > self.config.max_contacts_per_aor:
            return request.response(403, "Forbidden (too many contacts)")
        self._store(aor, current)
        return self._ok(request, current, now)

    def _store(self, aor: str, bindings: list[Binding]) -> None:
        if bindings:
            self.bindings[aor] = bindings
        else:
            self.bindings.pop(aor, None)

    def _ok(self, request: SipRequest, bindings: list[Binding], now: float) -> SipResponse:
        response = request.response(200)
        for binding in bindings:
            contact = binding.contact.with_param("expires", str(binding.expires_in(now)))
            response.headers.add("Contact", str(contact))
        return response

    def lookup(self, uri: SipUri, now: float) -> list[Binding]:
        """Live bindings of the AOR of ``uri``, highest q first (expired ones are dropped)."""
        aor = aor_key(uri)
        live = [b for b in self.bindings.get(aor, []) if b.expires_at > now]
        self._store(aor, live)
        return sorted(live, key=lambda b: -b.q)

    def expire(self, now: float) -> int:
        """Drop every expired binding; returns how many went."""
        dropped = 0
        for aor in list(self.bindings):
            live = [b for b in self.bindings[aor] if b.expires_at > now]
            dropped += len(self.bindings[aor]) - len(live)
            self._store(aor, live)
        return dropped


def _q_value(text: str | None) -> float:
    if text is None:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        return 1.0
    return min(1.0, max(0.0, value))
