"""Kamailio 5.6's msrp module as an MSRP relay (deploy/kamailio/msrp-relay.cfg), driven
with raw sockets and hand-written frames (RFC 4975, RFC 4976).

What these tests pin down (docs/kamailio-msrp-notes.md has the details):

* AUTH: 401 with a Digest challenge (realm pyim.test, qop=auth); the answer's digest
  ``uri`` is hashed but not compared with anything; right credentials: 200 with
  ``Use-Path: msrp[s]://127.0.0.1:<listener port>/<session id>;tcp`` and
  ``Expires: 3600``; wrong password or unknown user: 403.
* Forwarding strips the relay's URI from the front of To-Path and prepends it to
  From-Path, nothing else; the relay sends no 200 of its own: the sender gets the next
  hop's response, relayed back the same way.
* A frame for an authenticated client (To-Path: <its Use-Path> <client>) is delivered
  over the client's own connection, whoever sends it.

Everything runs on 127.0.0.1; every read is bounded.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kamailio_msrp import KamailioMsrpRelay
from pyim.digest import DigestClient
from pyim.msrp import Frame, parse_frames

pytest_plugins = ["kamailio_msrp"]

LOOPBACK = "127.0.0.1"
READ_TIMEOUT = 5.0
QUIET_TIMEOUT = 0.7  # how long "nothing arrives" is watched for


# --------------------------------------------------------------------------------------
# raw MSRP over a socket


class MsrpSocket:
    """One TCP (or TLS) connection carrying whole MSRP frames, read with deadlines."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.settimeout(READ_TIMEOUT)
        self.sock.sendall(data)

    def _frame_end(self) -> int | None:
        match = re.match(rb"MSRP ([A-Za-z0-9.+%=-]+) ", self.buffer)
        if match is None:
            return None
        end = re.search(rb"\r\n-------" + re.escape(match.group(1)) + rb"[$+#]\r\n", self.buffer)
        return end.end() if end else None

    def read_raw(self, timeout: float = READ_TIMEOUT) -> bytes | None:
        """The next whole frame as received, or None (nothing within ``timeout``, or
        the connection closed)."""
        deadline = time.monotonic() + timeout
        while (end := self._frame_end()) is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                return None
            except OSError:
                self.closed = True
                return None
            if not chunk:
                self.closed = True
                return None
            self.buffer += chunk
        raw, self.buffer = self.buffer[:end], self.buffer[end:]
        return raw

    def read(self, timeout: float = READ_TIMEOUT) -> Frame:
        raw = self.read_raw(timeout)
        assert raw is not None, f"no frame within {timeout} s (closed: {self.closed})"
        (frame,) = parse_frames(raw)
        return frame

    def expect_nothing(self, timeout: float = QUIET_TIMEOUT) -> None:
        raw = self.read_raw(timeout)
        assert raw is None, f"unexpected frame:\n{raw.decode(errors='replace')}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def msrp_frame(
    tid: str,
    method: str,
    to_path: str,
    from_path: str,
    *headers: str,
    body: bytes | None = None,
    content_type: str = "text/plain",
) -> bytes:
    """A request, To-Path and From-Path first (Kamailio 5.6 needs them first)."""
    lines = [f"MSRP {tid} {method}", f"To-Path: {to_path}", f"From-Path: {from_path}"]
    lines += headers
    if body is None:
        return ("\r\n".join(lines) + f"\r\n-------{tid}$\r\n").encode()
    lines.append(f"Content-Type: {content_type}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + body + f"\r\n-------{tid}$\r\n".encode()


def msrp_response(tid: str, code: int, comment: str, to_path: str, from_path: str) -> bytes:
    return (
        f"MSRP {tid} {code} {comment}\r\nTo-Path: {to_path}\r\nFrom-Path: {from_path}\r\n"
        f"-------{tid}$\r\n"
    ).encode()


def send_frame(tid: str, to_path: str, from_path: str, body: bytes, *headers: str) -> bytes:
    size = len(body)
    return msrp_frame(
        tid,
        "SEND",
        to_path,
        from_path,
        f"Message-ID: {tid}-m",
        f"Byte-Range: 1-{size}/{size}",
        *headers,
        body=body,
    )


@dataclass
class Client:
    """An authenticated client: its connection, its own URI, the relay's Use-Path."""

    conn: MsrpSocket
    uri: str
    use_path: str


def auth_frames(
    conn: MsrpSocket,
    relay_uri: str,
    client_uri: str,
    user: str,
    password: str,
    *,
    digest_uri: str | None = None,
    extra: tuple[str, ...] = (),
) -> tuple[Frame, Frame]:
    """AUTH without credentials, then with them: (the challenge, the final answer)."""
    conn.send(msrp_frame("auth0001", "AUTH", relay_uri, client_uri, "Message-ID: a1"))
    challenge = conn.read()
    assert challenge.code == 401, challenge
    www = challenge.header("WWW-Authenticate")
    assert www is not None
    authorization = DigestClient(user, password).authorize(
        www, method="AUTH", uri=digest_uri or relay_uri
    )
    conn.send(
        msrp_frame(
            "auth0002",
            "AUTH",
            relay_uri,
            client_uri,
            "Message-ID: a2",
            f"Authorization: {authorization}",
            *extra,
        )
    )
    return challenge, conn.read()


def client_uri(conn: MsrpSocket, session: str, scheme: str = "msrp") -> str:
    """The client's URI: its real source address, so a relay that looks the address up
    among its connections finds this one (RFC 4975 allows any; this is the honest one)."""
    host, port = conn.sock.getsockname()[:2]
    return f"{scheme}://{host}:{port}/{session};tcp"


class Peers:
    """Connections and listeners of one test, all closed at the end."""

    def __init__(self, relay: KamailioMsrpRelay) -> None:
        self.relay = relay
        self.sockets: list[socket.socket] = []

    def connect(self, *, tls: bool | None = None) -> MsrpSocket:
        sock = self.relay.connect(tls=tls, timeout=READ_TIMEOUT)
        self.sockets.append(sock)
        return MsrpSocket(sock)

    def listen(self) -> socket.socket:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind((LOOPBACK, 0))
        server.listen(4)
        self.sockets.append(server)
        return server

    def accept(self, server: socket.socket, timeout: float = READ_TIMEOUT) -> MsrpSocket:
        server.settimeout(timeout)
        sock, _ = server.accept()
        self.sockets.append(sock)
        return MsrpSocket(sock)

    def authenticated(
        self, session: str, user: str = "alice", *, tls: bool | None = None
    ) -> Client:
        conn = self.connect(tls=tls)
        use_tls = self.relay.tls if tls is None else tls
        uri = client_uri(conn, session, "msrps" if use_tls else "msrp")
        relay_uri = self.relay.tls_uri if use_tls else self.relay.tcp_uri
        _, ok = auth_frames(conn, relay_uri, uri, user, self.relay.users[user])
        assert ok.code == 200, ok
        use_path = ok.header("Use-Path")
        assert use_path is not None
        return Client(conn, uri, use_path)

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def peers(kamailio_msrp: KamailioMsrpRelay) -> Iterator[Peers]:
    group = Peers(kamailio_msrp)
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def tls_peers(kamailio_msrp_tls: KamailioMsrpRelay) -> Iterator[Peers]:
    group = Peers(kamailio_msrp_tls)
    try:
        yield group
    finally:
        group.close()


def listener_uri(server: socket.socket, session: str) -> str:
    return f"msrp://{LOOPBACK}:{server.getsockname()[1]}/{session};tcp"


# --------------------------------------------------------------------------------------
# AUTH


def test_auth_without_credentials_is_challenged(peers: Peers) -> None:
    relay = peers.relay
    conn = peers.connect()
    me = client_uri(conn, "sessA")
    conn.send(msrp_frame("auth0001", "AUTH", relay.uri, me, "Message-ID: a1"))
    answer = conn.read()
    assert (answer.code, answer.comment) == (401, "Unauthorized")
    assert answer.tid == "auth0001"
    # the response goes back along the request's From-Path, from the relay's URI
    assert answer.header("To-Path") == me
    assert answer.header("From-Path") == relay.uri
    assert answer.header("Message-ID") == "a1"
    www = answer.header("WWW-Authenticate")
    assert www is not None and www.startswith("Digest ")
    assert f'realm="{relay.realm}"' in www
    assert 'qop="auth"' in www
    assert re.search(r'nonce="[^"]+"', www)


def test_auth_with_credentials_gets_use_path(peers: Peers) -> None:
    relay = peers.relay
    conn = peers.connect()
    me = client_uri(conn, "sessA")
    _, ok = auth_frames(conn, relay.uri, me, "alice", "alice-secret")
    assert (ok.code, ok.comment) == (200, "OK")
    assert ok.header("To-Path") == me
    assert ok.header("From-Path") == relay.uri
    # Use-Path: the listening socket's address (host and port right without
    # use_path_addr) and a session id of the relay's own; the lifetime is the
    # module's auth_max_expires
    use_path = ok.header("Use-Path")
    assert use_path is not None
    assert re.fullmatch(rf"msrp://127\.0\.0\.1:{relay.tcp_port}/msrp-[0-9a-f-]+;tcp", use_path)
    assert ok.header("Expires") == "3600"
    entries = relay.rpc("msrp.cmaplist")["CONLIST"]
    assert entries["CONDATA"]["PEER"] == me
    assert use_path.endswith("/" + entries["CONDATA"]["SESSIONID"] + ";tcp")


def test_digest_uri_is_hashed_but_not_checked(peers: Peers) -> None:
    """RFC 4976 wants the To-Path URI as digest uri; Kamailio takes any."""
    conn = peers.connect()
    me = client_uri(conn, "sessA")
    _, ok = auth_frames(
        conn, peers.relay.uri, me, "bob", "bob-secret", digest_uri="msrp://elsewhere:9/x;tcp"
    )
    assert ok.code == 200, ok


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("mallory", "x")])
def test_auth_with_bad_credentials_is_forbidden(peers: Peers, user: str, password: str) -> None:
    conn = peers.connect()
    _, answer = auth_frames(conn, peers.relay.uri, client_uri(conn, "s"), user, password)
    assert (answer.code, answer.comment) == (403, "Forbidden")
    assert answer.header("Use-Path") is None
    assert peers.relay.rpc("msrp.cmaplist")["CONCOUNT"] == 0


