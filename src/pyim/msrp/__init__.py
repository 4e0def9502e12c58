"""pyim.msrp: the MSRP stack (RFC 4975), sans-IO core plus an asyncio adapter.

``parser_impl`` says which frame parser is in use: ``"native"`` (Cython, built
from ``native/_speedups.pyx``) or ``"pure"`` (the reference in ``parser.py``).
Set ``PYIM_PURE=1`` to force the reference.
"""

from __future__ import annotations

import os

from .errors import MsrpError, ParseError
from .events import BodyData, Event, FrameEnd, FrameHead
from .frame import Frame, Headers, new_tid
from .parser import FrameParser as PureFrameParser
from .parser import ParserLimits

FrameParser: type[PureFrameParser]
parser_impl: str

if os.environ.get("PYIM_PURE", "") not in ("", "0"):
    FrameParser, parser_impl = PureFrameParser, "pure"
else:
    try:
        from ._speedups import FrameParser as _NativeFrameParser
    except ImportError:
        FrameParser, parser_impl = PureFrameParser, "pure"
    else:
        FrameParser, parser_impl = _NativeFrameParser, "native"


def parse_frames(data: bytes, limits: ParserLimits | None = None) -> list[Frame]:
    """Parse whole frames from ``data``; raises ParseError on bad or incomplete input."""
    parser = FrameParser(limits)
    frames = frames_from_events(parser.feed(data))
    if parser.buffered or (frames and frames[-1].flag == ""):
        raise ParseError("incomplete frame", close=True)
    return frames


def frames_from_events(events: list[Event]) -> list[Frame]:
    """Assemble parser events into frames; an unfinished last frame has ``flag == ""``."""
    frames: list[Frame] = []
    body: list[bytes] = []
    for event in events:
        if isinstance(event, FrameHead):
            body = []
            frames.append(
                Frame(
                    event.tid,
                    event.method,
                    event.code,
                    event.comment,
                    Headers(event.headers),
                    b"" if event.has_body else None,
                    "",
                )
            )
        elif isinstance(event, BodyData):
            body.append(event.data)
        else:
            frame = frames[-1]
            if frame.body is not None:
                frame.body = b"".join(body)
            frame.flag = event.flag
    return frames


__all__ = [
    "BodyData",
    "Event",
    "Frame",
    "FrameEnd",
    "FrameHead",
    "FrameParser",
    "Headers",
    "MsrpError",
    "ParseError",
    "ParserLimits",
    "PureFrameParser",
    "frames_from_events",
    "new_tid",
    "parse_frames",
    "parser_impl",
]
