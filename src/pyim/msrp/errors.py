"""Errors raised by the MSRP wire layer."""

from __future__ import annotations

from typing import Any


class MsrpError(Exception):
    """Base class of every MSRP protocol error."""


class PathError(ValueError):
    """To-Path or From-Path is missing, repeated or empty (answer 400).

    Raised by the relay's forwarding rewrite (``pyim.relay.forward.rewrite_head`` and
    its compiled twin ``pyim.msrp._speedups.rewrite_head``).  It lives here, in a
    module without heavy imports, so that the compiled module can import it without
    importing ``pyim.relay`` (whose server imports the compiled module: a cycle).
    """


class ParseError(MsrpError):
    """Bad input from the network.

    ``status`` is the MSRP status to answer (400, 413, ...) to the request whose
    transaction id is ``tid``; when ``close`` is true no answer is possible and the
    connection must be closed.  ``events`` holds the events parsed from the same
    ``feed()`` call before the error was found, so nothing already parsed is lost.
    After a recoverable error the parser has skipped to the end-line of the broken
    frame: call ``feed(b"")`` to go on with the bytes it still holds.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        tid: str | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.tid = tid
        self.close = close
        self.events: list[Any] = []

    def key(self) -> tuple[str, int | None, str | None, bool]:
        """What identifies this error (used to compare implementations)."""
        return (self.reason, self.status, self.tid, self.close)

    def __repr__(self) -> str:
        return (
            f"ParseError({self.reason!r}, status={self.status!r}, tid={self.tid!r}, "
            f"close={self.close!r})"
        )