def test_authenticated_auth_with_expires_is_refused_not_crashing(peers: Peers) -> None:
    """msrp_cmap_save() of 5.6.3 misreads Expires (423 to any value, or a crash, as
    reported); the config answers 400 before it gets there."""
    conn = peers.connect()
    me = client_uri(conn, "sessA")
    _, answer = auth_frames(
        conn, peers.relay.uri, me, "alice", "alice-secret", extra=("Expires: 600",)
    )
    assert answer.code == 400, answer
    assert peers.relay.is_running()
    assert peers.authenticated("sessA2").use_path  # still serving


# --------------------------------------------------------------------------------------
# forwarding


def test_send_is_forwarded_and_the_next_hops_response_relayed_back(peers: Peers) -> None:
    alice = peers.authenticated("sessA")
    server = peers.listen()
    bob_uri = listener_uri(server, "sessB")

    alice.conn.send(send_frame("send0001", f"{alice.use_path} {bob_uri}", alice.uri, b"hello"))
    bob = peers.accept(server)
    got = bob.read()
    assert got.method == "SEND" and got.tid == "send0001"
    # our URI popped from To-Path, pushed onto From-Path; the rest untouched
    assert got.header("To-Path") == bob_uri
    assert got.header("From-Path") == f"{alice.use_path} {alice.uri}"
    assert got.header("Message-ID") == "send0001-m"
    assert got.header("Byte-Range") == "1-5/5"
    assert got.body == b"hello"
    # no 200 from the relay itself
    alice.conn.expect_nothing()

    # bob answers along the full From-Path; the relay brings it to alice
    bob.send(msrp_response("send0001", 200, "OK", got.header("From-Path") or "", bob_uri))
    answer = alice.conn.read()
    assert (answer.code, answer.tid) == (200, "send0001")
    assert answer.header("To-Path") == alice.uri
    assert answer.header("From-Path") == f"{alice.use_path} {bob_uri}"


