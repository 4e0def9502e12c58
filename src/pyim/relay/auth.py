"""AUTH at the relay (RFC 4976 §6), sans-IO: challenges, verification, granted paths.

:class:`AuthService` answers one AUTH request at a time for a connection (an
:class:`AuthState` it is handed) and keeps the :class:`Grant` table: which relay URI
(the ``Use-Path`` handed out) belongs to which connection, until when.  The server
only moves the frames.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..digest import Algorithm, CredentialLookup, DigestServer, Failed, Ok, Stale
from ..msrp.frame import Frame, Headers, new_tid
from ..msrp.headers import HeaderError, parse_expires
from ..msrp.session import REASONS
from ..msrp.uri import MsrpUri
from .config import AuthSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Grant:
    """A path granted by AUTH: ``uri`` (its ``Use-Path``) owned by ``owner`` (a
    connection) for ``username`` until ``expires_at`` (``clock()`` time)."""

    grant_id: str
    uri: MsrpUri
    uri_text: str
    username: str
    owner: object
    client: str  # the From-Path of the AUTH that got it
    expires_at: float


@dataclass(slots=True)
class AuthState:
    """What the relay remembers about AUTH on one connection."""

    peer_ip: str
    failures: int = 0
    forbidden: bool = False
    grants: set[str] = field(default_factory=set)


class AuthService:
    """Answers AUTH requests and owns the grant table."""

    def __init__(
        self,
        realm: str,
        credentials: CredentialLookup,
        settings: AuthSettings,
        *,
        max_grants: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.digest = DigestServer(
            realm,
            credentials,
            algorithms=tuple(Algorithm.parse(name) for name in settings.algorithms),
            nonce_lifetime=settings.nonce_lifetime,
        )
        self.max_grants = max_grants
        self.clock = clock
        self.grants: dict[str, Grant] = {}
        self._ip_failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self.stats: Counter[str] = Counter()

    # -- grants ------------------------------------------------------------------

    def lookup(self, grant_id: str | None) -> Grant | None:
        """The live grant with this id (an expired one is removed and not returned)."""
        if not grant_id:
            return None
        grant = self.grants.get(grant_id)
        if grant is not None and grant.expires_at <= self.clock():
            self.expire(grant)
            return None
        return grant

    def expire(self, grant: Grant) -> None:
        if self.grants.pop(grant.grant_id, None) is not None:
            self.stats["grants_expired"] += 1
            log.info("grant %s of %s expired", grant.uri_text, grant.username)

    def sweep(self) -> int:
        """Remove expired grants; returns how many."""
        now = self.clock()
        dead = [g for g in self.grants.values() if g.expires_at <= now]
        for grant in dead:
            self.expire(grant)
        return len(dead)

    def revoke_owner(self, state: AuthState) -> None:
        """The owner's connection is gone: its paths cannot be delivered to any more."""
        for grant_id in state.grants:
            self.grants.pop(grant_id, None)
        state.grants.clear()

    # -- AUTH --------------------------------------------------------------------

    def _ip_failed(self, ip: str) -> int:
        now = self.clock()
        since, count = self._ip_failures.pop(ip, (now, 0))
        if now - since > self.settings.failure_window:
            since, count = now, 0
        self._ip_failures[ip] = (since, count + 1)
        while len(self._ip_failures) > 10_000:
            self._ip_failures.popitem(last=False)
        return count + 1

    def _ip_blocked(self, ip: str) -> bool:
        entry = self._ip_failures.get(ip)
        if entry is None:
            return False
        since, count = entry
        if self.clock() - since > self.settings.failure_window:
            del self._ip_failures[ip]
            return False
        return count >= self.settings.max_failures

    def handle(
        self, tid: str, headers: Headers, me: MsrpUri, owner: object, state: AuthState
    ) -> Frame:
        """The response to an AUTH addressed to this relay as ``me``."""
        self.stats["auth_requests"] += 1
        from_path = headers.get("From-Path") or ""
        to_path = headers.get("To-Path") or ""
        if state.forbidden or self._ip_blocked(state.peer_ip):
            state.forbidden = True
            return self._response(tid, 403, from_path, to_path, "too many failed attempts")
        authorization = headers.get("Authorization")
        if authorization is None:
            return self._challenge(tid, from_path, to_path, stale=False)
        result = self.digest.verify(authorization, method="AUTH", uri=to_path.strip())
        if isinstance(result, Stale):
            self.stats["auth_stale"] += 1
            return self._challenge(tid, from_path, to_path, stale=True)
        if isinstance(result, Failed):
            state.failures += 1
            self.stats[f"auth_failed_{result.reason}"] += 1
            log.info("AUTH from %s failed: %s %s", state.peer_ip, result.reason, result.detail)
            ip_count = self._ip_failed(state.peer_ip)
            if max(state.failures, ip_count) >= self.settings.max_failures:
                state.forbidden = True
                self.stats["auth_forbidden"] += 1
                return self._response(tid, 403, from_path, to_path, "too many failed attempts")
            return self._challenge(tid, from_path, to_path, stale=False)
        assert isinstance(result, Ok)
        return self._grant(tid, headers, me, owner, state, result, from_path, to_path)

    def _grant(
        self,
        tid: str,
        headers: Headers,
        me: MsrpUri,
        owner: object,
        state: AuthState,
        result: Ok,
        from_path: str,
        to_path: str,
    ) -> Frame:
        settings = self.settings
        expires = settings.default_expires
        raw = headers.get("Expires")
        if raw is not None:
            try:
                expires = parse_expires(raw)
            except HeaderError:
                return self._response(tid, 400, from_path, to_path, "bad Expires")
            if expires < settings.min_expires:
                frame = self._response(tid, 423, from_path, to_path)
                frame.headers.add("Min-Expires", str(settings.min_expires))
                return frame
            if expires > settings.max_expires:
                frame = self._response(tid, 423, from_path, to_path)
                frame.headers.add("Max-Expires", str(settings.max_expires))
                return frame
        grant = next(
            (
                g
                for gid in state.grants
                if (g := self.grants.get(gid)) is not None
                and g.client == from_path
                and g.username == result.username
            ),
            None,
        )
        if grant is None:
            if len(self.grants) >= self.max_grants:
                self.sweep()
            if len(self.grants) >= self.max_grants:
                self.stats["grants_refused"] += 1
                return self._response(tid, 403, from_path, to_path, "relay is full")
            grant_id = new_tid(20)
            uri = me.with_session(grant_id)
            grant = Grant(grant_id, uri, str(uri), result.username, owner, from_path, 0.0)
            self.grants[grant_id] = grant
            state.grants.add(grant_id)
            self.stats["grants"] += 1
        else:
            self.stats["grants_refreshed"] += 1
        grant.expires_at = self.clock() + expires
        state.failures = 0
        log.info(
            "AUTH %s from %s: granted %s for %d s",
            result.username,
            state.peer_ip,
            grant.uri_text,
            expires,
        )
        frame = self._response(tid, 200, from_path, to_path)
        frame.headers.add("Use-Path", grant.uri_text)
        frame.headers.add("Expires", str(expires))
        frame.headers.add("Authentication-Info", result.authentication_info)
        return frame

    def _challenge(self, tid: str, from_path: str, to_path: str, *, stale: bool) -> Frame:
        self.stats["auth_challenges"] += 1
        frame = self._response(tid, 401, from_path, to_path)
        for value in self.digest.challenge(stale=stale):
            frame.headers.add("WWW-Authenticate", value)
        return frame

    @staticmethod
    def _response(
        tid: str, code: int, from_path: str, to_path: str, comment: str | None = None
    ) -> Frame:
        """An AUTH response (end to end, §6): back along the request's From-Path."""
        frame = Frame(tid, code=code, comment=comment or REASONS.get(code, ""))
        frame.headers.add("To-Path", from_path)
        frame.headers.add("From-Path", to_path.split()[0] if to_path.split() else "")
        return frame
