"""The one thread that touches pjsua2.

pjsua2 aborts the process when it is called from a thread it does not know, and a
SWIG director callback that raises is fatal. So every pjsua2 object lives on one
dedicated thread: it creates the Endpoint (``threadCnt=0``), polls it with
``libHandleEvents`` (which releases the GIL) and runs the jobs that the asyncio side
submits between polls. Results and pjsua2 callbacks reach asyncio through
``loop.call_soon_threadsafe``. Nothing here imports pjsua2: the poll function and
the shutdown are given by the caller.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Poll = Callable[[int], object]


@dataclass(slots=True)
class _Job:
    fn: Callable[[], Any]
    future: asyncio.Future[Any] | None


class PjThread:
    """Runs ``init`` then polls and runs jobs until ``stop``; ``finish`` runs last.

    ``translate`` turns an exception raised by a job (a ``pjsua2.Error``...) into the
    one the asyncio side sees; it runs on this thread.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        poll_ms: int = 5,
        name: str = "pyim-pjsua2",
        translate: Callable[[BaseException], BaseException] | None = None,
    ) -> None:
        self.loop = loop
        self.poll_ms = poll_ms
        self.translate = translate or (lambda exc: exc)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._deferred: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._run, name=name)
        self._init: Callable[[], Poll] | None = None
        self._finish: Callable[[], None] | None = None
        self._started: asyncio.Future[None] = loop.create_future()
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._stopping = False

    # -- asyncio side ------------------------------------------------------------------------

    def start(self, init: Callable[[], Poll], finish: Callable[[], None]) -> asyncio.Future[None]:
        """Start the thread; ``init`` creates the library there and returns its poll
        function; ``finish`` (the library's teardown) runs there at the end, always."""
        self._init, self._finish = init, finish
        self._thread.start()
        return self._started

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` on the pjsua2 thread; the future gets its result."""
        future: asyncio.Future[T] = self.loop.create_future()
        if self._stopping:
            future.set_exception(RuntimeError("the pjsua2 thread is stopping"))
            return future
        self._jobs.put(_Job(fn, future))
        return future

    async def call(self, fn: Callable[[], T]) -> T:
        return await self.submit(fn)

    def stop(self) -> asyncio.Future[None]:
        """Ask the thread to run ``finish`` and end; idempotent."""
        if not self._stopping:
            self._stopping = True
            self._jobs.put(None)
        return self._stopped

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- pjsua2 thread side --------------------------------------------------------------------

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def post(self, fn: Callable[..., object], *args: object) -> None:
        """From the pjsua2 thread: run ``fn(*args)`` on the asyncio loop (never raises)."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody listens any more
            log.debug("dropped %s: the event loop is closed", getattr(fn, "__name__", fn))

    def defer(self, fn: Callable[[], None]) -> None:
        """From the pjsua2 thread (a callback): run ``fn`` after the current poll
        returns, outside any pjsua2 callback (e.g. to drop a Call)."""
        self._deferred.append(fn)

    def _settle(self, future: asyncio.Future[Any] | None, result: Any, error: Any) -> None:
        if future is None:
            return

        def settle() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.post(settle)

    def _run_deferred(self) -> None:
        while self._deferred:
            fn = self._deferred.pop(0)
            try:
                fn()
            except BaseException:
                log.exception("deferred pjsua2 job failed")

    def _run_job(self, job: _Job) -> None:
        try:
            result = job.fn()
        except BaseException as exc:
            self._settle(job.future, None, self.translate(exc))
        else:
            self._settle(job.future, result, None)

    def run_pending(self, poll: Poll, ms: int) -> None:
        """Poll once and run deferred work (also used by ``finish`` while it waits)."""
        poll(ms)
        self._run_deferred()

    def _run(self) -> None:
        assert self._init is not None and self._finish is not None
        main = threading.main_thread()
        try:
            poll = self._init()
        except BaseException as exc:
            error = self.translate(exc)
            try:
                self._finish()
            except BaseException:
                log.exception("pjsua2 teardown after a failed start")
            self._settle(self._started, None, error)
            self._settle(self._stopped, None, None)
            return
        self._settle(self._started, None, None)
        try:
            while True:
                stop = False
                while True:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    self._run_job(job)
                    self._run_deferred()
                if stop or not main.is_alive():
                    break
                self.run_pending(poll, self.poll_ms)
        except BaseException:
            log.exception("the pjsua2 thread failed")
        finally:
            self._stopping = True
            try:
                self._finish()
            except BaseException:
                log.exception("pjsua2 teardown failed")
            # jobs submitted meanwhile never ran: tell their callers
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    self._settle(job.future, None, RuntimeError("the pjsua2 thread stopped"))
            self._settle(self._stopped, None, None)
