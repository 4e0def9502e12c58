"""Events produced by the incremental frame parser.

A frame arrives as one :class:`FrameHead`, zero or more :class:`BodyData` and one
:class:`FrameEnd`.  Body data is handed out as it arrives, so a chunk of any size is
never buffered whole.  Both parser implementations produce these same classes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class FrameHead:
    """Start line and header block of a frame.

    A request has ``method`` set; a response has ``code`` (and maybe ``comment``).
    ``headers`` keeps wire order and spelling.  ``has_body`` tells whether a body
    (content-stuff) follows, possibly empty.
    """

    tid: str
    method: str | None
    code: int | None
    comment: str | None
    headers: list[tuple[str, str]]
    has_body: bool


@dataclass(slots=True)
class BodyData:
    """A piece of the body of the frame ``tid``, in order."""

    tid: str
    data: bytes


@dataclass(slots=True)
class FrameEnd:
    """The end-line of frame ``tid``; ``flag`` is ``$`` (complete), ``+`` (more) or ``#``."""

    tid: str
    flag: str


Event = FrameHead | BodyData | FrameEnd