def test_response_naming_only_the_relay_is_dropped(peers: Peers) -> None:
    """A hop-by-hop style response (To-Path: just the relay) has nowhere to go."""
    alice = peers.authenticated("sessA")
    server = peers.listen()
    bob_uri = listener_uri(server, "sessB")
    alice.conn.send(send_frame("send0011", f"{alice.use_path} {bob_uri}", alice.uri, b"x"))
    bob = peers.accept(server)
    bob.read()
    bob.send(msrp_response("send0011", 200, "OK", alice.use_path, bob_uri))
    alice.conn.expect_nothing()
    bob.expect_nothing()


def test_frame_for_a_client_reaches_it_over_its_own_connection(peers: Peers) -> None:
    alice = peers.authenticated("sessA")
    # someone else (another relay, a peer) on a new, unauthenticated connection
    carol = peers.connect()
    carol_uri = client_uri(carol, "sessC")

    carol.send(send_frame("send0002", f"{alice.use_path} {alice.uri}", carol_uri, b"hi"))
    got = alice.conn.read()
    assert got.method == "SEND" and got.body == b"hi"
    assert got.header("To-Path") == alice.uri
    assert got.header("From-Path") == f"{alice.use_path} {carol_uri}"
    carol.expect_nothing()

    # alice's response goes to carol's URI: the relay finds carol's connection because
    # that URI is carol's real source address (else it would connect to the URI)
    alice.conn.send(msrp_response("send0002", 200, "OK", got.header("From-Path") or "", alice.uri))
    answer = carol.read()
    assert (answer.code, answer.tid) == (200, "send0002")
    assert answer.header("To-Path") == carol_uri
    assert answer.header("From-Path") == f"{alice.use_path} {alice.uri}"


