"""HTTP Digest authentication, sans-IO (RFC 7616; SIP algorithms per RFC 8760).

Shared by the SIP engine (RFC 3261 §22: 401/407, ``WWW-Authenticate`` /
``Proxy-Authenticate`` and ``Authorization`` / ``Proxy-Authorization``) and the
MSRP relay (RFC 4976 AUTH).  Only header *values* go in and out; the header
names and the status codes are the caller's business.

- :func:`ha1` and :func:`compute_response` are the bare computations.
- :class:`DigestClient` answers challenges (qop=auth preferred, auth-int when it is
  the only offer, RFC 2069 style when no qop is offered), counts nonces and picks
  the strongest of several challenges.
- :class:`DigestServer` issues challenges and verifies answers.  Its nonces carry
  their issue time under an HMAC, so forged or foreign nonces are found without
  storage; the last nonce count of each nonce seen in a valid answer is kept in a
  bounded LRU map to refuse replays.

Time (``clock``) and randomness (``random``: ``n -> n bytes``) are injectable.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from pyim.msrp.headers import AuthenticationInfo, Authorization, HeaderError, WwwAuthenticate

__all__ = [
    "Algorithm",
    "AuthResult",
    "CredentialLookup",
    "CredentialsRejected",
    "DigestClient",
    "DigestError",
    "DigestServer",
    "FailReason",
    "Failed",
    "Ok",
    "Stale",
    "compute_response",
    "ha1",
    "password_lookup",
]

#: Longest header value either side parses; longer values are refused unparsed.
MAX_HEADER_LENGTH = 4096

#: ``n -> n random bytes`` (``os.urandom`` by default).
RandomBytes = Callable[[int], bytes]


class DigestError(Exception):
    """A challenge the client cannot answer (malformed, no usable algorithm or qop)."""


class CredentialsRejected(DigestError):
    """The server refused credentials already sent: retrying would not help."""


class Algorithm(enum.StrEnum):
    """Digest algorithms, with the hash function each one names."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"
    SHA_512_256 = "SHA-512-256"
    SHA_512_256_SESS = "SHA-512-256-sess"

    @classmethod
    def parse(cls, token: str | None) -> Algorithm:
        """The algorithm named by ``token`` (case-insensitive); ``None`` means MD5."""
        if token is None:
            return cls.MD5
        found = _BY_LOWER_NAME.get(token.lower())
        if found is None:
            raise DigestError(f"unsupported digest algorithm: {token!r}")
        return found

    @property
    def is_session(self) -> bool:
        """True for the ``-sess`` variants (HA1 bound to nonce and cnonce)."""
        return self.value.endswith("-sess")

    @property
    def base(self) -> Algorithm:
        """The algorithm without ``-sess``: the one whose HA1 a store holds."""
        return Algorithm(self.value.removesuffix("-sess"))

    @property
    def strength(self) -> int:
        """Rank of the hash function: higher is stronger."""
        return _STRENGTH[self.base]

    def hash(self, data: bytes) -> str:
        """The lower-case hex digest of ``data``."""
        return hashlib.new(_HASH_NAME[self.base], data).hexdigest()


_BY_LOWER_NAME = {algorithm.value.lower(): algorithm for algorithm in Algorithm}
_HASH_NAME = {
    Algorithm.MD5: "md5",
    Algorithm.SHA_256: "sha256",
    Algorithm.SHA_512_256: "sha512_256",
}
_STRENGTH = {Algorithm.MD5: 1, Algorithm.SHA_256: 2, Algorithm.SHA_512_256: 3}


def _h(algorithm: Algorithm, text: str) -> str:
    return algorithm.hash(text.encode("utf-8"))


