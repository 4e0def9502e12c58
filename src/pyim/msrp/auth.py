"""Client side of RFC 4976 §6: authenticating to an MSRP relay with AUTH, sans-IO.

:class:`AuthClient` builds the AUTH requests and reads their responses; the caller
moves the bytes (``MsrpEndpoint.authenticate`` does it over asyncio)::

    client = AuthClient(relay_uri, my_uri, DigestClient("alice", "secret"))
    frame = client.first_request()
    while True:
        ... send frame.encode(), read the response frame ...
        step = client.on_response(response)
        if isinstance(step, Frame): frame = step; continue
        grant = step          # a RelayGrant: Use-Path and Expires
        break

A 401 is answered once per nonce (a ``stale`` challenge again), a 423 by moving the
requested expiry into the relay's bounds once; any other refusal raises
:class:`RelayAuthError` with the relay's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..digest import DigestClient, DigestError
from .frame import Frame, new_tid
from .headers import HeaderError, parse_expires
from .uri import MsrpUri, MsrpUriError, parse_path

#: How many challenges one authentication answers before giving up (a relay that keeps
#: answering 401 to good credentials must not make the client loop).
MAX_ROUNDS = 4


class RelayAuthError(Exception):
    """The relay refused the AUTH (``code`` is its status, 0 for a protocol error)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"relay refused AUTH: {code} {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RelayGrant:
    """What a relay granted: the ``Use-Path`` to put before one's own URI in
    ``a=path``, valid for ``expires`` seconds."""

    relay: MsrpUri
    use_path: tuple[MsrpUri, ...]
    expires: int
    username: str = field(default="", compare=False)


class AuthClient:
    """The AUTH exchange with one relay for one client URI.

    ``expires`` is put in the requests when given (leave it out for relays that
    mishandle it, e.g. Kamailio 5.6.3).
    """

    def __init__(
        self,
        relay: MsrpUri,
        local_uri: MsrpUri,
        digest: DigestClient,
        *,
        expires: int | None = None,
    ) -> None:
        self.relay = relay
        self.local_uri = local_uri
        self.digest = digest
        self.expires = expires
        self._authorization: str | None = None
        self._rounds = 0
        self._bounded = False
        self.tid = ""

    def first_request(self) -> Frame:
        """The first AUTH: without credentials, unless a previous challenge is known."""
        self._authorization = self.digest.reauthorize(method="AUTH", uri=str(self.relay))
        return self._request()

    def _request(self) -> Frame:
        frame = Frame(new_tid(), "AUTH")
        frame.headers.add("To-Path", str(self.relay))
        frame.headers.add("From-Path", str(self.local_uri))
        if self._authorization is not None:
            frame.headers.add("Authorization", self._authorization)
        if self.expires is not None:
            frame.headers.add("Expires", str(self.expires))
        assert frame.tid is not None
        self.tid = frame.tid
        return frame

    def on_response(self, response: Frame) -> Frame | RelayGrant:
        """The next AUTH to send, or the grant; raises :class:`RelayAuthError`."""
        code = response.code or 0
        if response.tid != self.tid:
            raise RelayAuthError(0, f"response to transaction {response.tid}, not {self.tid}")
        if code == 200:
            return self._grant(response)
        self._rounds += 1
        if self._rounds >= MAX_ROUNDS:
            raise RelayAuthError(code, "too many rounds")
        if code == 401:
            try:
                challenge = self.digest.choose(response.headers.get_all("WWW-Authenticate"))
                self._authorization = self.digest.authorize(
                    challenge,
                    method="AUTH",
                    uri=str(self.relay),
                    had_credentials=self._authorization is not None,
                )
            except DigestError as exc:
                raise RelayAuthError(401, str(exc)) from exc
            return self._request()
        if code == 423 and not self._bounded and self.expires is not None:
            self._bounded = True
            try:
                low = response.headers.get("Min-Expires")
                high = response.headers.get("Max-Expires")
                if low is not None:
                    self.expires = max(self.expires, parse_expires(low))
                if high is not None:
                    self.expires = min(self.expires, parse_expires(high))
            except HeaderError as exc:
                raise RelayAuthError(423, str(exc)) from exc
            self._authorization = self.digest.reauthorize(method="AUTH", uri=str(self.relay))
            return self._request()
        raise RelayAuthError(code, response.comment or "refused")

    def _grant(self, response: Frame) -> RelayGrant:
        try:
            use_path = parse_path(response.headers.get("Use-Path") or "")
            expires = parse_expires(response.headers.get("Expires") or "0")
        except (MsrpUriError, HeaderError) as exc:
            raise RelayAuthError(0, f"bad 200 to AUTH: {exc}") from exc
        return RelayGrant(self.relay, tuple(use_path), expires, self.digest.username)