def test_frame_for_an_unknown_session_gets_481(peers: Peers) -> None:
    alice = peers.authenticated("sessA")
    carol = peers.connect()
    carol_uri = client_uri(carol, "sessC")
    unknown = f"msrp://{LOOPBACK}:{peers.relay.tcp_port}/nosuchsession;tcp"
    carol.send(send_frame("send0003", f"{unknown} {alice.uri}", carol_uri, b"hi"))
    answer = carol.read()
    assert (answer.code, answer.comment) == (481, "Session does not exist")
    # hop-by-hop response built by the relay: first From-Path URI, first To-Path URI
    assert answer.header("To-Path") == carol_uri
    assert answer.header("From-Path") == unknown
    alice.conn.expect_nothing()


def test_unreachable_next_hop_gets_503(peers: Peers) -> None:
    alice = peers.authenticated("sessA")
    server = peers.listen()
    dead = f"msrp://{LOOPBACK}:{server.getsockname()[1]}/dead;tcp"
    server.close()  # nothing listens there now
    alice.conn.send(send_frame("send0004", f"{alice.use_path} {dead}", alice.uri, b"x"))
    answer = alice.conn.read()
    assert (answer.code, answer.comment) == (503, "Next hop unreachable")
    assert answer.header("To-Path") == alice.uri
    assert answer.header("From-Path") == alice.use_path


def test_two_next_hops_are_forwarded_to_the_next_relay(peers: Peers) -> None:
    alice = peers.authenticated("sessA")
    server = peers.listen()
    next_relay = listener_uri(server, "relay2")
    bob_uri = f"msrp://{LOOPBACK}:9/sessB;tcp"
    to_path = f"{alice.use_path} {next_relay} {bob_uri}"
    alice.conn.send(send_frame("send0005", to_path, alice.uri, b"x"))
    got = peers.accept(server).read()
    assert got.header("To-Path") == f"{next_relay} {bob_uri}"
    assert got.header("From-Path") == f"{alice.use_path} {alice.uri}"


def test_failure_report_is_not_looked_at(peers: Peers) -> None:
    """Failure-Report: no is passed on as it is; the relay never answers a SEND by
    itself, with or without it, and has no timer: no response downstream, none here."""
    alice = peers.authenticated("sessA")
    server = peers.listen()
    bob_uri = listener_uri(server, "sessB")
    for tid, report in (("send0006", "no"), ("send0007", "yes")):
        alice.conn.send(
            send_frame(
                tid, f"{alice.use_path} {bob_uri}", alice.uri, b"x", f"Failure-Report: {report}"
            )
        )
    bob = peers.accept(server)
    first, second = bob.read(), bob.read()
    assert first.header("Failure-Report") == "no"
    assert second.header("Failure-Report") == "yes"
    alice.conn.expect_nothing()


def test_report_is_forwarded_without_a_response(peers: Peers) -> None:
    alice = peers.authenticated("sessA")
    carol = peers.connect()
    carol_uri = client_uri(carol, "sessC")
    carol.send(
        msrp_frame(
            "rept0001",
            "REPORT",
            f"{alice.use_path} {alice.uri}",
            carol_uri,
            "Message-ID: m1",
            "Byte-Range: 1-2/2",
            "Status: 000 200 OK",
        )
    )
    got = alice.conn.read()
    assert got.method == "REPORT" and got.header("Status") == "000 200 OK"
    carol.expect_nothing()


