"""Registration, both sides: a UA that REGISTERs (and refreshes), and a registrar service.

:class:`Registration` keeps one contact bound at a registrar: digest auth, refresh
before the granted expiry, unregister on ``stop``.  :class:`RegistrarService`
answers REGISTER for the embedded :class:`~pyim.sip.registrar.Registrar`,
challenging with Digest first when it has credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..digest import DigestClient, DigestServer, Ok
from .auth import authenticate
from .message import SipResponse
from .registrar import Registrar
from .stack import IncomingRequest, SipStack
from .transaction import Destination
from .uri import NameAddr, SipUri

log = logging.getLogger(__name__)


class RegistrationError(Exception):
    """The registrar refused us; ``response`` says how."""

    def __init__(self, response: SipResponse) -> None:
        super().__init__(f"{response.status} {response.reason}")
        self.response = response


class Registration:
    """One AOR bound to this stack's contact at a registrar."""

    def __init__(
        self,
        stack: SipStack,
        *,
        registrar: SipUri,
        aor: SipUri,
        auth: DigestClient | None = None,
        expires: int = 3600,
        destination: Destination | None = None,
    ) -> None:
        self.stack = stack
        self.registrar = registrar
        self.aor = aor
        self.auth = auth
        self.expires = expires
        self.destination = destination or stack.destination_for_uri(registrar)
        self.call_id = stack.new_call_id()
        self.cseq = 0
        self.granted: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def contact(self) -> NameAddr:
        return self.stack.contact(self.destination.transport, self.aor.user)

    async def register(self, expires: int | None = None) -> SipResponse:
        """Send one REGISTER; raises :class:`RegistrationError` unless it gets a 2xx."""
        want = self.expires if expires is None else expires
        self.cseq += 2  # a digest retry inside send() uses cseq + 1
        request = self.stack.new_request(
            "REGISTER",
            self.registrar,
            from_=NameAddr(uri=self.aor).with_tag(self.call_id.split("-")[0][:12]),
            to=NameAddr(uri=self.aor),
            call_id=self.call_id,
            cseq=self.cseq,
            headers=[("Contact", str(self.contact)), ("Expires", str(want))],
        )
        response = await self.stack.send(request, self.destination, auth=self.auth)
        if not 200 <= response.status < 300:
            raise RegistrationError(response)
        self.cseq = response.cseq.seq
        self.granted = self._granted(response, want)
        return response

    def _granted(self, response: SipResponse, asked: int) -> int:
        mine = str(self.contact.uri)
        for contact in response.contacts:
            if str(contact.uri) == mine and (value := contact.param("expires")) is not None:
                with contextlib.suppress(ValueError):
                    return int(value)
        return response.expires if response.expires is not None else asked

    async def start(self) -> SipResponse:
        """Register now and keep refreshing in the background."""
        response = await self.register()
        self._task = asyncio.create_task(self._refresh())
        return response

    async def _refresh(self) -> None:
        while True:
            granted = self.granted or self.expires
            await asyncio.sleep(max(1.0, granted * 0.8 if granted < 120 else granted - 30))
            try:
                await self.register()
            except RegistrationError as exc:
                log.warning("re-registration of %s failed: %s", self.aor, exc)
                await asyncio.sleep(min(30.0, granted / 4))

    async def stop(self) -> None:
        """Stop refreshing and remove the binding (Expires: 0)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.granted:
            with contextlib.suppress(RegistrationError, asyncio.TimeoutError):
                await asyncio.wait_for(self.register(0), 5)
            self.granted = None


class RegistrarService:
    """Answers REGISTER with the embedded registrar, after Digest when configured."""

    def __init__(self, registrar: Registrar, digest: DigestServer | None = None) -> None:
        self.registrar = registrar
        self.digest = digest

    def handle(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        user: str | None = None
        if self.digest is not None:
            verdict = authenticate(incoming, self.digest)
            if not isinstance(verdict, Ok):
                return  # challenged
            user = verdict.username
        now = incoming.stack.loop.time()
        response = self.registrar.register(request, now, user=user, source=incoming.source)
        incoming.stack.respond(incoming, response)
