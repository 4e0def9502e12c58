"""Digest authentication of the requests a SIP server answers itself (UAS: 401 and
``WWW-Authenticate``; RFC 3261 §22.2, RFC 7616/8760): the registrar's REGISTERs, the
application server's INVITEs and MESSAGEs."""

from __future__ import annotations

from ..digest import AuthResult, DigestServer, Ok, Stale
from .stack import IncomingRequest


def authenticate(incoming: IncomingRequest, digest: DigestServer) -> AuthResult | None:
    """Check the request's ``Authorization`` against ``digest``. Unless the verdict is
    :class:`~pyim.digest.Ok`, the request is answered 401 with fresh challenges
    (``stale=true`` for a stale nonce). Returns the verdict (None: no credentials)."""
    request = incoming.request
    value = request.headers.get("Authorization")
    verdict = None
    if value is not None:
        verdict = digest.verify(value, method=request.method, uri=str(request.uri))
    if not isinstance(verdict, Ok):
        challenges = digest.challenge(stale=isinstance(verdict, Stale))
        incoming.respond(401, headers=[("WWW-Authenticate", c) for c in challenges])
    return verdict
