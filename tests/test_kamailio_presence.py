"""deploy/kamailio/proxy-presence.cfg works as the pyim.ua tests need it, proven with
pyim's own SIP stack (SipStack, Registration, DigestClient) over UDP and TCP:

1. REGISTER with digest -> 200;
2. PUBLISH of a PIDF document (Event: presence) for alice -> 200 with a SIP-ETag
   (digest: 407 first);
3. SUBSCRIBE from bob to alice (Event: presence) -> 200, and a NOTIFY reaches bob's
   contact with alice's PIDF ("open"); a PUBLISH refresh with SIP-If-Match changes it
   and bob is told; bob's un-SUBSCRIBE (in dialog) ends it with a "terminated" NOTIFY;
4. a page-mode MESSAGE from alice to bob's AOR reaches bob's registered contact and
   bob's 200 comes back.

pyim's SipStack answers NOTIFY with 501 (not one of its SUPPORTED_METHODS); the tests
add it for the watcher's stack (monkeypatch) since the presence client is not there yet.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

import pyim.sip.stack as stack_module
from kamailio_presence import KamailioPresence
from pyim.digest import DigestClient
from pyim.sip.dialog import new_tag
from pyim.sip.message import SipRequest, SipResponse
from pyim.sip.registration import Registration
from pyim.sip.stack import IncomingRequest, SipStack
from pyim.sip.transaction import Destination
from pyim.sip.uri import NameAddr, SipUri

pytest_plugins = ["kamailio_presence"]

WAIT = 5.0  # every wait for the network, seconds
PIDF = "application/pidf+xml"


def pidf(entity: str, basic: str, note: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">\n'
        f'  <tuple id="t{new_tag()[:8]}">\n'
        f"    <status><basic>{basic}</basic></status>\n"
        "  </tuple>\n"
        f"  <note>{note}</note>\n"
        "</presence>\n"
    ).encode()


@dataclass
class Ua:
    """One pyim SipStack as a user agent of ``user`` at the proxy."""

    user: str
    password: str
    proxy: KamailioPresence
    transport: str
    stack: SipStack = field(default_factory=SipStack)
    inbox: asyncio.Queue[SipRequest] = field(default_factory=asyncio.Queue)

    @property
    def aor(self) -> SipUri:
        return SipUri(scheme="sip", user=self.user, host=self.proxy.domain)

    @property
    def destination(self) -> Destination:
        return Destination(self.transport, self.proxy.host, self.proxy.port)

    @property
    def proxy_uri(self) -> SipUri:
        params = (("transport", self.transport),) if self.transport != "udp" else ()
        return SipUri(scheme="sip", host=self.proxy.host, port=self.proxy.port, params=params)

    def auth(self) -> DigestClient:
        return DigestClient(self.user, self.password)

    async def start(self) -> Ua:
        await self.stack.start(udp=0, tcp=0)
        self.stack.on_request = self._on_request
        return self

    def _on_request(self, incoming: IncomingRequest) -> None:
        if incoming.transaction is None:
            return  # an ACK
        request = incoming.request
        if request.method in ("MESSAGE", "NOTIFY"):
            incoming.respond(200)
            self.inbox.put_nowait(request)
        else:
            incoming.respond(405)

    async def next_request(self, method: str) -> SipRequest:
        async def wait() -> SipRequest:
            while True:
                request = await self.inbox.get()
                if request.method == method:
                    return request

        return await asyncio.wait_for(wait(), WAIT)

    async def send(
        self,
        method: str,
        uri: SipUri,
        to: NameAddr,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        call_id: str | None = None,
        from_tag: str | None = None,
        cseq: int = 1,
        auth: bool = True,
    ) -> SipResponse:
        request = self.stack.new_request(
            method,
            uri,
            from_=NameAddr(uri=self.aor).with_tag(from_tag or new_tag()),
            to=to,
            call_id=call_id,
            cseq=cseq,
            headers=headers,
            body=body,
            content_type=content_type,
        )
        send = self.stack.send(request, self.destination, auth=self.auth() if auth else None)
        return await asyncio.wait_for(send, WAIT)


@pytest.fixture(params=["udp", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def accept_notify(monkeypatch: pytest.MonkeyPatch) -> None:
    if "NOTIFY" not in stack_module.SUPPORTED_METHODS:
        monkeypatch.setattr(
            stack_module, "SUPPORTED_METHODS", (*stack_module.SUPPORTED_METHODS, "NOTIFY")
        )


UaFactory = Callable[[str], Awaitable[Ua]]


@pytest.fixture
async def make_ua(
    kamailio_presence: KamailioPresence, transport: str, accept_notify: None
) -> AsyncIterator[UaFactory]:
    made: list[Ua] = []

    async def make(user: str) -> Ua:
        ua = await Ua(user, kamailio_presence.users[user], kamailio_presence, transport).start()
        made.append(ua)
        return ua

    yield make
    for ua in made:
        await ua.stack.close()


async def register(ua: Ua) -> Registration:
    registration = Registration(
        ua.stack,
        registrar=ua.proxy_uri,
        aor=ua.aor,
        auth=ua.auth(),
        expires=120,
        destination=ua.destination,
    )
    response = await asyncio.wait_for(registration.register(), WAIT)
    assert response.status == 200
    return registration


def basic_of(body: bytes) -> str | None:
    found = re.search(rb"<(?:\w+:)?basic>\s*(\w+)\s*</(?:\w+:)?basic>", body)
    return found.group(1).decode() if found else None


async def test_register_publish_subscribe_notify_message(
    kamailio_presence: KamailioPresence, make_ua: UaFactory, transport: str
) -> None:
    proxy = kamailio_presence
    alice, bob = await make_ua("alice"), await make_ua("bob")

    # (1) REGISTER with digest
    await register(alice)
    await register(bob)
    assert proxy.wait_contacts("alice") and proxy.wait_contacts("bob")

    # (2) PUBLISH alice's PIDF: 407 without credentials, then 200 with a SIP-ETag
    alice_aor = NameAddr(uri=alice.aor)
    publish_headers = [("Event", "presence"), ("Expires", "120")]
    document = pidf(str(alice.aor), "open", "at the desk")
    unauthenticated = await alice.send(
        "PUBLISH",
        alice.aor,
        alice_aor,
        headers=publish_headers,
        body=document,
        content_type=PIDF,
        auth=False,
    )
    assert unauthenticated.status == 407
    published = await alice.send(
        "PUBLISH", alice.aor, alice_aor, headers=publish_headers, body=document, content_type=PIDF
    )
    assert published.status == 200, published.reason
    etag = published.headers.get("SIP-ETag")
    assert etag
    assert published.expires is not None and 0 < published.expires <= 120

    # (3) bob SUBSCRIBEs to alice: 200/202, then a NOTIFY with alice's PIDF, "open"
    subscribe_call_id = bob.stack.new_call_id()
    bob_tag = new_tag()
    subscribe_headers = [
        ("Event", "presence"),
        ("Accept", PIDF),
        ("Expires", "120"),
        ("Contact", bob.stack.contact_text(transport, "bob")),
    ]
    subscribed = await bob.send(
        "SUBSCRIBE",
        alice.aor,
        alice_aor,
        headers=subscribe_headers,
        call_id=subscribe_call_id,
        from_tag=bob_tag,
    )
    assert subscribed.status in (200, 202), subscribed.reason
    notify = await bob.next_request("NOTIFY")
    assert notify.call_id == subscribe_call_id
    assert notify.to.tag == bob_tag
    assert (notify.headers.get("Event") or "").startswith("presence")
    assert (notify.headers.get("Subscription-State") or "").startswith("active")
    assert (notify.headers.get("Content-Type") or "").startswith(PIDF)
    assert basic_of(notify.body) == "open"
    assert b"at the desk" in notify.body
    assert str(alice.aor).encode() in notify.body

    # a PUBLISH refresh that modifies the state (SIP-If-Match): bob hears "closed"
    republished = await alice.send(
        "PUBLISH",
        alice.aor,
        alice_aor,
        headers=[*publish_headers, ("SIP-If-Match", etag)],
        body=pidf(str(alice.aor), "closed", "gone home"),
        content_type=PIDF,
    )
    assert republished.status == 200, republished.reason
    assert republished.headers.get("SIP-ETag")
    update = await bob.next_request("NOTIFY")
    assert basic_of(update.body) == "closed"
    assert b"gone home" in update.body

    # (4) MESSAGE from alice to bob's AOR reaches bob's contact; bob's 200 comes back
    text = f"hello bob over {transport}".encode()
    answer = await alice.send(
        "MESSAGE",
        bob.aor,
        NameAddr(uri=bob.aor),
        body=text,
        content_type="text/plain",
        auth=False,
    )
    assert answer.status == 200, answer.reason
    page = await bob.next_request("MESSAGE")
    assert page.body == text
    assert page.from_.uri.user == "alice"

    # in the dialog (Request-URI: the Contact of the 200): a refresh, as is, then an
    # un-SUBSCRIBE with the proxy as a Route (what pjsua2 sends through its proxy)
    remote_target = subscribed.contacts[0].uri
    to_tag = subscribed.to.tag
    assert to_tag
    dialog_to = alice_aor.with_tag(to_tag)
    refreshed = await bob.send(
        "SUBSCRIBE",
        remote_target,
        dialog_to,
        headers=[*subscribe_headers[:2], ("Expires", "60"), subscribe_headers[3]],
        call_id=subscribe_call_id,
        from_tag=bob_tag,
        cseq=10,
    )
    assert refreshed.status in (200, 202), refreshed.reason
    again = await bob.next_request("NOTIFY")
    assert (again.headers.get("Subscription-State") or "").startswith("active")
    assert basic_of(again.body) == "closed"

    route = ("Route", f"<{bob.proxy_uri};lr>")
    unsubscribed = await bob.send(
        "SUBSCRIBE",
        remote_target,
        dialog_to,
        headers=[route, *subscribe_headers[:2], ("Expires", "0"), subscribe_headers[3]],
        call_id=subscribe_call_id,
        from_tag=bob_tag,
        cseq=20,
    )
    assert unsubscribed.status in (200, 202), unsubscribed.reason
    final = await bob.next_request("NOTIFY")
    assert (final.headers.get("Subscription-State") or "").startswith("terminated")


async def test_presence_refusals(kamailio_presence: KamailioPresence, make_ua: UaFactory) -> None:
    alice, bob = await make_ua("alice"), await make_ua("bob")
    document = pidf(str(alice.aor), "open", "x")
    headers = [("Event", "presence"), ("Expires", "60")]
    # bob cannot publish alice's state
    forged = await bob.send(
        "PUBLISH", alice.aor, NameAddr(uri=alice.aor), headers=headers, body=document,
        content_type=PIDF,
    )  # fmt: skip
    assert forged.status == 403
    # an event package this server does not serve
    other = await bob.send(
        "SUBSCRIBE",
        alice.aor,
        NameAddr(uri=alice.aor),
        headers=[("Event", "dialog"), ("Contact", bob.stack.contact_text(bob.transport, "bob"))],
    )
    assert other.status == 489
    # a wrong password: challenged again, never accepted
    wrong = Ua("alice", "wrong", kamailio_presence, alice.transport)
    await wrong.start()
    try:
        refused = await wrong.send(
            "PUBLISH", alice.aor, NameAddr(uri=alice.aor), headers=headers, body=document,
            content_type=PIDF,
        )  # fmt: skip
        assert refused.status in (403, 407)
    finally:
        await wrong.stack.close()


async def test_subscribe_before_publish(
    kamailio_presence: KamailioPresence, make_ua: UaFactory, transport: str
) -> None:
    """A buddy added before it comes online (what a pjsua2 client does at start): the
    first NOTIFY has no body (nothing published), carol's PUBLISH then says "open",
    and her PUBLISH with Expires: 0 (going offline) says "closed"."""
    bob, carol = await make_ua("bob"), await make_ua("carol")
    await register(bob)
    carol_aor = NameAddr(uri=carol.aor)
    subscribed = await bob.send(
        "SUBSCRIBE",
        carol.aor,
        carol_aor,
        headers=[
            ("Event", "presence"),
            ("Accept", PIDF),
            ("Expires", "60"),
            ("Contact", bob.stack.contact_text(transport, "bob")),
        ],
    )
    assert subscribed.status in (200, 202), subscribed.reason
    first = await bob.next_request("NOTIFY")
    assert (first.headers.get("Subscription-State") or "").startswith("active")
    assert basic_of(first.body) is None, first.body

    headers = [("Event", "presence"), ("Expires", "60")]
    published = await carol.send(
        "PUBLISH", carol.aor, carol_aor, headers=headers,
        body=pidf(str(carol.aor), "open", "online"), content_type=PIDF,
    )  # fmt: skip
    assert published.status == 200, published.reason
    online = await bob.next_request("NOTIFY")
    assert basic_of(online.body) == "open"

    etag = published.headers.get("SIP-ETag")
    assert etag
    removed = await carol.send(
        "PUBLISH", carol.aor, carol_aor,
        headers=[("Event", "presence"), ("Expires", "0"), ("SIP-If-Match", etag)],
    )  # fmt: skip
    assert removed.status == 200, removed.reason
    offline = await bob.next_request("NOTIFY")
    assert basic_of(offline.body) == "closed", offline.body
