"""The embedded registrar's rules (RFC 3261 §10.3), without sockets."""

from __future__ import annotations

from pyim.sip.message import SipHeaders, SipRequest
from pyim.sip.registrar import Registrar, RegistrarConfig
from pyim.sip.uri import SipUri

AOR = SipUri.parse("sip:alice@127.0.0.1")


def register(
    contacts: list[str], *, cseq: int = 1, call_id: str = "c1", expires: str | None = None
):
    h = SipHeaders()
    h.add("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1")
    h.add("Max-Forwards", "70")
    h.add("From", "<sip:alice@127.0.0.1>;tag=a")
    h.add("To", "<sip:alice@127.0.0.1>")
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} REGISTER")
    for contact in contacts:
        h.add("Contact", contact)
    if expires is not None:
        h.add("Expires", expires)
    return SipRequest("REGISTER", SipUri.parse("sip:127.0.0.1"), h)


def test_several_contacts_q_order_and_expiry() -> None:
    reg = Registrar(RegistrarConfig(min_expires=10))
    response = reg.register(
        register(["<sip:alice@10.0.0.1:5060>;q=0.5", "<sip:alice@10.0.0.2:5060>;q=0.9;expires=20"]),
        0,
    )
    assert response.status == 200 and len(response.contacts) == 2
    hosts = [b.contact.uri.host for b in reg.lookup(AOR, 1)]
    assert hosts == ["10.0.0.2", "10.0.0.1"]
    assert [b.contact.uri.host for b in reg.lookup(AOR, 25)] == ["10.0.0.1"]
    assert reg.lookup(AOR, 3601) == []


def test_star_removes_all_and_needs_expires_zero() -> None:
    reg = Registrar()
    reg.register(register(["<sip:alice@10.0.0.1>"]), 0)
    assert reg.register(register(["*"], cseq=2), 1).status == 400
    assert reg.register(register(["*"], cseq=3, expires="0"), 1).status == 200
    assert reg.lookup(AOR, 2) == []


def test_cseq_order_min_expires_and_domain() -> None:
    reg = Registrar(RegistrarConfig(min_expires=60))
    assert reg.register(register(["<sip:alice@10.0.0.1>"], cseq=5), 0).status == 200
    assert reg.register(register(["<sip:alice@10.0.0.1>"], cseq=4), 1).status == 500
    brief = reg.register(register(["<sip:alice@10.0.0.9>;expires=30"], cseq=6), 1)
    assert brief.status == 423 and brief.headers.get("Min-Expires") == "60"
    foreign = register(["<sip:alice@10.0.0.1>"], cseq=7)
    foreign.uri = SipUri.parse("sip:example.org")
    assert reg.register(foreign, 1).status == 404
    assert reg.register(register(["<sip:alice@10.0.0.1>"], cseq=8), 1, user="bob").status == 403