def ha1(username: str, realm: str, password: str, algorithm: Algorithm = Algorithm.MD5) -> str:
    """H(username:realm:password), what a credential store keeps.

    The ``-sess`` variants share the HA1 of their base algorithm; the session key is
    derived per nonce inside :func:`compute_response`.
    """
    return _h(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    ha1: str,
    *,
    algorithm: Algorithm,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1), or ``rspauth`` with ``method=""``.

    ``ha1`` is the stored H(username:realm:password); ``nc`` is the 8-digit hex
    string exactly as sent.  ``qop=None`` is the RFC 2069 form (no nc, no cnonce).
    """
    if algorithm.is_session:
        if cnonce is None:
            raise ValueError(f"{algorithm} needs a cnonce")
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 = f"{a2}:{algorithm.hash(body)}"
    elif qop not in (None, "auth"):
        raise ValueError(f"unsupported qop: {qop!r}")
    ha2 = _h(algorithm, a2)
    if qop is None:
        return _h(algorithm, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise ValueError("qop needs nc and cnonce")
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# ---------------------------------------------------------------------------
# Client


class DigestClient:
    """Answers Digest challenges for one user at one server (one realm).

    Give ``password``, or precomputed ``ha1`` values keyed by base algorithm
    (MD5, SHA-256, SHA-512-256), or both (``ha1`` wins where present).
    """

    def __init__(
        self,
        username: str,
        password: str | None = None,
        *,
        ha1: Mapping[Algorithm, str] | None = None,
        random: RandomBytes = os.urandom,
    ) -> None:
        if password is None and not ha1:
            raise ValueError("a password or at least one ha1 is needed")
        self.username = username
        self._password = password
        self._ha1 = {algorithm.base: value.lower() for algorithm, value in (ha1 or {}).items()}
        self._random = random
        self._challenge: WwwAuthenticate | None = None
        self._algorithm = Algorithm.MD5
        self._qop: str | None = None
        self._nc = 0
        self._session_cnonce: str | None = None
        self._sent: tuple[str | None, str | None, str] | None = None  # nc, cnonce, rspauth

    # -- choosing -----------------------------------------------------------

    def _usable(self, challenge: WwwAuthenticate) -> tuple[Algorithm, str | None] | None:
        """(algorithm, qop) to answer ``challenge`` with, or None if it cannot be."""
        try:
            algorithm = Algorithm.parse(challenge.get("algorithm"))
        except DigestError:
            return None
        if self._password is None and algorithm.base not in self._ha1:
            return None
        options = [option.lower() for option in challenge.qop_options]
        if "qop" not in challenge:
            qop = None
        elif "auth" in options:
            qop = "auth"
        elif "auth-int" in options:
            qop = "auth-int"
        else:
            return None
        if qop is None and algorithm.is_session:
            return None  # -sess needs a cnonce, which only comes with qop
        return algorithm, qop

    def choose(self, challenges: Iterable[str]) -> WwwAuthenticate:
        """The strongest challenge this client can answer among ``challenges``.

        Values that do not parse, other schemes and unknown algorithms are skipped
        (RFC 7616 §3.7); on a tie the plain algorithm beats ``-sess``, then the
        first one wins.  Raises :class:`DigestError` when none is usable.
        """
        best: tuple[tuple[int, int], WwwAuthenticate] | None = None
        for value in challenges:
            try:
                challenge = _parse_challenge(value)
            except DigestError:
                continue
            usable = self._usable(challenge)
            if usable is None:
                continue
            rank = (usable[0].strength, 0 if usable[0].is_session else 1)
            if best is None or rank > best[0]:
                best = (rank, challenge)
        if best is None:
            raise DigestError("no usable Digest challenge")
        return best[1]

    # -- answering ----------------------------------------------------------

    def authorize(
        self,
        challenge: str | WwwAuthenticate,
        *,
        method: str,
        uri: str,
        body: bytes = b"",
        had_credentials: bool = False,
    ) -> str:
        """The ``Authorization`` (or ``Proxy-Authorization``) value answering ``challenge``.

        ``had_credentials`` says that the request which drew this challenge already
        carried this client's answer: then, unless the challenge says ``stale=true``,
        the server refused the credentials and :class:`CredentialsRejected` is raised
        (RFC 7616 §3.3).  A stale challenge is answered with its new nonce.  A nonce
        seen before goes on counting (nc) from where it was.
        """
        if isinstance(challenge, str):
            challenge = _parse_challenge(challenge)
        usable = self._usable(challenge)
        if usable is None:
            raise DigestError("cannot answer this challenge (algorithm or qop)")
        nonce = challenge["nonce"]
        current = self._challenge
        same_nonce = current is not None and current["nonce"] == nonce
        if challenge.stale:
            if same_nonce and had_credentials:
                raise CredentialsRejected("stale challenge repeats the nonce just answered")
        elif had_credentials:
            raise CredentialsRejected("the server refused the credentials")
        if not same_nonce:
            self._nc = 0
            self._session_cnonce = None
        self._challenge = challenge
        self._algorithm, self._qop = usable
        return self._answer(method=method, uri=uri, body=body)

    def reauthorize(self, *, method: str, uri: str, body: bytes = b"") -> str | None:
        """An answer to the last challenge for a new request (next nc), or None.

        Lets a request carry credentials before being challenged (RFC 3261 §22.3).
        """
        if self._challenge is None:
            return None
        return self._answer(method=method, uri=uri, body=body)

    def _answer(self, *, method: str, uri: str, body: bytes) -> str:
        challenge = self._challenge
        assert challenge is not None
        algorithm, qop = self._algorithm, self._qop
        realm, nonce = challenge["realm"], challenge["nonce"]
        secret = self._ha1.get(algorithm.base)
        if secret is None:
            assert self._password is not None  # _usable() checked it
            secret = ha1(self.username, realm, self._password, algorithm)
        nc = cnonce = None
        if qop is not None:
            self._nc += 1
            nc = f"{self._nc:08x}"
            if algorithm.is_session:
                # One cnonce per nonce: servers that keep the session key from the
                # first request and servers that recompute it both agree.
                if self._session_cnonce is None:
                    self._session_cnonce = self._random(16).hex()
                cnonce = self._session_cnonce
            else:
                cnonce = self._random(16).hex()
        sign = partial(
            compute_response,
            secret,
            algorithm=algorithm,
            nonce=nonce,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        params = {"username": self.username, "realm": realm, "nonce": nonce, "uri": uri}
        params["response"] = sign(method=method)
        if "algorithm" in challenge:
            params["algorithm"] = str(algorithm)
        if qop is not None and nc is not None and cnonce is not None:
            params.update(qop=qop, nc=nc, cnonce=cnonce)
        opaque = challenge.get("opaque")
        if opaque is not None:
            params["opaque"] = opaque
        try:
            value = str(Authorization.of(**params))
        except HeaderError as error:  # e.g. a control character in the username
            raise DigestError(str(error)) from error
        # rspauth is the same digest over an empty method (RFC 7616 §3.5).
        self._sent = (nc, cnonce, sign(method="")) if qop is not None else None
        return value

    def check_authentication_info(self, value: str) -> bool:
        """True if ``value`` (Authentication-Info) carries the right ``rspauth``.

        Mutual authentication: the server proves it knows the HA1 too.  False when
        there is no rspauth, it does not match the last answer, or nothing was sent.
        """
        sent = self._sent
        if sent is None or len(value) > MAX_HEADER_LENGTH:
            return False
        nc, cnonce, expected = sent
        try:
            info = AuthenticationInfo.parse(value)
        except HeaderError:
            return False
        rspauth = info.get("rspauth")
        if rspauth is None or info.get("nc", nc) != nc or info.get("cnonce", cnonce) != cnonce:
            return False
        return hmac.compare_digest(expected.encode("ascii"), rspauth.lower().encode("utf-8"))


def _parse_challenge(value: str) -> WwwAuthenticate:
    if len(value) > MAX_HEADER_LENGTH:
        raise DigestError("challenge too long")
    try:
        return WwwAuthenticate.parse(value)
    except HeaderError as error:
        raise DigestError(f"bad challenge: {error}") from error


# ---------------------------------------------------------------------------
# Server


#: ``(username, realm, algorithm) -> HA1 or None`` (unknown user).  For a ``-sess``
#: algorithm return the HA1 of ``algorithm.base``: :func:`ha1` does it either way.
CredentialLookup = Callable[[str, str, Algorithm], str | None]


def password_lookup(passwords: Mapping[str, str]) -> CredentialLookup:
    """A :data:`CredentialLookup` over plain ``{username: password}`` (tests, demos)."""

    def lookup(username: str, realm: str, algorithm: Algorithm) -> str | None:
        password = passwords.get(username)
        return None if password is None else ha1(username, realm, password, algorithm)

    return lookup


class FailReason(enum.StrEnum):
    """Why an answer was refused (for logs and counters; the wire answer is the same)."""

    TOO_LONG = "too-long"
    MALFORMED = "malformed"
    REALM = "realm"
    ALGORITHM = "algorithm"
    QOP = "qop"
    URI = "uri"
    OPAQUE = "opaque"
    NONCE = "nonce"
    REPLAY = "replay"
    UNKNOWN_USER = "unknown-user"
    RESPONSE = "response"


@dataclass(frozen=True)
class Ok:
    """Authenticated.  ``authentication_info`` is a ready Authentication-Info value."""

    username: str
    algorithm: Algorithm
    authentication_info: str


@dataclass(frozen=True)
class Stale:
    """The digest is right but the nonce is expired, evicted or not ours: answer
    with ``challenge(stale=True)``."""

    detail: str


@dataclass(frozen=True)
class Failed:
    """Refused: answer with ``challenge()`` (or 403 after too many tries)."""

    reason: FailReason
    detail: str = ""


AuthResult = Ok | Stale | Failed

_NC = re.compile(r"[0-9a-fA-F]{8}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")
_NONCE_LAYOUT = struct.Struct(">q8s")  # issue time in ms, 8 random bytes
_MAC_SIZE = 16
_MAX_CNONCE = 256


class DigestServer:
    """Challenges and verifies Digest answers for one realm.

    ``credentials(username, realm, algorithm)`` returns the stored HA1 or None.
    Nonces live ``nonce_lifetime`` seconds of ``clock()``; ``secret`` keys their
    HMAC (random per instance by default: give the same secret to every instance
    that must accept the others' nonces).  At most ``max_nonces`` nonces are
    tracked for replay; a nonce pushed out early is answered ``Stale``.
    """

    def __init__(
        self,
        realm: str,
        credentials: CredentialLookup,
        *,
        algorithms: Sequence[Algorithm] = (Algorithm.SHA_256, Algorithm.MD5),
        nonce_lifetime: float = 30.0,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
        random: RandomBytes = os.urandom,
        max_nonces: int = 10_000,
        max_header_length: int = MAX_HEADER_LENGTH,
    ) -> None:
        if not algorithms or len(set(algorithms)) != len(algorithms):
            raise ValueError("algorithms must be non-empty and distinct")
        if nonce_lifetime <= 0 or max_nonces < 1 or max_header_length < 1:
            raise ValueError("nonce_lifetime, max_nonces and max_header_length must be > 0")
        secret = random(32) if secret is None else secret
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        self.realm = realm
        self.algorithms = tuple(sorted(algorithms, key=lambda a: -a.strength))
        self.nonce_lifetime = nonce_lifetime
        self.max_nonces = max_nonces
        self.max_header_length = max_header_length
        self._credentials = credentials
        self._clock = clock
        self._secret = secret
        self._random = random
        self._realm_bytes = realm.encode("utf-8")
        mac = hmac.new(secret, b"opaque\0" + self._realm_bytes, "sha256").digest()
        self.opaque = base64.urlsafe_b64encode(mac[:12]).decode("ascii")
        # nonce -> (issue time in ms, last nc), least recently used first
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._evicted_up_to = -(2**63)  # unexpired nonces issued up to here were evicted

    # -- nonces -------------------------------------------------------------

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, self._realm_bytes + b"\0" + payload, "sha256").digest()[
            :_MAC_SIZE
        ]

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def new_nonce(self) -> str:
        """A fresh nonce: issue time and random bytes under an HMAC."""
        now_ms = max(min(self._now_ms(), 2**63 - 1), -(2**63))
        payload = _NONCE_LAYOUT.pack(now_ms, self._random(8))
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode("ascii").rstrip("=")

    def _nonce_time(self, nonce: str) -> int | None:
        """The issue time of one of our nonces (ms), or None if forged or foreign."""
        if not _NONCE.fullmatch(nonce):
            return None
        raw = base64.urlsafe_b64decode(nonce + "=")
        if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != nonce:
            return None  # non-canonical spelling of the same bytes
        payload, mac = raw[: _NONCE_LAYOUT.size], raw[_NONCE_LAYOUT.size :]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        issued: int = _NONCE_LAYOUT.unpack(payload)[0]
        return issued

    # -- challenge ----------------------------------------------------------

    def challenge(self, *, stale: bool = False) -> list[str]:
        """One ``WWW-Authenticate`` / ``Proxy-Authenticate`` value per algorithm,
        strongest first, all with the same fresh nonce."""
        nonce = self.new_nonce()
        values = []
        for algorithm in self.algorithms:
            params = {"realm": self.realm, "nonce": nonce, "opaque": self.opaque}
            params.update(algorithm=str(algorithm), qop="auth")
            if stale:
                params["stale"] = "true"
            values.append(str(WwwAuthenticate.of(**params)))
        return values

    # -- verify -------------------------------------------------------------

    def verify(self, authorization: str, *, method: str, uri: str | None = None) -> AuthResult:
        """Check an ``Authorization`` / ``Proxy-Authorization`` value.

        ``uri``, when given, must equal the answer's ``uri`` parameter (the request
        target).  Bad input yields :class:`Failed`, never an exception.
        """
        if len(authorization) > self.max_header_length:
            return Failed(FailReason.TOO_LONG, f"{len(authorization)} characters")
        try:
            authorization.encode("utf-8")
            answer = Authorization.parse(authorization)
        except (HeaderError, UnicodeError) as error:
            return Failed(FailReason.MALFORMED, str(error))
        checked = self._check_params(answer, uri)
        if isinstance(checked, Failed):
            return checked
        algorithm, nc = checked
        username, nonce, cnonce = answer["username"], answer["nonce"], answer["cnonce"]
        issued = self._nonce_time(nonce)
        stored = self._credentials(username, self.realm, algorithm)
        stored = None if stored is None else stored.lower()
        sign = partial(
            compute_response,
            "0" * 32 if stored is None else stored,  # unknown users cost the same work
            algorithm=algorithm,
            nonce=nonce,
            uri=answer["uri"],
            qop="auth",
            nc=answer["nc"],
            cnonce=cnonce,
        )
        expected = sign(method=method)
        given = answer["response"].lower().encode("utf-8")
        if stored is None:
            return Failed(FailReason.UNKNOWN_USER, username)
        opaque = answer.get("opaque")
        foreign_opaque = opaque is not None and opaque != self.opaque
        if not hmac.compare_digest(expected.encode("ascii"), given):
            if issued is None:
                return Failed(FailReason.NONCE, "not issued here")
            if foreign_opaque:
                return Failed(FailReason.OPAQUE, str(opaque))
            return Failed(FailReason.RESPONSE, username)
        # The digest is right: whoever sent it knows the password.  A nonce or opaque
        # from elsewhere (another secret, before a restart) only calls for a new nonce.
        if issued is None:
            return Stale("nonce not issued here")
        if foreign_opaque:
            return Stale("opaque not issued here")
        age_ms = self._now_ms() - issued
        if age_ms > self.nonce_lifetime * 1000 or age_ms < -1000:
            return Stale("nonce expired")
        seen = self._seen.get(nonce)
        if seen is None:
            if issued <= self._evicted_up_to:
                return Stale("nonce forgotten")
        elif nc <= seen[1]:
            return Failed(FailReason.REPLAY, f"nc {nc} after {seen[1]}")
        self._remember(nonce, issued, nc)
        info = AuthenticationInfo.of(
            rspauth=sign(method=""), qop="auth", nc=answer["nc"], cnonce=cnonce
        )
        return Ok(username, algorithm, str(info))

    def _check_params(
        self, answer: Authorization, uri: str | None
    ) -> Failed | tuple[Algorithm, int]:
        """Everything that needs no credentials: (algorithm, nc) or why not."""
        for name in ("uri", "qop", "nc", "cnonce"):
            if name not in answer:
                reason = FailReason.QOP if name == "qop" else FailReason.MALFORMED
                return Failed(reason, f"no {name}")
        if answer["realm"] != self.realm:
            return Failed(FailReason.REALM, answer["realm"])
        try:
            algorithm = Algorithm.parse(answer.get("algorithm"))
        except DigestError as error:
            return Failed(FailReason.ALGORITHM, str(error))
        if algorithm not in self.algorithms:
            return Failed(FailReason.ALGORITHM, f"{algorithm} not offered")
        if answer["qop"] != "auth":  # hashed as sent: no case folding
            return Failed(FailReason.QOP, answer["qop"])
        if not _NC.fullmatch(answer["nc"]) or int(answer["nc"], 16) == 0:
            return Failed(FailReason.MALFORMED, "nc")
        if not 0 < len(answer["cnonce"]) <= _MAX_CNONCE:
            return Failed(FailReason.MALFORMED, "cnonce")
        if uri is not None and answer["uri"] != uri:
            return Failed(FailReason.URI, answer["uri"])
        return algorithm, int(answer["nc"], 16)

    def _remember(self, nonce: str, issued: int, nc: int) -> None:
        seen = self._seen
        seen[nonce] = (issued, nc)
        seen.move_to_end(nonce)
        limit_ms = self._now_ms() - self.nonce_lifetime * 1000
        while len(seen) > self.max_nonces:
            _, (old_issued, _) = seen.popitem(last=False)
            if old_issued >= limit_ms:  # still alive: its replays can no longer be caught
                self._evicted_up_to = max(self._evicted_up_to, old_issued)
