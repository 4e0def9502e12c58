"""What the pjsua2 side reports to the asyncio side (methods run on the loop)."""

from __future__ import annotations

from typing import Protocol

from ..sip.sdp import MsrpAnswer


class Listener(Protocol):
    def _on_reg_state(self, code: int, reason: str, active: bool) -> None: ...

    def _on_page(self, sender: str, content_type: str, body: str) -> None: ...

    def _on_page_status(self, to: str, body: str, code: int, reason: str) -> None: ...

    def _on_buddy(self, uri: str, online: bool, note: str) -> None: ...

    def _on_incoming_call(
        self, handle: int, remote: str, token: int, answer: MsrpAnswer
    ) -> None: ...

    def _on_call_state(
        self, handle: int, state: str, code: int, reason: str, offer: str, answer: str
    ) -> None: ...

    def _on_call_problem(self, handle: int, problem: str) -> None: ...