def test_paths_must_be_the_first_two_headers(peers: Peers) -> None:
    """A frame with another header before From-Path is dropped: no forward, no answer."""
    alice = peers.authenticated("sessA")
    server = peers.listen()
    bob_uri = listener_uri(server, "sessB")
    alice.conn.send(
        b"MSRP send0008 SEND\r\n"
        + f"To-Path: {alice.use_path} {bob_uri}\r\n".encode()
        + b"Message-ID: m8\r\n"
        + f"From-Path: {alice.uri}\r\n".encode()
        + b"Byte-Range: 1-1/1\r\nContent-Type: text/plain\r\n\r\nx\r\n-------send0008$\r\n"
    )
    alice.conn.expect_nothing()
    server.settimeout(QUIET_TIMEOUT)
    with pytest.raises(TimeoutError):
        server.accept()
    assert "To-Path and From-Path must be defined before any header" in peers.relay.log_text()


def test_frames_up_to_10_kib_are_routed(peers: Peers) -> None:
    alice = peers.authenticated("sessA")
    server = peers.listen()
    bob_uri = listener_uri(server, "sessB")
    body = b"a" * (10 * 1024)
    alice.conn.send(send_frame("send0009", f"{alice.use_path} {bob_uri}", alice.uri, body))
    assert peers.accept(server).read().body == body


def test_frames_of_12_kib_are_not_routed(peers: Peers) -> None:
    """Above ~11 KB the module builds no SIP message for the script: every $msrp(...)
    is empty there, so the config falls through to its 501."""
    alice = peers.authenticated("sessA")
    server = peers.listen()
    bob_uri = listener_uri(server, "sessB")
    body = b"a" * (12 * 1024)
    alice.conn.send(send_frame("send0010", f"{alice.use_path} {bob_uri}", alice.uri, body))
    answer = alice.conn.read()
    assert (answer.code, answer.comment) == (501, "Request method not understood")
    server.settimeout(QUIET_TIMEOUT)
    with pytest.raises(TimeoutError):
        server.accept()


# --------------------------------------------------------------------------------------
# TLS


def test_tls_auth_forward_and_back(tls_peers: Peers) -> None:
    relay = tls_peers.relay
    alice = tls_peers.authenticated("sessA")  # over TLS, To-Path msrps://
    assert re.fullmatch(
        rf"msrps://127\.0\.0\.1:{relay.tls_port}/msrp-[0-9a-f-]+;tcp", alice.use_path
    )
    assert alice.uri.startswith("msrps://")

    # to a plain TCP peer (the next hop's scheme decides: msrp:// -> TCP)
    server = tls_peers.listen()
    bob_uri = listener_uri(server, "sessB")
    alice.conn.send(send_frame("tls00001", f"{alice.use_path} {bob_uri}", alice.uri, b"hello"))
    bob = tls_peers.accept(server)
    got = bob.read()
    assert got.header("To-Path") == bob_uri
    assert got.header("From-Path") == f"{alice.use_path} {alice.uri}"
    bob.send(msrp_response("tls00001", 200, "OK", got.header("From-Path") or "", bob_uri))
    answer = alice.conn.read()
    assert (answer.code, answer.header("To-Path")) == (200, alice.uri)

    # and a frame for alice from elsewhere reaches her over her TLS connection
    bob.send(send_frame("tls00002", f"{alice.use_path} {alice.uri}", bob_uri, b"back"))
    got = alice.conn.read()
    assert got.body == b"back" and got.header("To-Path") == alice.uri


def test_tls_relay_reaches_tcp_clients_too(tls_peers: Peers) -> None:
    """With the tls module loaded, msrp_cmap_save() records every client as msrps://,
    also one that authenticated over plain TCP; the frame still goes over the client's
    connection (reuse by address; Kamailio logs a protocol/port mismatch warning)."""
    relay = tls_peers.relay
    alice = tls_peers.authenticated("sessA", tls=False)
    assert alice.use_path.startswith(f"msrp://127.0.0.1:{relay.tcp_port}/")
    assert relay.rpc("msrp.cmaplist")["CONLIST"]["CONDATA"]["ADDR"].startswith("msrps://")
    carol = tls_peers.connect(tls=False)
    carol_uri = client_uri(carol, "sessC")
    carol.send(send_frame("tls00003", f"{alice.use_path} {alice.uri}", carol_uri, b"hi"))
    got = alice.conn.read()
    assert got.body == b"hi" and got.header("To-Path") == alice.uri
    carol.expect_nothing()
