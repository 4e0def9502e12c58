"""Delivery of queued messages to their recipients' devices (store-and-forward).

Every message the server accepts is in the store before the sender gets its 200.
One :class:`Deliverer` per recipient takes them out in order, one sender at a time:
into the open leg with that sender if there is one, else into a new session (the
server INVITEs the recipient's devices on the sender's behalf), else, for devices
that take no sessions, as page-mode MESSAGE with CPIM.  A message leaves the queue
only after the device's 200 (page) or Success-Report (session); until then it is
claimed with a lease, so a crash puts it back, and it is never acknowledged twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..msrp.transport import DeliveryResult
from ..store import StoreError
from ..store.model import StoredMessage
from .legs import Leg

log = logging.getLogger(__name__)

#: How long a claim holds a message before another delivery may take it.
LEASE_SECONDS = 120
#: Messages in a session awaiting their Success-Report at once, per sender.
WINDOW = 64
#: Messages claimed at once (the window drains at the end of each claim; their bodies
#: are in memory while claimed: up to this many times max_message_size per recipient).
CLAIM_BATCH = 100
#: After a failed drain (the store down...), retry after this, doubling up to RETRY_MAX.
RETRY_FIRST = 0.5
RETRY_MAX = 30.0
#: Without a kick, look again this often (claims of a crashed server lapse, a store
#: that failed midway...): only while the recipient is online, one query.
SWEEP_SECONDS = LEASE_SECONDS / 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one delivery attempt ended: ``delivered``, or not (and whether to stop)."""

    delivered: bool
    retry_later: bool = True


class DeliveryTarget:
    """What a Deliverer needs from the server (kept narrow for unit tests)."""

    async def claim(self, recipient: str) -> list[StoredMessage]:
        raise NotImplementedError

    async def open_leg(self, recipient: str, sender: str) -> Leg | None:
        raise NotImplementedError

    async def send_page(self, message: StoredMessage) -> bool | None:
        raise NotImplementedError

    def delivered(self, message: StoredMessage, mode: str) -> Awaitable[None]:
        """Settle a delivered message; awaiting the result waits for its
        acknowledgement to be committed."""
        raise NotImplementedError

    async def release(self, messages: list[StoredMessage]) -> None:
        raise NotImplementedError

    def online(self, recipient: str) -> bool:
        raise NotImplementedError

    def leg(self, recipient: str, sender: str) -> Leg | None:
        raise NotImplementedError

    def page_only(self, recipient: str, sender: str) -> bool:
        raise NotImplementedError


class Deliverer:
    """Drains one recipient's queue whenever kicked (a new message, a REGISTER)."""

    def __init__(self, recipient: str, target: DeliveryTarget) -> None:
        self.recipient = recipient
        self.target = target
        self._kick = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    def kick(self) -> None:
        self._kick.set()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        backoff = RETRY_FIRST
        while True:
            # a sweep now and then (lapsed leases); asyncio.timeout, not wait_for, which
            # in 3.11 swallows a cancellation that comes as the kick does (stop hangs)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SWEEP_SECONDS):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except StoreError as exc:  # the store is down: try again until it is back
                log.warning("delivery to %s waits for the store: %s", self.recipient, exc)
            except Exception:
                log.exception("delivery to %s failed", self.recipient)
            else:
                backoff = RETRY_FIRST
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX)
            self._kick.set()  # nothing else may come to wake us (the queue is not empty)

    async def _drain(self) -> None:
        """Deliver until the queue is empty or the recipient cannot take more now."""
        while self.target.online(self.recipient):
            batch = await self.target.claim(self.recipient)
            if not batch:
                return
            progressed = False
            left = list(batch)  # claimed, not yet delivered nor released
            try:
                for sender, group in itertools.groupby(batch, key=lambda m: m.sender):
                    messages = list(group)
                    done = await self._deliver_from(sender, messages)
                    progressed = progressed or done > 0
                    left = left[len(messages) :]
                    if done < len(messages):
                        await self.target.release(messages[done:])
            except BaseException:
                # give back what is left (best effort: the store may be what failed)
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.target.release(left))
                raise
            if not progressed:
                return  # nothing went through: wait for the next kick (a REGISTER)

    async def _deliver_from(self, sender: str, messages: list[StoredMessage]) -> int:
        """Deliver ``messages`` (all from ``sender``, in order); returns how many went."""
        leg = self.target.leg(self.recipient, sender)
        if leg is None and not self.target.page_only(self.recipient, sender):
            leg = await self.target.open_leg(self.recipient, sender)
        if leg is not None and leg.open:
            return await self._through(leg, sender, messages)
        done = 0
        for message in messages:
            if not await self.target.send_page(message):
                return done
            await self.target.delivered(message, "page")
            done += 1
        return done

    async def _through(self, leg: Leg, sender: str, messages: list[StoredMessage]) -> int:
        """Into a session, pipelined (up to ``WINDOW`` awaiting their Success-Report),
        settled in order: a message counts only once it and all before it arrived.
        Their acknowledgements are written in batches, all committed on return."""
        acks: list[Awaitable[None]] = []
        try:
            return await self._pipeline(leg, sender, messages, acks)
        finally:
            if acks:
                await asyncio.gather(*acks)

    async def _pipeline(
        self,
        leg: Leg,
        sender: str,
        messages: list[StoredMessage],
        acks: list[Awaitable[None]],
    ) -> int:
        msrp = leg.session.msrp
        pending: list[tuple[StoredMessage, asyncio.Future[DeliveryResult]]] = []
        done = 0
        try:
            for message in messages:
                if len(pending) >= WINDOW:
                    if not await self._settle_first(pending, sender, acks):
                        return done
                    done += 1
                try:
                    future = msrp.send_nowait(
                        message.content_type,
                        message.body,
                        success_report=True,
                        message_id=message.message_id,
                    )
                except (ConnectionError, ValueError) as exc:
                    log.info("%s -> %s: session gone (%s)", sender, self.recipient, exc)
                    break
                pending.append((message, future))
            while pending:
                if not await self._settle_first(pending, sender, acks):
                    return done
                done += 1
            return done
        finally:
            for _, future in pending:
                future.cancel()

    async def _settle_first(
        self,
        pending: list[tuple[StoredMessage, asyncio.Future[DeliveryResult]]],
        sender: str,
        acks: list[Awaitable[None]],
    ) -> bool:
        message, future = pending.pop(0)
        result = await future
        if result.status != "delivered":
            log.info(
                "%s -> %s: %s not delivered (%s %s)",
                sender, self.recipient, message.message_id, result.code, result.reason,
            )  # fmt: skip
            return False
        acks.append(self.target.delivered(message, "session"))
        return True


DelivererFactory = Callable[[str], Awaitable[Deliverer]]
