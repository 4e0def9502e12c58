"""Large messages through the server, chunk by chunk (``limits.stream_above``).

A message bigger than ``stream_above`` is not reassembled at the server: its chunks
are written on to the other party's open leg as they arrive (``open_stream``), with
the sender's reading paused while the receiver lags.  When the other party has no
open leg, the chunks are gathered up to ``max_message_size`` and the message takes
the durable path of every other message (stored, then delivered); beyond that it is
refused with 413.  A streamed message is answered hop by hop once relayed; its
Success-Report (or failure) comes from the receiver's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..msrp.frame import Headers
from ..msrp.session_events import (
    MessageAborted,
    MessageReceived,
    StreamData,
    StreamEnded,
    StreamStarted,
)
from ..msrp.transport import DeliveryResult, StreamEvent
from .legs import Leg, LegTable

log = logging.getLogger(__name__)

HIGH_WATER = 1024 * 1024  # bytes waiting for the receiver before the sender is paused
LOW_WATER = 256 * 1024


@dataclass(eq=False)
class _Flow:
    """One streamed message on its way through the server."""

    leg: Leg
    message_id: str
    content_type: str
    headers: Headers
    wants_report: bool
    target: Leg | None = None
    out_id: str = ""
    buffer: bytearray | None = None
    too_large: bool = False
    paused: bool = False
    watchers: list[asyncio.Task[None]] = field(default_factory=list)


class StreamRelay:
    """Relays the streamed messages of every leg (attach each leg when it opens)."""

    def __init__(
        self,
        legs: LegTable,
        whole: Callable[[Leg, MessageReceived], Awaitable[None]],
        *,
        max_buffered: int,
        record: Callable[[str, str, str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.legs = legs
        self.whole = whole  # the durable path, for a message gathered whole
        self.max_buffered = max_buffered
        self.record = record
        self._flows: dict[tuple[int, str], _Flow] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"relayed": 0, "gathered": 0, "refused": 0}

    def attach(self, leg: Leg) -> None:
        leg.session.msrp.on_stream = functools.partial(self.on_event, leg)  # (no closure)

    def on_event(self, leg: Leg, event: StreamEvent) -> None:
        key = (id(leg), event.message_id)
        if isinstance(event, StreamStarted):
            self._start(key, leg, event)
            return
        flow = self._flows.get(key)
        if flow is None:
            return
        if isinstance(event, StreamData):
            self._data(flow, event.data)
        elif isinstance(event, StreamEnded):
            del self._flows[key]
            self._end(flow)
        elif isinstance(event, MessageAborted):
            del self._flows[key]
            if flow.target is not None and flow.target.open:
                flow.target.session.msrp.abort(flow.out_id)

    def _start(self, key: tuple[int, str], leg: Leg, event: StreamStarted) -> None:
        wants = (event.headers.get("Success-Report") or "no").lower() == "yes"
        flow = _Flow(leg, event.message_id, event.content_type or "", event.headers, wants)
        target = self.legs.get(leg.other, leg.owner)
        if target is not None:
            flow.target = target
            flow.out_id, result = target.session.msrp.open_stream(
                flow.content_type or "application/octet-stream",
                total=event.total,
                message_id=event.message_id,
                success_report=True,
            )
            self._spawn(self._outcome(flow, result))
            self.stats["relayed"] += 1
        else:
            flow.buffer = bytearray()
        self._flows[key] = flow

    def _data(self, flow: _Flow, data: bytes) -> None:
        if flow.buffer is not None:
            if len(flow.buffer) + len(data) > self.max_buffered:
                flow.too_large, flow.buffer = True, bytearray()
            elif not flow.too_large:
                flow.buffer += data
            return
        target = flow.target
        if target is None or not target.open:
            return
        msrp = target.session.msrp
        msrp.stream_write(flow.out_id, data)
        if not flow.paused and msrp.engine.stream_backlog(flow.out_id) > HIGH_WATER:
            flow.paused = True
            flow.leg.session.msrp.pause_input()
            self._spawn(self._resume_when_drained(flow))

    async def _resume_when_drained(self, flow: _Flow) -> None:
        assert flow.target is not None
        msrp = flow.target.session.msrp
        with contextlib.suppress(Exception):
            while flow.target.open and msrp.engine.stream_backlog(flow.out_id) > LOW_WATER:
                await asyncio.sleep(0.01)
        flow.paused = False
        flow.leg.session.msrp.resume_input()

    def _end(self, flow: _Flow) -> None:
        msrp = flow.leg.session.msrp
        if flow.buffer is None:  # relayed: answered hop by hop, reported end to end
            if flow.target is not None and flow.target.open:
                flow.target.session.msrp.stream_end(flow.out_id)
            msrp.confirm(flow.message_id)
            return
        if flow.too_large:
            self.stats["refused"] += 1
            msrp.confirm(flow.message_id, 413, "too large to keep for an absent recipient")
            return
        self.stats["gathered"] += 1
        whole = MessageReceived(
            flow.message_id, flow.content_type, bytes(flow.buffer), flow.headers
        )
        self._spawn(self.whole(flow.leg, whole))

    async def _outcome(self, flow: _Flow, result: asyncio.Future[DeliveryResult]) -> None:
        outcome = await result
        if self.record is not None:
            await self.record(flow.leg.owner, flow.leg.other, flow.content_type, flow.message_id)
        if flow.wants_report and flow.leg.open:
            if outcome.status == "delivered":
                flow.leg.session.msrp.report(flow.message_id)
            else:
                flow.leg.session.msrp.report(flow.message_id, outcome.code or 408, outcome.reason)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
