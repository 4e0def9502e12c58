"""The relay's forwarding rewrite (RFC 4976 §7.3): the pure-Python reference.

:func:`rewrite_head` takes a request's start line and headers as the frame parser
gives them and returns what the relay needs to route it and the header block to
send on: To-Path without its first URI, From-Path with that URI in front, then every
other header in its original order and spelling.  To-Path and From-Path come first
(RFC 4975 §7.1 asks for it and Kamailio's relay depends on it).

``native/_speedups.pyx`` holds the same function compiled with Cython
(``pyim.msrp._speedups.rewrite_head``); tests/test_relay_forward_parity.py checks
that both give the same result or the same error for the same input.  Change both.

The other per-frame work of the relay is here too, with compiled twins checked the
same way by tests/test_relay_fastpath.py: :func:`local_hop_head` (a next hop that is
another path of this relay), :func:`ok_response` (the hop-by-hop 200) and
:func:`relay_fields` (Message-ID, Byte-Range, Failure-Report).
"""

from __future__ import annotations

# PathError lives in pyim.msrp.errors so that the compiled module can raise it without
# importing pyim.relay (a cycle: pyim.relay.server imports pyim.msrp._speedups).
from ..msrp.errors import PathError

__all__ = ["PathError", "local_hop_head", "ok_response", "relay_fields", "rewrite_head"]


def rewrite_head(
    tid: str, method: str, headers: list[tuple[str, str]]
) -> tuple[str, str, int, bytes, str]:
    """Route a request one hop: ``(first, next_hop, hops_left, head, from_path)``.

    ``first`` is the To-Path URI addressed to this relay (as written), ``next_hop``
    the URI after it (``""`` when none), ``hops_left`` how many URIs remain after
    ``first``, ``head`` the start line and header lines to forward (without the blank
    line before a body; ``b""`` when nothing is left to forward) and ``from_path`` the
    received From-Path value.  Raises :class:`PathError`.
    """
    to_path: str | None = None
    from_path: str | None = None
    others: list[tuple[str, str]] = []
    for name, value in headers:
        lname = name.lower()
        if lname == "to-path":
            if to_path is not None:
                raise PathError("more than one To-Path")
            to_path = value
        elif lname == "from-path":
            if from_path is not None:
                raise PathError("more than one From-Path")
            from_path = value
        else:
            others.append((name, value))
    if to_path is None or from_path is None:
        raise PathError("missing To-Path or From-Path")
    to_uris = to_path.split()
    from_uris = from_path.split()
    if not to_uris or not from_uris:
        raise PathError("empty To-Path or From-Path")
    first = to_uris[0]
    hops_left = len(to_uris) - 1
    if hops_left == 0:
        return first, "", 0, b"", " ".join(from_uris)
    lines = [
        f"MSRP {tid} {method}\r\n",
        "To-Path: ",
        " ".join(to_uris[1:]),
        "\r\nFrom-Path: ",
        first,
        " ",
        " ".join(from_uris),
        "\r\n",
    ]
    for name, value in others:
        lines.append(f"{name}: {value}\r\n")
    return first, to_uris[1], hops_left, "".join(lines).encode("utf-8"), " ".join(from_uris)


def local_hop_head(head: bytes, next_hop: str) -> bytes:
    """The head from :func:`rewrite_head` when ``next_hop`` is a path of this relay too
    (two clients of one relay): pop that one as well.

    ``head`` reads ``To-Path: <next_hop> <client>`` and ``From-Path: <first> ...``;
    the result reads ``To-Path: <client>`` and ``From-Path: <next_hop> <first> ...``.
    """
    start, to_line, from_line, rest = head.split(b"\r\n", 3)
    return b"\r\n".join(
        (
            start,
            b"To-Path: " + to_line.split()[-1],
            b"From-Path: " + next_hop.encode() + b" " + from_line[11:],
            rest,
        )
    )


def ok_response(tid: str, from_path: str, first: str) -> bytes:
    """The relay's 200 to a request it handed on: back along the request's whole
    From-Path, from the path of this relay it addressed (``first``)."""
    return b"MSRP %s 200 OK\r\nTo-Path: %s\r\nFrom-Path: %s\r\n-------%s$\r\n" % (
        tid.encode(),
        from_path.encode(),
        first.encode(),
        tid.encode(),
    )


def relay_fields(headers: list[tuple[str, str]]) -> tuple[str | None, str | None, str]:
    """The three fields a relay reads besides the paths, in one pass over the headers:
    ``(message_id, byte_range, failure_report)``; the last of each counts, and
    Failure-Report is lowered and stripped (``"yes"`` when absent)."""
    message_id = byte_range = None
    failure_report = "yes"
    for name, value in headers:
        lname = name.lower()
        if lname == "message-id":
            message_id = value
        elif lname == "byte-range":
            byte_range = value
        elif lname == "failure-report":
            failure_report = value.strip().lower()
    return message_id, byte_range, failure_report
