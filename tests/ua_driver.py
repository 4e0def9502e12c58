#!/usr/bin/env python3
"""Run a pyim.ua Client from a JSON script, one JSON result line per step.

Usage::

    python tests/ua_driver.py --config '{"account": "sip:alice@127.0.0.1", ...}' \\
        --script '[{"op": "start"}, {"op": "page", "to": "sip:bob@...", "text": "hi"}]'

Each client runs in a process of its own: pjsua2 allows one Endpoint per process and
aborts the whole process on misuse, so the tests judge it by its exit status. stdout
carries only the JSON lines (pjsua's console log goes to stderr). Steps (``op``):

- ``start`` (``wait``: wait for the registration, default true) -> ``local``, ``registered``,
  ``mapped`` (the STUN-mapped SIP address), ``bound``, ``stun_server``
- ``wait_reg`` -> ``code``, ``reason``, ``active`` of the next RegistrationChanged event;
  ``register`` ``on``: re-REGISTER now (true) or unregister (false)
- ``page`` ``to`` ``text``|``size`` [``cpim``] -> ``code``, ``reason``
- ``page_nowait`` ``to`` ``text``: send in the background (a MESSAGE in flight)
- ``wait_page`` -> ``sender``, ``content_type``, ``text``, ``cpim_headers``
- ``wait_page_status`` -> ``code``, ``reason`` of the next PageStatus event
- ``chat`` ``to`` -> ``index``; ``accept`` -> ``index``, ``peer``; ``reject`` [``code``]
- ``send`` ``index`` ``text`` -> ``status``; ``receive`` ``index`` -> ``text``
- ``send_nowait`` ``index`` ``text``: send without waiting for the report;
  ``wait_sent`` -> ``statuses`` of every ``send_nowait`` so far, in order
- ``echo`` ``index`` ``count``: receive and send back ``count`` messages
- ``close_chat`` ``index``; ``wait_closed`` ``index`` (the peer hung up)
- ``subscribe`` ``uri``; ``unsubscribe`` ``uri``; ``presence`` ``online`` ``note``
  (PUBLISH with ``publish`` configured); ``wait_buddy`` ``online`` [``note``]
  [``uri``]: skip BuddyStatus events until one matches -> ``uri``, ``online``, ``note``
- ``readline``: wait for a line on stdin (the test's go-ahead); ``sleep`` ``seconds``
- any step may say ``"expect_error": "PageTooLarge"`` (a class name of pyim.ua)

The client is always stopped at the end (also after a failed step), then a final
``{"op": "exit", ...}`` line. Exit status: 0 when every step did what was expected,
1 if one did not (its line has ``"ok": false`` and ``error``), 2 on bad arguments.
``--timeout`` bounds every step; SIGALRM kills the process if even that fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pyim.ua import (
    BuddyStatus,
    ChatSession,
    Client,
    ClientConfig,
    IncomingChat,
    PageReceived,
    PageStatus,
    RegistrationChanged,
    UaError,
)

PROG = "ua_driver"


class StepFailed(Exception):
    pass


class Driver:
    def __init__(self, client: Client, out: Any, timeout: float) -> None:
        self.client = client
        self.out = out
        self.timeout = timeout
        self.sessions: list[ChatSession] = []
        self.queues: dict[type, asyncio.Queue[Any]] = {
            kind: asyncio.Queue() for kind in (PageReceived, PageStatus, BuddyStatus, IncomingChat)
        }
        self.queues[RegistrationChanged] = asyncio.Queue()
        self.background: set[asyncio.Task[Any]] = set()
        self.unsent: list[asyncio.Task[Any]] = []  # send_nowait, in order
        self.pump: asyncio.Task[None] | None = None
        self.lines: asyncio.Queue[str] | None = None

    async def stdin_line(self) -> str:
        """The next line of stdin, read by a daemon thread: a step that times out
        waiting for it must not leave an executor thread that keeps the process
        from exiting (asyncio.run waits for the default executor's threads)."""
        if self.lines is None:
            loop = asyncio.get_running_loop()
            lines: asyncio.Queue[str] = asyncio.Queue()
            self.lines = lines

            def read() -> None:
                try:
                    for line in sys.stdin:
                        loop.call_soon_threadsafe(lines.put_nowait, line)
                    loop.call_soon_threadsafe(lines.put_nowait, "")
                except (RuntimeError, OSError, ValueError):  # the loop or stdin closed
                    pass

            threading.Thread(target=read, name="stdin", daemon=True).start()
        return await self.lines.get()

    def emit(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    async def read_events(self) -> None:
        async for event in self.client.events():
            queue = self.queues.get(type(event))
            if queue is not None:
                queue.put_nowait(event)

    async def next_event(self, kind: type, step: dict[str, Any]) -> Any:
        return await asyncio.wait_for(self.queues[kind].get(), step.get("timeout", self.timeout))

    async def run_step(self, step: dict[str, Any]) -> dict[str, Any]:
        op = step["op"]
        c = self.client
        if op == "start":
            await c.start(wait_registered=step.get("wait", True))
            self.pump = asyncio.create_task(self.read_events())
            return {
                "local": c.local_address,
                "registered": c.registered,
                "mapped": c.mapped_address,
                "bound": c.bound_address,
                "stun_server": c.stun_server,
            }
        if op == "wait_reg":
            reg = await self.next_event(RegistrationChanged, step)
            return {"code": reg.code, "reason": reg.reason, "active": reg.active}
        if op == "register":
            await c.set_registration(step["on"])
            return {}
        if op in ("page", "page_nowait"):
            text = step.get("text") or ("x" * step.get("size", 10))
            work = c.send_page(step["to"], text, cpim=step.get("cpim", False))
            if op == "page_nowait":
                task = asyncio.create_task(work)
                self.background.add(task)
                return {}
            result = await work
            return {"code": result.code, "reason": result.reason, "message_id": result.message_id}
        if op == "wait_page":
            page = await self.next_event(PageReceived, step)
            return {
                "sender": page.sender,
                "content_type": page.content_type,
                "text": page.text,
                "cpim_headers": page.cpim_headers,
            }
        if op == "wait_page_status":
            status = await self.next_event(PageStatus, step)
            return {"code": status.code, "reason": status.reason, "message_id": status.message_id}
        if op == "chat":
            session = await c.chat(step["to"], timeout=step.get("timeout", self.timeout))
            self.sessions.append(session)
            return {"index": len(self.sessions) - 1, "peer": session.peer}
        if op in ("accept", "reject"):
            incoming = await self.next_event(IncomingChat, step)
            if op == "reject":
                await incoming.reject(step.get("code", 486))
                return {"peer": incoming.peer}
            session = await incoming.accept(step.get("timeout", self.timeout))
            self.sessions.append(session)
            return {"index": len(self.sessions) - 1, "peer": session.peer}
        if op == "send":
            result = await self.sessions[step["index"]].send(step["text"])
            return {"status": result.status, "code": result.code}
        if op == "send_nowait":
            task = asyncio.create_task(self.sessions[step["index"]].send(step["text"]))
            self.background.add(task)
            self.unsent.append(task)
            return {}
        if op == "wait_sent":
            results = await asyncio.wait_for(
                asyncio.gather(*self.unsent), step.get("timeout", self.timeout)
            )
            self.unsent.clear()
            return {"statuses": [r.status for r in results]}
        if op == "receive":
            message = await asyncio.wait_for(
                self.sessions[step["index"]].receive(), step.get("timeout", self.timeout)
            )
            return {"text": message.body.decode(), "content_type": message.content_type}
        if op == "echo":
            session = self.sessions[step["index"]]
            for _ in range(step.get("count", 1)):
                message = await asyncio.wait_for(session.receive(), self.timeout)
                result = await session.send(message.body, message.content_type)
                if not result.ok:
                    raise StepFailed(f"echo not delivered: {result}")
            return {"echoed": step.get("count", 1)}
        if op == "close_chat":
            await self.sessions[step["index"]].close()
            return {}
        if op == "wait_closed":
            session = self.sessions[step["index"]]
            await asyncio.wait_for(session.closed.wait(), step.get("timeout", self.timeout))
            return {}
        if op == "subscribe":
            await c.subscribe(step["uri"])
            return {}
        if op == "unsubscribe":
            await c.unsubscribe(step["uri"])
            return {}
        if op == "presence":
            await c.set_presence(step["online"], step.get("note", ""))
            return {}
        if op == "wait_buddy":
            deadline = time.monotonic() + step.get("timeout", self.timeout)
            seen: list[tuple[str, bool, str]] = []
            while True:
                left = deadline - time.monotonic()
                try:
                    status = await asyncio.wait_for(self.queues[BuddyStatus].get(), max(left, 0.01))
                except TimeoutError:
                    raise StepFailed(f"no such BuddyStatus; seen {seen}") from None
                seen.append((status.uri, status.online, status.note))
                if (
                    status.online == step["online"]
                    and ("note" not in step or status.note == step["note"])
                    and ("uri" not in step or status.uri == step["uri"])
                ):
                    return {"uri": status.uri, "online": status.online, "note": status.note}
        if op == "readline":
            line = await asyncio.wait_for(self.stdin_line(), step.get("timeout", self.timeout))
            return {"line": line.strip()}
        if op == "sleep":
            await asyncio.sleep(step["seconds"])
            return {}
        raise StepFailed(f"unknown op {op!r}")

    async def run(self, script: list[dict[str, Any]]) -> int:
        status = 0
        try:
            for number, step in enumerate(script):
                record: dict[str, Any] = {"op": step["op"], "step": number}
                expected = step.get("expect_error")
                try:
                    record.update(await asyncio.wait_for(self.run_step(step), self.timeout + 5))
                except (UaError, StepFailed, TimeoutError, ConnectionError) as exc:
                    name = type(exc).__name__
                    record.update(error=str(exc) or name, error_type=name)
                    record["ok"] = expected is not None and name == expected
                else:
                    record["ok"] = expected is None
                self.emit(record)
                if not record["ok"]:
                    print(f"{PROG}: ERROR: step {number} {step['op']}: {record}", file=sys.stderr)
                    status = 1
                    break
        finally:
            started = time.monotonic()
            await self.client.stop()
            for task in self.background:
                task.cancel()
            if self.pump is not None:
                await asyncio.wait_for(self.pump, 5)
            self.emit({"op": "exit", "status": status, "stop_seconds": time.monotonic() - started})
        return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="ClientConfig as JSON")
    parser.add_argument("--script", required=True, help="the steps, a JSON list")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per step")
    args = parser.parse_args(argv)
    try:
        config = ClientConfig.from_dict(json.loads(args.config))
        script = json.loads(args.script)
    except (ValueError, UaError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    # stdout carries the JSON lines only: pjsua's console log goes to stderr
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    signal.alarm(int(args.timeout * (len(script) + 2)) + 30)  # last resort
    driver = Driver(Client(config), out, args.timeout)
    return asyncio.run(driver.run(script))


if __name__ == "__main__":
    sys.exit(main())
