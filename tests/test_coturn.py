"""coturn (tests/coturn.py) answers STUN and TURN on 127.0.0.1 as pjsua2 will use it.

Hand-built RFC 5389 messages over UDP: a Binding request must come back with the
client's own address in XOR-MAPPED-ADDRESS; a TURN Allocate (RFC 5766) must be
challenged (401 with the fixture's realm) and succeed with the fixture's long-term
credentials, relaying on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import struct
import time
import zlib
from pathlib import Path

from coturn import (
    STUN_ATTR_XOR_MAPPED_ADDRESS,
    STUN_BINDING_SUCCESS,
    STUN_MAGIC_COOKIE,
    Coturn,
    decode_xor_mapped_address,
    parse_stun_attributes,
    stun_binding_request,
)

pytest_plugins = ["coturn"]

TIMEOUT = 2.0
ALLOCATE_REQUEST = 0x0003
ALLOCATE_SUCCESS = 0x0103
ALLOCATE_ERROR = 0x0113
ATTR_USERNAME = 0x0006
ATTR_MESSAGE_INTEGRITY = 0x0008
ATTR_ERROR_CODE = 0x0009
ATTR_REALM = 0x0014
ATTR_NONCE = 0x0015
ATTR_XOR_RELAYED_ADDRESS = 0x0016
ATTR_REQUESTED_TRANSPORT = 0x0019
ATTR_FINGERPRINT = 0x8028


def exchange(sock: socket.socket, packet: bytes, tid: bytes, server: tuple[str, int]) -> bytes:
    """Send ``packet`` and return the response with transaction id ``tid``; retransmit
    a few times (UDP), all within TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    interval = 0.1
    while (left := deadline - time.monotonic()) > 0:
        sock.sendto(packet, server)
        wait_until = time.monotonic() + min(interval, left)
        while (wait := wait_until - time.monotonic()) > 0:
            sock.settimeout(wait)
            try:
                data = sock.recv(4096)
            except TimeoutError:
                break
            if len(data) >= 20 and data[8:20] == tid:
                return data
        interval *= 2
    raise AssertionError(f"no STUN response from {server} within {TIMEOUT} s")


def attribute(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + b"\0" * (-len(value) % 4)


def stun_message(
    msg_type: int, tid: bytes, attributes: bytes, *, integrity_key: bytes | None = None
) -> bytes:
    """A STUN message; with ``integrity_key``, MESSAGE-INTEGRITY and FINGERPRINT last."""
    body = attributes
    if integrity_key is not None:
        length = len(body) + 24  # MESSAGE-INTEGRITY counted, FINGERPRINT not (§15.4)
        header = struct.pack("!HHI", msg_type, length, STUN_MAGIC_COOKIE) + tid
        digest = hmac.new(integrity_key, header + body, hashlib.sha1).digest()
        body += attribute(ATTR_MESSAGE_INTEGRITY, digest)
    header = struct.pack("!HHI", msg_type, len(body) + 8, STUN_MAGIC_COOKIE) + tid
    crc = (zlib.crc32(header + body) ^ 0x5354554E) & 0xFFFFFFFF
    return header + body + attribute(ATTR_FINGERPRINT, struct.pack("!I", crc))


def test_binding_reports_the_clients_address(coturn: Coturn) -> None:
    server = (coturn.host, coturn.port)
    assert coturn.stun_address == f"127.0.0.1:{coturn.port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        request, tid = stun_binding_request()
        assert len(request) == 20 and request[4:8] == struct.pack("!I", STUN_MAGIC_COOKIE)
        msg_type, got_tid, attributes = parse_stun_attributes(exchange(sock, request, tid, server))
        assert msg_type == STUN_BINDING_SUCCESS
        assert got_tid == tid
        assert STUN_ATTR_XOR_MAPPED_ADDRESS in attributes
        mapped = decode_xor_mapped_address(attributes[STUN_ATTR_XOR_MAPPED_ADDRESS])
        assert mapped == sock.getsockname()


def test_turn_allocate_with_long_term_credentials(coturn: Coturn) -> None:
    server = (coturn.host, coturn.port)
    udp = attribute(ATTR_REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        # no credentials: 401 with the realm and a nonce (RFC 5389 §10.2)
        tid = secrets.token_bytes(12)
        reply = exchange(sock, stun_message(ALLOCATE_REQUEST, tid, udp), tid, server)
        msg_type, _, attributes = parse_stun_attributes(reply)
        assert msg_type == ALLOCATE_ERROR
        error = attributes[ATTR_ERROR_CODE]
        assert error[2] * 100 + error[3] == 401
        assert attributes[ATTR_REALM].decode() == coturn.realm
        nonce = attributes[ATTR_NONCE]

        # with them: a relayed address on 127.0.0.1, in the server's relay range
        key = hashlib.md5(
            f"{coturn.turn_user}:{coturn.realm}:{coturn.turn_password}".encode()
        ).digest()
        attrs = (
            udp
            + attribute(ATTR_USERNAME, coturn.turn_user.encode())
            + attribute(ATTR_REALM, coturn.realm.encode())
            + attribute(ATTR_NONCE, nonce)
        )
        tid = secrets.token_bytes(12)
        request = stun_message(ALLOCATE_REQUEST, tid, attrs, integrity_key=key)
        msg_type, _, attributes = parse_stun_attributes(exchange(sock, request, tid, server))
        assert msg_type == ALLOCATE_SUCCESS, attributes.get(ATTR_ERROR_CODE)
        relay_host, relay_port = decode_xor_mapped_address(attributes[ATTR_XOR_RELAYED_ADDRESS])
        assert relay_host == "127.0.0.1"
        assert coturn.min_port <= relay_port <= coturn.max_port
        mapped = decode_xor_mapped_address(attributes[STUN_ATTR_XOR_MAPPED_ADDRESS])
        assert mapped == sock.getsockname()


def test_wrong_password_is_refused(tmp_path: Path) -> None:
    with Coturn(tmp_path / "turn", users={"eve": "right"}) as turn:
        assert turn.turn_user == "eve" and turn.turn_password == "right"
        server = (turn.host, turn.port)
        udp = attribute(ATTR_REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            tid = secrets.token_bytes(12)
            reply = exchange(sock, stun_message(ALLOCATE_REQUEST, tid, udp), tid, server)
            nonce = parse_stun_attributes(reply)[2][ATTR_NONCE]
            key = hashlib.md5(f"eve:{turn.realm}:wrong".encode()).digest()
            attrs = (
                udp
                + attribute(ATTR_USERNAME, b"eve")
                + attribute(ATTR_REALM, turn.realm.encode())
                + attribute(ATTR_NONCE, nonce)
            )
            tid = secrets.token_bytes(12)
            request = stun_message(ALLOCATE_REQUEST, tid, attrs, integrity_key=key)
            msg_type, _, attributes = parse_stun_attributes(exchange(sock, request, tid, server))
            assert msg_type == ALLOCATE_ERROR
            error = attributes[ATTR_ERROR_CODE]
            assert error[2] * 100 + error[3] == 401
    assert turn.returncode is not None  # stopped by its PID
